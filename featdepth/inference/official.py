"""Loading official FeatDepth (mmcv) and monodepth2 checkpoints into featdepth's networks.

Two foreign formats are understood:

**Official FeatDepth** (docs/method.md §1.7): a ``torch.save``'d dict ``{'meta', 'state_dict', 'optimizer'}``
written by mmcv 0.4.4 (a bare state dict with the same keys is accepted too; a leading ``module.``
from a DDP wrapper is stripped). Its prefixes map onto :class:`~featdepth.training.system.FeatDepthSystem`
by the prefix table :data:`FEATDEPTH_PREFIXES`:

============================  ===============================  =====================================
official prefix               ours                             what
============================  ===============================  =====================================
``DepthEncoder.encoder.``     ``depth_net.encoder.encoder.``   ResNet (torchvision names, ``fc`` kept)
``DepthDecoder.``             ``depth_net.decoder.``           CRP decoder (same layer names)
``PoseEncoder.encoder.``      ``pose_net.encoder.encoder.``    ResNet-18, ``conv1`` 64×6×7×7
``PoseDecoder.``              ``pose_net.decoder.``            ``reduce``, ``conv1..conv3``
``extractor.encoder.``        ``feature_net.encoder.encoder.`` frozen FeatureNet encoder (mono_fm)
``Encoder.encoder.``          ``feature_net.encoder.encoder.`` FeatureNet encoder (autoencoder/joint)
``Decoder.``                  ``feature_net.decoder.``         FeatureNet decoder (autoencoder/joint)
============================  ===============================  =====================================

Inside the prefixes the layer names are identical by design (``reduce4.conv.weight``,
``iconv3.conv.{weight,bias}``, ``crp2.0.1_pointwise.conv.weight``, ``merge1.conv.*``,
``disp1.0.conv.*``; ``upconv5.conv.conv.*``, ``disp4.conv.*`` for the autoencoder), so no per-layer
renames are needed; every key is still checked against our modules and anything that does not land
is reported by name.

**monodepth2** (``nianticlabs/monodepth2`` model folders): ``encoder.pth`` (``encoder.*`` torchvision
keys plus ``height``, ``width``, ``use_stereo``), ``depth.pth`` (``decoder.N.*``), and optionally
``pose_encoder.pth`` / ``pose.pth`` (``encoder.*`` / ``net.N.*``). monodepth2 keeps its decoder convs
in an ``nn.ModuleList`` built from an ``OrderedDict`` in **insertion order** (``("upconv", 4, 0)``,
``("upconv", 4, 1)``, ``("upconv", 3, 0)``, …, ``("upconv", 0, 1)``, then ``("dispconv", 0..3)``),
which gives the per-layer table :data:`MONODEPTH2_DECODER_LAYERS`; the pose decoder's
``net.0..3`` are ``squeeze, pose0, pose1, pose2`` = our ``reduce, conv1, conv2, conv3``
(:data:`MONODEPTH2_POSE_LAYERS`). monodepth2's default pose decoder predicts two transforms
(``pose2`` has 12 output channels) of which only the first is used; we keep its first 6 channels.

The architecture (ResNet depths, decoder type) is inferred from tensor shapes; what cannot be
inferred (training size, frames, stereo convention) comes from arguments with the published defaults
(FeatDepth: 1024×320, ``[0, -1, 1, 's']``, baseline 0.015, i.e. ×36 to metres; the joint model
640×192; monodepth2: the size stored in ``encoder.pth``, baseline 0.1 for stereo models, i.e. ×5.4).

Public functions: :func:`detect_checkpoint_format`, :func:`map_featdepth_state_dict`,
:func:`map_monodepth2_state_dicts`, :func:`load_official` (-> one of our checkpoint dicts plus a
:class:`MappingReport`) and :func:`convert_official_checkpoint` (writes it atomically).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from featdepth import __version__
from featdepth.config import Config, config_from_dict, config_to_dict
from featdepth.models.stage import StageNetworks
from featdepth.utils.checkpoint_io import CheckpointError, torch_load_safe
from featdepth.utils.files import PathLike, atomic_save

__all__ = [
    "FEATDEPTH_PREFIXES",
    "MONODEPTH2_DECODER_LAYERS",
    "MONODEPTH2_POSE_LAYERS",
    "MONODEPTH2_FILES",
    "OfficialCheckpointError",
    "MappingReport",
    "detect_checkpoint_format",
    "map_featdepth_state_dict",
    "map_monodepth2_state_dicts",
    "infer_architecture",
    "load_official",
    "convert_official_checkpoint",
    "to_official_state_dict",
]


#: Official FeatDepth prefix -> our FeatDepthSystem prefix (docs/method.md §1.7). Longest prefixes first.
FEATDEPTH_PREFIXES: tuple[tuple[str, str], ...] = (
    ("DepthEncoder.", "depth_net.encoder."),
    ("DepthDecoder.", "depth_net.decoder."),
    ("PoseEncoder.", "pose_net.encoder."),
    ("PoseDecoder.", "pose_net.decoder."),
    ("extractor.", "feature_net.encoder."),
    ("Encoder.", "feature_net.encoder."),
    ("Decoder.", "feature_net.decoder."),
)

#: monodepth2 ``decoder.N`` (depth.pth) -> our MonoDepth2Decoder submodule, in monodepth2's
#: insertion order: upconv (i, j) for i = 4..0, j = 0, 1, then dispconv for scales 0..3.
MONODEPTH2_DECODER_LAYERS: tuple[str, ...] = tuple(
    [f"upconv{i}_{j}" for i in range(4, -1, -1) for j in (0, 1)] + [f"dispconv{s}" for s in range(4)]
)

#: monodepth2 ``net.N`` (pose.pth) -> our PoseDecoder submodule.
MONODEPTH2_POSE_LAYERS: tuple[str, ...] = ("reduce", "conv1", "conv2", "conv3")

#: The file names of a monodepth2 model folder (role -> file name).
MONODEPTH2_FILES: dict[str, str] = {
    "encoder": "encoder.pth",
    "depth": "depth.pth",
    "pose_encoder": "pose_encoder.pth",
    "pose": "pose.pth",
}


class OfficialCheckpointError(ValueError):
    """A foreign checkpoint that cannot be read or mapped; the message names the file and keys."""


@dataclass
class MappingReport:
    """What a key mapping did.

    Attributes:
        source: the file (or folder) the weights came from.
        format: ``"featdepth-official"`` or ``"monodepth2"``.
        mapped: ``(foreign key, our key)`` pairs that were loaded.
        unmapped: foreign keys that have no place in our modules (not loaded).
        missing: our keys that no foreign key filled (they keep their initial values).
        shape_mismatch: ``(foreign key, our key, foreign shape, our shape)`` (not loaded).
        adapted: notes about tensors that were changed while mapping (e.g. sliced channels).
        benign_missing: missing keys that do not matter (BatchNorm ``num_batches_tracked``).
    """

    source: str
    format: str
    mapped: list[tuple[str, str]] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    shape_mismatch: list[tuple[str, str, tuple, tuple]] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    benign_missing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every foreign tensor landed and every needed key of ours was filled."""
        return not (self.unmapped or self.missing or self.shape_mismatch)

    def missing_in(self, prefix: str) -> list[str]:
        return [k for k in self.missing if k.startswith(prefix)]

    def summary(self, max_names: int = 20) -> str:
        """A human-readable report naming every problem key (up to ``max_names`` per list)."""

        def names(items: list[str]) -> str:
            shown = items[:max_names]
            more = f"\n    ... and {len(items) - len(shown)} more" if len(items) > len(shown) else ""
            return "".join(f"\n    {n}" for n in shown) + more

        lines = [f"{self.format} checkpoint {self.source}: {len(self.mapped)} tensors mapped"]
        if self.unmapped:
            lines.append(f"  {len(self.unmapped)} key(s) did not map to any featdepth module:" + names(self.unmapped))
        if self.shape_mismatch:
            items = [f"{a} -> {b}: {tuple(sa)} vs ours {tuple(sb)}" for a, b, sa, sb in self.shape_mismatch]
            lines.append(f"  {len(items)} key(s) with mismatched shapes (not loaded):" + names(items))
        if self.missing:
            lines.append(f"  {len(self.missing)} of our key(s) left unfilled:" + names(self.missing))
        if self.adapted:
            lines.append("  adapted:" + names(self.adapted))
        if self.ok:
            lines.append("  every key mapped; nothing left unfilled")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "format": self.format,
            "mapped": len(self.mapped),
            "unmapped": list(self.unmapped),
            "missing": list(self.missing),
            "shape_mismatch": [[a, b, list(sa), list(sb)] for a, b, sa, sb in self.shape_mismatch],
            "adapted": list(self.adapted),
        }


