"""One typed configuration for a training run.

The same :class:`TrainConfig` is built by the CLI (or by hand in a notebook), validated once, written to the
run folder as ``config.json``, stored inside every checkpoint, and read back by :func:`mnistlab.load_run`.
Units are given in the comments; "step" means one optimiser update on one mini-batch.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, get_args

from mnistlab.errors import ConfigError

Normalize = Literal["standardize", "center", "scale", "raw"]
NormStats = Literal["global", "per-pixel"]
OptimizerName = Literal["sgd", "adam", "adamw"]
ScheduleName = Literal["constant", "step", "cosine", "onecycle"]
Monitor = Literal["val_loss", "val_accuracy"]
AugmentKind = Literal["none", "affine", "elastic", "both"]


@dataclass
class DataConfig:
    dataset: str = "mnist"
    data_dir: str | None = None  # None: MNISTLAB_DATA, shipped copy, user cache, download (in that order)
    download: bool = True  # allow a download when no local copy is found
    # 5,000 of the 60,000 training images are held out for early stopping and model selection. The lecture
    # uses 50,000/10,000; 5,000 already gives a validation accuracy with a standard error of about 0.15
    # percentage points at 99 %, and every extra training image helps the final model.
    val_size: int = 5000  # images
    normalize: Normalize = "standardize"  # zero-centre, then divide by the std (fitted on the train split)
    norm_stats: NormStats = "global"  # one mean/std for all pixels, or one per pixel
    train_subset: int | None = None  # use only the first N (shuffled) training images; None = all
    # Seed of the train/validation split; None = the run's seed. Committee members share one split (so the
    # committee has one validation set) while differing in initialisation, data order and distortions.
    split_seed: int | None = None


@dataclass
class ModelConfig:
    name: str = "cnn"  # a name from mnistlab.models.model_names()
    hidden: tuple[int, ...] | None = None  # mlp only: hidden-layer widths; None = the model's default
    dropout: float | None = None  # None = the model's default
    width: float = 1.0  # multiplies the default channel counts of conv models


@dataclass
class OptimConfig:
    optimizer: OptimizerName = "sgd"
    lr: float = 0.1  # peak learning rate
    momentum: float = 0.9  # SGD only
    nesterov: bool = True  # SGD only
    weight_decay: float = 5e-4  # L2, applied by the optimiser (decoupled for AdamW)
    schedule: ScheduleName = "onecycle"
    warmup: float = 0.25  # onecycle: fraction of all steps spent rising to the peak lr
    step_size: int = 1  # step schedule: epochs between decays
    gamma: float = 0.7  # step schedule: lr multiplier at each decay
    final_lr_fraction: float = 0.001  # cosine/onecycle: end lr as a fraction of the peak
    label_smoothing: float = 0.0


@dataclass
class AugmentConfig:
    """Random distortions of the training images (mnistlab.data.augment); never of validation or test.

    Each magnitude is the half-width of a uniform draw, per image: e.g. ``rotate=10`` draws an angle in
    [-10, 10] degrees. Only the magnitudes of the chosen ``kind`` are used.
    """

    kind: AugmentKind = "none"  # none | affine | elastic | both (affine and elastic in one sampling grid)
    rotate: float = 10.0  # degrees
    scale: float = 0.1  # fraction: zoom factor in [1 - scale, 1 + scale]
    shear: float = 10.0  # degrees, horizontal shear (x += tan(angle) * y)
    translate: float = 2.0  # pixels, per axis
    elastic_alpha: float = 34.0  # pixels: scale of the smoothed displacement field (Simard et al. 2003)
    elastic_sigma: float = 6.0  # pixels: std of the Gaussian that smooths it
    # The last N epochs train on undistorted images: resampling blurs every distorted digit a little, and the
    # test digits are sharp, so the final low-lr steps (and BatchNorm's running statistics) see sharp ones.
    clean_epochs: int = 0

    def problems(self) -> list[tuple[bool, str]]:
        return [
            (
                self.kind in get_args(AugmentKind),
                f"augment must be one of {', '.join(get_args(AugmentKind))}",
            ),
            (0 <= self.rotate <= 180, f"rotate must be in [0, 180] degrees, got {self.rotate}"),
            (0 <= self.scale < 1, f"scale must be in [0, 1), got {self.scale}"),
            (0 <= self.shear < 90, f"shear must be in [0, 90) degrees, got {self.shear}"),
            (0 <= self.translate <= 28, f"translate must be in [0, 28] pixels, got {self.translate}"),
            (self.elastic_alpha >= 0, f"elastic alpha must be >= 0 pixels, got {self.elastic_alpha}"),
            (self.elastic_sigma > 0, f"elastic sigma must be > 0 pixels, got {self.elastic_sigma}"),
            (self.clean_epochs >= 0, f"clean epochs must be >= 0, got {self.clean_epochs}"),
        ]


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    epochs: int = 2  # maximum number of passes over the training split
    batch_size: int = 128  # global mini-batch size, images per step
    eval_batch_size: int = 2000  # images per forward pass at evaluation; affects speed only
    patience: int | None = None  # early stopping: epochs without improvement; None = never stop early
    monitor: Monitor = "val_accuracy"  # what early stopping and best-weights selection look at
    min_delta: float = 0.0  # smallest change of the monitored value that counts as an improvement
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int | None = None  # torch intra-op CPU threads; None = torch's default
    channels_last: bool = False  # memory format for conv models (helps on GPU)
    amp: bool = False  # bf16 autocast (GPU); off by default on CPU
    compile: bool = False  # torch.compile the model
    cuda_graphs: bool = True  # on CUDA, replay each training step as one CUDA graph (not with compile or DDP)
    dry_run: bool = False  # run a few batches and stop (smoke test)
    dry_run_batches: int = 3
    max_steps: int | None = None  # stop each epoch after this many steps (smoke tests, benchmarks)
    out: str | None = None  # run folder; None = runs/<timestamp>-<model>
    quiet: bool = False
    progress: bool = True  # Rich progress bar when attached to a terminal

    # ---- validation --------------------------------------------------------------------------------
    def validate(self) -> TrainConfig:
        """Raise ConfigError for values that would fail later or silently do the wrong thing."""
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
            (self.eval_batch_size >= 1, f"eval batch size must be >= 1, got {self.eval_batch_size}"),
            (self.optim.lr > 0, f"learning rate must be > 0, got {self.optim.lr}"),
            (self.optim.weight_decay >= 0, f"weight decay must be >= 0, got {self.optim.weight_decay}"),
            (0 <= self.optim.label_smoothing < 1, "label smoothing must be in [0, 1)"),
            (0 < self.optim.warmup < 1, f"warmup must be in (0, 1), got {self.optim.warmup}"),
            (self.data.val_size >= 0, f"validation size must be >= 0, got {self.data.val_size}"),
            (self.patience is None or self.patience >= 1, "patience must be >= 1"),
            (self.threads is None or self.threads >= 1, "threads must be >= 1"),
            (self.model.dropout is None or 0 <= self.model.dropout < 1, "dropout must be in [0, 1)"),
            (self.model.width > 0, "width must be > 0"),
            (self.patience is None or self.data.val_size > 0, "early stopping needs a validation split"),
            *self.augment.problems(),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        return self

    # ---- serialisation -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error so that typos do not pass silently."""
        return _build(cls, raw)


def _build(cls: type, raw: dict[str, Any]) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = set(raw) - set(known)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} keys: {', '.join(sorted(unknown))}")
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        default = (
            known[name].default_factory if known[name].default_factory is not dataclasses.MISSING else None
        )
        if default is not None and dataclasses.is_dataclass(default):
            kwargs[name] = _build(default, value)
        elif name == "hidden" and value is not None:
            kwargs[name] = tuple(int(v) for v in value)
        else:
            kwargs[name] = value
    return cls(**kwargs)
