"""A committee of networks (Ciresan et al. 2011-2012): the members' softmax outputs combined into one answer.

:class:`Committee` is an ordinary ``nn.Module`` whose forward returns *logits*: the log of the combined
probabilities. Everything that takes a model (validation and test scoring, ``Run.predict``, serving, the
ONNX export) therefore takes a committee unchanged; the export averages the members inside one graph.

Rules, given each member's probabilities p_m (B, 10) for m = 1..M:

- ``mean`` (the default, Ciresan's): p = (1/M) sum_m p_m, computed in log space as
  logsumexp_m(log p_m) - log M, so a probability that underflows in one member cannot make a logit -inf.
- ``vote``: each member votes for its most probable digit (for all of them on an exact tie); the answer is
  the digit with most votes, ties broken by the mean probability. As probabilities:
  (votes + p) / (sum of both), whose argmax is exactly that answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import get_args

import torch
import torch.nn.functional as F
from torch import nn

from mnistlab.config import CombineRule
from mnistlab.errors import ConfigError

LOG_FLOOR = 1e-30  # vote: probabilities below this count as this (log 0 would be -inf); float32-normal


class Committee(nn.Module):
    """``members``: models with the same input; ``rule``: "mean" or "vote" (see the module docstring)."""

    def __init__(self, members: Sequence[nn.Module], rule: CombineRule = "mean") -> None:
        super().__init__()
        if len(members) < 1:
            raise ConfigError("a committee needs at least one member")
        if rule not in get_args(CombineRule):
            raise ConfigError(
                f"unknown combination rule {rule!r}; choose {' or '.join(get_args(CombineRule))}"
            )
        self.members = nn.ModuleList(members)
        self.rule = rule

    def member_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """(M, B, 10): every member's log-probabilities for the batch x (B, 1, 28, 28)."""
        return torch.stack([F.log_softmax(member(x).float(), dim=1) for member in self.members])

    def combine(self, log_probs: torch.Tensor) -> torch.Tensor:
        """Members' log-probabilities (M, B, 10) -> the committee's logits (B, 10), log of its probabilities."""
        if self.rule == "mean":
            # log M as a tensor op: traced (ONNX) without turning the member count into a Python constant
            return torch.logsumexp(log_probs, dim=0) - torch.log(log_probs.new_full((), log_probs.shape[0]))
        votes = (log_probs == log_probs.max(dim=2, keepdim=True).values).float().sum(dim=0)  # (B, 10)
        score = votes + log_probs.exp().mean(dim=0)  # the mean probability (< 1 in all) only breaks ties
        return torch.log((score / score.sum(dim=1, keepdim=True)).clamp_min(LOG_FLOOR))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.combine(self.member_log_probs(x))  # (B, 10) logits
