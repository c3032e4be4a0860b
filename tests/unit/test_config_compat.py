"""Renamed selector keys keep working with one deprecation line; configs logged by earlier releases still load."""

from __future__ import annotations

import logging

import pytest
from omegaconf import OmegaConf

from paraling.config import compose
from paraling.config_checks import validate
from paraling.config_compat import legacy_node, rewrite_overrides


def test_an_old_selector_on_the_command_line_selects_the_group(caplog: pytest.LogCaptureFixture) -> None:
    assert rewrite_overrides(["model.name=svm", "aggregation.method=majority", "augment.name=pitch", "x=1"]) == [
        "model=svm",
        "aggregation=majority",
        "augment=pitch",
        "x=1",
    ]
    with caplog.at_level(logging.WARNING, logger="paraling"):
        cfg = validate(compose(["model.name=svm", "aggregation.method=majority"]))
    assert cfg.model.kind == "svm" and "svm_c" in cfg.model.baseline and cfg.aggregation.kind == "majority"
    assert "n_blocks" not in cfg.model  # the svm node has the svm's keys only


def test_an_old_selector_in_yaml_is_read_as_kind(caplog: pytest.LogCaptureFixture) -> None:
    cfg = compose([])
    cfg.aggregation.method = "mean"  # as an experiment file of an earlier release would set it
    with caplog.at_level(logging.WARNING, logger="paraling"):
        assert validate(cfg).aggregation.kind == "mean"


def test_a_config_logged_by_an_earlier_release_loads() -> None:
    """The flat nodes of old config.yaml files hold every key of every kind: the other kinds' keys are dropped."""
    old_corpus = {
        "name": "csv", "kind": "csv", "path": "x.csv", "file_column": "file", "label_column": "label",
        "speaker_column": "speaker", "split_column": None, "speaker_regex": None, "extensions": [".wav"],
        "allow_outside_root": False, "on_bad_file": "skip", "demo_speakers": 30, "demo_seed": 0, "demo_snr_db": None,
        "speech_root": "/x", "speech_utts_per_class": 6, "positive_labels": None, "negative_class": None,
    }  # fmt: skip
    old_model = {
        "name": "cnn", "n_blocks": 3, "channels": [8, 8, 8], "kernel_sizes": [3, 2, 2], "pool_size": 2,
        "dropout_conv": [0.1, 0.1, 0.1], "fc_sizes": [16], "dropout_fc": 0.5, "baseline": {"features": "compare"},
    }  # fmt: skip
    cfg = compose([])
    cfg.corpus, cfg.model = OmegaConf.create(old_corpus), OmegaConf.create(old_model)
    cfg = validate(cfg)
    assert cfg.corpus.kind == "csv" and "demo_seed" not in cfg.corpus and cfg.model.kind == "cnn"
    assert "baseline" not in cfg.model and list(cfg.model.channels) == [8, 8, 8]
    # a node that is not a full old dump keeps its unknown keys, so a typo is still an error
    assert legacy_node("corpus", {"kind": "csv", "demo_seed": 1}, None) == {"kind": "csv", "demo_seed": 1}
