"""What a training run is about to do, printed by ``featdepth train`` before the first step.

:func:`training_summary` builds the datasets once (as the trainer will) and says, in plain words:

- the output folder (and the two stage folders of the two-stage flow);
- the data: dataset kind and path, the sequences used for training and validation, and per dataset
  how many samples were indexed and skipped (``index_summary()`` of the datasets);
- whether validation runs, and on what. Folder data validates only on the sequences named in
  ``data.val_sequences``; with a single sequence there is no validation and therefore no ``best.pt``
  (the run keeps its newest ``step_*.pt`` checkpoints). Nothing is split off automatically: the last
  frames of a video are the frames the next ones depend on, and a held-out tail would silently
  shrink the training data;
- ImageNet initialisation (``model.*_weights: imagenet``): whether torchvision's weights are already
  on this machine, or will be downloaded (which needs the network; offline, training stops with a
  message saying where to put the file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from featdepth.config import Config
from featdepth.data.factory import build_datasets
from featdepth.data.folder import list_sequences
from featdepth.models.encoders import imagenet_weights_file

__all__ = ["training_summary", "imagenet_weights_status"]


def imagenet_weights_status(cfg: Config) -> list[dict[str, Any]]:
    """One entry per ``model.*_weights: imagenet`` key: ``{"key", "layers", "file", "found"}``."""
    m = cfg.model
    out = []
    for key, layers in (("depth_weights", m.depth_layers), ("pose_weights", m.pose_layers),
                        ("feature_weights", m.feature_layers)):
        value = getattr(m, key)
        if isinstance(value, str) and value.strip().lower() in ("imagenet", "imagenet1k_v1"):
            path = imagenet_weights_file(layers)
            out.append({"key": f"model.{key}", "layers": int(layers), "file": str(path), "found": path.is_file()})
    return out


def _sequences_line(cfg: Config) -> str | None:
    d = cfg.data
    if d.dataset != "folder" or not Path(d.path).is_dir():
        return None
    try:
        names = [p.name for p in list_sequences(d.path)]
    except (OSError, ValueError):
        return None
    val = list(d.val_sequences or [])
    train = list(d.train_sequences or [n for n in names if n not in val])
    line = f"sequences: {len(names)} found under {d.path}; training on {', '.join(train) or 'none'}"
    return line + (f"; validating on {', '.join(val)}" if val else "")


def training_summary(cfg: Config, stage: str | None = None) -> str:
    """Plain-text summary of the run ``cfg`` describes (see the module docstring). Builds the datasets.

    Raises:
        what :func:`~featdepth.data.factory.build_datasets` raises for missing or malformed data (the
        message names the file), so a broken dataset stops the run before any output is written.
    """
    stage = stage or cfg.train.stage
    d = cfg.data
    t = cfg.train
    lines = [f"output folder: {t.out_dir}"]
    two_stage = stage == "depth" and not t.feature_checkpoint and t.run_feature_stage
    if two_stage:
        lines.append(f"  two stages: FeatureNet in {Path(t.out_dir) / 'featurenet'}, then depth and pose in "
                     f"{Path(t.out_dir) / 'depth'}")
    lines.append(f"data: {d.dataset} at {d.path}, {d.width}x{d.height}, frames {list(d.frame_ids)}")
    seq = _sequences_line(cfg)
    if seq:
        lines.append(seq)
    if d.dataset == "synthetic" and not Path(d.path).exists():
        # generating scenes is the trainer's job (after its disk-space check): say so, build nothing here
        lines.append(f"data: synthetic scenes will be generated into {d.path} ({d.synth_sequences} training and "
                     f"{d.synth_val_sequences} validation sequences); validation on the generated ground truth")
        lines.extend(_weights_lines(cfg))
        return "\n".join(lines)
    train, val = build_datasets(cfg, stage)
    for name, ds in (("training", train), ("validation", val)):
        if ds is not None and hasattr(ds, "index_summary"):
            lines.append(f"{name}: {ds.index_summary()}")
        elif ds is not None:
            lines.append(f"{name}: {len(ds)} samples")
    if val is None:
        if d.dataset == "folder":
            why = ("only one sequence, so " if seq and seq.startswith("sequences: 1 ") else "") + \
                "no validation: name a held-out sequence with --set data.val_sequences=[NAME]"
        else:
            why = "no validation: the split has no val_files.txt" if d.dataset.startswith("kitti") else "no validation"
        lines.append(f"validation: none ({why}); no best.pt is written, keep the newest step_*.pt checkpoint")
    else:
        has_depth = bool(getattr(val, "load_depth", False))
        lines.append("validation: after each epoch on the validation set, "
                     + ("depth metrics against its ground truth; best.pt = the best by train.best_metric"
                        if has_depth else "photometric loss only (no ground-truth depth); best.pt by train.best_metric"))
    lines.extend(_weights_lines(cfg))
    return "\n".join(lines)


def _weights_lines(cfg: Config) -> list[str]:
    lines = []
    for w in imagenet_weights_status(cfg):
        if w["found"]:
            lines.append(f"ImageNet weights for {w['key']} (resnet{w['layers']}): found at {w['file']}")
        else:
            lines.append(f"ImageNet weights for {w['key']} (resnet{w['layers']}): not on this machine; they will be "
                         f"downloaded to {w['file']} (needs the network; offline, copy the file there or --set "
                         f"{w['key']}=null for random weights)")
    return lines
