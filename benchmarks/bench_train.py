"""Training-step benchmark: seconds per step, images per second, peak memory and a profile split.

Every configuration runs in a fresh subprocess (so that the peak RSS is its own), on a fixed in-memory batch
(random initialisation, random images; data loading excluded from the step time, as in the reference
figures), through :func:`featdepth.training.step.train_step` (the trainer's own step: autocast, backward,
clipping, Adam). After ``--warmup`` steps, ``--repeat`` steps are timed and the median is reported. Then a
few more steps run with timers around the phases (networks forward, warping, losses, rest of the forward,
backward, optimiser) for the profile split, and the cost of loading one batch from PNG files at KITTI size
(1242×375, decoded, resized, augmented, in the main process) is measured separately as the data column.

Usage::

    python benchmarks/bench_train.py                      # standard configurations, fp32 and bf16
    python benchmarks/bench_train.py --quick              # smoke run: tiny sizes, one timed step
    python benchmarks/bench_train.py --configs md2_baseline,paper --precisions fp32 --repeat 3
    python benchmarks/bench_train.py --channels-last      # fp32 / fp32+CL / bf16 / bf16+CL matrix
    python benchmarks/bench_train.py --loader             # does the step wait for data? (real DataLoader)
    python benchmarks/bench_train.py --record benchmarks/results/train_cpu.md   # append a markdown record
    python benchmarks/bench_train.py --configs md2_baseline --peer-monodepth2 ~/monodepth2   # side by side
    python benchmarks/bench_train.py --device cuda --configs paper --precisions bf16 --find-max-batch 128
    python benchmarks/bench_train.py --device cuda --configs md2_baseline --set train.compile=true
    python benchmarks/bench_train.py --device cuda --ddp 2 --loader-only     # a real torchrun run, 2 processes

Options ``--device cuda`` (``--precisions fp32,bf16,fp16``) and ``--batch`` (override every batch size, e.g.
the largest that fits) work the same on a GPU. ``--trace DIR`` writes a torch.profiler Chrome trace of one
step per configuration (the phases appear as ``record_function`` labels). ``--set KEY=VALUE`` adds a config
override to every configuration (``train.compile=true`` compiles the networks as the trainer does; the first
step, compilation included, is reported separately and the profile split is skipped).

``--peer-monodepth2 PATH`` also times a monodepth2 checkout's own training step (its ``Trainer``:
``process_batch`` + backward + Adam step) at the ``md2_baseline`` setting in the same run, each in a fresh
process with the same threads, and reports ours/theirs ratios; see ``peer_monodepth2.py`` for the run-time
compatibility shims (nothing of monodepth2 is copied into this repository).

``--find-max-batch CAP`` (CUDA) finds, per configuration and precision, the largest batch size up to CAP whose
training step fits in GPU memory (doubling, then bisection, in one process; out-of-memory errors are caught).
``--ddp N`` makes the real-run check (``--loader``) a ``torchrun`` run with N processes (NCCL on CUDA).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# Reference figures of the peer codes, measured for this project with their own code on a 2-core reference
# Xeon (float32, 2 threads, CPU, data loading excluded); see benchmarks/README.md.
REFERENCES = {
    "md2_baseline": ("monodepth2, ResNet-18, 640×192, batch 4", 3.3),
    "featdepth_r18_b2": ("official FeatDepth, ResNet-18 depth + FeatureNet, 640×192, batch 2", 4.7),
    "paper": ("official FeatDepth, paper setting (ResNet-50, 1024×320, batch 2)", 21.0),
    "peer_monodepth2": ("monodepth2, ResNet-18, 640×192, batch 4", 3.3),
}
PEER = "peer_monodepth2"
PEER_SETTING = "md2_baseline"  # the configuration whose size, batch and ResNet depth monodepth2 runs with

FRAMES_M = "[0,-1,1]"

# Calibration kernel of those reference figures, measured on the reference machine: torchvision ResNet-18
# forward + backward, batch 4, 3×192×640, 2 threads. Measured here in the same run, the ratio says how
# much faster or slower this machine is than the reference one for convolution-bound work, so that the
# "vs reference" ratios can be read on a common footing (the machines differ by far more than 5-10 %).
CALIBRATION_REFERENCE = {"fp32": 0.83, "fp32_cl": 0.42, "bf16": 0.23}

# name -> (description, config overrides on top of the defaults)
CONFIGS: dict[str, tuple[str, list[str]]] = {
    "md2_baseline": (
        "photometric-only baseline, ResNet-18 depth + pose, monodepth2 decoder, 640×192, batch 4, mono",
        ["train.stage=baseline", "model.depth_layers=18", "model.depth_decoder=monodepth2", "model.pose_layers=18",
         "model.pose_input_size=null", "data.height=192", "data.width=640", f"data.frame_ids={FRAMES_M}",
         "optim.batch_size=4"],
    ),
    "featdepth_r18": (
        "FeatDepth (frozen FeatureNet R18, feature-metric), same encoders and decoder, 640×192, batch 4, mono",
        ["train.stage=depth", "model.depth_layers=18", "model.depth_decoder=monodepth2", "model.pose_layers=18",
         "model.feature_layers=18", "model.pose_input_size=null", "data.height=192", "data.width=640",
         f"data.frame_ids={FRAMES_M}", "optim.batch_size=4"],
    ),
    "featdepth_r18_b2": (
        "FeatDepth with ResNet-18 depth + FeatureNet, FeatDepth decoder, pose R18, 640×192, batch 2, mono",
        ["train.stage=depth", "model.depth_layers=18", "model.depth_decoder=featdepth", "model.pose_layers=18",
         "model.feature_layers=18", "model.pose_input_size=null", "data.height=192", "data.width=640",
         f"data.frame_ids={FRAMES_M}", "optim.batch_size=2"],
    ),
    "paper": (
        "FeatDepth paper setting: ResNet-50 depth + FeatureNet at 1024×320, FeatDepth decoder, "
        "PoseNet R18 at 640×192, batch 2, mono",
        ["train.stage=depth", "model.depth_layers=50", "model.depth_decoder=featdepth", "model.pose_layers=18",
         "model.feature_layers=50", "model.pose_input_size=[192,640]", "data.height=320", "data.width=1024",
         f"data.frame_ids={FRAMES_M}", "optim.batch_size=2"],
    ),
    "md2_baseline_small": (
        "the baseline at a small size (channels_last matrix): ResNet-18, monodepth2 decoder, 320×96, batch 4",
        ["train.stage=baseline", "model.depth_layers=18", "model.depth_decoder=monodepth2", "model.pose_layers=18",
         "model.pose_input_size=null", "data.height=96", "data.width=320", f"data.frame_ids={FRAMES_M}",
         "optim.batch_size=4"],
    ),
}
STANDARD = ["md2_baseline", "featdepth_r18", "featdepth_r18_b2", "paper"]
QUICK_OVERRIDES = ["data.height=64", "data.width=192", "model.depth_layers=18", "model.feature_layers=18",
                   "model.pose_input_size=null", "optim.batch_size=1"]
AMP = {"fp32": "none", "bf16": "bf16", "fp16": "fp16"}
KITTI_SIZE = (375, 1242)


# ------------------------------------------------------------------------------------------------------------
# machine description


def machine_info() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu in ("", platform.machine(), "x86_64"):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "bf16_isa": ",".join(sorted(f for f in flags if f in ("amx_bf16", "avx512_bf16", "amx_tile"))) or "none",
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a",
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ------------------------------------------------------------------------------------------------------------
# the worker: one configuration in its own process


def _fixed_batch(cfg, device, channels_last: bool, batch_size: int | None = None) -> dict[str, Any]:
    import torch

    from featdepth.utils.runtime import move_batch

    b, h, w = batch_size or cfg.optim.batch_size, cfg.data.height, cfg.data.width
    g = torch.Generator().manual_seed(0)
    color = {f: torch.rand(b, 3, h, w, generator=g) for f in cfg.data.frame_ids}
    K = torch.tensor([[0.58 * w, 0.0, 0.5 * w], [0.0, 1.92 * h, 0.5 * h], [0.0, 0.0, 1.0]]).expand(b, 3, 3).clone()
    batch = {"color": color, "color_aug": {f: c.clone() for f, c in color.items()}, "K": K,
             "inv_K": torch.linalg.inv(K)}
    if "s" in cfg.data.frame_ids:
        T = torch.eye(4).expand(b, 4, 4).clone()
        T[:, 0, 3] = -0.1
        batch["stereo_T"] = T
    return move_batch(batch, device, channels_last)


class PhaseTimer:
    """Wall-clock time per phase, with ``record_function`` labels (and CUDA syncs on a GPU)."""

    def __init__(self, device) -> None:
        self.device = device
        self.totals: dict[str, float] = {}
        self.enabled = False
        self._depth = 0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize(self.device)

    def wrap(self, name: str, fn):
        import torch

        def timed(*args, **kwargs):
            if not self.enabled or self._depth:
                return fn(*args, **kwargs)
            self._depth += 1
            self._sync()
            t0 = time.perf_counter()
            try:
                with torch.profiler.record_function(name):
                    return fn(*args, **kwargs)
            finally:
                self._sync()
                self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - t0
                self._depth -= 1

        return timed


def _instrument(system, optimizer, timer: PhaseTimer) -> None:
    """Timers around the phases of the real step (nothing in the library is changed)."""
    import torch

    import featdepth.training.system as system_module

    for net in ("depth_net", "pose_net"):
        module = getattr(system, net, None)
        if module is not None:
            module.forward = timer.wrap("networks_forward", module.forward)
    fn = getattr(system, "feature_net", None)
    if fn is not None:
        fn.extract = timer.wrap("networks_forward", fn.extract)
        fn.forward = timer.wrap("networks_forward", fn.forward)
    system_module.warp = timer.wrap("warping", system_module.warp)
    for name in ("depth_objective", "featurenet_objective", "joint_objective"):
        setattr(system_module, name, timer.wrap("losses", getattr(system_module, name)))
    system.forward = _forward_timer(timer, system.forward)
    torch.Tensor.backward = timer.wrap("backward", torch.Tensor.backward)
    optimizer.step = timer.wrap("optimizer", optimizer.step)


def _forward_timer(timer: PhaseTimer, forward):
    import torch

    def timed(*args, **kwargs):
        if not timer.enabled:
            return forward(*args, **kwargs)
        timer._sync()
        t0 = time.perf_counter()
        with torch.profiler.record_function("forward"):
            out = forward(*args, **kwargs)
        timer._sync()
        timer.totals["forward_total"] = timer.totals.get("forward_total", 0.0) + time.perf_counter() - t0
        return out

    return timed


def _data_cost(cfg, data_root: str | None, batches: int) -> float | None:
    """Seconds to produce one training batch from PNG files at KITTI size in the main process."""
    if not data_root:
        return None
    import torch

    from featdepth.data import FolderDataset
    from featdepth.data.factory import SeededItems

    ds = SeededItems(FolderDataset(data_root, list(cfg.data.frame_ids), cfg.data.height, cfg.data.width,
                                   is_train=True), seed=0)
    n = len(ds)
    b = cfg.optim.batch_size
    times = []
    for i in range(batches + 1):
        t0 = time.perf_counter()
        items = [ds[(0, (i * b + j) % n)] for j in range(b)]
        torch.utils.data.default_collate(items)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def run_calibration(spec: dict[str, Any]) -> dict[str, Any]:
    """Time the reference machine's calibration kernel here (see ``CALIBRATION_REFERENCE``)."""
    import torch
    import torchvision

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    torch.manual_seed(0)
    model = torchvision.models.resnet18()
    x = torch.randn(4, 3, 192, 640)
    out = {}
    for mode in CALIBRATION_REFERENCE:
        cl = mode == "fp32_cl"
        fmt = torch.channels_last if cl else torch.contiguous_format
        m, xx = model.to(memory_format=fmt), x.contiguous(memory_format=fmt)
        times = []
        for _ in range(spec.get("repeat", 3) + 1):
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
                y = m(xx).float().sum()
            y.backward()
            times.append(time.perf_counter() - t0)
        out[mode] = statistics.median(times[1:])
    return {"calibration": out}


