"""Time a user-provided monodepth2 checkout's own training step, for ``bench_train.py --peer-monodepth2 PATH``.

Nothing of monodepth2 is copied into this repository: its modules are imported from PATH at run time, in
the benchmark's worker subprocess, and the few compatibility shims it needs with today's libraries are
applied to the imported objects there (listed in ``SHIMS`` and in every record):

- ``tensorboardX``, ``six``, ``IPython`` and ``skimage`` are imported at module level by ``trainer.py``,
  ``utils.py`` and ``datasets/kitti_dataset.py`` but are not used on the timed path (logging, downloads,
  a debugger hook, ground-truth resizing); when one is not installed, a stub module stands in for it.
- ``networks/resnet_encoder.py`` calls ``torchvision.models.resnet18(pretrained)`` positionally, which
  torchvision >= 0.13 rejects (keyword-only ``weights``); its ``models`` name is given a proxy whose
  ``resnetNN(pretrained)`` builds the same network with ``weights=None`` (random initialisation, as ours).
- ``Trainer.__init__`` builds KITTI datasets and loaders from files: the dataset classes are replaced by an
  empty stand-in of the same length and ``readlines`` by a fixed list, so the constructor runs unchanged
  without data; its options come from its own ``MonodepthOptions`` parser (``--no_cuda`` on CPU,
  ``--num_workers 0``, ``--weights_init scratch``, ``--log_dir`` a temporary folder).

The timed step is exactly the body of ``Trainer.run_epoch``'s loop (``process_batch``, ``zero_grad``,
``backward``, ``step``) on a fixed in-memory batch shaped like ``MonoDataset.__getitem__``'s output (colour
and augmented colour at 4 scales for frames 0, -1, 1; ``K``/``inv_K`` per scale), random images.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.machinery
import importlib.util
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

# files whose presence identifies a monodepth2 checkout (and the names the benchmark needs in them)
REQUIRED = {
    "trainer.py": "class Trainer",
    "options.py": "class MonodepthOptions",
    "layers.py": "def transformation_from_parameters",
    "networks/__init__.py": "ResnetEncoder",
    "networks/depth_decoder.py": "class DepthDecoder",
    "datasets/__init__.py": "KITTIRAWDataset",
}
STUBBED_IF_MISSING = ("tensorboardX", "six", "IPython", "skimage")


def check_checkout(path: str | Path) -> str | None:
    """``None`` when ``path`` looks like a monodepth2 checkout, else a sentence saying what is missing."""
    root = Path(path).expanduser()
    if not root.is_dir():
        return f"--peer-monodepth2: {root} is not a folder (expected a monodepth2 checkout, e.g. a clone of " \
               "https://github.com/nianticlabs/monodepth2)"
    missing = []
    for rel, needle in REQUIRED.items():
        f = root / rel
        try:
            if needle not in f.read_text(errors="replace"):
                missing.append(f"{rel} (without {needle!r})")
        except OSError:
            missing.append(rel)
    if missing:
        return (f"--peer-monodepth2: {root} is not a monodepth2 checkout: missing {', '.join(missing)} "
                "(expected the repository root of https://github.com/nianticlabs/monodepth2, the folder holding "
                "trainer.py, options.py, layers.py, networks/ and datasets/)")
    return None


def describe_checkout(path: str | Path) -> dict[str, str]:
    """Commit (when PATH is a git checkout) and the SHA-256 of its ``trainer.py`` and ``layers.py``."""
    root = Path(path).expanduser().resolve()
    out = {"path": str(root)}
    try:
        proc = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel", "--short=12", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        top, _, commit = proc.stdout.strip().partition("\n")
        own = proc.returncode == 0 and Path(top).resolve() == root  # not an enclosing repository's commit
        out["commit"] = commit.strip() if own and commit.strip() else "not a git checkout"
    except (OSError, subprocess.SubprocessError):
        out["commit"] = "unknown"
    for name in ("trainer.py", "layers.py"):
        out[f"{name} sha256"] = hashlib.sha256((root / name).read_bytes()).hexdigest()[:12]
    return out


# ------------------------------------------------------------------------------------------------------------
# run-time shims (applied in the worker process only)


class _Anything:
    """Stands in for any attribute/call of a stub module (never reached on the timed path)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> "_Anything":
        return self

    def __getattr__(self, name: str) -> "_Anything":
        return self


