"""Hydra composition with typed schemas: defaults, overrides, unknown keys and bad values."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf

from paraling.config_checks import validate
from paraling.errors import ConfigError


def test_defaults_match_the_paper(compose_cfg: Callable[..., DictConfig]) -> None:
    cfg = compose_cfg([])
    assert (cfg.features.n_mels, cfg.features.frame_length_ms, cfg.features.frame_shift_ms) == (
        40,
        25.0,
        10.0,
    )
    assert (cfg.windows.width, cfg.windows.shift) == (11, 2)
    assert cfg.model.kernel_sizes[:3] == [3, 2, 2] and cfg.model.fc_sizes == [500, 500]
    assert cfg.model.dropout_conv[:3] == [0.1, 0.2, 0.3] and cfg.model.dropout_fc == 0.5
    assert (cfg.trainer.lr_start, cfg.trainer.lr_end) == (0.02, 0.0001)
    assert (cfg.trainer.momentum_start, cfg.trainer.momentum_end) == (0.9, 0.999)
    assert cfg.cv.folds == 5 and cfg.trainer.nesterov
    validate(cfg)


def test_interface_keys_and_experiment_files(compose_cfg: Callable[..., DictConfig]) -> None:
    cfg = compose_cfg(
        [
            "trainer.epochs=3",
            "cv.folds=4",
            "windows.width=18",
            "windows.shift=3",
            "model.n_blocks=4",
            "model.dropout_fc=0.3",
            "corpus=csv",
            "corpus.path=/x.csv",
        ]
    )
    assert (cfg.trainer.epochs, cfg.cv.folds, cfg.windows.width, cfg.model.n_blocks) == (3, 4, 18, 4)
    paper = compose_cfg(["experiment=paper"])
    assert (paper.name, paper.features.n_mels, paper.windows.width, paper.model.n_blocks) == (
        "paper",
        60,
        18,
        5,
    )
    assert paper.trainer.epochs == 400


def test_unknown_key_and_wrong_type_fail_at_composition(compose_cfg: Callable[..., DictConfig]) -> None:
    with pytest.raises(ConfigCompositionException, match="nope"):
        compose_cfg(["model.nope=1"])
    with pytest.raises(ConfigCompositionException, match="epochs"):
        compose_cfg(["trainer.epochs=many"])


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("model.dropout_fc=1.5", "dropout_fc"),
        ("windows.width=0", "windows.width"),
        ("cv.folds=1", "cv.folds"),
        ("aggregation.kind=vote", "aggregation.kind"),
        ("model.n_blocks=9", "n_blocks=9"),
        ("trainer.momentum_end=1.0", "momentum"),
        ("corpus=csv", "corpus.path"),
    ],
)
def test_bad_values_name_the_key(override: str, match: str, compose_cfg: Callable[..., DictConfig]) -> None:
    with pytest.raises(ConfigError, match=match):
        validate(compose_cfg([override]))


def test_structured_defaults_validate_and_match_the_yaml(compose_cfg: Callable[..., DictConfig]) -> None:
    from paraling.config import CVConfig, TrainerConfig, WindowsConfig
    from paraling.config_groups import AggregationConfig, CNNConfig

    composed = validate(compose_cfg([]))
    defaults = {
        "trainer": TrainerConfig,
        "model": CNNConfig,
        "windows": WindowsConfig,
        "aggregation": AggregationConfig,
        "cv": CVConfig,
    }
    for group, dataclass in defaults.items():
        assert OmegaConf.to_container(OmegaConf.structured(dataclass)) == OmegaConf.to_container(composed[group]), group