def _build(spec: dict[str, Any]):
    """The system, optimiser and scaler as the trainer builds them, for one configuration."""
    import torch

    from featdepth.config import load_config
    from featdepth.training.setup import build_optimizer, compile_networks, freeze_unused_heads
    from featdepth.training.system import FeatDepthSystem
    from featdepth.utils.runtime import resolve_device, use_channels_last

    device = resolve_device(spec["device"])
    cfg = load_config(None, spec["overrides"] + [f"train.amp={spec['amp']}", "train.run_feature_stage=false"])
    channels_last = use_channels_last(device, cfg.train.amp, spec.get("channels_last"))
    torch.manual_seed(0)
    system = FeatDepthSystem(cfg).to(device)  # stage "depth": a random FeatureNet, frozen
    freeze_unused_heads(system)
    if channels_last:
        system = system.to(memory_format=torch.channels_last)
    system.train()
    compiled = compile_networks(system) if cfg.train.compile else []  # as the trainer does
    params = system.trainable_parameters()
    optimizer = build_optimizer(params, cfg)  # the trainer's optimiser
    scaler = torch.amp.GradScaler("cuda") if cfg.train.amp == "fp16" else None
    return cfg, device, channels_last, system, params, optimizer, scaler, compiled


def search_max_batch(fits, start: int, cap: int, time_left=lambda: True) -> tuple[int, int | None]:
    """(largest size that fits, smallest size seen not to fit or None): doubling from ``start``, the cap itself
    when doubling stepped over it, then bisection; ``fits(b)`` probes one size, ``time_left()`` can stop early."""
    good, bad, b = 0, None, start
    while b <= cap and time_left():  # doubling
        if not fits(b):
            bad = b
            break
        good, b = b, 2 * b
    if bad is None and good and good < cap and time_left():
        if fits(cap):
            good = cap
        else:
            bad = cap
    while bad is not None and bad - good > 1 and time_left():  # bisection
        mid = (good + bad) // 2
        if fits(mid):
            good = mid
        else:
            bad = mid
    return good, bad


