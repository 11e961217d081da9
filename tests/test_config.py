"""Configuration: defaults, presets, overrides, validation with errors that name the key."""

from __future__ import annotations

import pytest
import yaml

from featdepth.config import (
    Config,
    ConfigError,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
    parse_override,
    preset_names,
)


def test_defaults_validate():
    cfg = config_from_dict({})
    assert isinstance(cfg, Config)
    assert cfg.mode == "M" and cfg.automask and cfg.disp_norm


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_loads(name):
    cfg = load_config(name)
    assert cfg.data.height % 32 == 0 and cfg.data.width % 32 == 0


def test_paper_presets_match_the_spec():
    m = load_config("kitti_featdepth_m")
    assert (m.data.height, m.data.width) == (320, 1024)
    assert m.model.depth_layers == 50 and m.model.pose_layers == 18 and m.model.feature_layers == 50
    assert m.model.pose_input_size == [192, 640]
    assert m.optim.lr == 1e-4 and m.optim.milestones == [20, 30] and m.optim.epochs == 40
    assert m.optim.grad_clip == 35 and m.optim.warmup_iters == 500
    assert m.loss.feature_metric_weight == 1e-3 and m.loss.smoothness_weight == 1e-3
    assert (m.feature_stage.height, m.feature_stage.width, m.feature_stage.batch_size) == (256, 800, 5)
    ms = load_config("kitti_featdepth_ms")
    assert ms.mode == "MS" and not ms.automask and not ms.disp_norm and ms.data.stereo_baseline == 0.015
    assert load_config("kitti_featdepth_s").mode == "S"
    j = load_config("kitti_featdepth_joint")
    assert j.train.stage == "joint" and (j.data.height, j.data.width) == (192, 640)
    assert load_config("kitti_baseline_m").train.stage == "baseline"


def test_unknown_key_names_it_and_suggests():
    with pytest.raises(ConfigError, match=r"unknown config key 'optim\.lrr'.*optim\.lr"):
        load_config("synthetic_small", ["optim.lrr=1e-3"])
    with pytest.raises(ConfigError, match=r"unknown config key 'nosection'"):
        config_from_dict({"nosection": {"a": 1}})


@pytest.mark.parametrize(
    "override, key",
    [
        ("data.height=100", "data.height"),
        ("optim.lr=abc", "optim.lr"),
        ("optim.batch_size=1.5", "optim.batch_size"),
        ("train.stage=nope", "train.stage"),
        ("train.amp=fp8", "train.amp"),
        ("model.depth_layers=19", "model.depth_layers"),
        ("data.frame_ids=[1,0]", "data.frame_ids"),
        ("data.frame_ids=[0,x]", "data.frame_ids"),
        ("loss.automask=maybe", "loss.automask"),
        ("model.pose_input_size=[190,640]", "model.pose_input_size"),
        ("model.pose_rotation_scale=0", "model.pose_rotation_scale"),
        ("model.pose_rotation_scale=-0.01", "model.pose_rotation_scale"),
    ],
)
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config("synthetic_small", [override])


def test_overrides_parse_yaml_values():
    assert parse_override("optim.lr=2e-4") == (["optim", "lr"], 2e-4)
    assert parse_override("data.frame_ids=[0,-1,1,s]") == (["data", "frame_ids"], [0, -1, 1, "s"])
    cfg = load_config("synthetic_small", ["data.frame_ids=[0,-1,1,s]", "model.pose_input_size=null"])
    assert cfg.data.frame_ids == [0, -1, 1, "s"] and cfg.mode == "MS"
    assert cfg.model.pose_input_size is None
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("novalue")


def test_preset_inheritance_and_override_order():
    base = load_config("synthetic_small")
    child = load_config("synthetic_baseline")
    assert child.train.stage == "baseline" and child.data.height == base.data.height
    assert load_config("synthetic_baseline", ["train.stage=joint"]).train.stage == "joint"


def test_unknown_preset_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        load_config("nope")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(str(bad))


def test_dump_round_trip(tmp_path):
    cfg = load_config("kitti_featdepth_ms", ["optim.lr=3e-4"])
    dump_config(cfg, tmp_path / "c.yaml")
    again = config_from_dict(yaml.safe_load((tmp_path / "c.yaml").read_text()))
    assert config_to_dict(again) == config_to_dict(cfg)


