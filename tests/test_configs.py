"""The packaged configs (the main job's long-rollout settings and the paper mode), and the validation of
every config field at load."""
from __future__ import annotations

import dataclasses
import typing
from importlib.resources import files

import pytest

from diffmd_fast import config as config_module
from diffmd_fast.config import Config


def test_paper_mode_is_the_published_model_and_sampler():
    cfg = Config.from_toml(files("diffmd_fast") / "configs" / "paper.toml")
    assert cfg.model.anchor is False and cfg.model.sigma_data == 0.0 and cfg.train.stride == 1
    assert (cfg.sampler.kind, cfg.sampler.method, cfg.sampler.prior) == ("ode", "dopri5", "previous")
    assert cfg.rollout.thermostat == "none" and cfg.rollout.momentum is False
    assert (cfg.model.num_layers, cfg.model.hidden) == (6, 128)  # the paper's sizes


def test_long_config_uses_the_long_rollout_settings():
    cfg = Config.from_toml(files("diffmd_fast") / "configs" / "long.toml")
    assert cfg.model.sigma_data == -1.0 and cfg.sampler.kind == "heun" and cfg.sampler.steps == 1
    assert cfg.train.input_noise > 0 and cfg.train.unroll_prob > 0 and cfg.rollout.thermostat == "langevin"
    assert cfg.model.bond_prior and cfg.train.input_noise_response  # the measured stable default
    assert cfg.model.prior_force_matching and cfg.rollout.tau_fs >= 100  # the force-matched prior; the reference's friction


def test_demo_config_keeps_the_in_phase_comparison_settings():
    cfg = Config.from_toml(files("diffmd_fast") / "configs" / "demo.toml")
    assert cfg.sampler.kind == "ode" and cfg.train.stride == 1 and cfg.rollout.thermostat == "none"


# ---- validation at load ---------------------------------------------------------------------------

SECTIONS = [config_module.ModelConfig, config_module.SDEConfig, config_module.SamplerConfig,
            config_module.TrainConfig, config_module.RolloutConfig]


@pytest.mark.parametrize("name", ["paper", "long", "demo"])
def test_every_packaged_config_loads(name):
    Config.from_toml(files("diffmd_fast") / "configs" / f"{name}.toml")


def test_every_numeric_field_has_a_range():
    for cls in SECTIONS:
        hints = typing.get_type_hints(cls)
        numeric = {f.name for f in dataclasses.fields(cls) if hints[f.name] in (int, float)}
        assert numeric == set(cls.LIMITS), cls.__name__


@pytest.mark.parametrize("override, message", [
    ("train.val_every=0", "train.val_every must be >= 1 (epochs between validations; to validate rarely, set it "
                          "above train.epochs), got 0"),
    ("train.epochs=0", "train.epochs must be >= 1, got 0"),
    ("train.batch_size=-4", "train.batch_size must be >= 1 (molecule windows), got -4"),
    ("train.unroll_prob=1.5", "train.unroll_prob must be in [0, 1] (a probability), got 1.5"),
    ("train.lr=0", "train.lr must be > 0 (learning rate), got 0.0"),
    ("train.lr_factor=1", "train.lr_factor must be in (0, 1)"),
    ("train.seed=-1", "train.seed must be in [0, 4294967295], got -1"),
    ("train.max_minutes=-1", "train.max_minutes must be >= 0 (minutes; 0: no limit), got -1.0"),
    ("train.input_noise=nan", "train.input_noise must be a finite number >= 0 (Å), got nan"),
    ("train.max_minutes=inf", "train.max_minutes must be a finite number >= 0 (minutes; 0: no limit), got inf"),
    ("train.device=gpu", "train.device must be auto, cpu, cuda, mps or xpu"),
    ("model.dropout=1", "model.dropout must be in [0, 1) (a probability), got 1.0"),
    ("model.max_z=119", "model.max_z must be in [1, 118] (an atomic number), got 119"),
    ("model.hidden=20", "model.hidden (20) must be a multiple of model.heads (8)"),
    ("model.sigma_data=-0.5", "model.sigma_data must be >= 0 or -1"),
    ("sde.eps=1", "sde.eps must be in (0, 1) (a diffusion time), got 1.0"),
    ("sde.sigma_clamp_min=2", "sde.sigma_clamp_min (2.0) must be <= sde.sigma_clamp_max (1.0)"),
    ("sde.ve_sigma_max=1e-4", "sde.ve_sigma_min (0.001) must be < sde.ve_sigma_max (0.0001)"),
    ("sampler.steps=0", "sampler.steps must be >= 1 (heun steps), got 0"),
    ("sampler.n_corrector=-1", "sampler.n_corrector must be >= 0"),
    ("sampler.method=rk45", "sampler.method must be one of ("),
    ("rollout.tau_fs=0", "rollout.tau_fs must be > 0 (fs), got 0.0"),
    ("rollout.temperature_K=-300", "rollout.temperature_K must be >= 0 (K; 0: the training data's), got -300.0"),
    ("rollout.thermostat=nose", "rollout.thermostat must be one of ('none', 'langevin', 'bussi'), got 'nose'"),
])
def test_a_value_out_of_range_is_a_one_line_error_naming_the_field(override, message):
    with pytest.raises(ValueError) as err:
        Config().with_overrides([override])
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_zero_stays_allowed_where_it_means_off():
    cfg = Config().with_overrides(["train.max_steps=0", "train.max_minutes=0", "train.val_rollout_frames=0",
                                   "train.grad_clip=0", "train.keep_checkpoints=0", "rollout.temperature_K=0",
                                   "sampler.n_corrector=0", "model.sigma_data=-1", "sampler.rtol=0"])
    assert cfg.train.max_steps == 0 and cfg.model.sigma_data == -1.0


def test_every_way_of_making_a_config_is_validated(tmp_path):
    with pytest.raises(ValueError, match="train.val_every must be >= 1"):
        Config.from_dict({"train": {"val_every": 0}})
    with pytest.raises(ValueError, match="train.val_every must be >= 1"):
        config_module.TrainConfig(val_every=0)
    with pytest.raises(ValueError, match="train.val_every must be >= 1"):
        dataclasses.replace(Config().train, val_every=0)
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nval_every = 0\n")
    with pytest.raises(ValueError, match="train.val_every must be >= 1"):
        Config.from_toml(bad)


def test_train_refuses_a_bad_value_in_one_line(tmp_path, capsys):
    from diffmd_fast.cli import main

    assert main(["train", "--data", "ethanol", "--out", str(tmp_path / "run"), "--set", "train.val_every=0"]) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("diffmd train: error: train.val_every must be >= 1")
    assert not (tmp_path / "run").exists()


def test_a_shipped_config_loads_by_name(tmp_path, monkeypatch):
    """An installed package's configs need no repository path: "long" and "long.toml" name the shipped
    one, a file of that name in the working directory wins, and an unknown name lists the shipped ones."""
    shipped = Config.from_toml(files("diffmd_fast") / "configs" / "long.toml")
    monkeypatch.chdir(tmp_path)
    assert Config.from_toml("long") == shipped and Config.from_toml("long.toml") == shipped
    (tmp_path / "long.toml").write_text("[train]\nlr = 0.01\n")
    assert Config.from_toml("long.toml").train.lr == 0.01
    with pytest.raises(FileNotFoundError, match="shipped configs: demo, long, paper"):
        Config.from_toml("lnog")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Config.from_toml(tmp_path / "sub" / "long.toml")  # a path elsewhere is never replaced
