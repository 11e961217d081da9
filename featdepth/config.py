"""Typed configuration: dataclass defaults, YAML presets, ``key=value`` overrides.

One source of defaults (the dataclasses below). A preset (YAML) only overrides them; a key that
does not exist is an error that names it. The resolved config is saved next to every run and inside
every checkpoint (:func:`config_to_dict`).

Example::

    cfg = load_config("synthetic_small", overrides=["optim.lr=2e-4", "data.frame_ids=[0,-1,1,s]"])
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import types
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence, Union, get_args, get_origin, get_type_hints

import yaml

FrameId = Union[int, str]

STAGES = ("featurenet", "depth", "joint", "baseline")


class ConfigError(ValueError):
    """A bad configuration key or value; the message names the key."""


@dataclass
class DataConfig:
    """What to train on."""

    dataset: str = "synthetic"  # synthetic | folder | kitti_raw | kitti_odom
    path: str = "data/synthetic"  # data root (generated there for `synthetic` if missing)
    height: int = 128
    width: int = 416
    frame_ids: list = field(default_factory=lambda: [0, -1, 1])
    # Folder/synthetic: sequence names for training and validation (None = all but the val ones).
    train_sequences: list | None = None
    val_sequences: list | None = None
    # KITTI: split files under split_dir/<split>/{train,val}_files.txt
    split: str | None = None
    split_dir: str | None = None
    img_ext: str | None = None
    use_calibration_K: bool = True
    # Stereo baseline in metres; None = the real (calibrated) one; 0.015 = FeatDepth's convention.
    stereo_baseline: float | None = None
    num_workers: int = 2
    # Folder datasets: allow a sequence to mix image formats (png and jpg frames). Off by default:
    # a mixed folder is usually two exports on top of each other; the error names the files.
    allow_mixed_extensions: bool = False
    # Synthetic data generated on demand when `path` does not exist yet.
    synth_sequences: int = 6
    synth_val_sequences: int = 1
    synth_frames: int = 60
    synth_seed: int = 0
    # More options of the scene generator (featdepth.data.synthetic.SynthConfig), e.g. {sway_max_m: 1.5,
    # sway_period_range: [40, 60]} for a camera that weaves and turns (featdepth.data.synthetic.WEAVE_OPTIONS;
    # docs/experiments.md, "Is rotation learned?"). Only for data.dataset=synthetic (an error otherwise).
    synth_options: dict = field(default_factory=dict)


@dataclass
class ModelConfig:
    """Network architectures."""

    depth_layers: int = 50
    depth_decoder: str = "featdepth"  # featdepth | monodepth2
    depth_weights: str | None = None  # None | imagenet | /path/to/resnet.pth
    pose_layers: int = 18
    pose_input_size: list | None = field(default_factory=lambda: [192, 640])  # [H, W]; None = as data
    pose_weights: str | None = None
    # Factor on PoseNet's averaged output (0.01 in the paper). It also sets how fast the predicted motion can
    # grow under Adam (each step moves the output by about lr x this factor): 0.01 suits long schedules,
    # short ones (the demo) need the motion to reach the depth's scale before the depth net commits.
    pose_output_scale: float = 0.01
    # Factor on the rotation part only; null (the paper) = pose_output_scale. Per-frame rotations are
    # ~0.01 rad while translations are a sizeable fraction of the depth, so a short run that raises
    # pose_output_scale may keep the rotation's factor small; no preset does (docs/method.md, "Pose output scale").
    pose_rotation_scale: float | None = None
    # Start PoseNet's last convolution at zero: an untrained PoseNet predicts the identity motion for every pair
    # (false = PyTorch's random initialisation, as the paper). See docs/method.md, "Pose output scale".
    pose_zero_init: bool = False
    # Training only: the disparity sigmoid's backward uses max(sigmoid'(z), this) so that a head saturated at
    # the far limit (the infinite-depth collapse) still gets gradient; outputs unchanged. 0 = the paper.
    # docs/method.md, "Disparity sigmoid gradient floor".
    disp_grad_floor: float = 0.0
    feature_layers: int = 50
    feature_weights: str | None = None
    feature_level: int = 0
    min_depth: float = 0.1
    max_depth: float = 100.0


@dataclass
class LossConfig:
    """Loss terms and weights (docs/method.md §2)."""

    ssim_weight: float = 0.85
    robust_l1: bool = True
    automask: bool | None = None  # None: on in monocular mode ('s' not in frame_ids)
    # Training step from which auto-masking is applied (0 = from the start, the paper). Before it every pixel
    # takes the minimum over the warped sources only. docs/method.md §2.2, "Auto-masking from a later step".
    automask_start_step: int = 0
    disp_norm: bool | None = None  # None: on in monocular mode
    noise_std: float = 1e-5
    smoothness_weight: float = 1e-3
    smoothness_edge_scale: float = 0.5
    second_order_smoothness: bool = True
    feature_metric_weight: float = 1e-3
    discriminative_weight: float = 1e-3
    convergent_weight: float = 1e-3
    align_corners: bool = True
    # Frozen FeatureNet BatchNorm: "eval" (fixed statistics, the fix) or "train" (the official
    # code's behaviour: batch statistics; weights still frozen).
    frozen_bn: str = "eval"


@dataclass
class OptimConfig:
    """Optimiser and schedule (docs/method.md §3.1)."""

    batch_size: int = 2
    lr: float = 1e-4
    weight_decay: float = 0.0
    epochs: int = 40
    max_steps: int | None = None  # stop after this many steps (overrides epochs when reached)
    milestones: list = field(default_factory=lambda: [20, 30])  # epochs
    gamma: float = 0.5
    warmup_iters: int = 500
    warmup_ratio: float = 1.0 / 3.0
    grad_clip: float | None = 35.0


@dataclass
class FeatureStageConfig:
    """Settings of stage 1 (FeatureNet) when a two-stage run trains it first."""

    height: int | None = None  # None = data.height
    width: int | None = None
    batch_size: int | None = None
    epochs: int | None = None
    max_steps: int | None = None
    milestones: list | None = None


@dataclass
class TrainConfig:
    """The run itself."""

    stage: str = "depth"  # featurenet | depth (two-stage, frozen FeatureNet) | joint | baseline
    feature_checkpoint: str | None = None  # stage-1 checkpoint for stage "depth"
    run_feature_stage: bool = False  # stage "depth" without checkpoint: train stage 1 first
    seed: int = 1024
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "none"  # none | bf16 | fp16
    channels_last: bool | None = None  # None = choose per device and precision
    out_dir: str = "runs/featdepth"
    log_every: int = 10
    image_every: int = 200
    val_every: int = 1  # epochs
    val_max_images: int | None = 64
    keep_checkpoints: int = 3
    checkpoint_every: int | None = None  # also every N steps (None = off)
    checkpoint_every_epochs: int = 1  # at the end of every N-th epoch (0 = off); the final state is always saved
    best_metric: str = "abs_rel"
    max_nonfinite_steps: int = 20
    progress: bool = True
    sync_bn: bool = False
    compile: bool = False


@dataclass
class Config:
    """The full, resolved configuration of a run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    feature_stage: FeatureStageConfig = field(default_factory=FeatureStageConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    # -- derived properties ---------------------------------------------------------------
    @property
    def temporal_frames(self) -> list[int]:
        return [f for f in self.data.frame_ids[1:] if f != "s"]

    @property
    def use_stereo(self) -> bool:
        return "s" in self.data.frame_ids

    @property
    def mode(self) -> str:
        """``M`` (monocular), ``S`` (stereo) or ``MS``."""
        temporal = bool(self.temporal_frames)
        return ("M" if temporal else "") + ("S" if self.use_stereo else "")

    @property
    def automask(self) -> bool:
        return (not self.use_stereo) if self.loss.automask is None else bool(self.loss.automask)

    @property
    def disp_norm(self) -> bool:
        return (not self.use_stereo) if self.loss.disp_norm is None else bool(self.loss.disp_norm)


# --------------------------------------------------------------------------------------------
# dict <-> dataclass


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The resolved config as plain data (YAML/JSON serialisable)."""
    return dataclasses.asdict(cfg)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check and coerce ``value`` to the annotated type ``hint``; error names ``key``."""
    origin = get_origin(hint)
    if origin is Union or origin is types.UnionType:
        args = get_args(hint)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"config key '{key}' may not be null")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"bad value for config key '{key}': {value!r}")
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}' expects true/false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}' expects an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):
            # YAML 1.1 reads "2e-4" (no dot) as a string: accept it as the number it spells.
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}' expects a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}' expects a string, got {value!r}")
        return value
    if hint is dict or origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{key}' expects a mapping (key: value), got {value!r}")
        return dict(value)
    if hint is list or origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' expects a list, got {value!r}")
        return list(value)
    return value


