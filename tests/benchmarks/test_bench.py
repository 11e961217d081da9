"""Tests of the benchmark scripts (benchmarks/): the quick run, the monodepth2 side-by-side option, gpu_check.sh."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"test_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench_train():
    return _load("bench_train")


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# ------------------------------------------------------------------------------------------------------------
# the quick run


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_quick_run_times_a_finite_step(tmp_path):
    out = tmp_path / "bench.json"
    record = tmp_path / "record.md"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench_train.py"), "--quick", "--configs", "md2_baseline", "--precisions", "fp32",
         "--no-data", "--no-calibration", "--threads", "1", "--json", str(out), "--record", str(record)],
        capture_output=True, text=True, env=_env(), timeout=580)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())["results"]
    assert len(results) == 1
    r = results[0]
    assert (r["name"], r["precision"], r["size"], r["batch"]) == ("md2_baseline", "fp32", "192×64", 1)
    assert r["finite"] and r["s_per_step"] > 0 and r["peak_rss_mb"] > 100
    assert r["split"]["backward"] > 0 and r["split"]["networks_forward"] > 0
    text = record.read_text()
    assert "| md2_baseline | fp32 |" in text and "load average at the start" in text


# ------------------------------------------------------------------------------------------------------------
# --peer-monodepth2


def test_peer_option_rejects_a_missing_folder(bench_train, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        bench_train.main(["--peer-monodepth2", str(tmp_path / "nowhere"), "--configs", "md2_baseline"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "nowhere is not a folder" in err and "monodepth2" in err


def test_peer_option_rejects_a_folder_that_is_not_monodepth2(bench_train, tmp_path, capsys):
    (tmp_path / "trainer.py").write_text("print('some other project')\n")
    with pytest.raises(SystemExit) as exc:
        bench_train.main(["--peer-monodepth2", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "is not a monodepth2 checkout" in err
    assert "trainer.py (without 'class Trainer')" in err and "options.py" in err and "networks/__init__.py" in err


def test_check_checkout_accepts_the_monodepth2_layout(tmp_path):
    peer = _load("peer_monodepth2")
    files = {"trainer.py": "class Trainer:\n", "options.py": "class MonodepthOptions:\n",
             "layers.py": "def transformation_from_parameters(a, t):\n", "networks/__init__.py": "ResnetEncoder\n",
             "networks/depth_decoder.py": "class DepthDecoder:\n", "datasets/__init__.py": "KITTIRAWDataset\n"}
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert peer.check_checkout(tmp_path) is None
    (tmp_path / "layers.py").unlink()
    assert "missing layers.py" in peer.check_checkout(tmp_path)


def test_peer_runs_at_our_baseline_setting(bench_train):
    quick = bench_train.CONFIGS["md2_baseline"][1] + bench_train.QUICK_OVERRIDES
    spec = bench_train._peer_spec("/x", quick)
    assert (spec["height"], spec["width"], spec["batch"], spec["layers"]) == (64, 192, 1, 18)
    spec = bench_train._peer_spec("/x", list(bench_train.CONFIGS["md2_baseline"][1]) + ["optim.batch_size=8"])
    assert (spec["height"], spec["width"], spec["batch"]) == (192, 640, 8)


def _row(name, precision, s, mem, cl=False):
    return {"name": name, "precision": precision, "channels_last": cl, "batch": 4, "size": "640×192",
            "s_per_step": s, "s_min": s, "s_max": s, "repeat": 3, "images_per_s": 4 / s, "finite": True,
            "peak_rss_mb": mem, "cuda_max_allocated_mb": None, "split_step_s": s, "split": None, "data_s": None,
            "standard_setting": True}


def test_record_reports_ours_over_theirs(bench_train):
    peer = _row(bench_train.PEER, "fp32", 4.0, 4000.0)
    peer["peer"] = {"path": "/m2", "commit": "abc", "shims": ["stub module six"]}
    results = [_row("md2_baseline", "fp32", 2.0, 3000.0, cl=True), _row("md2_baseline", "bf16", 1.0, 2000.0), peer]
    text = "\n".join(bench_train._peer_lines(results))
    # fp32: 2.0 / 4.0 = 0.50 (2.00× faster), memory 3000 / 4000 = 0.75; bf16: 1.0 / 4.0 = 0.25 (4.00×)
    assert "| md2_baseline fp32 CL 2.000 s | monodepth2 fp32 4.000 s | 0.50 | 2.00× | 0.75 (3000 / 4000 MB) |" in text
    assert "| md2_baseline bf16 1.000 s | monodepth2 fp32 4.000 s | 0.25 | 4.00× | 0.50 (2000 / 4000 MB) |" in text
    assert "float32 speed-up 2.00× (target ≥ 1.2×); best mode (bf16) 4.00× (target ≥ 2×)" in text
    assert "stub module six" in text and "commit abc" in text
    assert bench_train._peer_lines([_row("md2_baseline", "fp32", 2.0, 3000.0)]) == []


def test_find_max_batch_needs_cuda(bench_train, capsys):
    with pytest.raises(SystemExit) as exc:
        bench_train.main(["--configs", "md2_baseline", "--find-max-batch", "64"])
    assert exc.value.code == 2
    assert "--device cuda" in capsys.readouterr().err


MONODEPTH2 = os.environ.get("MONODEPTH2_PATH")


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.skipif(not MONODEPTH2, reason="set MONODEPTH2_PATH to a monodepth2 checkout to run it side by side "
                                          "(not in the repository; no network in tests)")
def test_peer_quick_side_by_side(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench_train.py"), "--quick", "--configs", "md2_baseline", "--precisions", "fp32",
         "--no-data", "--no-calibration", "--threads", "1", "--peer-monodepth2", MONODEPTH2, "--json", str(out)],
        capture_output=True, text=True, env=_env(), timeout=580)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = {r["name"]: r for r in json.loads(out.read_text())["results"]}
    peer = results["peer_monodepth2"]
    assert peer["finite"] and peer["s_per_step"] > 0 and (peer["size"], peer["batch"]) == ("192×64", 1)
    assert "ours / theirs" in proc.stdout


# ------------------------------------------------------------------------------------------------------------
# gpu_check.sh


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_check_dry_run_prints_the_plan_and_runs_nothing(tmp_path):
    script = BENCH / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    proc = subprocess.run(["bash", str(script), "--dry-run"], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, OUT=str(tmp_path)))
    assert proc.returncode == 0, proc.stderr
    plan = [line for line in proc.stdout.splitlines() if line.startswith("[plan] ")]
    parts = {line.split()[1]: line for line in plan if " timeout " in line}
    assert set(parts) == {"train_cpu", "infer_cpu", "train", "inference", "max_batch", "ddp", "compile"}
    assert "--device cuda" in parts["train"] and "--precisions fp32,bf16,fp16" in parts["train"]
    assert "md2_baseline,featdepth_r18,paper" in parts["train"]
    assert "--find-max-batch" in parts["max_batch"] and "--ddp" in parts["ddp"]
    assert "train.compile=true" in parts["compile"] and "--device cuda" in parts["inference"]
    assert all(f"{tmp_path}/gpu_" in line for line in parts.values() if "--record" in line)
    boxes = [int(line.split(" timeout ")[1].split("s:")[0]) for n, line in parts.items() if n not in ("train_cpu", "infer_cpu")]
    assert sum(boxes) <= 600  # the GPU parts' boxes; the --budget deadline (450 s) cuts them further
    assert list(tmp_path.iterdir()) == []  # a dry run writes nothing
    bad = subprocess.run(["bash", str(script), "--no-such-option"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown option --no-such-option" in bad.stderr


@pytest.mark.parametrize("limit,start,cap,expected", [
    (37, 2, 256, (37, 38)),     # doubling 2..32 fits, 64 does not, bisection down to 37 | 38
    (1000, 4, 100, (100, None)),  # everything fits: doubling to 64, then the cap itself
    (3, 4, 64, (3, 4)),         # the configuration's own batch does not fit: bisection below it
    (64, 4, 64, (64, None)),    # the cap is reached exactly by doubling
])
def test_max_batch_search(bench_train, limit, start, cap, expected):
    probed = []

    def fits(b):
        probed.append(b)
        return b <= limit

    assert bench_train.search_max_batch(fits, start, cap) == expected
    assert len(probed) == len(set(probed)) <= 16  # no size probed twice


def test_max_batch_search_stops_when_time_is_up(bench_train):
    calls = []
    good, bad = bench_train.search_max_batch(lambda b: calls.append(b) or True, 2, 1024, lambda: len(calls) < 3)
    assert calls == [2, 4, 8] and (good, bad) == (8, None)


# ------------------------------------------------------------------------------------------------------------
# bench_predict.py: the Model backends of `featdepth predict`


def test_bench_predict_quick_times_every_backend_and_checks_outputs(tmp_path, capsys):
    bench = _load("bench_predict")
    record = tmp_path / "inference.md"
    rc = bench.main(["--quick", "--decoders", "monodepth2", "--threads", "1", "--record", str(record)])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| monodepth2 |")]
    assert {r.split("|")[5].strip() for r in rows} == {"eager", "channels_last", "onnxruntime", "auto", "bf16"}
    by = {r.split("|")[5].strip(): [c.strip() for c in r.split("|")] for r in rows}
    assert rc == 0 and "failed" not in by["eager"][7] and float(by["eager"][7]) > 0
    assert float(by["channels_last"][11]) < 1e-5  # same float32 depth, another memory layout
    assert float(by["bf16"][11]) < 5e-2 and by["bf16"][6] == "channels_last+bf16"
    assert not record.exists()  # --quick records nothing