def _stub_module(name: str) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__path__ = []  # a package, so that "import name.sub" works
    mod.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)

    def __getattr__(attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Anything()

    mod.__getattr__ = __getattr__  # type: ignore[method-assign]
    return mod


def install_stubs() -> list[str]:
    """Stub modules for the peer's module-level imports that are missing here and unused when timing."""
    shims = []
    for name in STUBBED_IF_MISSING:
        if importlib.util.find_spec(name) is not None:
            continue
        sys.modules[name] = _stub_module(name)
        if name == "six":
            import urllib

            moves = _stub_module("six.moves")
            moves.urllib = urllib  # type: ignore[attr-defined]
            sys.modules["six.moves"] = moves
            sys.modules[name].moves = moves  # type: ignore[attr-defined]
        if name == "skimage":
            sys.modules["skimage.transform"] = _stub_module("skimage.transform")
        shims.append(f"stub module {name} (not installed; unused on the timed path)")
    return shims


class _TorchvisionModels:
    """``torchvision.models`` with ``resnetNN(pretrained)`` accepting the old positional flag."""

    def __init__(self, models: types.ModuleType) -> None:
        self._models = models

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self._models, name)
        if not name.startswith("resnet") or not callable(fn) or isinstance(fn, type):
            return fn

        def build(pretrained: bool = False, **kwargs: Any):
            if pretrained:
                raise RuntimeError("the benchmark builds monodepth2's encoders from scratch (no downloads)")
            return fn(weights=None, **kwargs)

        return build


class _NoData:
    """Stands in for monodepth2's KITTI dataset classes: the constructor's arguments, no files read."""

    def __init__(self, data_path, filenames, *args: Any, **kwargs: Any) -> None:
        self.filenames = list(filenames)

    def __len__(self) -> int:
        return len(self.filenames)

    def __getitem__(self, index: int):
        raise RuntimeError("the benchmark times monodepth2's step on an in-memory batch; no data are loaded")


def import_peer(path: str | Path) -> tuple[dict[str, types.ModuleType], list[str]]:
    """Import monodepth2's ``options``, ``trainer``, ``networks``, ``layers``, ``datasets`` from ``path``."""
    import torchvision.models

    shims = install_stubs()
    sys.path.insert(0, str(Path(path).expanduser().resolve()))
    with contextlib.redirect_stdout(sys.stderr):
        mods = {n: importlib.import_module(n) for n in ("options", "layers", "networks", "datasets", "trainer")}
    resnet_encoder = importlib.import_module("networks.resnet_encoder")
    resnet_encoder.models = _TorchvisionModels(torchvision.models)
    shims.append("networks.resnet_encoder.models: resnetNN(pretrained) -> resnetNN(weights=None) (torchvision API)")
    for name in ("KITTIRAWDataset", "KITTIOdomDataset", "KITTIDepthDataset"):
        if hasattr(mods["datasets"], name):
            setattr(mods["datasets"], name, _NoData)
    mods["trainer"].readlines = lambda filename: [f"2011_09_26/2011_09_26_drive_0001_sync {i} l" for i in range(64)]
    shims.append("datasets.KITTI*Dataset and trainer.readlines: no files read (the timed batch is in memory)")
    return mods, shims