def _update_dataclass(obj: Any, values: Mapping[str, Any], prefix: str = "") -> None:
    if not isinstance(values, Mapping):
        raise ConfigError(f"config section '{prefix.rstrip('.') or '<root>'}' must be a mapping, got {values!r}")
    hints = get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown config key '{full}'{hint}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _update_dataclass(current, value, prefix=f"{full}.")
        else:
            setattr(obj, key, _coerce(value, hints[key], full))


def config_from_dict(values: Mapping[str, Any]) -> Config:
    """Build a validated :class:`Config` from defaults updated with ``values``."""
    cfg = Config()
    _update_dataclass(cfg, values or {})
    validate_config(cfg)
    return cfg


# --------------------------------------------------------------------------------------------
# presets and overrides


def preset_names() -> list[str]:
    """Names of the YAML presets shipped with the package."""
    folder = resources.files("featdepth") / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


class _DuplicateKeyError(yaml.YAMLError):
    """A mapping repeats a key (YAML would silently keep the last one)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate mapping keys instead of keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # unhashable key: let SafeLoader report it
                continue
            if first is not None:
                raise _DuplicateKeyError(f"duplicate key '{key}' on line {line} (first defined on line {first})")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _is_file_ref(path_or_name: str) -> bool:
    """A config *file* (a ``.yaml``/``.yml`` name, or an existing file), else a preset name. A folder that
    carries a preset's name (e.g. ``./demo/`` in the working directory) does not shadow the preset."""
    path = Path(path_or_name)
    return path.suffix in (".yaml", ".yml") or path.is_file()


