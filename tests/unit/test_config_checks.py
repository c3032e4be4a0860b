"""Every field is validated before anything runs: ranges, cross-field rules, and a memory estimate."""

from __future__ import annotations

import pytest

from paraling.config_checks import check_training_memory, training_batch_bytes, validate
from paraling.errors import ConfigError, ResourceError


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("model.channels=[0,0,0]", "model.channels[0]"),
        ("model.kernel_sizes=[0,0,0]", "model.kernel_sizes[0]"),
        ("model.fc_sizes=[-5]", "model.fc_sizes[0]"),
        ("model.fc_sizes=[0]", "model.fc_sizes[0]"),
        ("seed=-1", "seed"),
        ("trainer.threads=-3", "trainer.threads"),
        ("trainer.weight_decay=-1", "trainer.weight_decay"),
        ("features.f_min=9000", "features.f_min"),
        ("features.f_max=9000", "features.f_max"),
        ("features.frame_shift_ms=0.001", "features.frame_shift_ms"),
        ("trainer.batch_size=1", "trainer.batch_size"),
        ("trainer.max_windows_per_epoch=-100000", "trainer.max_windows_per_epoch"),
        ("trainer.max_windows_per_epoch=-5", "trainer.max_windows_per_epoch"),
        ("trainer.patience=-1", "trainer.patience"),
        ("transfer.freeze_epochs=-1", "transfer.freeze_epochs"),
        ("trainer.lr_end=-0.1", "trainer.lr_end"),
        ("aggregation.ridge_alpha=-1", "aggregation.ridge_alpha"),
    ],
)
def test_bad_values_name_the_key_and_the_value(compose_cfg, override: str, key: str) -> None:
    value = override.split("=", 1)[1].strip("[]").split(",")[0]
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg([override]))
    assert key in str(err.value) and value in str(err.value)


def test_the_defaults_and_the_experiments_pass(compose_cfg) -> None:
    for exp in ("net0", "net5", "paper"):
        validate(compose_cfg([f"experiment={exp}"]))
    validate(compose_cfg(["trainer.max_windows_per_epoch=1000", "trainer.patience=0", "seed=0"]))


def test_a_batch_that_cannot_fit_is_refused_before_training(compose_cfg) -> None:
    default = compose_cfg([])
    huge = compose_cfg(["windows.width=100000"])
    assert training_batch_bytes(huge) > 1000 * training_batch_bytes(default)
    check_training_memory(default, 24 * 2**30, "this machine's CPU")
    with pytest.raises(ResourceError, match=r"windows.width=100000.*GiB free. Fix: lower windows.width"):
        check_training_memory(huge, 24 * 2**30, "this machine's CPU")


def test_negative_class_gives_the_two_class_uar(tiny_cfg, mlflow_uri: str, compose_cfg) -> None:
    from paraling.pipeline.experiment import run_experiment

    assert compose_cfg([]).corpus.negative_class == "No_Food"  # the demo corpus's
    assert compose_cfg(["corpus=csv", "corpus.path=x.csv"]).corpus.negative_class is None
    from paraling.scoring.metrics import uar

    res = run_experiment(tiny_cfg("corpus.negative_class=noise"))
    oof, neg = res.oof, list(res.oof.classes).index("noise")
    s = oof.fold >= 0
    binary = uar((oof.y[s] == neg).astype(int), (oof.proba[s].argmax(1) == neg).astype(int), 2)
    assert res.metrics["uar_binary"] == pytest.approx(binary)  # noise vs the rest, from the same predictions
    assert "uar_binary" not in run_experiment(tiny_cfg()).metrics
    with pytest.raises(ConfigError, match=r"corpus.negative_class='No_Food' is not a class of this corpus"):
        run_experiment(tiny_cfg("corpus.negative_class=No_Food"))
