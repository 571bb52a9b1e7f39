"""One declaration per config field: the train flags, their help, JSON round trips and the registries derive
from it."""

from __future__ import annotations

import json
import typing
from dataclasses import dataclass

import pytest
import typer
from typer.testing import CliRunner

from mnistlab.cli import train_cmd
from mnistlab.cli.app import _register_commands, app, main
from mnistlab.cli.config_options import ConfigFlags, with_config_options
from mnistlab.config import (
    OptimizerName,
    ScheduleName,
    TrainConfig,
    config_fields,
    get_value,
    opt,
    with_values,
)
from mnistlab.errors import ConfigError
from mnistlab.models import model_names
from mnistlab.recipes import RECIPES, recipe
from mnistlab.training.optim import OPTIMIZERS, SCHEDULES


def train_params() -> dict:
    """The click options of `mnistlab train`, by flag (as the user sees them)."""
    _register_commands()
    command = typer.main.get_command(app).commands["train"]  # type: ignore[attr-defined]
    return {opt: p for p in command.params for opt in (*p.opts, *p.secondary_opts)}


def test_every_config_field_has_a_flag_with_help():
    params = train_params()
    specs = config_fields()
    assert len(specs) >= 38  # every leaf field, sections flattened
    for spec in specs:
        assert spec.flag in params, f"{spec.path} has no flag"
        assert params[spec.flag].help and params[spec.flag].help.strip(), f"{spec.flag} has no help"
        if spec.value_type is bool:
            assert "--no-" + spec.flag[2:] in params, spec.flag


def test_adding_a_field_adds_its_flag_with_its_help():
    """The "one edit": a field declared with opt() on a config class gives a working flag with that help."""

    @dataclass
    class Extended(TrainConfig):
        knob_count: int = opt(3, "A brand-new knob, in widgets.")

    seen: list[ConfigFlags] = []
    extra = typer.Typer()

    @extra.command()
    @with_config_options(Extended)
    def run(config_flags: ConfigFlags) -> None:
        seen.append(config_flags)

    @extra.callback()
    def _root() -> None: ...

    runner = CliRunner()
    assert runner.invoke(extra, ["run", "--knob-count", "5", "--lr", "0.2"]).exit_code == 0
    assert seen == [{"knob_count": 5, "optim.lr": 0.2}]  # only the flags given: the rest keeps the base
    help_text = runner.invoke(extra, ["run", "--help"], env={"COLUMNS": "300"}).output
    assert "--knob-count" in help_text and "A brand-new knob, in widgets." in help_text


def test_a_field_without_a_declaration_or_with_a_taken_flag_is_refused():
    @dataclass
    class Undeclared(TrainConfig):
        bare: int = 3

    with pytest.raises(TypeError, match="not declared with opt"):
        config_fields(Undeclared)

    @dataclass
    class Twice(TrainConfig):
        other_lr: float = opt(0.1, "Another lr.", flag="lr")

    with pytest.raises(TypeError, match="share the flag"):
        config_fields(Twice)


def test_the_flags_that_had_none_reach_the_config(monkeypatch):
    configs: list[TrainConfig] = []
    monkeypatch.setattr(train_cmd, "train", lambda config=None, resume=None, **_: configs.append(config))
    args = ["train", "--warmup", "0.1", "--step-size", "2", "--gamma", "0.5", "--final-lr-fraction", "0.01"]
    args += ["--min-delta", "0.002", "--eval-batch-size", "500", "--dry-run-batches", "2", "--no-progress"]
    args += ["--model", "mlp", "--hidden", "64,32", "--norm-stats", "per-pixel"]
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 0
    (config,) = configs
    expected = recipe("mlp")
    expected.optim.warmup, expected.optim.step_size, expected.optim.gamma = 0.1, 2, 0.5
    expected.optim.final_lr_fraction, expected.min_delta, expected.eval_batch_size = 0.01, 0.002, 500
    expected.dry_run_batches, expected.progress = 2, False
    expected.model.hidden, expected.data.norm_stats = (64, 32), "per-pixel"
    assert config == expected


def test_help_gives_each_default_from_the_recipes():
    text = " ".join(train_params()["--gamma"].help.split())
    assert text.endswith("(default: 0.7)")  # every recipe agrees
    assert train_params()["--lr"].help.endswith("(default: the model's recipe)")  # the recipes differ
    assert train_params()["--model"].help.endswith("(default: cnn)")


def test_json_round_trip_and_unknown_keys():
    config = with_values(recipe("mlp"), {"model.hidden": (64, 32), "optim.lr": 0.01})
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert TrainConfig.from_dict(json.loads(config.to_json())).model.hidden == (64, 32)
    with pytest.raises(ConfigError, match="unknown OptimConfig keys: lrr"):
        TrainConfig.from_dict({"optim": {"lrr": 0.1}})


def test_a_value_outside_a_literal_is_refused_naming_the_flag():
    config = with_values(recipe(), {"optim.optimizer": "rmsprop"})
    with pytest.raises(ConfigError, match="--optimizer must be one of sgd, adam, adamw"):
        config.validate()


def test_with_values_leaves_the_original_alone():
    base = recipe()
    changed = with_values(base, {"optim.lr": 0.5, "epochs": 7})
    assert (base.optim.lr, base.epochs) == (0.1, 1) and (changed.optim.lr, changed.epochs) == (0.5, 7)
    assert get_value(changed, "optim.lr") == 0.5


def test_every_registered_model_has_a_recipe_and_nothing_else_does():
    assert set(RECIPES) == set(model_names())
    for name in model_names():
        assert recipe(name).model.name == name
    with pytest.raises(
        ConfigError, match="unknown model 'resnet'; choose one of: " + ", ".join(model_names())
    ):
        recipe("resnet")


def test_optimiser_and_schedule_registries_are_the_configs_names():
    assert list(OPTIMIZERS) == list(typing.get_args(OptimizerName))
    assert list(SCHEDULES) == list(typing.get_args(ScheduleName))