def _read_yaml(path_or_name: str) -> tuple[dict[str, Any], str]:
    path = Path(path_or_name)
    if _is_file_ref(path_or_name):
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        raw = path.read_bytes()
        source = str(path)
    else:
        res = resources.files("featdepth") / "configs" / f"{path_or_name}.yaml"
        if not res.is_file():
            what = "a folder, not a config file" if path.is_dir() else "not a file either"
            raise ConfigError(
                f"unknown preset '{path_or_name}' ({what}); presets: {', '.join(preset_names())}"
            )
        raw = res.read_bytes()
        source = f"preset {path_or_name}"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{source} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "save it as UTF-8"
        ) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader) or {}
    except _DuplicateKeyError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse {source}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must contain a mapping at the top level")
    return data, source


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _preset_identity(path_or_name: str) -> str:
    path = Path(path_or_name)
    if _is_file_ref(path_or_name):
        try:
            return str(path.resolve())
        except OSError:
            return str(path)
    return f"preset {path_or_name}"


def load_preset_dict(path_or_name: str, _chain: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a preset, following ``base:`` (another preset or file) recursively.

    Raises:
        ConfigError: a ``base:`` loop (a file that includes itself, directly or through others);
            the message lists the chain of files.
    """
    identity = _preset_identity(path_or_name)
    if identity in _chain:
        loop = list(_chain[_chain.index(identity) :]) + [identity]
        raise ConfigError(f"config 'base:' loop: {' -> '.join(loop)}")
    data, source = _read_yaml(path_or_name)
    base = data.pop("base", None)
    if base is not None:
        if not isinstance(base, str) or not base:
            raise ConfigError(f"{source}: 'base' must be a preset name or a YAML file path, got {base!r}")
        data = _merge(load_preset_dict(base, _chain + (identity,)), data)
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``section.key=value`` (value in YAML syntax) into a key path and a value."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse the value of override '{text}': {exc}") from exc
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value.lower() for c in ".e") else value
        except ValueError:
            pass
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key=value`` overrides to a nested dict (validation happens later)."""
    data = copy.deepcopy(dict(data))
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            nxt = node.get(part)
            if not isinstance(nxt, dict):
                nxt = {}
                node[part] = nxt
            node = nxt
        node[path[-1]] = value
    return data


def load_config(preset: str | None = None, overrides: Sequence[str] = ()) -> Config:
    """Defaults ← preset (name or YAML path) ← overrides; validated."""
    data = load_preset_dict(preset) if preset else {}
    return config_from_dict(apply_overrides(data, overrides))


# --------------------------------------------------------------------------------------------
# validation


def _check_frame_ids(frame_ids: list) -> list:
    out: list[FrameId] = []
    for f in frame_ids:
        if isinstance(f, str) and f.strip().lstrip("+-").isdigit():
            f = int(f)
        if not (isinstance(f, int) and not isinstance(f, bool)) and f != "s":
            raise ConfigError(f"data.frame_ids: bad frame id {f!r} (integers and 's' are allowed)")
        out.append(f)
    if not out or out[0] != 0:
        raise ConfigError(f"data.frame_ids must start with the target frame 0, got {frame_ids!r}")
    if len(out) < 2:
        raise ConfigError("data.frame_ids needs at least one source frame besides 0")
    if len(set(map(str, out))) != len(out):
        raise ConfigError(f"data.frame_ids has duplicates: {frame_ids!r}")
    return out


_DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def _check_finite_numbers(obj: Any, prefix: str = "") -> None:
    """Every float setting must be a finite number (``.nan`` / ``.inf`` name the key and the value)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            _check_finite_numbers(value, f"{prefix}{f.name}.")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"config key '{prefix}{f.name}' must be a finite number, got {value}")


def validate_config(cfg: Config) -> None:
    """Cross-field checks; raise :class:`ConfigError` naming the key."""
    d, m, lo, o, t = cfg.data, cfg.model, cfg.loss, cfg.optim, cfg.train
    if t.stage not in STAGES:
        raise ConfigError(f"train.stage must be one of {STAGES}, got {t.stage!r}")
    if t.stage != "featurenet":
        d.frame_ids = _check_frame_ids(d.frame_ids)
    for key, value in (("data.height", d.height), ("data.width", d.width)):
        if value <= 0 or value % 32:
            raise ConfigError(f"{key} must be a positive multiple of 32, got {value}")
    if m.pose_input_size is not None:
        if len(m.pose_input_size) != 2 or any((not isinstance(v, int)) or v <= 0 or v % 32 for v in m.pose_input_size):
            raise ConfigError(f"model.pose_input_size must be [H, W], multiples of 32, got {m.pose_input_size!r}")
    for key in ("depth_layers", "pose_layers", "feature_layers"):
        if getattr(m, key) not in (18, 34, 50, 101):
            raise ConfigError(f"model.{key} must be one of 18, 34, 50, 101, got {getattr(m, key)!r}")
    if m.depth_decoder not in ("featdepth", "monodepth2"):
        raise ConfigError(f"model.depth_decoder must be 'featdepth' or 'monodepth2', got {m.depth_decoder!r}")
    if not 0 < m.min_depth < m.max_depth:
        raise ConfigError(f"model.min_depth/max_depth must satisfy 0 < min < max, got {m.min_depth}, {m.max_depth}")
    if not m.pose_output_scale > 0:
        raise ConfigError(f"model.pose_output_scale must be > 0, got {m.pose_output_scale}")
    if m.pose_rotation_scale is not None and not m.pose_rotation_scale > 0:
        raise ConfigError(f"model.pose_rotation_scale must be > 0 or null, got {m.pose_rotation_scale}")
    if not 0.0 <= m.disp_grad_floor <= 0.25:
        raise ConfigError(f"model.disp_grad_floor must be in [0, 0.25] (the sigmoid's largest slope), got {m.disp_grad_floor}")
    if not 0 <= m.feature_level <= 4:
        raise ConfigError(f"model.feature_level must be in 0..4, got {m.feature_level}")
    if lo.frozen_bn not in ("eval", "train"):
        raise ConfigError(f"loss.frozen_bn must be 'eval' or 'train', got {lo.frozen_bn!r}")
    if not 0.0 <= lo.ssim_weight <= 1.0:
        raise ConfigError(f"loss.ssim_weight must be in [0, 1], got {lo.ssim_weight}")
    if isinstance(lo.automask_start_step, bool) or not isinstance(lo.automask_start_step, int) \
            or lo.automask_start_step < 0:
        raise ConfigError(f"loss.automask_start_step must be a whole number >= 0, got {lo.automask_start_step!r}")
    if o.batch_size < 1:
        raise ConfigError(f"optim.batch_size must be >= 1, got {o.batch_size}")
    _check_finite_numbers(cfg)
    if not math.isfinite(o.lr) or o.lr <= 0:
        raise ConfigError(f"optim.lr must be a finite number > 0, got {o.lr}")
    if o.max_steps is not None and o.max_steps < 0:
        raise ConfigError(f"optim.max_steps must be >= 0, got {o.max_steps}")
    if not _DEVICE_PATTERN.fullmatch(t.device):
        raise ConfigError(f"train.device must be one of auto, cpu, cuda, cuda:N (N = 0, 1, ...) or mps, got {t.device!r}")
    for key, value in (
        ("data.num_workers", d.num_workers),
        ("data.synth_val_sequences", d.synth_val_sequences),
    ):
        if value < 0:
            raise ConfigError(f"{key} must be >= 0, got {value}")
    for key, value in (
        ("data.synth_sequences", d.synth_sequences),
        ("data.synth_frames", d.synth_frames),
    ):
        if value < 1:
            raise ConfigError(f"{key} must be >= 1, got {value}")
    if t.amp not in ("none", "bf16", "fp16"):
        raise ConfigError(f"train.amp must be none, bf16 or fp16, got {t.amp!r}")
    if d.dataset not in ("synthetic", "folder", "kitti_raw", "kitti_odom"):
        raise ConfigError(
            f"data.dataset must be one of synthetic, folder, kitti_raw, kitti_odom, got {d.dataset!r}"
        )
    if t.keep_checkpoints < 1:
        raise ConfigError(f"train.keep_checkpoints must be >= 1, got {t.keep_checkpoints}")
    fs = cfg.feature_stage
    for key in ("height", "width"):
        v = getattr(fs, key)
        if v is not None and (v <= 0 or v % 32):
            raise ConfigError(f"feature_stage.{key} must be a positive multiple of 32, got {v}")


def dump_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
