"""Train/validation split and mini-batching: coverage, order, shards, reproducibility."""

from __future__ import annotations

import pytest
import torch

from mnistlab.data import TensorSplit, split_train_val


def make_split(n: int) -> TensorSplit:
    """Image i is filled with the value i, so a batch's images tell which indices it holds."""
    images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 28, 28).contiguous()
    return TensorSplit(images, torch.arange(n))


def seen(batches) -> list[int]:
    out: list[int] = []
    for x, y in batches:
        assert torch.equal(x[:, 0, 0, 0].long(), y)  # images and labels stay paired
        out += y.tolist()
    return out


def test_split_train_val_disjoint_seeded_complete() -> None:
    train, val = split_train_val(1000, 100, seed=3)
    assert len(train) == 900 and len(val) == 100 and train.dtype == torch.int64
    assert sorted(torch.cat([train, val]).tolist()) == list(range(1000))
    again = split_train_val(1000, 100, seed=3)
    assert torch.equal(train, again[0]) and torch.equal(val, again[1])
    assert not torch.equal(val, split_train_val(1000, 100, seed=4)[1])
    assert len(split_train_val(10, 0, seed=0)[1]) == 0
    with pytest.raises(ValueError):
        split_train_val(10, 10, seed=0)


@pytest.mark.parametrize("shuffle", [True, False])
def test_each_index_once_per_epoch_with_partial_last_batch(shuffle: bool) -> None:
    data = make_split(103)
    sizes = [len(y) for _, y in data.batches(10, shuffle=shuffle, generator=torch.Generator().manual_seed(0))]
    assert sizes == [10] * 10 + [3] and data.num_batches(10) == 11
    order = seen(data.batches(10, shuffle=shuffle, generator=torch.Generator().manual_seed(0)))
    assert sorted(order) == list(range(103))
    assert (order == list(range(103))) != shuffle


def test_drop_last() -> None:
    data = make_split(103)
    sizes = [len(y) for _, y in data.batches(10, shuffle=True, drop_last=True)]
    assert sizes == [10] * 10 and data.num_batches(10, drop_last=True) == 10


def test_seeded_reproducibility_and_epochs_differ() -> None:
    data = make_split(50)
    gen_a, gen_b = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    epoch1 = seen(data.batches(8, shuffle=True, generator=gen_a))
    assert epoch1 == seen(data.batches(8, shuffle=True, generator=gen_b))
    assert seen(data.batches(8, shuffle=True, generator=gen_a)) != epoch1  # next epoch, new order


@pytest.mark.parametrize("n", [100, 103])
def test_shards_partition_the_same_permutation(n: int) -> None:
    data, world = make_split(n), 4
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(1)).tolist()
    shards = [
        seen(data.batches(5, shuffle=True, generator=torch.Generator().manual_seed(1), shard=(r, world)))
        for r in range(world)
    ]
    per_rank = -(-n // world)
    assert all(len(s) == per_rank for s in shards)  # equal counts (padded)
    assert all(data.num_batches(5, shard=(r, world)) == -(-per_rank // 5) for r in range(world))
    assert set().union(*shards) == set(perm)
    # interleaved: rank r holds every world-th element of the (padded) global permutation
    padded = (perm * 2)[: per_rank * world]
    assert all(shards[r] == padded[r::world] for r in range(world))
    if n % world == 0:
        assert sum(len(s) for s in shards) == len(set().union(*shards))  # disjoint


def test_to_device_and_len() -> None:
    data = make_split(5).to("cpu")
    assert len(data) == 5
    with pytest.raises(ValueError):
        TensorSplit(torch.zeros(3, 1, 28, 28), torch.zeros(2, dtype=torch.long))


@pytest.mark.parametrize("drop_last", [False, True])
def test_batches_across_gather_chunks_follow_the_permutation(drop_last: bool) -> None:
    """Shuffled batches are gathered a chunk (~2,048 images) at a time; the order must not depend on that."""
    data = make_split(5000)
    order = torch.randperm(5000, generator=torch.Generator().manual_seed(5)).tolist()
    batches = list(
        data.batches(96, shuffle=True, generator=torch.Generator().manual_seed(5), drop_last=drop_last)
    )
    assert [len(y) for _, y in batches] == [96] * 52 + ([] if drop_last else [8])
    assert seen(batches) == (order[: 52 * 96] if drop_last else order)
