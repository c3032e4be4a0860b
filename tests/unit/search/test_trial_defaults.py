"""What a sweep trial does differently from `paraling train` unless its overrides say otherwise."""

from __future__ import annotations

from omegaconf import OmegaConf

from paraling.config import ParalingConfig
from paraling.search.trial import sets_key, trial_defaults


def test_sets_key_reads_plain_and_forced_overrides() -> None:
    assert sets_key(["a=1", "trainer.deterministic=true"], "trainer.deterministic")
    assert sets_key(["++trainer.deterministic=false"], "trainer.deterministic")
    assert not sets_key(["trainer.deterministic_x=1", "trainer=default"], "trainer.deterministic")


def test_sweep_trials_are_not_deterministic_unless_asked() -> None:
    """Deterministic cuDNN/cuBLAS kernels cost 10-30% of every GPU trial; `paraling train` keeps them on."""
    cfg = OmegaConf.structured(ParalingConfig)
    assert cfg.trainer.deterministic  # the train default
    trial_defaults(cfg, ["windows.width=11"])
    assert not cfg.trainer.deterministic
    cfg = OmegaConf.structured(ParalingConfig)
    trial_defaults(cfg, ["trainer.deterministic=true"])
    assert cfg.trainer.deterministic
