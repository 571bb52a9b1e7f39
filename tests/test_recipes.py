"""Recipes: every model has a default one, the long-budget ones distort, and distorted training still learns."""

from __future__ import annotations

import pytest

import mnistlab
from mnistlab.errors import ConfigError
from mnistlab.models import model_names
from mnistlab.recipes import COMMITTEE_MODEL, LONG_RECIPES, long_recipe, recipe


@pytest.mark.parametrize("name", model_names())
def test_every_model_has_a_valid_default_recipe_for_itself(name):
    config = recipe(name).validate()
    assert config.model.name == name


def test_default_recipes_of_the_original_models_do_not_distort():
    """Distortions came with the long budget: the existing recipes and their figures are unchanged."""
    for name in ("cnn", "mlp", "lenet5", "lenet-wide", "pytorch-example"):
        assert recipe(name).augment.kind == "none"


@pytest.mark.parametrize("name", sorted(LONG_RECIPES))
def test_long_recipes_distort_and_train_longer(name):
    config = long_recipe(name).validate()
    assert config.model.name == name and config.augment.kind == "both"
    assert config.epochs > recipe(name).epochs and config.optim.schedule == "onecycle"
    assert recipe("committee").model.name == COMMITTEE_MODEL and recipe("committee").augment.kind != "none"


def test_a_model_without_a_long_recipe_keeps_its_own_and_an_unknown_model_is_a_config_error():
    assert long_recipe("mlp").to_dict() == recipe("mlp").to_dict()
    with pytest.raises(ConfigError, match="unknown model 'resnet'"):
        long_recipe("resnet")


def test_distorted_training_still_learns(tmp_path):
    """One epoch of the cnn recipe on distorted batches (both) still passes 98 % on the undistorted test set."""
    config = recipe("cnn")
    config.augment.kind = "both"
    config.quiet = True
    config.out = str(tmp_path / "cnn")
    run = mnistlab.train(config)
    assert run.summary["test_accuracy"] >= 0.98, run.summary
