"""Search spaces: parsing, conditions, foreach, override text, validation errors naming the field."""

from __future__ import annotations

import optuna
import pytest

from paraling.errors import ConfigError
from paraling.search.space import SearchSpace, format_value

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = {
    "model.n_blocks": {"type": "int", "low": 1, "high": 3},
    "model.dropout_conv.{i}": {
        "type": "float",
        "low": 0.0,
        "high": 0.5,
        "step": 0.1,
        "foreach": {"i": [0, 1, 2]},
        "condition": "{i} < model.n_blocks",
    },
    "windows.width": [11, 15],
    "trainer.lr_start": {"type": "float", "low": 1e-3, "high": 0.1, "log": True},
    "transfer.layers": [[], ["conv1"], ["conv1", "conv2"]],
}


def test_parse_expands_foreach_in_order() -> None:
    space = SearchSpace.from_mapping(SPACE)
    assert space.names == [
        "model.n_blocks",
        "model.dropout_conv.0",
        "model.dropout_conv.1",
        "model.dropout_conv.2",
        "windows.width",
        "trainer.lr_start",
        "transfer.layers",
    ]
    p = space.params[2]
    assert p.conditions[0].text == "1 < model.n_blocks"
    assert space.params[4].kind == "categorical" and space.params[4].choices == (11, 15)
    assert space.params[6].choices == ("[]", "[conv1]", "[conv1,conv2]") and space.params[6].encoded


def test_conditional_params_exist_only_for_existing_blocks() -> None:
    space = SearchSpace.from_mapping(SPACE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen_blocks = set()
    for _ in range(25):
        trial = study.ask()
        values = space.suggest(trial)
        n = values["model.n_blocks"]
        seen_blocks.add(n)
        assert {k for k in values if k.startswith("model.dropout_conv.")} == {
            f"model.dropout_conv.{i}" for i in range(n)
        }
        assert set(trial.params) == set(values)
        study.tell(trial, 0.5)
    assert seen_blocks == {1, 2, 3}


def test_overrides_are_hydra_text() -> None:
    space = SearchSpace.from_mapping(SPACE)
    ov = space.overrides(
        {"model.n_blocks": 2, "model.dropout_conv.1": 0.30000000000000004, "transfer.layers": "[conv1,conv2]"}
    )
    assert ov == ["model.n_blocks=2", "model.dropout_conv.1=0.3", "transfer.layers=[conv1,conv2]"]
    assert format_value(True) == "true" and format_value(None) == "null" and format_value("a b") == "'a b'"
    assert format_value({"a": [1, "x"]}) == "{a:[1,x]}"


def test_condition_operators_and_inactive_parents() -> None:
    space = SearchSpace.from_mapping(
        {
            "transfer": ["none", "conv"],
            "transfer.freeze_epochs": {"type": "int", "low": 0, "high": 5, "condition": "transfer != none"},
            "trainer.patience": {"type": "int", "low": 1, "high": 3, "condition": "transfer.freeze_epochs in [1, 2]"},
            "model.n_blocks": {
                "type": "int",
                "low": 1,
                "high": 5,
                "condition": "transfer == conv and transfer.freeze_epochs <= 4",
            },
        }
    )
    c = space.params[1].conditions[0]
    assert c.holds({"transfer": "conv"}) and not c.holds({"transfer": "none"}) and not c.holds({})
    assert not space.params[2].active({"transfer": "none"})  # parent inactive → child inactive
    assert space.active_values({"transfer": "none", "transfer.freeze_epochs": 3}) == {"transfer": "none"}
    assert space.corner(high=True)["transfer"] == "conv" and "transfer.freeze_epochs" in space.corner(high=True)


def test_grid_values() -> None:
    space = SearchSpace.from_mapping(
        {
            "a": {"type": "float", "low": 0.0, "high": 0.3, "step": 0.1},
            "b": {"type": "int", "low": 2, "high": 6, "step": 2},
        }
    )
    assert space.grid() == {"a": [0.0, 0.1, 0.2, 0.3], "b": [2, 4, 6]}
    with pytest.raises(ConfigError, match=r"space\.c.*needs `step`"):
        SearchSpace.from_mapping({"c": {"type": "float", "low": 0.0, "high": 1.0}}).grid()


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"a": {"type": "floaty", "low": 0, "high": 1}}, r"space\.a\.type must be one of .* type='floaty'"),
        ({"a": {"type": "float", "low": 1.0, "high": 0.5}}, r"space\.a: low must be <= high, but got low=1\.0"),
        ({"a": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}, r"space\.a: log scale needs low > 0"),
        ({"a": {"type": "int", "low": 0.5, "high": 3}}, r"space\.a\.low must be an integer"),
        ({"a": {"type": "float", "low": 0.1, "high": 1.0, "log": True, "step": 0.1}}, "log and step cannot"),
        ({"a": {"type": "float", "high": 1.0}}, r"space\.a\.low is required"),
        ({"a": {"type": "float", "low": 0, "high": 1, "stpe": 0.1}}, r"space\.a: unknown key\(s\) \['stpe'\]"),
        ({"a": {"type": "categorical", "choices": []}}, r"space\.a\.choices must be a non-empty list"),
        ({"a": [1, 1]}, r"space\.a\.choices has duplicates"),
        (
            {"a": {"type": "int", "low": 0, "high": 3, "condition": "b > 1"}},
            r"space\.a\.condition.*must name another parameter of the space",
        ),
        ({"a": [1, 2], "b": {"type": "int", "low": 0, "high": 3, "condition": "a >> 1"}}, r"cannot parse condition"),
        ({"x.{i}": {"type": "int", "low": 0, "high": 3}}, r"placeholder.*no `foreach`"),
        ({"x.{i}": {"type": "int", "low": 0, "high": 3, "foreach": {"j": [0]}}}, r"foreach defines \['j'\]"),
        ({"bad key": [1, 2]}, r"is not a Hydra config key"),
        ({}, r"space must be a non-empty mapping"),
    ],
)
def test_space_errors_name_the_field(space: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SearchSpace.from_mapping(space)


def test_a_condition_may_name_a_parameter_defined_later() -> None:
    """A study file re-written by a YAML tool that sorts keys used to be refused: sampling follows the dependencies."""
    ordered = {
        "model.n_blocks": {"type": "int", "low": 1, "high": 3},
        "model.dropout_conv.{i}": {
            "type": "float",
            "low": 0.0,
            "high": 0.5,
            "foreach": {"i": [0, 1, 2]},
            "condition": "{i} < model.n_blocks",
        },
        "trainer.lr_start": {"type": "float", "low": 0.001, "high": 0.1, "log": True},
    }
    sorted_keys = dict(sorted(ordered.items(), reverse=True))  # dropout_conv first: its condition names a later key
    a, b = SearchSpace.from_mapping(ordered), SearchSpace.from_mapping(sorted_keys)
    assert b.names.index("model.n_blocks") < b.names.index("model.dropout_conv.0")
    assert sorted(a.names) == sorted(b.names)
    assert b.corner(False) == a.corner(False)  # n_blocks=1: only dropout_conv.0 is active in both


def test_a_cycle_of_conditions_is_one_error() -> None:
    space = {
        "a": {"type": "int", "low": 0, "high": 3, "condition": "b > 1"},
        "b": {"type": "int", "low": 0, "high": 3, "condition": "a > 1"},
    }
    with pytest.raises(ConfigError, match=r"the conditions of \['a', 'b'\] depend on each other in a cycle"):
        SearchSpace.from_mapping(space)