def run_max_batch(spec: dict[str, Any]) -> dict[str, Any]:
    """Largest batch size (up to ``spec['max_batch']``) whose training step fits in GPU memory.

    Doubling from the configuration's batch size, then bisection between the last size that fitted and the
    first that did not; each probe is one warm-up step and one timed step in this process (out-of-memory
    errors are caught and the cache emptied). Stops early, with the best so far, after ``max_batch_budget_s``.
    """
    import gc

    import torch

    from featdepth.training.step import train_step

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    cfg, device, channels_last, system, params, optimizer, scaler, _ = _build(spec)
    if device.type != "cuda":
        raise SystemExit("--find-max-batch needs a CUDA device (--device cuda)")
    cap, budget = int(spec["max_batch"]), float(spec.get("max_batch_budget_s", 120))
    t_start = time.perf_counter()
    probes: list[dict[str, Any]] = []

    def probe(b: int) -> bool:
        oom = False
        try:
            optimizer.zero_grad(set_to_none=True)
            torch.cuda.reset_peak_memory_stats(device)
            batch = _fixed_batch(cfg, device, channels_last, batch_size=b)
            times = []
            for _ in range(2):
                t0 = time.perf_counter()
                train_step(system, batch, optimizer, device=device, amp=cfg.train.amp, scaler=scaler,
                           grad_clip=cfg.optim.grad_clip, params=params)
                torch.cuda.synchronize(device)
                times.append(time.perf_counter() - t0)
            probes.append({"batch": b, "fits": True, "s_per_step": times[-1],
                           "cuda_max_allocated_mb": torch.cuda.max_memory_allocated(device) / 2**20})
        except torch.cuda.OutOfMemoryError:
            oom = True
        batch = None  # noqa: F841 - free the batch (and, outside the except block, the traceback's tensors)
        if oom:
            optimizer.zero_grad(set_to_none=True)
            gc.collect()
            torch.cuda.empty_cache()
            probes.append({"batch": b, "fits": False})
        return not oom

    good, bad = search_max_batch(probe, max(1, cfg.optim.batch_size), cap,
                                 lambda: time.perf_counter() - t_start < budget)
    best = next((p for p in probes if p["fits"] and p["batch"] == good), None)
    return {
        "name": spec["name"], "precision": spec["precision"], "channels_last": channels_last,
        "size": f"{cfg.data.width}×{cfg.data.height}", "cap": cap, "max_batch": good,
        "first_oom": bad, "exact": bad is None and good == cap or (bad is not None and bad - good <= 1),
        "time_boxed": time.perf_counter() - t_start >= budget, "probes": probes,
        "s_per_step": best["s_per_step"] if best else None,
        "images_per_s": good / best["s_per_step"] if best else None,
        "cuda_max_allocated_mb": best["cuda_max_allocated_mb"] if best else None,
        "total_mb": torch.cuda.get_device_properties(device).total_memory / 2**20,
        "wall_s": time.perf_counter() - t_start,
    }


