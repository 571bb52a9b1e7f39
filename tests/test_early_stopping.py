"""Early stopping keeps and restores the weights of the best validation epoch."""

import torch
from torch import nn

from mnistlab.training import EarlyStopping


def test_restores_best_epoch_when_validation_gets_worse():
    model = nn.Linear(2, 1)
    stopper = EarlyStopping(mode="max", patience=2)
    val_accuracy = [0.50, 0.70, 0.65, 0.60, 0.80]  # gets worse after epoch 2
    for epoch, value in enumerate(val_accuracy, start=1):
        with torch.no_grad():
            model.weight.fill_(float(epoch))  # the weights "remember" which epoch they came from
        stopper.update(value, epoch, model)
        if stopper.should_stop:
            break
    assert epoch == 4, "patience 2: epochs 3 and 4 did not improve, so training stops after epoch 4"
    assert stopper.best_epoch == 2 and stopper.best_value == 0.70
    assert model.weight.flatten()[0].item() == 4.0
    stopper.restore_best(model)
    assert model.weight.flatten()[0].item() == 2.0


def test_loss_mode_and_min_delta():
    model = nn.Linear(1, 1)
    stopper = EarlyStopping(mode="min", patience=1, min_delta=0.01)
    assert stopper.update(1.0, 1, model)
    assert not stopper.update(0.995, 2, model), "an improvement smaller than min_delta does not count"
    assert stopper.should_stop and stopper.best_epoch == 1


def test_without_patience_never_stops_but_still_tracks_best():
    model = nn.Linear(1, 1)
    stopper = EarlyStopping(mode="max", patience=None)
    for epoch, value in enumerate([0.9, 0.1, 0.1, 0.1], start=1):
        stopper.update(value, epoch, model)
    assert not stopper.should_stop and stopper.best_epoch == 1


def test_snapshot_is_a_copy_not_a_view():
    model = nn.Linear(1, 1)
    stopper = EarlyStopping()
    stopper.update(0.5, 1, model)
    with torch.no_grad():
        model.weight.add_(1.0)
    assert not torch.equal(stopper.best_state["weight"], model.weight)