def fixed_batch(height: int, width: int, batch: int, frame_ids: list[int], num_scales: int, device) -> dict:
    """Inputs shaped like ``MonoDataset.__getitem__``'s, collated: the same random images as bench_train's."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    full = {f: torch.rand(batch, 3, height, width, generator=g) for f in frame_ids}
    K0 = torch.tensor([[0.58, 0, 0.5, 0], [0, 1.92, 0.5, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.float32)
    inputs = {}
    for s in range(num_scales):
        h, w = height // 2**s, width // 2**s
        for f in frame_ids:
            img = full[f] if s == 0 else F.interpolate(full[f], size=(h, w), mode="bilinear", align_corners=False)
            inputs[("color", f, s)] = img
            inputs[("color_aug", f, s)] = img.clone()
        K = K0.clone()
        K[0, :] *= w
        K[1, :] *= h
        inputs[("K", s)] = K.expand(batch, 4, 4).clone()
        inputs[("inv_K", s)] = torch.linalg.pinv(K).expand(batch, 4, 4).clone()
    return {k: v.to(device) for k, v in inputs.items()}


# ------------------------------------------------------------------------------------------------------------
# the worker


def run_peer(spec: dict[str, Any], phase_timer_cls, peak_rss_mb) -> dict[str, Any]:
    """One timed configuration of monodepth2's own step (called in a fresh process by bench_train.py)."""
    import statistics

    import torch

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    device = torch.device(spec["device"])
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)  # their Trainer uses torch.device("cuda"), the current device
    mods, shims = import_peer(spec["path"])
    height, width, batch, layers = spec["height"], spec["width"], spec["batch"], spec["layers"]
    log_dir = tempfile.mkdtemp(prefix="featdepth_bench_md2_")
    argv = ["--data_path", log_dir, "--log_dir", log_dir, "--model_name", "bench", "--num_layers", str(layers),
            "--height", str(height), "--width", str(width), "--batch_size", str(batch), "--num_workers", "0",
            "--weights_init", "scratch", "--frame_ids", "0", "-1", "1"] + (["--no_cuda"] if device.type != "cuda" else [])
    opts = mods["options"].MonodepthOptions().parser.parse_args(argv)
    torch.manual_seed(0)
    with contextlib.redirect_stdout(sys.stderr):
        trainer = mods["trainer"].Trainer(opts)
    trainer.set_train()
    inputs = fixed_batch(height, width, batch, list(opts.frame_ids), trainer.num_scales, trainer.device)
    amp = spec.get("amp", "none")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None
    if dtype is not None:
        shims.append(f"torch.autocast({device.type}, {amp}) around process_batch (not in their code)")

    def step():
        # the body of Trainer.run_epoch's loop, timed there as `duration`
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            outputs, losses = trainer.process_batch(inputs)
        trainer.model_optimizer.zero_grad()
        if scaler is not None:
            scaler.scale(losses["loss"]).backward()
            scaler.step(trainer.model_optimizer)
            scaler.update()
        else:
            losses["loss"].backward()
            trainer.model_optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return bool(torch.isfinite(losses["loss"].detach()).item())

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t_start = time.perf_counter()
    for _ in range(spec["warmup"]):
        step()
    times, finite = [], True
    for _ in range(spec["repeat"]):
        t0 = time.perf_counter()
        finite = step() and finite
        times.append(time.perf_counter() - t0)
    # profile split with the same phase names as ours: networks, warping (generate_images_pred), losses
    timer = phase_timer_cls(device)
    for model in trainer.models.values():
        model.forward = timer.wrap("networks_forward", model.forward)
    trainer.generate_images_pred = timer.wrap("warping", trainer.generate_images_pred)
    trainer.compute_losses = timer.wrap("losses", trainer.compute_losses)
    process_batch = trainer.process_batch

    def timed_process_batch(*args, **kwargs):
        if not timer.enabled:
            return process_batch(*args, **kwargs)
        timer._sync()
        t0 = time.perf_counter()
        with torch.profiler.record_function("forward"):
            out = process_batch(*args, **kwargs)
        timer._sync()
        timer.totals["forward_total"] = timer.totals.get("forward_total", 0.0) + time.perf_counter() - t0
        return out

    trainer.process_batch = timed_process_batch
    torch.Tensor.backward = timer.wrap("backward", torch.Tensor.backward)
    trainer.model_optimizer.step = timer.wrap("optimizer", trainer.model_optimizer.step)
    timer.enabled = True
    n = spec["split_steps"]
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    split_total = (time.perf_counter() - t0) / n
    timer.enabled = False
    phases = {k: v / n for k, v in timer.totals.items()}
    fwd = phases.pop("forward_total", 0.0)
    split = {k: phases.get(k, 0.0) for k in ("networks_forward", "warping", "losses")}
    split["forward_other"] = max(0.0, fwd - sum(split.values()))
    split["backward"] = phases.get("backward", 0.0)
    split["optimizer"] = phases.get("optimizer", 0.0)
    split["step_other"] = max(0.0, split_total - fwd - split["backward"] - split["optimizer"])
    med = statistics.median(times)
    return {
        "name": spec["name"], "precision": spec["precision"], "channels_last": False, "batch": batch,
        "size": f"{width}×{height}", "s_per_step": med, "s_min": min(times), "s_max": max(times),
        "repeat": len(times), "images_per_s": batch / med, "finite": finite, "peak_rss_mb": peak_rss_mb(),
        "cuda_max_allocated_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "split_step_s": split_total, "split": split, "data_s": None, "threads": torch.get_num_threads(),
        "wall_s": time.perf_counter() - t_start, "standard_setting": bool(spec.get("standard_setting")),
        "peer": {**describe_checkout(spec["path"]), "shims": shims},
    }