def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    if spec.get("calibration"):
        return run_calibration(spec)
    if spec.get("peer"):
        return _peer_module().run_peer(spec, PhaseTimer, peak_rss_mb)
    if spec.get("max_batch"):
        return run_max_batch(spec)
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    from featdepth.training.setup import checked_compiled_step
    from featdepth.training.step import train_step

    cfg, device, channels_last, system, params, optimizer, scaler, compiled = _build(spec)
    batch = _fixed_batch(cfg, device, channels_last)

    def step():
        res = train_step(system, batch, optimizer, device=device, amp=cfg.train.amp, scaler=scaler,
                         grad_clip=cfg.optim.grad_clip, params=params)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return res

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t_start = time.perf_counter()
    first_step_s = None
    for i in range(spec["warmup"]):
        t0 = time.perf_counter()
        _, compiled = checked_compiled_step(step, system, compiled, first=i == 0)  # compiles on the first
        if i == 0:
            first_step_s = time.perf_counter() - t0
    times, finite = [], True
    for _ in range(spec["repeat"]):
        t0 = time.perf_counter()
        res = step()
        times.append(time.perf_counter() - t0)
        finite = finite and res.finite
    # profile split: further steps with phase timers (not with compiled networks: the timers would break graphs)
    split_steps = 0 if compiled else spec["split_steps"]
    split, split_total = None, None
    if split_steps:
        timer = PhaseTimer(device)
        _instrument(system, optimizer, timer)
        timer.enabled = True
        t0 = time.perf_counter()
        for _ in range(split_steps):
            step()
        split_total = (time.perf_counter() - t0) / split_steps
        timer.enabled = False
        phases = {k: v / split_steps for k, v in timer.totals.items()}
        fwd = phases.pop("forward_total", 0.0)
        split = {
            "networks_forward": phases.get("networks_forward", 0.0),
            "warping": phases.get("warping", 0.0),
            "losses": phases.get("losses", 0.0),
            "forward_other": max(0.0, fwd - sum(phases.get(k, 0.0) for k in ("networks_forward", "warping", "losses"))),
            "backward": phases.get("backward", 0.0),
            "optimizer": phases.get("optimizer", 0.0),
        }
        split["step_other"] = max(0.0, split_total - fwd - split["backward"] - split["optimizer"])
    if spec.get("trace"):
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=acts) as prof:
            step()
        Path(spec["trace"]).mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(Path(spec["trace"]) / f"{spec['name']}_{spec['precision']}.json"))
    peak = peak_rss_mb()
    cuda_peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    med = statistics.median(times)
    data_s = _data_cost(cfg, spec.get("data_root"), spec.get("data_batches", 3))
    return {
        "name": spec["name"], "precision": spec["precision"], "channels_last": channels_last,
        "batch": cfg.optim.batch_size, "size": f"{cfg.data.width}×{cfg.data.height}",
        "s_per_step": med, "s_min": min(times), "s_max": max(times), "repeat": len(times),
        "images_per_s": cfg.optim.batch_size / med, "finite": finite, "peak_rss_mb": peak,
        "cuda_max_allocated_mb": cuda_peak, "split_step_s": split_total, "split": split, "data_s": data_s,
        "threads": torch.get_num_threads(), "wall_s": time.perf_counter() - t_start,
        "standard_setting": bool(spec.get("standard_setting")), "compiled": compiled, "first_step_s": first_step_s,
    }