# ------------------------------------------------------------------------------------------------
# reading


def _torch_load(path: Path, trust: bool | None = None) -> Any:
    """Weights-only unpickling (:func:`~featdepth.utils.checkpoint_io.torch_load_safe`): an mmcv ``meta`` of
    plain data loads as it is; a file needing more is refused unless ``trust`` (``--trust-checkpoint``)."""
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise OfficialCheckpointError(f"checkpoint path is not a file: {path}")
    try:
        return torch_load_safe(path, "cpu", trust=trust)
    except CheckpointError as exc:
        raise OfficialCheckpointError(str(exc)) from exc


def _strip_module(state: Mapping[str, Any]) -> dict[str, Any]:
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def _is_featdepth_official_state(state: Mapping[str, Any]) -> bool:
    keys = [k for k in _strip_module(state) if isinstance(k, str)]
    return bool(keys) and any(k.startswith(p) for k in keys for p, _ in FEATDEPTH_PREFIXES)


def detect_checkpoint_format(obj: Any, *, trust_checkpoint: bool | None = None) -> str:
    """Classify a loaded checkpoint object (or a path).

    Returns one of ``"featdepth"`` (our self-describing dict with ``model`` and ``config``),
    ``"featdepth-official"`` (mmcv dict or bare state dict with official prefixes),
    ``"monodepth2"`` (a monodepth2 folder or one of its files), or ``"unknown"``.
    """
    if isinstance(obj, (str, os.PathLike)):
        path = Path(obj)
        if path.is_dir():
            return "monodepth2" if (path / MONODEPTH2_FILES["encoder"]).is_file() else "unknown"
        if path.name in MONODEPTH2_FILES.values() and (path.parent / MONODEPTH2_FILES["encoder"]).is_file():
            return "monodepth2"
        obj = _torch_load(path, trust_checkpoint)
    if not isinstance(obj, Mapping):
        return "unknown"
    if "model" in obj and "config" in obj and isinstance(obj.get("model"), Mapping):
        return "featdepth"
    state = obj.get("state_dict") if isinstance(obj.get("state_dict"), Mapping) else obj
    if _is_featdepth_official_state(state):
        return "featdepth-official"
    keys = [k for k in obj if isinstance(k, str)]
    if keys and all(k.startswith(("encoder.", "decoder.", "net.")) or k in ("height", "width", "use_stereo") for k in keys):
        return "monodepth2"
    return "unknown"


