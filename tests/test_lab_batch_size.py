"""Updates-per-epoch arithmetic, checked against the batching and the training loop."""

from __future__ import annotations

import pytest
import torch

from mnistlab.data import TensorSplit
from mnistlab.lab.batch_size import updates_per_epoch
from mnistlab.training import train_one_epoch


@pytest.mark.parametrize("batch", [1, 7, 32, 100, 128])
def test_updates_per_epoch_matches_the_training_loop(batch):
    n = 100
    split = TensorSplit(torch.randn(n, 1, 28, 28), torch.randint(0, 10, (n,)))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    stats = train_one_epoch(model, split.batches(batch, shuffle=True, generator=torch.Generator()), optimizer)
    assert stats.steps == len(stats.step_losses) == updates_per_epoch(n, batch) == split.num_batches(batch)
    assert stats.count == n