def _peer_module():
    """``benchmarks/peer_monodepth2.py`` (imported by path: ``benchmarks/`` is not a package)."""
    import importlib.util

    path = Path(__file__).resolve().parent / "peer_monodepth2.py"
    module_spec = importlib.util.spec_from_file_location("featdepth_bench_peer_monodepth2", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------------------------
# data for the data-cost column and the loader check


def make_data(root: Path, stereo: bool = False, frames: int = 6) -> Path:
    """PNG sequences at KITTI size (1242×375), generated once into the temporary folder."""
    from featdepth.data.synthetic import generate_dataset

    if not (root / "seq_000" / "meta.json").is_file() or len(list((root / "seq_000" / "images").glob("*.png"))) < frames:
        generate_dataset(root, num_sequences=1, seed=0, num_frames=frames, height=KITTI_SIZE[0],
                         width=KITTI_SIZE[1], stereo=stereo)
    return root


def loader_check(args, data_root: Path, nproc: int = 0) -> dict[str, Any]:
    """A real training run (DataLoader with workers) of the baseline; medians of the logged per-step times.

    ``nproc`` > 0: the run is launched by ``torchrun --standalone --nproc_per_node nproc`` (DDP; NCCL on CUDA),
    and the figures are rank 0's.
    """
    out = Path(tempfile.mkdtemp(prefix="featdepth_bench_loader_"))
    steps = max(4, args.loader_steps)
    overrides = CONFIGS["md2_baseline"][1] + [
        "data.dataset=folder", f"data.path={data_root}", f"data.num_workers={args.loader_workers}",
        f"train.out_dir={out}", "train.progress=false", "train.log_every=1", "train.image_every=0",
        f"optim.max_steps={steps}", "train.device=" + args.device, f"train.amp={AMP[args.loader_precision]}",
        "train.keep_checkpoints=1",
    ]
    if args.quick:
        overrides += QUICK_OVERRIDES
    launch = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc else []
    cmd = [sys.executable, *launch, "-m", "featdepth", "train", "-c", "synthetic_small"]
    for o in overrides + list(getattr(args, "set", None) or []):
        cmd += ["--set", o]
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    try:
        # own session, so that a timeout ends torchrun's workers too
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                start_new_session=True)
        try:
            _, stderr = proc.communicate(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.communicate()
            return {"error": f"the training run timed out after {args.timeout:.0f} s", "nproc": nproc}
        if proc.returncode != 0:
            return {"error": stderr[-2000:], "nproc": nproc}
        records = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    finally:
        shutil.rmtree(out, ignore_errors=True)  # its checkpoints are hundreds of MB
    # step 1 includes starting the workers; the first batch of a later epoch waits for a fresh prefetch
    rows = [r for r in records if "time/step_s" in r and r["step"] > 1]
    data = [r["time/data_s"] for r in rows]
    step = [r["time/step_s"] for r in rows]
    return {"workers": args.loader_workers, "steps": len(rows), "precision": args.loader_precision,
            "nproc": nproc, "batch_per_process": int(next((o.split("=", 1)[1] for o in reversed(overrides)
                                                          if o.startswith("optim.batch_size=")), 4)),
            "data_s_median": statistics.median(data), "data_s_max": max(data),
            "step_s_median": statistics.median(step), "waiting_fraction": sum(data) / (sum(data) + sum(step))}


# ------------------------------------------------------------------------------------------------------------
# the driver


def _spawn(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    env = dict(os.environ)
    if spec.get("threads"):
        env["OMP_NUM_THREADS"] = str(spec["threads"])
    try:
        proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True,
                              text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"name": spec["name"], "precision": spec["precision"], "error": f"timed out after {timeout:.0f} s"}
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"name": spec["name"], "precision": spec["precision"], "error": proc.stderr.strip()[-1500:]}
    return json.loads(lines[-1])


def _override_value(overrides: list[str], key: str, default: str) -> str:
    """The last ``key=value`` of ``overrides`` for ``key`` (later overrides win, as in load_config)."""
    return next((o.split("=", 1)[1] for o in reversed(overrides) if o.split("=", 1)[0] == key), default)


def _peer_spec(path: str, overrides: list[str]) -> dict[str, Any]:
    """monodepth2's setting from our ``md2_baseline`` overrides (size, batch, ResNet depth; frames 0, -1, 1)."""
    base = CONFIGS[PEER_SETTING][1] + overrides
    return {"path": str(Path(path).expanduser().resolve()), "height": int(_override_value(base, "data.height", "192")),
            "width": int(_override_value(base, "data.width", "640")),
            "batch": int(_override_value(base, "optim.batch_size", "4")),
            "layers": int(_override_value(base, "model.depth_layers", "18"))}