# ------------------------------------------------------------------------------------------------
# mapping


def _finish_report(report: MappingReport, mapped: dict[str, Tensor], target: Mapping[str, Tensor] | None) -> dict[str, Tensor]:
    """Check ``mapped`` against ``target`` (shapes, unknown keys, unfilled keys)."""
    if target is None:
        return mapped
    out: dict[str, Tensor] = {}
    origin = {ours: theirs for theirs, ours in report.mapped}
    kept_pairs = []
    for ours, tensor in mapped.items():
        theirs = origin.get(ours, ours)
        if ours not in target:
            report.unmapped.append(theirs)
            continue
        if tuple(tensor.shape) != tuple(target[ours].shape):
            report.shape_mismatch.append((theirs, ours, tuple(tensor.shape), tuple(target[ours].shape)))
            continue
        out[ours] = tensor
        kept_pairs.append((theirs, ours))
    report.mapped = kept_pairs
    for key in target:
        if key not in out:
            if key.endswith("num_batches_tracked"):
                report.benign_missing.append(key)
            else:
                report.missing.append(key)
    return out


def map_featdepth_state_dict(
    state: Mapping[str, Any],
    target: Mapping[str, Tensor] | None = None,
    *,
    source: str = "<state dict>",
) -> tuple[dict[str, Tensor], MappingReport]:
    """Rename an official FeatDepth state dict into FeatDepthSystem keys.

    Args:
        state: the official ``state_dict`` (``DepthEncoder.*`` …; an mmcv dict's ``state_dict`` entry).
        target: our system's ``state_dict()`` to check names and shapes against; ``None`` only renames.
        source: a name for the report.

    Returns:
        ``(mapped, report)``: ``mapped`` maps our keys to the official tensors (only those that fit
        ``target``); the report lists unknown keys, shape mismatches and our unfilled keys by name.
    """
    report = MappingReport(source=source, format="featdepth-official")
    mapped: dict[str, Tensor] = {}
    for key, value in _strip_module(state).items():
        if not isinstance(value, Tensor):
            report.unmapped.append(str(key))
            continue
        for theirs, ours in FEATDEPTH_PREFIXES:
            if key.startswith(theirs):
                new = ours + key[len(theirs):]
                mapped[new] = value
                report.mapped.append((key, new))
                break
        else:
            report.unmapped.append(key)
    return _finish_report(report, mapped, target), report


