"""Inference backends: eager, channels_last and onnxruntime give the same depth and poses; `auto` picks the
documented one; the ONNX graphs are cached on disk and reused; unavailable backends fail clearly; `--backend`."""

from __future__ import annotations

import importlib.util
import json
import os
import re

import numpy as np
import pytest
import torch
from PIL import Image

import featdepth
from featdepth.cli import main
from featdepth.inference import backends
from featdepth.inference.backends import ExportError, resolve_backend
from featdepth.inference.model import Model
from featdepth.models.layers import disp_to_depth
from tests.inference.test_model import _image, make_tiny_checkpoint

pytestmark = pytest.mark.usefixtures("single_thread")

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None
needs_ort = pytest.mark.skipif(not HAS_ORT, reason="onnxruntime/onnx not installed (the `export` and `dev` extras)")

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """``$FEATDEPTH_CACHE`` for the whole module: the graphs exported once here, nothing under ``~/.cache``."""
    folder = tmp_path_factory.mktemp("onnx_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FEATDEPTH_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", decoder="monodepth2")


@pytest.fixture(scope="module")
def images():
    # two at the training size (64x192), one that is resized
    return [_image(64, 192, 1), _image(64, 192, 2), _image(90, 250, 3)]


@pytest.fixture(scope="module")
def eager(ckpt):
    return featdepth.load(ckpt, device="cpu", backend="eager")


@pytest.fixture(scope="module")
def reference(eager, images):
    return eager.predict_depth(images), eager.predict_pose(images[0], images[1])


def _max_rel(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(x, np.float64) - y) / np.abs(y))) for x, y in zip(a, b))