def test_apply_overrides_does_not_mutate_input():
    data = {"optim": {"lr": 1.0}}
    out = apply_overrides(data, ["optim.lr=2.0"])
    assert data["optim"]["lr"] == 1.0 and out["optim"]["lr"] == 2.0


# -- input validation: nothing silent -----------------------------------------------------------


def test_duplicate_yaml_key_names_file_and_key(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("optim:\n  lr: 1.0e-4\n  batch_size: 2\n  lr: 2.0e-4\n")
    with pytest.raises(ConfigError, match=r"dup\.yaml.*duplicate key 'lr' on line 4.*line 2"):
        load_config(str(path))


@pytest.mark.parametrize("direct", [True, False])
def test_base_loop_names_the_files(tmp_path, direct):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    if direct:
        a.write_text(f"base: {a}\noptim:\n  lr: 1.0e-4\n")
        pattern = r"base:' loop: .*a\.yaml -> .*a\.yaml"
    else:
        a.write_text(f"base: {b}\n")
        b.write_text(f"base: {a}\n")
        pattern = r"base:' loop: .*a\.yaml -> .*b\.yaml -> .*a\.yaml"
    with pytest.raises(ConfigError, match=pattern):
        load_config(str(a))


def test_non_utf8_yaml_names_the_file(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("train:\n  out_dir: runs/caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.yaml is not UTF-8.*0xe9"):
        load_config(str(path))


@pytest.mark.parametrize(
    "value, shown", [(".nan", "nan"), (".inf", "inf"), ("-.inf", "-inf"), ("nan", "nan"), ("0", "0.0"), ("-1", "-1.0")]
)
def test_bad_learning_rate_names_key_and_value(value, shown):
    with pytest.raises(ConfigError, match=rf"optim\.lr.*, got {shown}$"):
        load_config("synthetic_small", [f"optim.lr={value}"])


def test_non_finite_float_setting_names_the_key():
    with pytest.raises(ConfigError, match=r"optim\.weight_decay.*nan"):
        load_config("synthetic_small", ["optim.weight_decay=.nan"])


@pytest.mark.parametrize("override, key", [("data.num_workers=-1", "data.num_workers"),
                                           ("data.synth_sequences=0", "data.synth_sequences"),
                                           ("data.synth_frames=-3", "data.synth_frames")])
def test_negative_counts_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.") + r" must be >= \d, got -?\d"):
        load_config("synthetic_small", [override])


@pytest.mark.parametrize("device", ["gpu", "cuda0", "cuda:x", "CPU", ""])
def test_bad_device_names_key_and_accepted_values(device):
    with pytest.raises(ConfigError, match=r"train\.device must be one of auto, cpu, cuda, cuda:N.*mps"):
        load_config("synthetic_small", [f"train.device='{device}'"])


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1", "mps"])
def test_good_devices_accepted(device):
    assert load_config("synthetic_small", [f"train.device={device}"]).train.device == device


def test_allow_mixed_extensions_is_a_config_key():
    assert load_config("synthetic_small").data.allow_mixed_extensions is False
    assert load_config("synthetic_small", ["data.allow_mixed_extensions=true"]).data.allow_mixed_extensions


def test_a_folder_named_like_a_preset_does_not_shadow_it(tmp_path, monkeypatch):
    """`featdepth demo` leaves a `demo-output/` folder; users also make folders called `demo` or
    `own_video`: the preset name must still mean the preset, and a folder that is no preset says so."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "synthetic_small").mkdir()
    cfg = load_config("synthetic_small")
    assert cfg.model.pose_output_scale == 0.1  # the packaged preset, not an error about a folder
    (tmp_path / "my_runs").mkdir()
    with pytest.raises(ConfigError, match="unknown preset 'my_runs' \\(a folder, not a config file\\)"):
        load_config("my_runs")
    # an existing file without a .yaml suffix is still read as a config file
    (tmp_path / "mycfg").write_text("optim:\n  lr: 3.0e-4\n")
    assert load_config("mycfg").optim.lr == 3e-4