_MD2_DECODER_KEY = re.compile(r"^decoder\.(\d+)\.(.+)$")
_MD2_POSE_KEY = re.compile(r"^net\.(\d+)\.(.+)$")


def map_monodepth2_state_dicts(
    files: Mapping[str, Mapping[str, Any]],
    target: Mapping[str, Tensor] | None = None,
    *,
    source: str = "<monodepth2>",
) -> tuple[dict[str, Tensor], MappingReport]:
    """Rename monodepth2 state dicts into FeatDepthSystem keys (stage ``baseline``).

    Args:
        files: role -> state dict, roles ``encoder``, ``depth``, ``pose_encoder``, ``pose``
            (see :data:`MONODEPTH2_FILES`); ``height``/``width``/``use_stereo`` entries are skipped.
        target: our system's ``state_dict()`` for checking; ``None`` only renames.

    Returns:
        ``(mapped, report)`` as :func:`map_featdepth_state_dict`. Foreign keys are reported as
        ``"<file>:<key>"``.
    """
    report = MappingReport(source=source, format="monodepth2")
    mapped: dict[str, Tensor] = {}

    def put(file_key: str, ours: str, value: Tensor) -> None:
        mapped[ours] = value
        report.mapped.append((file_key, ours))

    for role, state in files.items():
        fname = MONODEPTH2_FILES.get(role, role)
        for key, value in state.items():
            fk = f"{fname}:{key}"
            if key in ("height", "width", "use_stereo"):
                continue
            if not isinstance(value, Tensor):
                report.unmapped.append(fk)
                continue
            if role in ("encoder", "pose_encoder"):
                if key.startswith("encoder."):
                    put(fk, ("depth_net." if role == "encoder" else "pose_net.") + "encoder." + key, value)
                else:
                    report.unmapped.append(fk)
            elif role == "depth":
                m = _MD2_DECODER_KEY.match(key)
                if m and int(m.group(1)) < len(MONODEPTH2_DECODER_LAYERS):
                    put(fk, f"depth_net.decoder.{MONODEPTH2_DECODER_LAYERS[int(m.group(1))]}.{m.group(2)}", value)
                else:
                    report.unmapped.append(fk)
            elif role == "pose":
                m = _MD2_POSE_KEY.match(key)
                if m and int(m.group(1)) < len(MONODEPTH2_POSE_LAYERS):
                    layer = MONODEPTH2_POSE_LAYERS[int(m.group(1))]
                    if layer == "conv3" and value.shape[0] > 6 and value.shape[0] % 6 == 0:
                        report.adapted.append(
                            f"{fk}: {value.shape[0] // 6} predicted transforms, kept the first "
                            f"(output channels 0..5 of {value.shape[0]})"
                        )
                        value = value[:6].clone()
                    put(fk, f"pose_net.decoder.{layer}.{m.group(2)}", value)
                else:
                    report.unmapped.append(fk)
            else:
                report.unmapped.extend(f"{fname}:{k}" for k in state)
                break
    return _finish_report(report, mapped, target), report


# ------------------------------------------------------------------------------------------------
# architecture inference


