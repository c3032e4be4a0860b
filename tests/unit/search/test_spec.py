"""Study files: validation before any trial, shipped studies, schema probing, samplers/pruners, reporter steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from paraling.config import SWEEPS_DIR
from paraling.errors import ConfigError, Pruned
from paraling.search.probe import check_against_config
from paraling.search.samplers import make_pruner, make_sampler
from paraling.search.spec import load_study_spec, parse_study_spec
from paraling.search.trial import TrialReporter
from paraling.search.worker import compose_fn, hydra_context

optuna.logging.set_verbosity(optuna.logging.WARNING)

BASE: dict[str, Any] = {"space": {"model.n_blocks": [1, 2]}, "n_trials": 4}


def _spec(**changes: Any) -> Any:
    return parse_study_spec({**BASE, **changes}, "study.yaml", "s")


def test_defaults() -> None:
    s = _spec()
    assert (s.study_name, s.direction, s.metric, s.prune_on, s.sampler.name, s.pruner.name) == (
        "s",
        "maximize",
        "uar",
        "val_uar",
        "tpe",
        "median",
    )
    assert s.max_failures == 3 and _spec(n_trials=40).max_failures == 10 and _spec(failure_budget=1).max_failures == 1
    assert s.with_options(n_trials=9, study_name="t").n_trials == 9


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"n_trails": 3}, r"study\.yaml: n_trails is not a study setting \(did you mean 'n_trials'\?\)"),
        ({"sampler": {"name": "tpee"}}, r"sampler\.name must be one of .* name='tpee' \(did you mean 'tpe'\?\)"),
        ({"sampler": {"name": "tpe", "n_startup_trial": 3}}, r"sampler\.n_startup_trial is not an argument of .*TPE"),
        ({"sampler": {"name": "tpe", "seed": "x"}}, r"sampler\.seed must be an integer"),
        ({"sampler": {"name": "qmc", "qmc_type": "bogus"}}, r"sampler: optuna's QMCSampler rejects .*qmc_type"),
        ({"pruner": {"name": "median", "n_warmup_steps": -2}}, r"pruner: optuna's MedianPruner rejects"),
        ({"pruner": {"name": "hyperband", "eta": 3}}, r"pruner\.eta is not an argument of optuna's HyperbandPruner"),
        ({"direction": "up"}, r"direction must be 'maximize' or 'minimize', but got direction='up'"),
        ({"metric": "uarr"}, r"metric must name a result metric"),
        ({"direction": "minimize"}, r"prune_on=val_uar is maximised but direction=minimize"),
        ({"n_trials": None}, r"set n_trials and/or timeout"),
        ({"n_trials": 0}, r"n_trials must be > 0, but got 0"),
        ({"failure_budget": 1.5}, r"failure_budget must be an integer > 0"),
        ({"overrides": "trainer.epochs=1"}, r"overrides must be a list"),
        ({"overrides": ["trainer.epochs"]}, r"overrides\[0\] must look like key=value"),
        ({"storage": {"url": "x", "grace_period": 5, "heartbeat_interval": 10}}, r"storage.grace_period must exceed"),
        ({"study_name": "a b"}, r"study_name must be a name"),
        ({"sampler": "grid", "n_trials": 3, "space": {"a": [1, 2]}}, r"n_trials=3 exceeds the 2 points of the grid"),
        (
            {
                "sampler": "grid",
                "space": {"a": [1, 2], "b": {"type": "int", "low": 0, "high": 1, "condition": "a > 1"}},
            },
            r"sampler\.name=grid does not support conditional parameters \(space\.b",
        ),
        ({"space": {"a": {"type": "float", "low": 0, "high": 1}}, "sampler": "grid"}, r"grid sampler needs `step`"),
    ],
)
def test_bad_study_files_fail_naming_the_field(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _spec(**changes)


def test_grid_defaults_n_trials_to_grid_size_and_builds_sampler() -> None:
    s = parse_study_spec({"space": {"a": [1, 2], "b": [3, 4, 5]}, "sampler": {"name": "grid"}}, "g.yaml", "g")
    assert s.n_trials == 6
    assert isinstance(make_sampler(s.sampler, s.space), optuna.samplers.GridSampler)
    with pytest.raises(ConfigError, match="--n-trials: n_trials=7 exceeds"):
        s.with_options(n_trials=7)


@pytest.mark.parametrize("name", ["tpe", "random", "cmaes", "gp", "qmc"])
def test_every_sampler_builds(name: str) -> None:
    s = _spec(sampler={"name": name, "seed": 3})
    assert make_sampler(s.sampler, s.space, seed=5) is not None


@pytest.mark.parametrize("name", ["median", "percentile", "successive_halving", "hyperband", "none"])
def test_every_pruner_builds(name: str) -> None:
    kwargs = {"percentile": 25.0} if name == "percentile" else {}
    s = _spec(pruner={"name": name, **kwargs})
    assert isinstance(make_pruner(s.pruner), optuna.pruners.BasePruner)


@pytest.mark.parametrize("name", ["demo", "paper"])
def test_shipped_studies_validate_against_the_config(name: str) -> None:
    spec = load_study_spec(SWEEPS_DIR / f"{name}.yaml")
    with hydra_context():
        cfg = check_against_config(spec, [], compose_fn())
    assert cfg.tracking.enabled
    assert spec.n_trials == (12 if name == "demo" else 150)


def _probe(space: dict, extra: list[str] | None = None, overrides: list[str] | None = None) -> None:
    spec = parse_study_spec({"space": space, "n_trials": 2, "overrides": overrides or []}, "p.yaml", "p")
    with hydra_context():
        check_against_config(spec, extra or [], compose_fn())


@pytest.mark.parametrize(
    ("space", "extra", "message"),
    [
        ({"model.n_blok": [1, 2]}, [], r"space\.model\.n_blok: no config key 'model\.n_blok'"),
        ({"model.n_blocks": {"type": "float", "low": 1.5, "high": 2.5}}, [], r"space\.model\.n_blocks: value 1\.5"),
        ({"aggregation": ["mean", "median_vote"]}, [], r"space\.aggregation: value 'median_vote' does not fit"),
        ({"model.dropout_conv.7": [0.1]}, [], r"space\.model\.dropout_conv\.7"),
        ({"model.n_blocks": [1, 2]}, ["model.n_blocks=3"], r"override 'model\.n_blocks=3' sets model\.n_blocks"),
        ({"model.n_blocks": [1, 2]}, ["trainer.epoch=3"], r"overrides \[.*trainer\.epoch=3.*\]: Could not override"),
    ],
)
def test_config_probe_names_the_field(space: dict, extra: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _probe(space, extra)


def test_load_study_spec_reports_yaml_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("space: {a: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: cannot read the study file"):
        load_study_spec(bad)
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"space": {"a": [1, 2]}, "n_trials": 2}))
    assert load_study_spec(good).study_name == "good"
    with pytest.raises(ConfigError, match="study file 'nope' not found"):
        load_study_spec("nope")


def test_reporter_steps_are_monotone_over_folds_and_prune() -> None:
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    trial = study.ask()
    rep = TrialReporter(trial, epochs=3)
    for fold in range(2):
        for epoch in range(3):
            rep.on_epoch_end(fold, epoch, {"val_uar": 0.1 * (fold * 3 + epoch), "train_loss": 1.0})
    rep.on_epoch_end(0, 0, {"train_loss": 1.0})  # no val_uar: nothing reported
    assert sorted(study._storage.get_trial(trial._trial_id).intermediate_values) == [0, 1, 2, 3, 4, 5]
    pruning = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=2.0))
    t2 = pruning.ask()
    with pytest.raises(Pruned, match="pruned at fold 1, epoch 0"):
        TrialReporter(t2, epochs=2).on_epoch_end(1, 0, {"val_uar": 0.5})


def test_ensemble_block() -> None:
    assert _spec().ensemble is None
    e = _spec(ensemble={"method": "top-k", "top_k": 2, "register": "m"}).ensemble
    assert (e.method, e.combiner, e.top_k, e.bagging, e.register, e.alias) == ("top-k", "mean", 2, 0, "m", "champion")
    assert load_study_spec("demo").ensemble is not None  # the packaged demo study ends with its ensemble
    for bad, needle in (
        ({"method": "best"}, "ensemble.method"),
        ({"combiner": "max"}, "ensemble.combiner"),
        ({"top_k": 0}, "ensemble.top_k"),
        ({"bagging": -1}, "ensemble.bagging"),
        ({"register": ""}, "ensemble.register"),
        ({"members": 3}, "ensemble.members is not an ensemble setting"),
        ([1], "ensemble must be a mapping"),
    ):
        with pytest.raises(ConfigError, match=needle):
            _spec(ensemble=bad)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        (
            {"model.n_blocks": {"type": "int", "low": -5, "high": 0}},
            r"space\.model\.n_blocks: .*model\.n_blocks must be",
        ),
        ({"trainer.lr_start": {"type": "float", "low": 0.0, "high": 0.1}}, r"space\.trainer\.lr_start: .*must be > 0"),
        ({"trainer.lr_start": {"type": "float", "low": 0.01, "high": float("inf")}}, r"high must be a finite number"),
        ({"trainer.lr_start": {"type": "float", "low": float("nan"), "high": 0.1}}, r"low must be a finite number"),
    ],
)
def test_check_refuses_spaces_that_can_only_fail(space: dict, message: str) -> None:
    """`sweep --check` used to accept them; every trial would then have failed."""
    with pytest.raises(ConfigError, match=message):
        _probe(space)


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ({"type": "int", "low": 0, "high": 10**12}, r"1000000000001 grid values"),
        ({"type": "float", "low": 0.0, "high": 1.0, "step": 1e-12}, r"grid values for x; more than 10000"),
    ],
)
def test_a_huge_grid_is_refused_before_it_is_built(param: dict, message: str) -> None:
    """Computing the size first: building 10^12 values was a MemoryError or a hang."""
    spec = parse_study_spec({"space": {"x": param}, "sampler": {"name": "random"}, "n_trials": 2}, "g.yaml", "g")
    with pytest.raises(ConfigError, match=message):
        spec.space.grid()


def test_a_grid_with_too_many_points_in_all_is_refused() -> None:
    space = {f"p{i}": {"type": "int", "low": 0, "high": 99} for i in range(4)}  # 10^8 points
    spec = parse_study_spec({"space": space, "sampler": {"name": "random"}, "n_trials": 2}, "g.yaml", "g")
    with pytest.raises(ConfigError, match=r"more than 1000000 points"):
        spec.space.grid()


def test_a_study_file_that_is_not_utf8_is_one_error(tmp_path: Path) -> None:
    bad = tmp_path / "latin.yaml"
    bad.write_bytes("description: caf\xe9\nspace: {a: [1, 2]}\nn_trials: 2\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin\.yaml: the study file is not UTF-8 text"):
        load_study_spec(bad)


@pytest.mark.parametrize("cond", ["{j} < model.n_blocks", "{} < model.n_blocks", "{i.x} < model.n_blocks"])
def test_a_foreach_condition_with_an_unknown_placeholder_is_one_error(cond: str) -> None:
    space = {
        "model.n_blocks": [1, 2],
        "model.dropout_conv.{i}": {
            "type": "float",
            "low": 0.0,
            "high": 0.5,
            "foreach": {"i": [0, 1]},
            "condition": cond,
        },
    }
    with pytest.raises(ConfigError, match=r"is not a foreach placeholder; foreach defines \['i'\]"):
        parse_study_spec({"space": space, "n_trials": 2}, "f.yaml", "f")


@pytest.mark.parametrize("override", ["tracking.log_model=false", "tracking=none"])
def test_an_ensemble_to_register_without_logged_models_is_refused_at_check(override: str) -> None:
    """It ran every trial, then logged 'nothing can be registered' and exited 0."""
    spec = parse_study_spec(
        {"space": {"model.n_blocks": [1, 2]}, "n_trials": 2, "overrides": [override], "ensemble": {"register": "m"}},
        "e.yaml",
        "e",
    )
    with hydra_context(), pytest.raises(ConfigError, match=r"ensemble\.register: 'm'"):
        check_against_config(spec, [], compose_fn())
