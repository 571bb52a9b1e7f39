"""mnistlab.scratch: the lecture's MLP by hand, in NumPy only (it never imports torch).

Read it in this order: :mod:`layers` (Linear and ReLU, forward and backward), :mod:`losses` (softmax
cross-entropy from logits, binary cross-entropy), :mod:`network` (the MLP), :mod:`sgd` (the update rule),
:mod:`data` (standardisation and mini-batches), :mod:`train` (steps, epochs, evaluation), :mod:`convert`
(weights under the torch MLP's names). Tests check every gradient and every update against PyTorch.

    net = MLP(hidden=(256, 128), seed=0)
    sgd = SGD(net.parameters(), momentum=0.9, nesterov=True)
    result = fit(net, sgd, (x_train, y_train), epochs=5, batch_size=128, lr=0.05, val=(x_val, y_val))
"""

from mnistlab.scratch.convert import load_state_dict, to_state_dict
from mnistlab.scratch.data import Standardizer, batch_indices, shuffled_orders
from mnistlab.scratch.layers import Linear, ReLU
from mnistlab.scratch.losses import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    log_softmax,
    softmax_cross_entropy,
)
from mnistlab.scratch.network import MLP
from mnistlab.scratch.sgd import SGD
from mnistlab.scratch.train import FitResult, evaluate, fit, train_epoch, train_step

__all__ = [
    "MLP",
    "SGD",
    "FitResult",
    "Linear",
    "ReLU",
    "Standardizer",
    "batch_indices",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "evaluate",
    "fit",
    "load_state_dict",
    "log_softmax",
    "shuffled_orders",
    "softmax_cross_entropy",
    "to_state_dict",
    "train_epoch",
    "train_step",
]