def _resnet_depth(state: Mapping[str, Tensor], prefix: str) -> int | None:
    """ResNet depth (18/34/50/101) from the block structure under ``prefix`` (e.g. ``depth_net.encoder.encoder.``)."""
    if f"{prefix}conv1.weight" not in state:
        return None
    blocks = {}
    for layer in (1, 2, 3, 4):
        idx = {int(m.group(1)) for k in state if (m := re.match(rf"^{re.escape(prefix)}layer{layer}\.(\d+)\.", k))}
        blocks[layer] = max(idx) + 1 if idx else 0
    bottleneck = f"{prefix}layer1.0.conv3.weight" in state
    layout = (blocks[1], blocks[2], blocks[3], blocks[4])
    table = {
        (False, (2, 2, 2, 2)): 18,
        (False, (3, 4, 6, 3)): 34,
        (True, (3, 4, 6, 3)): 50,
        (True, (3, 4, 23, 3)): 101,
    }
    depth = table.get((bottleneck, layout))
    if depth is None:
        raise OfficialCheckpointError(
            f"the encoder under '{prefix}' has an unsupported ResNet layout {layout} "
            f"({'bottleneck' if bottleneck else 'basic'} blocks); supported: ResNet-18/34/50/101"
        )
    return depth


def infer_architecture(mapped: Mapping[str, Tensor]) -> dict[str, Any]:
    """Architecture facts from mapped (our-named) tensors.

    Returns a dict with ``depth_layers``, ``depth_decoder`` (``featdepth``/``monodepth2`` or None),
    ``pose_layers``, ``feature_layers`` (None where absent) and ``feature_decoder`` (bool).
    """
    depth_layers = _resnet_depth(mapped, "depth_net.encoder.encoder.")
    if "depth_net.decoder.reduce4.conv.weight" in mapped:
        decoder = "featdepth"
    elif "depth_net.decoder.upconv4_0.conv.conv.weight" in mapped:
        decoder = "monodepth2"
    else:
        decoder = None
    pose_layers = _resnet_depth(mapped, "pose_net.encoder.encoder.")
    if pose_layers is not None and mapped["pose_net.encoder.encoder.conv1.weight"].shape[1] != 6:
        raise OfficialCheckpointError(
            "the pose encoder's conv1 takes "
            f"{mapped['pose_net.encoder.encoder.conv1.weight'].shape[1]} channels; featdepth's PoseNet takes 2 frames (6)"
        )
    return {
        "depth_layers": depth_layers,
        "depth_decoder": decoder,
        "pose_layers": pose_layers,
        "feature_layers": _resnet_depth(mapped, "feature_net.encoder.encoder."),
        "feature_decoder": any(k.startswith("feature_net.decoder.") for k in mapped),
    }


def _frame_ids_text(frame_ids: Any) -> list:
    if isinstance(frame_ids, str):
        items = [t for t in re.split(r"[\s,\[\]]+", frame_ids) if t]
        return [t if t == "s" else int(t) for t in items]
    return list(frame_ids)


def _build_config(
    arch: Mapping[str, Any],
    stage: str,
    *,
    height: int,
    width: int,
    frame_ids: list,
    stereo_baseline: float | None,
    pose_input_size: list[int] | None,
    dataset: str = "kitti_raw",
    min_depth: float = 0.1,
    max_depth: float = 100.0,
) -> Config:
    model: dict[str, Any] = {
        "depth_layers": arch["depth_layers"] or 50,
        "depth_decoder": arch["depth_decoder"] or "featdepth",
        "pose_layers": arch["pose_layers"] or 18,
        "pose_input_size": pose_input_size,
        "feature_layers": arch["feature_layers"] or 50,
        "depth_weights": None,
        "pose_weights": None,
        "feature_weights": None,
        "min_depth": min_depth,
        "max_depth": max_depth,
    }
    data = {
        "dataset": dataset,
        "path": "data/kitti_raw",
        "height": int(height),
        "width": int(width),
        "frame_ids": frame_ids,
        "stereo_baseline": stereo_baseline,
    }
    return config_from_dict({"data": data, "model": model, "train": {"stage": stage, "run_feature_stage": False}})


# ------------------------------------------------------------------------------------------------
# public entry points


def _featdepth_stage(arch: Mapping[str, Any], has_extractor: bool) -> str:
    if arch["depth_layers"] is None:
        if arch["feature_layers"] is not None:
            return "featurenet"
        raise OfficialCheckpointError("no depth network (DepthEncoder.*) and no FeatureNet (Encoder.*) weights found")
    if arch["feature_decoder"]:
        return "joint"
    if has_extractor or arch["feature_layers"] is not None:
        return "depth"
    return "baseline"


