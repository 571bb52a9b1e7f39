"""A training step replayed as one CUDA graph: for small models the GPU waits on Python, not on arithmetic.

Eagerly, a step of the default cnn (batch 128) took ~2.3 ms on an H200 machine, most of it the host launching
dozens of small kernels one by one (forward, backward, optimiser, metrics) while the GPU idled. A CUDA graph records
those launches once and replays them with one call: the 430-step epoch went from 0.97 s to 0.185 s
(BENCHMARKS.md, GPU section).

What is captured: forward (under autocast if asked), the loss and backward. What is not: the optimiser step,
which runs eagerly after each replay (one fused kernel on CUDA), so the learning-rate schedule stays a plain
float that the scheduler sets each step and checkpoints and resume need nothing new; and the per-step loss
and accuracy sums, a few tiny kernels in :func:`~mnistlab.training.loop.train_one_epoch`.

How (after the PyTorch CUDA-graph notes): the first ``warmup`` batches are ordinary eager steps on a side
stream, run on static input buffers, so that cuDNN, cuBLAS and autograd have allocated what they need;
then the step is captured with the gradients unset, which makes the captured backward *write* each
parameter's gradient into a buffer of the graph's own rather than accumulate. Every later batch of the same
shape is copied into the static buffers and replayed. A batch of another shape (the last, smaller batch of
an epoch) takes the eager path, after which the graph's gradient buffers are put back on the parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from mnistlab.training.loop import eager_step, forward_backward


class GraphedStep:
    """Call with one batch (x (B, 1, 28, 28), y (B,)) on a CUDA device; trains on it; returns (loss, logits).

    The loss is a fresh tensor; the logits are the graph's static output, overwritten by the next replay, so
    use them before the next call.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        label_smoothing: float = 0.0,
        amp: bool = False,
        warmup: int = 3,
    ) -> None:
        self.model, self.optimizer = model, optimizer
        self.label_smoothing, self.amp, self.warmup = label_smoothing, amp, warmup
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_x: torch.Tensor | None = None
        self.static_y: torch.Tensor | None = None
        self.static_grads: list[torch.Tensor | None] = []
        self.static_out: tuple[torch.Tensor, torch.Tensor] | None = None  # (loss, logits)
        self.warm_steps = 0
        self.side_stream: torch.cuda.Stream | None = None  # the warm-up steps' stream, one for all of them
        self.grads_detached = False  # True after an eager step replaced the graph's gradient buffers

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.static_x is None:
            self.static_x, self.static_y = torch.empty_like(x), torch.empty_like(y)
        assert self.static_x is not None and self.static_y is not None
        if x.shape != self.static_x.shape or y.shape != self.static_y.shape:
            self.grads_detached = self.captured
            return self._eager(x, y)
        self.static_x.copy_(x)
        self.static_y.copy_(y)
        if self.graph is None and self.warm_steps < self.warmup:
            self.warm_steps += 1
            return self._side_stream_step()
        if self.graph is None:
            self._capture()
        assert self.graph is not None and self.static_out is not None
        if self.grads_detached:
            for p, g in zip(self.params, self.static_grads, strict=True):
                p.grad = g
            self.grads_detached = False
        self.graph.replay()  # forward + loss + backward into the static gradient buffers
        self.optimizer.step()
        loss, logits = self.static_out
        return loss.clone(), logits  # the caller keeps every step's loss; the static one is overwritten

    def _side_stream_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.side_stream is None:
            self.side_stream = torch.cuda.Stream()
        side = self.side_stream
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            out = self._eager(self.static_x, self.static_y)
        torch.cuda.current_stream().wait_stream(side)
        return out

    def _eager(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss, logits = eager_step(
            self.model, self.optimizer, x, y, label_smoothing=self.label_smoothing, amp=self.amp
        )
        # Detached: a caller holding the autograd graph would keep its AccumulateGrad nodes (bound to the warm-up
        # stream) alive into the capture, which runs on another stream; torch warns about exactly that.
        return loss.detach(), logits.detach()

    def _capture(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)  # the captured backward then allocates and writes them
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            # autocast's weight-cast cache must be off under capture: a cached cast would not be redone on replay.
            loss, logits = forward_backward(
                self.model,
                self.optimizer,
                self.static_x,
                self.static_y,
                label_smoothing=self.label_smoothing,
                amp=self.amp,
                autocast_cache=False,
            )
        self.graph, self.static_out = graph, (loss.detach(), logits.detach())
        # Hold the graph's gradient buffers: an eager step may unset p.grad, and replay writes here regardless.
        self.static_grads = [p.grad for p in self.params]
