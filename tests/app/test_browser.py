"""The page in a real browser: headless Chromium driven by Selenium (system ``chromium`` and ``chromedriver``).

Uploads an example frame, waits for the depth slider and the 3-D view, checks that the point cloud was drawn,
and saves a screenshot (also to ``$FEATDEPTH_APP_SCREENSHOT`` when set: that is how docs/figures/app.png is
made). Bad files show the app's plain message in the page. Skips where Chromium, chromedriver or Selenium is
absent; ``.ci/run`` installs them.
"""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featdepth.app import handlers
from tests.app.conftest import HAS_GRADIO, NO_GRADIO

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
CHROMEDRIVER = shutil.which("chromedriver")
HAS_SELENIUM = importlib.util.find_spec("selenium") is not None
WAIT_S = 60

pytestmark = [
    pytest.mark.skipif(not HAS_GRADIO, reason=NO_GRADIO),
    pytest.mark.skipif(not HAS_SELENIUM, reason='selenium is not installed (pip install -e ".[dev]")'),
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="Chromium or chromedriver not found on PATH (Debian: apt-get install chromium "
                              "chromium-driver; .ci/run installs them)"),
]


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                "--force-device-scale-factor=1", "--hide-scrollbars"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    yield driver
    driver.quit()


def _wait(driver, condition, what: str, timeout: float = WAIT_S):
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.25).until(condition)
    except Exception as exc:  # noqa: BLE001 - say what did not appear, with the page's text
        body = driver.find_element("tag name", "body").text[:2000]
        raise AssertionError(f"{what} did not appear within {timeout} s; page text:\n{body}") from exc


def _open(driver, url: str):
    driver.get(url)
    return _wait(driver, lambda d: d.find_elements("css selector", "#image-input input[type=file]"), "the upload field")[0]


def _upload_and_run(driver, url: str, path: Path) -> None:
    field = _open(driver, url)
    field.send_keys(str(path))
    _wait(driver, lambda d: path.stem in d.find_element("css selector", "#image-input").text, "the uploaded file")
    driver.find_element("css selector", "#image-run").click()


def _page_text(driver) -> str:
    return driver.find_element("tag name", "body").text


def test_upload_a_frame_see_depth_and_points(browser, app_server, examples_dir, tmp_path):
    frame = handlers.example_frames(examples_dir)[0]
    start = time.monotonic()
    _upload_and_run(browser, app_server.url, frame)

    def slider_loaded(d):
        imgs = d.find_elements("css selector", "#depth-slider img")
        sizes = [d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i) for i in imgs]
        return len(imgs) >= 2 and all(sizes[:2])

    _wait(browser, slider_loaded, "the input | depth slider")
    canvas = _wait(browser, lambda d: d.find_elements("css selector", "#points-3d canvas"), "the 3-D view")[0]
    _wait(browser, lambda d: "3-D view:" in d.find_element("css selector", "#image-info").text, "the summary")
    time.sleep(2.0)  # let the viewer draw its first frames
    browser.execute_script("window.scrollTo(0, 0)")
    png = browser.get_screenshot_as_png()
    (tmp_path / "app.png").write_bytes(png)
    if os.environ.get("FEATDEPTH_APP_SCREENSHOT"):
        Path(os.environ["FEATDEPTH_APP_SCREENSHOT"]).write_bytes(png)

    # the 3-D view drew the cloud: many colours where an empty viewer shows its one background colour
    shot = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    r = canvas.rect
    x0, y0 = int(r["x"]), int(r["y"] - browser.execute_script("return window.scrollY"))
    view = shot[max(y0, 0): y0 + int(r["height"]), max(x0, 0): x0 + int(r["width"])]
    assert view.size > 0, f"the 3-D view is outside the screenshot ({r})"
    colours = np.unique(view.reshape(-1, 3) // 8, axis=0)
    assert len(colours) > 50, f"the 3-D view looks empty ({len(colours)} colours)"
    assert "KITTI-like" in browser.find_element("css selector", "#image-info").text
    assert "Error" not in _page_text(browser).splitlines(), _page_text(browser)  # no error toast or badge
    assert time.monotonic() - start < WAIT_S


def test_bad_file_and_bad_checkpoint_show_plain_errors(browser, app_server, tmp_path):
    bad = tmp_path / "holiday.png"
    bad.write_text("this is not really a picture")
    _upload_and_run(browser, app_server.url, bad)
    _wait(browser, lambda d: "holiday.png is not an image file that can be read" in _page_text(d), "the error message")
    assert "Traceback" not in browser.page_source

    (tmp_path / "weights.pt").write_text("not a checkpoint")
    browser.get(app_server.url)
    tab = _wait(browser, lambda d: [b for b in d.find_elements("css selector", "button[role=tab]")
                                    if b.text.strip() == "Checkpoint"], "the checkpoint tab")[0]
    tab.click()
    upload = _wait(browser, lambda d: [e for e in d.find_elements("css selector", "input[type=file]")
                                       if e.find_elements("xpath", "ancestor::*[@id='checkpoint-upload']")],
                   "the checkpoint upload")[0]
    upload.send_keys(str(tmp_path / "weights.pt"))
    _wait(browser, lambda d: "weights" in d.find_element("css selector", "#checkpoint-upload").text, "the upload")
    browser.find_element("css selector", "#checkpoint-load").click()
    _wait(browser, lambda d: "weights.pt cannot be used as a depth model" in _page_text(d), "the error message")
    assert "tiny.pt" in browser.find_element("css selector", "#checkpoint-info").text  # the old model stays