def _without(monkeypatch, *names: str) -> None:
    """Make ``importlib.util.find_spec`` report ``names`` as not installed."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: None if name in names else real(name, *a, **k))


# ------------------------------------------------------------------------------------------------
# same outputs


def test_eager_is_plain_nchw_float32(eager, ckpt, images):
    assert eager.backend == "eager" and eager.describe()["backend"] == "eager"
    weights = [p for p in eager.networks.parameters() if p.dim() == 4]
    assert weights and all(p.is_contiguous() and p.dtype == torch.float32 for p in weights)
    # the oracle: the network run by hand on the resized image
    x = torch.from_numpy(images[0]).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        disp = eager.depth_net(x)[0]
    _, depth = disp_to_depth(disp, eager.network_min_depth, eager.network_max_depth)
    np.testing.assert_allclose(eager.predict_depth(images[0]), depth[0, 0].numpy(), rtol=1e-6)


def test_channels_last_matches_eager(ckpt, reference, images):
    model = featdepth.load(ckpt, device="cpu", backend="channels_last")
    assert model.backend == "channels_last"
    weights = [p for p in model.networks.parameters() if p.dim() == 4]
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)
    assert sum(not p.is_contiguous() for p in weights) > len(weights) // 2  # 1x1 kernels are both
    depth = model.predict_depth(images)
    assert _max_rel(depth, reference[0]) <= 1e-5
    np.testing.assert_allclose(model.predict_pose(images[0], images[1]), reference[1], atol=1e-5)
    model.set_backend("eager")  # and back: the weights are plain NCHW again
    assert all(p.is_contiguous() for p in model.networks.parameters())


@pytest.fixture(scope="module")
def onnx_model(ckpt, cache_dir):
    if not HAS_ORT:
        pytest.skip("onnxruntime/onnx not installed (the `export` and `dev` extras)")
    return featdepth.load(ckpt, device="cpu", backend="onnxruntime")


@needs_ort
def test_onnxruntime_matches_eager_and_writes_the_cache(onnx_model, reference, images, cache_dir, eager, monkeypatch):
    assert onnx_model.backend == "onnxruntime" and onnx_model.describe()["backend"] == "onnxruntime"
    depth = onnx_model.predict_depth(images)
    assert _max_rel(depth, reference[0]) <= 1e-4
    np.testing.assert_allclose(onnx_model.predict_pose(images[0], images[1]), reference[1], atol=1e-4)
    graphs = onnx_model._engine._graphs
    assert set(graphs) == {"depth", "pose"} and all(g.exported for g in graphs.values())
    files = sorted(p.name for p in cache_dir.iterdir())
    assert [f.split("-")[0] for f in files] == ["depth", "pose"], files  # nothing else: no temporary left behind
    assert all(len(f.split("-")[1]) == len("x" * 64) + len(".onnx") for f in files)
    # the low-level methods (the evaluation loop's) run the graphs too, at the training size only
    x = torch.rand(2, 3, 64, 192, generator=torch.Generator().manual_seed(3))
    runs = []
    real_run = graphs["depth"].session.run
    monkeypatch.setattr(graphs["depth"], "session", type("Spy", (), {"run": lambda _, *a: runs.append(1) or real_run(*a)})())
    with eager.evaluating():
        torch.testing.assert_close(onnx_model.disparity(x), eager.disparity(x), rtol=0, atol=1e-5)
        assert len(runs) == 1
        other = torch.rand(1, 3, 96, 320)  # another size: the PyTorch network, identical to eager
        assert torch.equal(onnx_model.disparity(other), eager.disparity(other)) and len(runs) == 1


@needs_ort
def test_second_load_reuses_the_disk_cache(onnx_model, ckpt, images, monkeypatch):
    first = onnx_model.predict_depth(images)  # exported (or already in memory)
    calls = []

    def no_export(*args, **kwargs):
        calls.append(args)
        raise AssertionError("exported again instead of reading the cache")

    monkeypatch.setattr(backends, "export_depth_onnx", no_export)
    monkeypatch.setattr(backends, "export_pose_onnx", no_export)
    again = featdepth.load(ckpt, device="cpu", backend="onnxruntime")
    for a, b in zip(again.predict_depth(images), first):
        np.testing.assert_array_equal(a, b)
    again.predict_pose(images[0], images[1])
    assert not calls
    assert {k: g.exported for k, g in again._engine._graphs.items()} == {"depth": False, "pose": False}


@needs_ort
def test_reading_a_cached_graph_marks_it_recently_used(onnx_model, ckpt, images, cache_dir):
    onnx_model.predict_depth(images)
    (depth_file,) = cache_dir.glob("depth-*.onnx")
    os.utime(depth_file, (1_000_000, 1_000_000))  # long unused
    featdepth.load(ckpt, device="cpu", backend="onnxruntime").predict_depth(images)
    assert depth_file.stat().st_mtime > 1_000_000 + 86_400


def test_prune_cache_deletes_the_least_recently_used_beyond_the_limit(tmp_path):
    files = []
    for i in range(5):  # 100 bytes each, file 0 the oldest
        f = tmp_path / f"depth-{i}.onnx"
        f.write_bytes(b"x" * 100)
        os.utime(f, (1_000_000 + i, 1_000_000 + i))
        files.append(f)
    (tmp_path / "notes.txt").write_bytes(b"y" * 1000)  # not a graph: never touched
    deleted = backends.prune_cache(tmp_path, 250, keep=(files[0],))
    assert sorted(deleted) == sorted(files[1:3])  # the newest two fit; file 0 is in use by this process
    assert [f.exists() for f in files] == [True, False, False, True, True] and (tmp_path / "notes.txt").exists()
    assert backends.prune_cache(tmp_path, None) == []  # no limit
    assert backends.prune_cache(tmp_path, 10_000) == []  # everything fits


def test_cache_limit_from_the_environment(monkeypatch):
    monkeypatch.delenv("FEATDEPTH_CACHE_MAX_MB", raising=False)
    assert backends.cache_limit_bytes() == backends.DEFAULT_CACHE_MAX_MB * 1024 * 1024
    monkeypatch.setenv("FEATDEPTH_CACHE_MAX_MB", "300")
    assert backends.cache_limit_bytes() == 300 * 1024 * 1024
    monkeypatch.setenv("FEATDEPTH_CACHE_MAX_MB", "0")
    assert backends.cache_limit_bytes() is None
    for bad in ("-5", "lots", "1.5"):
        monkeypatch.setenv("FEATDEPTH_CACHE_MAX_MB", bad)
        with pytest.raises(ValueError, match=f"FEATDEPTH_CACHE_MAX_MB must be a whole number.*got '{re.escape(bad)}'"):
            backends.cache_limit_bytes()


@needs_ort
def test_cache_key_follows_the_weights_and_the_size(onnx_model):
    engine = onnx_model._engine
    net = onnx_model.depth_net
    key = engine._key("depth", net)
    assert engine._key("depth", net) == key
    with torch.no_grad():
        p = next(net.parameters())
        p[(0,) * p.dim()] += 1e-3
        try:
            assert engine._key("depth", net) != key
        finally:
            p[(0,) * p.dim()] -= 1e-3
    onnx_model.height += 32
    try:
        assert engine._key("depth", net) != key
    finally:
        onnx_model.height -= 32


# ------------------------------------------------------------------------------------------------
# choosing, failing


def test_cli_choices_are_the_backends():
    from featdepth.cli.common import BACKEND_CHOICES

    assert BACKEND_CHOICES == backends.BACKENDS


def test_auto_resolves_to_the_documented_choice(ckpt, monkeypatch):
    assert resolve_backend("auto", torch.device("cuda"))[0] == "channels_last"
    assert resolve_backend("auto", CPU, shared=True)[0] == "eager"
    assert resolve_backend("auto", CPU, amp="bf16")[0] == "eager"
    expected = "onnxruntime" if HAS_ORT else "channels_last"
    assert resolve_backend("auto", CPU)[0] == expected
    model = featdepth.load(ckpt, device="cpu")  # the default is auto
    assert model.backend == expected and model.describe()["backend"] == expected
    assert model.backend_note.startswith("auto")
    _without(monkeypatch, "onnxruntime")
    name, note = resolve_backend("auto", CPU)
    assert name == "channels_last" and "onnxruntime" in note and "featdepth[export]" in note


def test_explicit_unavailable_backend_is_a_clear_error(ckpt, eager, monkeypatch):
    with pytest.raises(ValueError, match="backend must be one of auto, eager, channels_last, onnxruntime"):
        featdepth.load(ckpt, device="cpu", backend="tensorrt")
    with pytest.raises(ValueError, match=r"backend 'onnxruntime'.*CPU only.*cuda"):
        resolve_backend("onnxruntime", torch.device("cuda"))
    with pytest.raises(ValueError, match=r"backend 'onnxruntime'.*float32 only"):
        resolve_backend("onnxruntime", CPU, amp="bf16")
    with pytest.raises(ValueError, match=r"backend 'onnxruntime'.*shared with a trainer"):
        Model.from_networks(eager.depth_net, eager.pose_net, eager.config, stage="depth", backend="onnxruntime")
    _without(monkeypatch, "onnxruntime")
    with pytest.raises(ValueError, match=r"backend 'onnxruntime' is not available: onnxruntime not installed "
                                         r"\(pip install 'featdepth\[export\]'\)"):
        featdepth.load(ckpt, device="cpu", backend="onnxruntime")


def test_from_networks_never_exports_nor_converts_the_shared_modules(eager, images, reference):
    model = Model.from_networks(eager.depth_net, eager.pose_net, eager.config, stage="depth")
    assert model.backend == "eager" and model._engine is None
    shared = Model.from_networks(eager.depth_net, eager.pose_net, eager.config, stage="depth", backend="channels_last")
    assert shared.backend == "channels_last"
    assert all(p.is_contiguous() for p in eager.networks.parameters())  # the inputs only are channels_last
    assert _max_rel(shared.predict_depth(images), reference[0]) <= 1e-5


@needs_ort
def test_failed_export_falls_back_for_auto_and_raises_when_explicit(ckpt, reference, images, monkeypatch, tmp_path):
    monkeypatch.setenv("FEATDEPTH_CACHE", str(tmp_path / "empty"))  # nothing cached: the export is tried

    def broken(*args, **kwargs):
        raise ExportError("the exporter broke")

    monkeypatch.setattr(backends, "export_depth_onnx", broken)
    auto = featdepth.load(ckpt, device="cpu")
    assert auto.backend == "onnxruntime"
    with pytest.warns(RuntimeWarning, match=r"backend 'onnxruntime' could not run the depth network .*the exporter "
                                            r"broke; using channels_last instead"):
        depth = auto.predict_depth(images)
    assert auto.backend == "channels_last" and "the exporter broke" in auto.describe()["backend_note"]
    assert _max_rel(depth, reference[0]) <= 1e-5
    explicit = featdepth.load(ckpt, device="cpu", backend="onnxruntime")
    with pytest.raises(RuntimeError, match=r"backend 'onnxruntime' could not run the depth network .*the exporter broke"):
        explicit.predict_depth(images[0])


# ------------------------------------------------------------------------------------------------
# command line


def _predict(ckpt, image_path, out, backend, capsys) -> tuple[dict, np.ndarray]:
    argv = ["predict", str(image_path), "--checkpoint", str(ckpt), "--out", str(out), "--npy", "--no-color",
            "--device", "cpu", "--json", "--quiet"] + (["--backend", backend] if backend else [])
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    return summary, np.load(out / f"{image_path.stem}_depth.npy")


def test_cli_backend_option(ckpt, images, reference, tmp_path, capsys, cache_dir):
    image_path = tmp_path / "frame.png"
    Image.fromarray(images[2]).save(image_path)
    summary, depth = _predict(ckpt, image_path, tmp_path / "eager", "eager", capsys)
    assert summary["model"]["backend"] == "eager"
    np.testing.assert_allclose(depth, reference[0][2], rtol=1e-6)
    summary, depth = _predict(ckpt, image_path, tmp_path / "cl", "channels_last", capsys)
    assert summary["model"]["backend"] == "channels_last"
    assert _max_rel([depth], [reference[0][2]]) <= 1e-5
    summary, _ = _predict(ckpt, image_path, tmp_path / "auto", None, capsys)
    assert summary["model"]["backend"] == ("onnxruntime" if HAS_ORT else "channels_last")
    with pytest.raises(SystemExit) as exc:
        main(["predict", str(image_path), "--checkpoint", str(ckpt), "--backend", "tensorrt"])
    assert exc.value.code == 2 and "--backend" in capsys.readouterr().err
    assert main(["info", str(ckpt), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["backend"]["name"] == ("onnxruntime" if HAS_ORT else "channels_last")


@needs_ort
def test_cli_onnxruntime(ckpt, images, reference, tmp_path, capsys, cache_dir):
    image_path = tmp_path / "frame.png"
    Image.fromarray(images[2]).save(image_path)
    summary, depth = _predict(ckpt, image_path, tmp_path / "ort", "onnxruntime", capsys)
    assert summary["model"]["backend"] == "onnxruntime"
    assert _max_rel([depth], [reference[0][2]]) <= 1e-4
    assert os.environ["FEATDEPTH_CACHE"] == str(cache_dir)
