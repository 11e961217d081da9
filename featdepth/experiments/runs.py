"""One training run of the ablation (a FeatureNet setting or a depth/pose variant), reused when it has
finished before; config overrides shared by the synthetic and real-data parts."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from featdepth.config import Config, load_config
from featdepth.experiments.presets import (FEATURENET_SETTINGS, FEATURENET_VAL_EVERY_EPOCHS, FEATURENET_VAL_MAX_IMAGES,
                                           ExperimentPreset, Variant)
from featdepth.models.feature_net import FeatureNet
from featdepth.training.checkpoints import MANIFEST, load_checkpoint
from featdepth.utils.checkpoint_io import write_safetensors_checkpoint
from featdepth.training.trainer import run_training
from featdepth.utils.files import atomic_save, read_json, write_json

def log(msg: str) -> None:
    print(f"[experiment] {msg}", file=sys.stderr, flush=True)


def common_overrides(*, height: int, width: int, batch_size: int, depth_steps: int, feature_steps: int, seed: int,
                     lr: float, warmup_iters: int, layers: int, num_workers: int, device: str,
                     val_max_images: int) -> list[str]:
    """Overrides shared by every run of an experiment (synthetic or real)."""
    return [
        f"data.height={height}", f"data.width={width}", f"data.num_workers={num_workers}",
        f"model.depth_layers={layers}", f"model.pose_layers={layers}", f"model.feature_layers={layers}",
        "model.pose_input_size=null",
        f"optim.batch_size={batch_size}", f"optim.lr={lr}", "optim.epochs=1000000", f"optim.max_steps={depth_steps}",
        "optim.milestones=[]", f"optim.warmup_iters={warmup_iters}",
        f"feature_stage.max_steps={feature_steps}", "feature_stage.epochs=1000000", "feature_stage.milestones=[]",
        f"train.seed={seed}", f"train.device={device}", "train.progress=false", "train.image_every=0",
        "train.keep_checkpoints=1", "train.log_every=10", "train.val_every=1000000",
        f"train.val_max_images={val_max_images}", "train.run_feature_stage=false",
    ]


def synthetic_overrides(preset: ExperimentPreset, data_dir: str | Path, seed: int) -> list[str]:
    """Overrides of every synthetic run of ``preset`` (data, budget, seed)."""
    p = preset
    return [
        "data.dataset=synthetic", f"data.path={Path(data_dir)}", f"data.synth_sequences={p.synth_sequences}",
        f"data.synth_val_sequences={p.synth_val_sequences}", f"data.synth_frames={p.synth_frames}",
        "data.train_sequences=null", "data.val_sequences=null", "data.frame_ids=[0,-1,1]",
    ] + common_overrides(height=p.height, width=p.width, batch_size=p.batch_size, depth_steps=p.depth_steps,
                         feature_steps=p.feature_steps, seed=seed, lr=p.lr, warmup_iters=p.warmup_iters,
                         layers=p.layers, num_workers=p.num_workers, device=p.device, val_max_images=p.val_max_images)


def featurenet_curve(log_path: str | Path, max_points: int = 60) -> dict[str, Any]:
    """The reconstruction-loss curve of a FeatureNet run from its ``log.jsonl`` and whether it flattened.

    Returns ``{"steps": [...], "reconstruction": [...], "discriminative": [...], "convergent": [...]}``
    (means over ``max_points`` equal windows of the logged steps), ``last_step`` (the last logged step), ``final`` (mean reconstruction loss over
    the last quarter of the logged steps) and ``change_last_quarter`` (relative change of that mean against
    the quarter before: ``final / previous - 1``; above -0.02, i.e. less than 2 % further decrease, counts as
    ``flattened``). Quarters, not tenths: the logged values are single batches, and over a tenth of a run
    their noise (several %) hides a trend of a few % per hundred steps. An absent or empty log gives ``{}``.

    When the run validated more than once (``val/reconstruction`` rows: the reconstruction loss on the held-out
    sequences), the held-out curve comes too: ``val_steps``, ``val_reconstruction``, ``val_final`` (the last
    value), ``val_change_last_quarter`` (``val_final`` against the latest value logged at or before three
    quarters of the run, ``- 1``) and ``val_flattened`` (that change above -0.02). The held-out loss is the
    one that says whether more steps still improve the features on images the FeatureNet has not seen; the
    training loss can keep falling while the network memorises its few training images
    (docs/experiments.md, "FeatureNet trained to flat").
    """

    path = Path(log_path)
    if not path.is_file():
        return {}
    rows, val_rows = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill
        if "loss/reconstruction" in r and "step" in r:
            rows.append(r)
        elif "val/reconstruction" in r and "step" in r:
            val_rows.append(r)
    if not rows:
        return {}
    steps = np.array([r["step"] for r in rows], dtype=float)
    out: dict[str, Any] = {}
    windows = np.array_split(np.arange(len(rows)), min(max_points, len(rows)))
    out["steps"] = [float(steps[w].mean()) for w in windows]
    out["last_step"] = int(steps.max())
    for key in ("reconstruction", "discriminative", "convergent"):
        v = np.array([r.get(f"loss/{key}", float("nan")) for r in rows], dtype=float)
        out[key] = [float(v[w].mean()) for w in windows]
    rec = np.array([r["loss/reconstruction"] for r in rows], dtype=float)
    n = max(1, len(rec) // 4)
    out["final"] = float(rec[-n:].mean())
    if len(rec) >= 4:
        prev = float(rec[-2 * n:-n].mean())
        out["change_last_quarter"] = out["final"] / prev - 1.0 if prev > 0 else float("nan")
        out["flattened"] = bool(out["change_last_quarter"] > -0.02)
    if len(val_rows) >= 2:
        vs = [float(r["step"]) for r in val_rows]
        vr = [float(r["val/reconstruction"]) for r in val_rows]
        out["val_steps"], out["val_reconstruction"], out["val_final"] = vs, vr, vr[-1]
        earlier = [v for s, v in zip(vs[:-1], vr[:-1]) if s <= 0.75 * vs[-1]]
        if earlier and earlier[-1] > 0:
            out["val_change_last_quarter"] = vr[-1] / earlier[-1] - 1.0
            out["val_flattened"] = bool(out["val_change_last_quarter"] > -0.02)
    return out


def load_feature_net(checkpoint: str | Path, layers: int, device: torch.device | str = "cpu"):
    """The FeatureNet (encoder; decoder too when present) of a featurenet/joint/depth checkpoint, eval mode."""

    state = load_checkpoint(checkpoint)
    model_state = state.get("model", state)
    prefix = "feature_net."
    fn_state = {k[len(prefix):]: v for k, v in model_state.items() if k.startswith(prefix)}
    if not fn_state:
        raise ValueError(f"{checkpoint} holds no FeatureNet weights")
    net = FeatureNet(num_layers=layers)
    missing, _ = net.load_state_dict(fn_state, strict=False)
    missing_enc = [k for k in missing if k.startswith("encoder.")]
    if missing_enc:
        raise ValueError(f"{checkpoint} lacks FeatureNet encoder weights: {missing_enc[:3]}")
    return net.to(device).eval()


def slim_checkpoint(path: str | Path) -> Path:
    """Replace a finished run's checkpoints by ``model.pt`` holding only the weights and the config (and
    ``model.safetensors``, the same weights in the format that is safe to share).

    The trainer's checkpoints also hold the optimiser state (about 3x the weights: ~440 MB for three
    ResNet-18 networks) and a duplicate ``best.pt``; a finished ablation run needs neither. Returns the
    path of ``model.pt`` (readable with :func:`~featdepth.training.checkpoints.load_checkpoint`).
    """

    path = Path(path)
    target = path.parent / "model.pt"
    if path == target:
        return target
    state = load_checkpoint(path)
    slim = {k: state[k] for k in ("model", "config", "stage", "step", "epoch", "versions") if k in state}
    atomic_save(slim, target)
    write_safetensors_checkpoint(slim, target.with_suffix(".safetensors"))
    for p in path.parent.glob("*.pt"):
        if p != target:
            p.unlink()
    (path.parent / MANIFEST).unlink(missing_ok=True)
    return target


#: Every FeatureNet stage of an experiment validates every second epoch on up to 120 held-out images, so that its
#: held-out reconstruction curve is known (:func:`featurenet_curve`). Validation restores every random generator,
#: so the training is bit-identical with or without it (checked on `decide`'s FeatureNet, 940 logged steps).
FEATURENET_VAL_OVERRIDES = (f"train.val_every={FEATURENET_VAL_EVERY_EPOCHS}", f"train.val_max_images={FEATURENET_VAL_MAX_IMAGES}")


def train_featurenet(base_overrides: Sequence[str], setting: str, out_dir: Path, *, preset_name: str = "synthetic_small",
                     extra: Sequence[str] = (), slim: bool = True) -> dict[str, Any]:
    """Train (or reuse) the FeatureNet stage of ``setting`` in ``out_dir``, validating as
    :data:`FEATURENET_VAL_OVERRIDES` says; returns its summary."""

    summary_path = out_dir / "summary.json"
    if summary_path.is_file():
        summary = read_json(summary_path)
        if summary.get("checkpoint") and Path(summary["checkpoint"]).is_file():
            summary["reused"] = True
            return summary
    dis, cvt = FEATURENET_SETTINGS[setting]
    cfg = load_config(preset_name, list(base_overrides) + ["train.stage=featurenet", f"loss.discriminative_weight={dis}",
                                                          f"loss.convergent_weight={cvt}", *FEATURENET_VAL_OVERRIDES]
                      + list(extra))
    t0 = time.perf_counter()
    summary = run_training(cfg, out_dir=out_dir)
    summary["wall_seconds"] = time.perf_counter() - t0
    summary["setting"] = setting
    if slim and summary.get("checkpoint"):
        summary["checkpoint"] = str(slim_checkpoint(summary["checkpoint"]))
    write_json(summary_path, summary)
    return summary


def train_variant(base_overrides: Sequence[str], variant: Variant, out_dir: Path, *, feature_checkpoint: str | None,
                  preset_name: str = "synthetic_small", extra: Sequence[str] = (), slim: bool = True) -> tuple[Config, dict[str, Any]]:
    """Train one depth/pose run of ``variant`` in ``out_dir`` (reusing a finished one); returns (cfg, summary)."""

    overrides = list(base_overrides) + [f"train.stage={variant.stage}"] + variant.loss_overrides()
    if variant.stage == "depth":
        if not feature_checkpoint:
            raise ValueError(f"variant {variant.name} needs a FeatureNet checkpoint")
        overrides.append(f"train.feature_checkpoint={feature_checkpoint}")
    cfg = load_config(preset_name, overrides + list(extra))
    summary_path = out_dir / "summary.json"
    if summary_path.is_file():
        summary = read_json(summary_path)
        if summary.get("checkpoint") and Path(summary["checkpoint"]).is_file():
            summary["reused"] = True
            return cfg, summary
    t0 = time.perf_counter()
    summary = run_training(cfg, out_dir=out_dir)
    summary["wall_seconds"] = time.perf_counter() - t0
    summary["variant"] = variant.name
    if slim and summary.get("checkpoint"):
        summary["checkpoint"] = str(slim_checkpoint(summary["checkpoint"]))
    write_json(summary_path, summary)
    return cfg, summary
