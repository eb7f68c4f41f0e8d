"""The packaged configs: the main job's long-rollout settings and the paper mode."""
from __future__ import annotations

from importlib.resources import files

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


def test_demo_config_keeps_the_in_phase_comparison_settings():
    cfg = Config.from_toml(files("diffmd_fast") / "configs" / "demo.toml")
    assert cfg.sampler.kind == "ode" and cfg.train.stride == 1 and cfg.rollout.thermostat == "none"
