"""Recipes: every model has a default one, the long-budget ones distort, and distorted training still learns."""

from __future__ import annotations

import pytest

import mnistlab
from mnistlab.errors import ConfigError
from mnistlab.models import model_names
from mnistlab.recipes import COMMITTEE_MODEL, recipe


@pytest.mark.parametrize("name", model_names())
def test_every_model_has_a_valid_default_recipe_for_itself(name):
    config = recipe(name).validate()
    assert config.model.name == name


def test_default_recipes_of_the_original_models_do_not_distort():
    """Distortions came with the long budget: the existing recipes and their figures are unchanged."""
    for name in ("cnn", "mlp", "lenet5", "lenet-wide", "pytorch-example"):
        assert recipe(name).augment.kind == "none"


@pytest.mark.parametrize("name", ["lenet-wide", "deep-cnn"])
def test_long_recipes_distort_and_train_longer(name):
    config = recipe(name, budget="long").validate()
    assert config.model.name == name and config.augment.kind == "both"
    assert config.epochs >= 10 and config.optim.schedule == "onecycle"
    assert recipe(COMMITTEE_MODEL, budget="long").augment.kind != "none"


def test_a_model_without_a_long_recipe_or_an_unknown_budget_is_a_config_error():
    with pytest.raises(ConfigError, match="'mlp' has no long-budget recipe; models with one: lenet-wide"):
        recipe("mlp", budget="long")
    with pytest.raises(ConfigError, match="unknown recipe budget 'huge'"):
        recipe("cnn", budget="huge")
    with pytest.raises(ConfigError, match="unknown model 'resnet'"):
        recipe("resnet", budget="long")


def test_distorted_training_still_learns(tmp_path):
    """One epoch of the cnn recipe on distorted batches (both) still passes 98 % on the undistorted test set."""
    config = recipe("cnn")
    config.augment.kind = "both"
    config.quiet = True
    config.out = str(tmp_path / "cnn")
    run = mnistlab.train(config)
    assert run.summary["test_accuracy"] >= 0.98, run.summary