def _read_monodepth2(path: Path, trust: bool | None = None) -> tuple[Path, dict[str, dict[str, Any]]]:
    folder = path if path.is_dir() else path.parent
    files: dict[str, dict[str, Any]] = {}
    for role, name in MONODEPTH2_FILES.items():
        p = folder / name
        if p.is_file():
            obj = _torch_load(p, trust)
            if not isinstance(obj, Mapping):
                raise OfficialCheckpointError(f"{p} does not hold a state dict (got {type(obj).__name__})")
            files[role] = dict(obj)
    for required in ("encoder", "depth"):
        if required not in files:
            raise OfficialCheckpointError(
                f"monodepth2 model folder {folder} lacks {MONODEPTH2_FILES[required]} "
                f"(expected {', '.join(MONODEPTH2_FILES.values())})"
            )
    return folder, files


def load_official(
    path: PathLike,
    *,
    height: int | None = None,
    width: int | None = None,
    frame_ids: Any = None,
    stereo_baseline: float | None | str = "default",
    strict: bool = True,
    trust_checkpoint: bool | None = None,
) -> tuple[dict[str, Any], MappingReport]:
    """Load an official FeatDepth checkpoint or a monodepth2 model folder as a featdepth checkpoint.

    Args:
        path: an official ``.pth`` (mmcv dict), or a monodepth2 folder (or one of its files).
        height, width: the training size (not stored in official files). Defaults: FeatDepth
            1024×320 (the joint model 640×192); monodepth2 the ``height``/``width`` in ``encoder.pth``.
        frame_ids: training frames (list or text like ``"0,-1,1,s"``). Defaults: FeatDepth
            ``[0, -1, 1, 's']`` (the released KITTI model is the MS model), ``[0, 's']`` without a
            pose network; monodepth2 ``[0, -1, 1]`` (plus ``'s'`` if ``use_stereo``).
        stereo_baseline: the baseline convention the model was trained with (metres, or ``None`` for
            the real one). Default: 0.015 for FeatDepth (×36 to metres on KITTI), 0.1 for monodepth2
            stereo models (×5.4).
        strict: raise :class:`OfficialCheckpointError` (with the report) when a depth-network key is
            unfilled, a foreign key does not map, or a shape does not match. Unfilled PoseNet or
            FeatureNet keys never raise (the depth network alone is usable).
        trust_checkpoint: allow full unpickling (code can run) of a legacy file that holds more than
            tensors and plain data; default: refused with a message naming ``--trust-checkpoint``.

    Returns:
        ``(checkpoint, report)``: ``checkpoint`` is our self-describing dict (``model``, ``config``,
        ``stage``, ``versions``, ``converted_from``) loadable by :func:`featdepth.load` and the
        trainer; ``report`` says what mapped.
    """
    path = Path(path)
    fmt = detect_checkpoint_format(path, trust_checkpoint=trust_checkpoint)
    meta: Any = None
    if fmt == "monodepth2":
        folder, files = _read_monodepth2(path, trust_checkpoint)
        renamed, _ = map_monodepth2_state_dicts(files, None, source=str(folder))
        enc = files["encoder"]
        arch = infer_architecture(renamed)
        h = int(height or enc.get("height", 192))
        w = int(width or enc.get("width", 640))
        use_stereo = bool(enc.get("use_stereo", False))
        has_pose = arch["pose_layers"] is not None
        if frame_ids is None:
            frame_ids = ([0, -1, 1] if has_pose else [0]) + (["s"] if use_stereo or not has_pose else [])
        frame_ids = _frame_ids_text(frame_ids)
        baseline = (0.1 if "s" in frame_ids else None) if stereo_baseline == "default" else stereo_baseline
        cfg = _build_config(arch, "baseline", height=h, width=w, frame_ids=frame_ids, stereo_baseline=baseline,
                            pose_input_size=[h, w])
        system = StageNetworks(cfg, "baseline")
        target = system.state_dict()
        mapped, report = map_monodepth2_state_dicts(files, target, source=str(folder))
        source = str(folder)
    elif fmt == "featdepth-official":
        obj = _torch_load(path, trust_checkpoint)
        state = obj["state_dict"] if isinstance(obj.get("state_dict"), Mapping) else obj
        meta = obj.get("meta") if isinstance(obj, Mapping) else None
        renamed, _ = map_featdepth_state_dict(state, None, source=str(path))
        arch = infer_architecture(renamed)
        has_extractor = any(k.startswith(("extractor.", "module.extractor.")) for k in state)
        stage = _featdepth_stage(arch, has_extractor)
        if stage == "featurenet":
            h, w = int(height or 256), int(width or 800)
            frame_ids = [0, -1, 1] if frame_ids is None else _frame_ids_text(frame_ids)
            baseline = None if stereo_baseline == "default" else stereo_baseline
        else:
            default_size = (192, 640) if stage == "joint" else (320, 1024)
            h, w = int(height or default_size[0]), int(width or default_size[1])
            has_pose = arch["pose_layers"] is not None
            if frame_ids is None:
                frame_ids = [0, -1, 1, "s"] if has_pose else [0, "s"]
            frame_ids = _frame_ids_text(frame_ids)
            baseline = (0.015 if "s" in frame_ids else None) if stereo_baseline == "default" else stereo_baseline
        cfg = _build_config(arch, stage, height=h, width=w, frame_ids=frame_ids, stereo_baseline=baseline,
                            pose_input_size=[192, 640])
        system = StageNetworks(cfg, stage)
        target = system.state_dict()
        mapped, report = map_featdepth_state_dict(state, target, source=str(path))
        source = str(path)
    elif fmt == "featdepth":
        raise OfficialCheckpointError(f"{path} is already a featdepth checkpoint; load it with featdepth.load()")
    else:
        raise OfficialCheckpointError(
            f"{path} is neither an official FeatDepth checkpoint (mmcv dict with DepthEncoder.*/DepthDecoder.* "
            "keys) nor a monodepth2 model (encoder.pth + depth.pth)"
        )

    stage = cfg.train.stage
    essential = "feature_net." if stage == "featurenet" else "depth_net."
    if strict and (report.unmapped or report.shape_mismatch or report.missing_in(essential)):
        raise OfficialCheckpointError(report.summary())

    result = system.load_state_dict(mapped, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
    model_state = system.state_dict()
    # A network the source does not (fully) provide is left out rather than kept at random init, so
    # that nothing downstream silently uses it (featdepth.load then has no PoseNet, for example).
    for prefix in ("pose_net.", "feature_net."):
        if prefix != essential and report.missing_in(prefix):
            model_state = {k: v for k, v in model_state.items() if not k.startswith(prefix)}
            report.adapted.append(f"{prefix[:-1]}: incomplete in the source ({len(report.missing_in(prefix))} "
                                  "tensors missing), left out of the converted checkpoint")
    checkpoint = {
        "model": model_state,
        "config": config_to_dict(cfg),
        "stage": stage,
        "versions": {"featdepth": __version__, "torch": str(torch.__version__)},
        "converted_from": {"path": source, "format": report.format, "meta": _plain(meta), "report": report.to_dict()},
    }
    return checkpoint, report


def _plain(obj: Any) -> Any:
    """Keep only plain data (meta may hold arbitrary objects)."""
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return repr(obj)


def convert_official_checkpoint(path: PathLike, out_path: PathLike, **kwargs: Any) -> MappingReport:
    """Convert an official FeatDepth / monodepth2 checkpoint into a featdepth checkpoint file.

    Arguments after ``out_path`` are those of :func:`load_official`. The output is written atomically
    (temporary file + rename) and holds ``model``, ``config``, ``stage``, ``versions`` and
    ``converted_from`` (source path, format, the mapping report). Returns the report.
    """

    checkpoint, report = load_official(path, **kwargs)
    atomic_save(checkpoint, out_path)
    return report


def to_official_state_dict(model_state: Mapping[str, Tensor], stage: str = "depth") -> dict[str, Tensor]:
    """Our FeatDepthSystem state dict -> official FeatDepth key names (the inverse of the prefix table).

    The FeatureNet encoder is written as ``extractor.encoder.*`` for stage ``depth`` (mono_fm) and as
    ``Encoder.encoder.*`` otherwise (autoencoder / joint). Keys outside the table raise ``ValueError``.
    """
    inverse = [(ours, theirs) for theirs, ours in FEATDEPTH_PREFIXES
               if not (ours == "feature_net.encoder." and theirs == ("Encoder." if stage == "depth" else "extractor."))]
    out: dict[str, Tensor] = {}
    for key, value in model_state.items():
        for ours, theirs in inverse:
            if key.startswith(ours):
                out[theirs + key[len(ours):]] = value
                break
        else:
            raise ValueError(f"key {key!r} has no official FeatDepth name")
    return out
