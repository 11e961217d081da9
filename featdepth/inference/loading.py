"""The one loader: every checkpoint kind -> :class:`~featdepth.inference.model.Model`.

Kinds: featdepth training checkpoints (``model``, ``config``, ``stage``), weights-only exports of them
(``.pt``, or ``.safetensors`` written by :func:`export_weights` / ``featdepth export weights``), official
FeatDepth ``.pth`` files and monodepth2 model folders (converted on the fly by
:mod:`featdepth.inference.official`).

Loading is safe by default: pickled files are read with ``weights_only=True`` (tensors and plain data; no
code runs), ``.safetensors`` hold raw tensors and JSON; a legacy file that needs full unpickling is refused
unless ``trust_checkpoint=True`` (``--trust-checkpoint``). Non-finite weights are refused, naming the tensor.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from featdepth import __version__
from featdepth.config import Config, ConfigError, config_from_dict, config_to_dict
from featdepth.inference.model import Model, ModelLoadError, _Networks
from featdepth.inference.official import MONODEPTH2_FILES, OfficialCheckpointError, detect_checkpoint_format, load_official
from featdepth.models.depth_net import DepthNet
from featdepth.models.pose_net import PoseNet
from featdepth.utils.checkpoint_io import (
    CheckpointError,
    check_finite_weights,
    load_checkpoint,
    state_mismatch_summary,
    write_safetensors_checkpoint,
)
from featdepth.utils.runtime import resolve_device

__all__ = ["export_weights", "load", "model_config_from_checkpoint"]


def model_config_from_checkpoint(state: Any, source: str) -> tuple[Any, str]:
    """The :class:`~featdepth.config.Config` and stage of a training checkpoint with a depth network.

    Pretrained-weight settings are cleared (the checkpoint holds the weights: nothing is downloaded or
    read from disk when the networks are rebuilt), and ``train.stage`` is set to the stored stage.

    Args:
        state: the loaded checkpoint dict.
        source: how to name it in error messages (its path).

    Raises:
        ValueError: no ``model``/``config`` entry, an invalid stored config, or a FeatureNet-only (stage 1)
            checkpoint; the message starts with ``source``.
    """
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        keys = sorted(state)[:8] if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{source}: not a featdepth training checkpoint (needs 'model' and 'config' entries, has {keys})")
    try:
        cfg = config_from_dict(state["config"])
    except ConfigError as exc:
        raise ValueError(f"{source}: the stored config is invalid ({exc})") from exc
    stage = str(state.get("stage") or cfg.train.stage)
    if stage == "featurenet":
        raise ValueError(
            f"{source}: a stage-1 FeatureNet checkpoint has no depth network; use the stage-2 "
            "(depth/joint/baseline) checkpoint"
        )
    cfg.train.stage = stage
    cfg.model.depth_weights = cfg.model.pose_weights = cfg.model.feature_weights = None
    return cfg, stage


def _build_networks(cfg: Config, stage: str, state: Mapping[str, Tensor], source: str) -> _Networks:
    m = cfg.model
    depth_net = DepthNet(num_layers=m.depth_layers, decoder=m.depth_decoder, weights=None)
    pose_net = None
    if any(k.startswith("pose_net.") for k in state):
        size = tuple(m.pose_input_size) if m.pose_input_size else None
        pose_net = PoseNet(num_layers=m.pose_layers, input_size=size, weights=None, output_scale=m.pose_output_scale,
                               rotation_scale=m.pose_rotation_scale)
    for name, net in (("depth_net", depth_net), ("pose_net", pose_net)):
        if net is None:
            continue
        prefix = name + "."
        sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not sub:
            raise ModelLoadError(f"{source} holds no {name} weights (keys starting with '{prefix}')")
        try:
            net.load_state_dict(sub, strict=True)
        except RuntimeError as exc:
            m = cfg.model
            settings = (f"model.depth_layers={m.depth_layers}, model.depth_decoder={m.depth_decoder}" if name == "depth_net"
                        else f"model.pose_layers={m.pose_layers}")
            raise ModelLoadError(
                f"{source}: the {name} weights do not fit the network its stored config describes ({settings}): "
                f"{state_mismatch_summary(net.state_dict(), sub)}; the file is malformed or was edited"
            ) from exc
    return _Networks(depth_net, pose_net)


def load(
    checkpoint: str | os.PathLike | Mapping[str, Any],
    device: str | torch.device = "auto",
    amp: str | None = None,
    *,
    intrinsics: Any = None,
    real_baseline: float | None = None,
    batch_size: int = 8,
    official: Mapping[str, Any] | None = None,
    trust_checkpoint: bool = False,
    backend: str = "auto",
) -> Model:
    """Load a trained model for inference.

    Args:
        checkpoint: a featdepth checkpoint file (or its loaded dict), an official FeatDepth ``.pth``,
            or a monodepth2 model folder.
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        amp: ``None``/``"none"`` (float32), ``"bf16"`` or ``"fp16"`` autocast.
        intrinsics: normalised intrinsics if known: ``"kitti"``, ``(fx/W, fy/H, cx/W, cy/H)`` or a
            normalised 3×3 (a checkpoint's stored ``intrinsics_normalized`` is used otherwise).
        real_baseline: the real stereo baseline of the training data (metres), for stereo models
            trained with a baseline convention on data whose baseline is not known (folder data).
        batch_size: images per forward pass.
        official: options for official checkpoints (``height``, ``width``, ``frame_ids``,
            ``stereo_baseline``; see :func:`featdepth.inference.official.load_official`).
        trust_checkpoint: allow full unpickling (which can run code) of a legacy file holding more than
            tensors and plain data, with a warning; only for files from a trusted source. Default: such a
            file is refused with a message naming ``--trust-checkpoint``.
        backend: how the networks run (:mod:`featdepth.inference.backends`): ``"auto"`` (default: onnxruntime
            on the CPU when installed, else channels_last; channels_last on CUDA), ``"eager"`` (float32 NCHW
            PyTorch), ``"channels_last"`` or ``"onnxruntime"`` (exported on first use, cached on disk).

    Raises:
        ModelLoadError: not a checkpoint, a stage-1 (FeatureNet) checkpoint, or mismatched weights;
            the message names the file; a file refused by safe loading; non-finite weights (names the
            first bad tensor). FileNotFoundError: missing path. ValueError: an unknown backend, or an explicit
            one that cannot run here (names the backend and the reason).
    """
    report = None
    official = dict(official or {})
    trust = bool(trust_checkpoint or official.pop("trust_checkpoint", False)) or None
    if isinstance(checkpoint, Mapping):
        ckpt = dict(checkpoint)
        source = "<checkpoint dict>"
    else:
        path = Path(checkpoint)
        source = str(path)
        if not path.exists():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        if path.is_dir() or (path.name in MONODEPTH2_FILES.values() and (path.parent / MONODEPTH2_FILES["encoder"]).is_file()):
            fmt = "monodepth2"
        else:
            try:
                ckpt = load_checkpoint(path, trust=trust)
            except CheckpointError as exc:
                raise ModelLoadError(str(exc)) from exc
            fmt = detect_checkpoint_format(ckpt)
        if fmt in ("monodepth2", "featdepth-official"):
            try:
                ckpt, report = load_official(path, trust_checkpoint=trust, **official)
            except OfficialCheckpointError as exc:
                raise ModelLoadError(str(exc)) from exc
        elif fmt != "featdepth":
            keys = list(ckpt)[:8]
            raise ModelLoadError(
                f"{path} is not a featdepth checkpoint (no 'model' and 'config' entries; top-level keys: {keys}), "
                "nor an official FeatDepth or monodepth2 one"
            )
    try:
        cfg, stage = model_config_from_checkpoint(ckpt, source)
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from exc
    if not isinstance(ckpt["model"], Mapping):
        raise ModelLoadError(f"{source}: its 'model' entry is not a state dict (got {type(ckpt['model']).__name__})")
    try:
        check_finite_weights(ckpt, source)
    except CheckpointError as exc:
        raise ModelLoadError(str(exc)) from exc
    networks = _build_networks(cfg, stage, ckpt["model"], source)
    if intrinsics is None and ckpt.get("intrinsics_normalized") is not None:
        intrinsics = ckpt["intrinsics_normalized"]
    model = Model(
        networks,
        cfg,
        stage=stage,
        source=source,
        device=resolve_device(device, key="device"),
        amp=amp,
        intrinsics=intrinsics,
        real_baseline=real_baseline,
        batch_size=batch_size,
        backend=backend,
    )
    model.conversion_report = report
    step = ckpt.get("step")
    model.step = int(step) if isinstance(step, (int, float)) else None
    return model


def export_weights(checkpoint: str | os.PathLike, out: str | os.PathLike, *, trust_checkpoint: bool = False,
                   official: Mapping[str, Any] | None = None) -> Path:
    """Write the depth (and pose) network weights of any checkpoint :func:`load` reads to ``out``
    (``.safetensors``), with the config, stage, step and normalised intrinsics as JSON metadata; no optimizer
    state, nothing that needs unpickling. :func:`load` reads it back to the same model.

    Raises:
        ModelLoadError: what :func:`load` raises; ValueError: ``out`` does not end in ``.safetensors``.
    """
    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"the weights file must end in .safetensors, got {out}")
    model = load(checkpoint, device="cpu", official=official, trust_checkpoint=trust_checkpoint, backend="eager")
    state = {
        "model": model.networks.state_dict(),
        "config": config_to_dict(model.config),
        "stage": model.stage,
        "step": model.step,
        "intrinsics_normalized": model.K,
        "versions": {"featdepth": __version__, "torch": str(torch.__version__)},
    }
    try:
        return write_safetensors_checkpoint(state, out)
    except CheckpointError as exc:
        raise ModelLoadError(str(exc)) from exc