def _fmt(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _result_tables(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "| configuration | precision | CL | size | batch | s/step (min–max) | img/s | peak RSS MB | data s/batch | vs reference |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['name']} | {r['precision']} | | | | failed: {r['error'].splitlines()[-1][:80]} | | | | |")
            continue
        ref = REFERENCES.get(r["name"]) if r.get("standard_setting") else None
        vs = f"{ref[1] / r['s_per_step']:.2f}× ({ref[0]}: {ref[1]} s)" if ref else ""
        mem = _fmt(r["peak_rss_mb"], 0) + (f" (CUDA {r['cuda_max_allocated_mb']:.0f})" if r.get("cuda_max_allocated_mb") else "")
        label = r["name"] + (" (monodepth2's own step)" if r["name"] == PEER else "")
        if r.get("compiled"):
            label += f" [torch.compile; first step {_fmt(r.get('first_step_s'), 1)} s]"
        lines.append(
            f"| {label} | {r['precision']} | {'yes' if r['channels_last'] else 'no'} | {r['size']} | {r['batch']} | "
            f"{r['s_per_step']:.2f} ({r['s_min']:.2f}–{r['s_max']:.2f}, n={r['repeat']}) | {r['images_per_s']:.2f} | "
            f"{mem} | {_fmt(r['data_s'])} | {vs} |"
        )
    lines += ["", "Profile split (seconds per step, from separate instrumented steps):", "",
              "| configuration | precision | networks fwd | warping | losses | other fwd | backward | optimizer | other | total |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r or not r.get("split"):
            continue
        s = r["split"]
        lines.append(
            f"| {r['name']} | {r['precision']}{' CL' if r['channels_last'] else ''} | {s['networks_forward']:.2f} | "
            f"{s['warping']:.3f} | {s['losses']:.3f} | {s['forward_other']:.3f} | {s['backward']:.2f} | "
            f"{s['optimizer']:.3f} | {s['step_other']:.3f} | {r['split_step_s']:.2f} |")
    by = {(r["name"], r["precision"], r.get("channels_last")): r for r in results
          if "error" not in r and not r.get("compiled")}
    ratio_lines = []
    for prec in ("fp32", "bf16"):
        base = next((r for (n, p, _), r in by.items() if n == "md2_baseline" and p == prec), None)
        full = next((r for (n, p, _), r in by.items() if n == "featdepth_r18" and p == prec), None)
        if base and full:
            ratio_lines.append(f"- {prec}: full FeatDepth / baseline at equal settings = "
                               f"{full['s_per_step'] / base['s_per_step']:.2f}× (target ≤ 1.3×)")
    if ratio_lines:
        lines += ["", "Ratios:", ""] + ratio_lines
    return lines


def _peer_lines(results: list[dict[str, Any]]) -> list[str]:
    """Ours (``md2_baseline``) against monodepth2's own step measured in the same run: ratios ours/theirs."""
    peers = [r for r in results if r["name"] == PEER and "error" not in r]
    ours = [r for r in results if r["name"] == "md2_baseline" and "error" not in r and not r.get("compiled")]
    failed = [r for r in results if r["name"] == PEER and "error" in r]
    if not peers and not failed:
        return []
    lines = ["", "Side by side with monodepth2 (its own `Trainer` step, same machine, same threads, same run; "
             "s/step ours ÷ theirs below 1 = ours faster; speed-up = theirs ÷ ours):", ""]
    for r in failed:
        lines.append(f"- monodepth2 {r['precision']}: failed: {r['error'].strip().splitlines()[-1][:200] if r['error'].strip() else '?'}")
    if peers:
        info = peers[0].get("peer", {})
        lines.append(f"- checkout: {info.get('path', '?')}, commit {info.get('commit', '?')}, trainer.py sha256 "
                     f"{info.get('trainer.py sha256', '?')}, layers.py sha256 {info.get('layers.py sha256', '?')}")
        lines.append("- run-time shims (nothing of it is in this repository): " + "; ".join(info.get("shims", [])))
        lines += ["", "| ours | theirs | s/step ours / theirs | speed-up | peak memory ours / theirs |",
                  "|---|---|---|---|---|"]
        mem = "cuda_max_allocated_mb" if peers[0].get("cuda_max_allocated_mb") else "peak_rss_mb"
        for p in peers:
            for o in ours:
                lines.append(
                    f"| md2_baseline {o['precision']}{' CL' if o['channels_last'] else ''} {o['s_per_step']:.3f} s | "
                    f"monodepth2 {p['precision']} {p['s_per_step']:.3f} s | {o['s_per_step'] / p['s_per_step']:.2f} | "
                    f"{p['s_per_step'] / o['s_per_step']:.2f}× | {o[mem] / p[mem]:.2f} ({o[mem]:.0f} / {p[mem]:.0f} MB) |")
        theirs = next((p for p in peers if p["precision"] == "fp32"), None)
        if theirs and ours and theirs.get("standard_setting"):
            fp32 = next((o for o in ours if o["precision"] == "fp32"), None)
            best = min(ours, key=lambda o: o["s_per_step"])
            lines.append("")
            if fp32:
                lines.append(f"- targets of issue #8 against monodepth2 float32 measured here: float32 speed-up "
                             f"{theirs['s_per_step'] / fp32['s_per_step']:.2f}× (target ≥ 1.2×); best mode "
                             f"({best['precision']}) {theirs['s_per_step'] / best['s_per_step']:.2f}× (target ≥ 2×)")
    return lines


def _max_batch_lines(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = ["", "Largest batch that fits (doubling, then bisection, up to the cap; one warm-up and one timed step "
             "per probe):", "", "| configuration | precision | size | largest batch | first OOM | s/step there | "
             "img/s | CUDA peak MB / total | probes |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | {r['precision']} | | failed: {r['error'].strip().splitlines()[-1][:80] if r['error'].strip() else '?'} | | | | | |")
            continue
        note = "" if r["exact"] else (" (time box reached)" if r["time_boxed"] else " (not exact)")
        first_oom = r["first_oom"] if r["first_oom"] is not None else f"none up to the cap {r['cap']}"
        lines.append(
            f"| {r['name']} | {r['precision']} | {r['size']} | {r['max_batch']}{note} | {first_oom} | "
            f"{_fmt(r['s_per_step'], 3)} | {_fmt(r['images_per_s'], 1)} | {_fmt(r['cuda_max_allocated_mb'], 0)} / "
            f"{r['total_mb']:.0f} | {', '.join(str(p['batch']) + ('' if p['fits'] else ' OOM') for p in r['probes'])} |")
    return lines


def _calibration_lines(calib: dict[str, float] | None) -> list[str]:
    if not calib:
        return []
    parts = [f"{mode} {calib[mode]:.3f} s (reference {ref:.2f} s: this machine {ref / calib[mode]:.2f}×)"
             for mode, ref in CALIBRATION_REFERENCE.items() if mode in calib]
    return ["- calibration (torchvision ResNet-18 forward+backward, batch 4, 3×192×640, same threads): "
            + "; ".join(parts) + ". Divide a *vs reference* ratio by the fp32 factor for a conservative "
            "machine-independent estimate (the references ran contiguous float32)."]


def render(results: list[dict[str, Any]], info: dict[str, Any], command: str, loader: dict | None,
           note: str, date: str | None = None, calibration: dict[str, float] | None = None,
           max_batch: list[dict[str, Any]] | None = None) -> str:
    date = date or datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    lines = [
        f"## Training step benchmark, {date}",
        "",
        f"- command: `{command}`",
        f"- machine: {info['cpu']}, {info['cores']} cores, bf16 ISA: {info['bf16_isa']}; {info['platform']}",
        f"- torch {info['torch']}, python {info['python']}, intra-op threads {info['threads']}"
        + (f", GPU {info['gpu']}" if info.get("gpu") else ""),
        f"- load average at the start: {info['load_average']}",
        "- random initialisation, fixed in-memory batch (data loading excluded from s/step), median of the "
        "timed steps after warm-up; each configuration in a fresh process; *vs reference* = the reference's "
        "s/step ÷ ours (above 1: faster than the reference)",
    ]
    lines += _calibration_lines(calibration)
    if note:
        lines.append(f"- note: {note}")
    if results:
        lines += _result_tables(results)
        lines += _peer_lines(results)
    lines += _max_batch_lines(max_batch or [])
    if loader:
        nproc = loader.get("nproc") or 0
        how = (f"`torchrun --nproc_per_node {nproc}` (DDP, rank 0's figures)" if nproc else "one process")
        lines += ["", f"Data loading in a real run (`featdepth train`, {how}, baseline at 640×192 batch 4 per "
                  "process, PNGs at 1242×375, DataLoader workers; step 1 excluded):", ""]
        if "error" in loader:
            lines.append(f"- failed: {loader['error'].strip().splitlines()[-1] if loader['error'].strip() else '?'}")
        else:
            if nproc:
                lines.append(f"- {nproc} processes: {nproc * loader['batch_per_process'] / loader['step_s_median']:.1f} "
                             "images/s in all (processes × batch ÷ median step time)")
            lines.append(
                f"- {loader['workers']} workers, {loader['precision']}: median time/data_s {loader['data_s_median']:.3f} s "
                f"(max {loader['data_s_max']:.3f}) vs median time/step_s {loader['step_s_median']:.2f} s over "
                f"{loader['steps']} steps; waiting for data {100 * loader['waiting_fraction']:.1f}% of the time")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default=",".join(STANDARD), help=f"comma list of {', '.join(CONFIGS)}")
    p.add_argument("--precisions", default=None, help="comma list of fp32, bf16, fp16 (default: fp32,bf16)")
    p.add_argument("--channels-last", action="store_true",
                   help="also run the channels_last matrix (fp32, fp32+CL, bf16, bf16+CL) on --cl-configs")
    p.add_argument("--cl-configs", default="md2_baseline_small",
                   help="configurations of the --channels-last matrix (comma list)")
    p.add_argument("--loader", action="store_true", help="also measure data waiting in a real training run")
    p.add_argument("--loader-only", action="store_true", help="only the data-loading check")
    p.add_argument("--loader-workers", type=int, default=2)
    p.add_argument("--loader-steps", type=int, default=8)
    p.add_argument("--loader-precision", default="bf16", choices=list(AMP))
    p.add_argument("--repeat", type=int, default=5, help="timed steps per configuration (median reported)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--split-steps", type=int, default=1, help="instrumented steps for the profile split")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: torch's, all cores)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=None, help="override every configuration's batch size")
    p.add_argument("--quick", action="store_true", help="smoke run: 64×192, ResNet-18, batch 1, one timed step")
    p.add_argument("--no-data", action="store_true", help="skip the data-cost column")
    p.add_argument("--no-calibration", action="store_true",
                   help="skip the calibration kernel (ResNet-18 forward+backward, compared with the reference machine)")
    p.add_argument("--timeout", type=float, default=900, help="seconds per configuration")
    p.add_argument("--trace", default=None, help="folder for Chrome traces of one step per configuration")
    p.add_argument("--record", default=None, help="append the markdown record to this file")
    p.add_argument("--json", default=None, help="write the raw results to this JSON file")
    p.add_argument("--note", default="", help="a note for the record (e.g. 'machine shared with other jobs')")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override added to every configuration (repeatable), e.g. train.compile=true")
    p.add_argument("--peer-monodepth2", default=None, metavar="PATH",
                   help="also time this monodepth2 checkout's own training step at the md2_baseline setting "
                        "(same run, same threads, fresh process) and report ours/theirs ratios")
    p.add_argument("--peer-precisions", default="fp32",
                   help="precisions of the monodepth2 step (comma list; bf16/fp16 wrap its process_batch in "
                        "autocast, which its code does not do; default fp32)")
    p.add_argument("--find-max-batch", type=int, default=None, metavar="CAP",
                   help="(CUDA) the largest batch up to CAP that fits, per configuration and precision, instead "
                        "of the timing runs")
    p.add_argument("--max-batch-budget", type=float, default=120.0,
                   help="seconds of probing per configuration for --find-max-batch (best so far after that)")
    p.add_argument("--ddp", type=int, default=0, metavar="N",
                   help="run the real-run check (--loader/--loader-only) under torchrun with N processes")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))), flush=True)
        return 0

    if args.quick:
        args.repeat, args.warmup = min(args.repeat, 1), min(args.warmup, 1)
    precisions = (args.precisions or ("fp32,bf16" if args.device == "cpu" else "fp32,bf16,fp16")).split(",")
    names = [] if args.loader_only else [n for n in args.configs.split(",") if n]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        p.error(f"unknown configurations {unknown}; choose from {', '.join(CONFIGS)}")
    bad = [o for o in args.set if "=" not in o]
    if bad:
        p.error(f"--set expects KEY=VALUE, got {bad}")
    peer_precisions = [x for x in args.peer_precisions.split(",") if x]
    if args.peer_monodepth2:
        problem = _peer_module().check_checkout(args.peer_monodepth2)
        if problem:
            p.error(problem)
        if [x for x in peer_precisions if x not in AMP]:
            p.error(f"--peer-precisions: choose from {', '.join(AMP)}, got {args.peer_precisions!r}")
        if "md2_baseline" not in names:
            names.insert(0, "md2_baseline")  # the configuration monodepth2 is compared with
            print("--peer-monodepth2: adding md2_baseline (the configuration compared with monodepth2)")
    if args.find_max_batch is not None and (args.find_max_batch < 1 or not args.device.startswith("cuda")):
        p.error("--find-max-batch CAP needs CAP >= 1 and --device cuda (it fills GPU memory)")
    if args.ddp and not (args.loader or args.loader_only):
        args.loader = True
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine_info()
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, Path.cwd())] + (argv if argv is not None else sys.argv[1:]))
    cache = Path(tempfile.gettempdir()) / "featdepth_bench_data"
    data_root = None if args.no_data else str(make_data(cache / "mono"))

    jobs: list[dict[str, Any]] = []
    for name in names:
        for prec in precisions:
            jobs.append({"name": name, "precision": prec, "channels_last": None})
    if args.channels_last and not args.loader_only:
        for name in args.cl_configs.split(","):
            if name not in CONFIGS:
                p.error(f"unknown configuration {name!r} in --cl-configs")
            for prec in precisions if args.precisions else ("fp32", "bf16"):
                for cl in (False, True):
                    jobs.append({"name": name, "precision": prec, "channels_last": cl})
    if args.peer_monodepth2 and args.find_max_batch is None:
        # right after our md2_baseline runs, so that the two are measured as close in time as possible
        at = max((i for i, j in enumerate(jobs) if j["name"] == "md2_baseline"), default=-1) + 1
        jobs[at:at] = [{"name": PEER, "precision": prec, "channels_last": False, "peer": True}
                       for prec in peer_precisions]

    calibration = None
    if not args.no_calibration and args.device == "cpu":
        cal = _spawn({"name": "calibration", "precision": "-", "calibration": True, "threads": args.threads,
                      "repeat": 1 if args.quick else 3}, args.timeout)
        calibration = cal.get("calibration")
        print(f"calibration: {calibration or cal.get('error')}", flush=True)
    results: list[dict[str, Any]] = []
    max_batch: list[dict[str, Any]] = []
    print(f"# {info['cpu']} | torch {info['torch']} | threads {info['threads']} | load {info['load_average']}", flush=True)
    for job in jobs:
        overrides = list(CONFIGS[PEER_SETTING if job.get("peer") else job["name"]][1])
        if args.quick:
            overrides += QUICK_OVERRIDES
        if args.batch:
            overrides.append(f"optim.batch_size={args.batch}")
        overrides += args.set
        spec = {**job, "overrides": overrides, "amp": AMP[job["precision"]], "device": args.device,
                "repeat": args.repeat, "warmup": args.warmup, "split_steps": args.split_steps,
                "threads": args.threads, "trace": args.trace, "data_root": data_root,
                "data_batches": 1 if args.quick else 3,
                "standard_setting": not args.quick and not args.batch and not args.set}
        if job.get("peer"):
            spec.update(_peer_spec(args.peer_monodepth2, overrides), data_root=None)
        if args.find_max_batch is not None:
            spec.update(max_batch=args.find_max_batch, max_batch_budget_s=args.max_batch_budget, data_root=None)
            r = _spawn(spec, args.timeout)
            max_batch.append(r)
            print(f"{job['name']:<20} {job['precision']:<5} largest batch: "
                  + (r["error"].strip().splitlines()[-1] if "error" in r and r["error"].strip() else
                     "failed" if "error" in r else f"{r['max_batch']} (first OOM {r['first_oom']}, cap {r['cap']})"),
                  flush=True)
            continue
        r = _spawn(spec, args.timeout)
        results.append(r)
        if "error" in r:
            print(f"{job['name']:<20} {job['precision']:<5} FAILED: {r['error'].splitlines()[-1] if r['error'] else ''}", flush=True)
        else:
            print(f"{r['name']:<20} {r['precision']:<5} CL={int(r['channels_last'])} {r['size']:>9} b{r['batch']}  "
                  f"{r['s_per_step']:7.2f} s/step  {r['images_per_s']:6.2f} img/s  peak {r['peak_rss_mb']:6.0f} MB  "
                  f"data {_fmt(r['data_s'])} s/batch  split: "
                  + ", ".join(f"{k} {v:.2f}" for k, v in (r["split"] or {}).items()), flush=True)
    loader = None
    if args.loader or args.loader_only:
        # enough frames for several batches per epoch (the DataLoader does not prefetch across epochs)
        loader = loader_check(args, make_data(cache / "mono_loader", frames=4 * max(4, args.loader_steps) + 4),
                              nproc=args.ddp)
        print(f"loader check: {loader}", flush=True)
    record = render(results, info, command, loader, args.note, calibration=calibration, max_batch=max_batch)
    print()
    print(record)
    if args.record:
        path = Path(args.record)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write("\n" + record)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "command": command, "results": results,
                                               "loader": loader, "calibration": calibration,
                                               "max_batch": max_batch}, indent=2))
    return 1 if any("error" in r for r in results + max_batch) or (loader and "error" in loader) else 0


if __name__ == "__main__":
    sys.exit(main())
