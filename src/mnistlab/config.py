"""One typed configuration for a training run, each field declared once.

The same :class:`TrainConfig` is built by the CLI (or by hand in a notebook), validated once, written to the
run folder as ``config.json``, stored inside every checkpoint, and read back by :func:`mnistlab.load_run`.

Each field is declared once, with :func:`opt`: its type (a ``Literal`` lists the choices), its default and a
help text with units. Everything else derives from that declaration: the ``mnistlab train`` flags
(:mod:`mnistlab.cli.config_options`: ``data.val_size`` becomes ``--val-size``), the checks of
:meth:`TrainConfig.validate` for the choices, JSON round trips, and what ``--resume`` may change
(``resume_safe``). Adding a field is one edit here. "Step" means one optimiser update on one mini-batch.

This module imports nothing heavier than the standard library, so the CLI can read it cheaply.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import json
import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from mnistlab.errors import ConfigError

Normalize = Literal["standardize", "center", "scale", "raw"]
NormStats = Literal["global", "per-pixel"]
OptimizerName = Literal["sgd", "adam", "adamw"]
ScheduleName = Literal["constant", "step", "cosine", "onecycle"]
Monitor = Literal["val_loss", "val_accuracy"]
AugmentKind = Literal["none", "affine", "elastic", "both"]
CombineRule = Literal["mean", "vote"]
Engine = Literal["torch", "numpy"]
MAX_WIDTH = 100.0  # model.width: the cnn at 100x has 6,400-channel convolutions
MAX_LAYERS, MAX_UNITS = 100, 10**7  # model.hidden: layers, units per layer
# model.input_width, pixels: MNIST's image width at most; at least a quarter of it, because the resampling's box
# filter (mnistlab.models.width.SUPERSAMPLE) averages 4 samples per output column and a wider squeeze skips ink.
MIN_INPUT_WIDTH, MAX_INPUT_WIDTH = 7, 28
MAX_MEMBERS = 1000  # members: a committee's runs (Ciresan et al. used 35)


def opt(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    short: str | None = None,
    choices: str | None = None,
    resume_safe: bool = False,
) -> Any:
    """Declare a config field: its default, a help text with units, and how the CLI and ``--resume`` see it.

    ``flag`` replaces the field name in the CLI flag (``model.name`` is ``--model``); ``choices`` names the
    registry function of a free-text field as ``"module:function"`` (imported only when the names are asked
    for, so this module stays free of torch and of the layers above it); ``resume_safe`` fields may
    change when a run is resumed (speed, output, length); any other change would make a different run.
    """
    meta = {"help": help, "flag": flag, "short": short, "choices": choices, "resume_safe": resume_safe}
    return field(default=default, metadata=meta)


def section(factory: Callable[[], Any], title: str) -> Any:
    """A nested group of fields, shown under ``title`` in ``--help``; its fields' flags are not prefixed
    (``data.val_size`` is ``--val-size``)."""
    return field(default_factory=factory, metadata={"title": title})


@dataclass
class DataConfig:
    dataset: str = opt("mnist", "Dataset name.", choices="mnistlab.data.registry:dataset_names")
    data_dir: str | None = opt(
        None,
        "Folder with the dataset's four IDX files (.gz or plain); unset: MNISTLAB_DATA, the shipped copy, "
        "the user cache, then a download (in that order).",
    )
    download: bool = opt(True, "Download the dataset when no local copy is found.")
    # 5,000 of the 60,000 training images are held out for early stopping and model selection. The lecture
    # uses 50,000/10,000; 5,000 already gives a validation accuracy with a standard error of about 0.15
    # percentage points at 99 %, and every extra training image helps the final model.
    val_size: int = opt(
        5000, "Training images held out for validation (early stopping, the best epoch), images; 0 = none."
    )
    # The pixel-value transform of the model's input. (app/imageprep's "normalise" is something else: it lays
    # a photo out like an MNIST digit before this transform is applied.)
    normalize: Normalize = opt(
        "standardize",
        "Pixel-value transform fitted on the train split: (x - mean) / std, x - mean, x / 255, or raw 0-255.",
    )
    norm_stats: NormStats = opt("global", "One mean/std for all pixels, or one per pixel (for --normalize).")
    train_subset: int | None = opt(
        None, "Train on only the first N images of the shuffled training split, images; unset = all."
    )
    # Committee members share one split (so the committee has one validation set, and the members the same
    # preprocessing statistics) while differing in initialisation, data order and distortions.
    split_seed: int | None = opt(
        None, "Seed of the train/validation split; unset = --seed. A committee's members share one."
    )


@dataclass
class ModelConfig:
    name: str = opt("cnn", "Model name.", flag="model", choices="mnistlab.models.registry:model_names")
    hidden: tuple[int, ...] | None = opt(
        None, "MLP hidden-layer widths, comma-separated, e.g. 512,256 (units); unset = the model's default."
    )
    dropout: float | None = opt(None, "Dropout probability in [0, 1); unset = the model's default.")
    width: float = opt(
        1.0,
        "Multiplier of the default layer widths: conv channels, and the mlp's hidden units (1.0 = as is).",
    )
    # Ciresan et al. 2012's input variants (mnistlab.models.width): inside the model, so every use sees it.
    input_width: int | None = opt(
        None,
        "Width normalisation: stretch or squeeze each digit's ink to this many pixels wide, centred, before "
        "the network (Ciresan et al. 2012 used 10-20); unset = as written.",
    )


@dataclass
class OptimConfig:
    optimizer: OptimizerName = opt("sgd", "Optimiser.")
    lr: float = opt(0.1, "Peak learning rate (the schedule scales it at each step).")
    momentum: float = opt(0.9, "SGD momentum coefficient (SGD only).")
    nesterov: bool = opt(True, "Nesterov momentum (SGD only).")
    weight_decay: float = opt(
        5e-4, "L2 weight decay coefficient, applied by the optimiser (decoupled for AdamW)."
    )
    schedule: ScheduleName = opt(
        "onecycle",
        "Learning-rate schedule, per step: constant; step (x gamma every step-size epochs); cosine (to "
        "final-lr-fraction); onecycle (linear warm-up from lr/10 to lr, then linear decay).",
    )
    warmup: float = opt(0.25, "onecycle: fraction of all steps spent rising to the peak lr, in (0, 1).")
    step_size: int = opt(1, "step schedule: epochs between two decays.")
    gamma: float = opt(0.7, "step schedule: lr multiplier at each decay.")
    final_lr_fraction: float = opt(
        0.001, "cosine and onecycle: the last step's lr, as a fraction of the peak."
    )
    label_smoothing: float = opt(0.0, "Label smoothing of the cross-entropy targets, in [0, 1).")


@dataclass
class AugmentConfig:
    """Random distortions of the training images (mnistlab.data.augment); never of validation or test.

    Each magnitude is the half-width of a uniform draw, per image: e.g. ``rotate=10`` draws an angle in
    [-10, 10] degrees. Only the magnitudes of the chosen ``kind`` are used.
    """

    kind: AugmentKind = opt(
        "none",
        "Distort every training batch on the device: affine, elastic (Simard 2003), or both in one sampling "
        "grid; validation and test images never.",
        flag="augment",
    )
    rotate: float = opt(10.0, "Distortions: largest rotation, degrees (uniform in +-rotate per image).")
    scale: float = opt(0.1, "Distortions: largest zoom change, fraction (0.1: zoom in [0.9, 1.1]).")
    shear: float = opt(10.0, "Distortions: largest horizontal shear (x += tan(angle) * y), degrees.")
    translate: float = opt(2.0, "Distortions: largest shift per axis, pixels.")
    elastic_alpha: float = opt(
        34.0, "Distortions: scale alpha of the smoothed elastic displacement field, pixels."
    )
    elastic_sigma: float = opt(6.0, "Distortions: std sigma of the Gaussian smoothing the field, pixels.")
    # The last N epochs train on undistorted images: resampling blurs every distorted digit a little and the
    # test digits are sharp, so the final low-lr steps (and BatchNorm's running statistics) see sharp ones.
    clean_epochs: int = opt(0, "Distortions: train the last N epochs on undistorted images.")

    def problems(self) -> list[tuple[bool, str]]:
        """The magnitudes' ranges (the kind's choices are checked with every other Literal field)."""
        return [
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
    model: ModelConfig = section(ModelConfig, "Model")
    data: DataConfig = section(DataConfig, "Data: dataset, validation split, preprocessing")
    optim: OptimConfig = section(OptimConfig, "Optimiser and learning-rate schedule")
    augment: AugmentConfig = section(AugmentConfig, "Distortions of the training images")
    epochs: int = opt(2, "Maximum passes over the training split, epochs.", resume_safe=True)
    batch_size: int = opt(128, "Images per optimiser step (global: shared out among processes).")
    eval_batch_size: int = opt(
        2000,
        "Images per forward pass when scoring validation and test; speed and memory only.",
        resume_safe=True,
    )
    patience: int | None = opt(
        None, "Early stopping: epochs without a --monitor improvement before stopping; unset = never."
    )
    monitor: Monitor = opt(
        "val_accuracy", "Validation metric for early stopping and for the saved best epoch."
    )
    min_delta: float = opt(
        0.0, "Smallest --monitor change that counts as an improvement (accuracy: fraction; loss: nats)."
    )
    seed: int = opt(
        0,
        "Random seed: initial weights, dropout, data order, distortions, and the validation split (unless "
        "--split-seed).",
    )
    device: str = opt("auto", "auto (CUDA when present), cpu, cuda or cuda:N.", resume_safe=True)
    # The numpy engine is mnistlab.scratch, the lecture's MLP by hand (training/numpy_engine.py); its run
    # folder is a normal one (the weights in the torch mlp's format), so everything that reads runs works.
    engine: Engine = opt(
        "torch",
        "What computes the training steps: torch, or numpy (the lecture's MLP by hand, mnistlab.scratch: "
        "mlp with SGD, one CPU process, not resumable). --engine numpy without --model starts from the "
        "engine's own recipe (784-100-100-10, SGD, one-cycle, 8 epochs).",
    )
    threads: int | None = opt(
        None,
        "CPU threads during training: torch's, and also the BLAS threads of --engine numpy (restored "
        "after); unset = the libraries' defaults.",
        resume_safe=True,
    )
    # The recipes turn channels_last on where it made oneDNN's CPU convolutions 25-35 % faster (recipes.py).
    channels_last: bool = opt(False, "channels_last memory format for the conv models.")
    amp: bool = opt(False, "bf16 autocast of the forward pass (for GPUs); every recipe trains in float32.")
    compile: bool = opt(False, "torch.compile the model.")
    cuda_graphs: bool = opt(
        True,
        "On CUDA, replay each training step as one CUDA graph (not with --compile or several processes).",
        resume_safe=True,
    )
    dry_run: bool = opt(False, "Run a few batches of one epoch, write nothing, and stop: checks the set-up.")
    dry_run_batches: int = opt(3, "Training steps of a --dry-run, steps.")
    max_steps: int | None = opt(
        None, "Stop each epoch after this many steps (smoke tests, benchmarks); unset = whole epochs."
    )
    # A recipe search chooses on validation and must not see test figures along the way; the chosen run is
    # scored afterwards, once, with `mnistlab evaluate RUN`.
    score_test: bool = opt(
        True,
        "Score the test split once after training (each member and the committee); --no-score-test "
        "withholds it, for recipe searches (score the chosen run later with `mnistlab evaluate`).",
        resume_safe=True,
    )
    out: str | None = opt(None, "Run folder; unset = runs/<timestamp>-<model>.")
    quiet: bool = opt(False, "Print only errors.", short="-q", resume_safe=True)
    progress: bool = opt(
        True, "Progress bar inside each epoch (on a terminal, when not quiet).", resume_safe=True
    )
    # A committee (mnistlab.training.committee): ``members`` complete runs in RUN/members/K, seeds seed + K,
    # one shared validation split, combined into one model.
    members: int = opt(
        1,
        "Committee: train this many members (seeds seed..seed+N-1, one shared validation split), each a "
        "run in RUN/members/K, and combine them; 1 = one ordinary run.",
    )
    # Members that differ in more than the seed, e.g. the lecture's LeNet beside its wide LeNet. (On split 0's
    # validation images, lenet-wide members mixed into the deep-cnn committee did not help: BENCHMARKS.md.)
    member_models: tuple[str, ...] | None = opt(
        None,
        "Committee of several models: member K trains the (K mod n)-th of these n models, comma-separated "
        "(e.g. deep-cnn,lenet-wide; the first is --model), with that model's long-budget recipe (its "
        "dropout, optimiser and epochs; flags that change those apply to every member; --width and --hidden "
        "are shared); unset = every member trains --model.",
    )
    # Ciresan et al. 2012's committee: columns that see the digits at different widths make different mistakes.
    member_input_widths: tuple[int, ...] | None = opt(
        None,
        "Committee: member K normalises its digits' width (--input-width) to the (K mod n)-th of these, "
        "pixels, comma-separated; 0 = as written (e.g. 0,10,14,18,12); unset = every member takes "
        "--input-width (the two are not combined).",
    )
    combine: CombineRule = opt(
        "mean", "Committee: mean of the members' softmax outputs, or a majority vote (ties: the mean)."
    )
    members_at_once: int | None = opt(
        None,
        "Committee: members trained together as one grouped network (a GPU's launches shared); unset = "
        "all of a process's members on CUDA, one at a time on the CPU.",
        resume_safe=True,
    )

    # ---- validation --------------------------------------------------------------------------------
    def validate(self) -> TrainConfig:
        """Raise ConfigError for values that would fail later or silently do the wrong thing."""
        for ok, message in self._checks():
            if not ok:
                raise ConfigError(message)
        for spec in config_fields(type(self)):
            value = get_value(self, spec.path)
            if spec.literal and value not in spec.literal:
                raise ConfigError(f"{spec.flag} must be one of {', '.join(spec.literal)}; got {value!r}")
        return self

    def _checks(self) -> list[tuple[bool, str]]:
        o, d, m = self.optim, self.data, self.model
        return [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
            (self.eval_batch_size >= 1, f"eval batch size must be >= 1, got {self.eval_batch_size}"),
            (o.lr > 0, f"learning rate must be > 0, got {o.lr}"),
            (o.momentum >= 0, f"momentum must be >= 0, got {o.momentum}"),
            (o.weight_decay >= 0, f"weight decay must be >= 0, got {o.weight_decay}"),
            (0 <= o.label_smoothing < 1, "label smoothing must be in [0, 1)"),
            (0 < o.warmup < 1, f"warmup must be in (0, 1), got {o.warmup}"),
            (o.step_size >= 1, f"step size must be >= 1 epoch, got {o.step_size}"),
            (o.gamma > 0, f"gamma must be > 0, got {o.gamma}"),
            (0 <= o.final_lr_fraction <= 1, "final lr fraction must be in [0, 1]"),
            (d.val_size >= 0, f"validation size must be >= 0, got {d.val_size}"),
            (d.train_subset is None or d.train_subset >= 1, "train subset must be >= 1 image"),
            (self.patience is None or self.patience >= 1, "patience must be >= 1"),
            (self.min_delta >= 0, f"min delta must be >= 0, got {self.min_delta}"),
            (self.threads is None or self.threads >= 1, "threads must be >= 1"),
            (self.dry_run_batches >= 1, "dry-run batches must be >= 1"),
            (self.max_steps is None or self.max_steps >= 1, "max steps must be >= 1"),
            (m.dropout is None or 0 <= m.dropout < 1, "dropout must be in [0, 1)"),
            # The upper bounds are far beyond any MNIST model; they keep a config read from an untrusted
            # file from describing a model too large to even count (runcheck builds it on the meta device).
            (0 < m.width <= MAX_WIDTH, f"width must be in (0, {MAX_WIDTH:g}], got {m.width}"),
            (
                m.hidden is None
                or (0 < len(m.hidden) <= MAX_LAYERS and 1 <= min(m.hidden) <= max(m.hidden) <= MAX_UNITS),
                f"hidden must be 1 to {MAX_LAYERS} layers of 1 to {MAX_UNITS:,} units, got {m.hidden}",
            ),
            (self.patience is None or d.val_size > 0, "early stopping needs a validation split"),
            (1 <= self.members <= MAX_MEMBERS, f"members must be in [1, {MAX_MEMBERS}], got {self.members}"),
            (self.members_at_once is None or self.members_at_once >= 1, "members at once must be >= 1"),
            *self._member_model_problems(),
            *self._input_width_problems(),
            *self.augment.problems(),
        ]

    def member_model(self, index: int) -> ModelConfig:
        """The model of committee member ``index``: ``model``, or in a committee of several models the
        (index mod n)-th of ``member_models`` with ``model``'s width and hidden layers. Everything that shapes a
        member's weights is here, so a committee's model file is rebuilt from its config alone; a member's
        dropout (no weights) comes from its own recipe (:func:`mnistlab.recipes.member_recipe`)."""
        model = copy.deepcopy(self.model)
        if self.member_models:
            model.name = self.member_models[index % len(self.member_models)]
        if self.member_input_widths:
            model.input_width = self.member_input_widths[index % len(self.member_input_widths)] or None
        return model

    def _member_model_problems(self) -> list[tuple[bool, str]]:
        names = self.member_models
        if names is None:
            return []
        return [
            (self.members >= 2, "--member-models needs a committee (--members >= 2)"),
            (1 <= len(names) <= MAX_MEMBERS, f"--member-models takes 1 to {MAX_MEMBERS} models"),
            (
                bool(names) and names[0] == self.model.name,
                f"--member-models must start with the committee's --model ({self.model.name}), got "
                f"{','.join(names[:5])}",
            ),
        ]

    def _input_width_problems(self) -> list[tuple[bool, str]]:
        own, members = self.model.input_width, self.member_input_widths
        used = own is not None or any(members or ())
        return [
            (
                own is None or MIN_INPUT_WIDTH <= own <= MAX_INPUT_WIDTH,
                f"input width must be {MIN_INPUT_WIDTH} to {MAX_INPUT_WIDTH} pixels, got {own}",
            ),
            (
                all(w == 0 or MIN_INPUT_WIDTH <= w <= MAX_INPUT_WIDTH for w in members or ()),
                f"member input widths must be 0 (as written) or {MIN_INPUT_WIDTH} to {MAX_INPUT_WIDTH} pixels",
            ),
            (
                members is None or (self.members >= 2 and 1 <= len(members) <= MAX_MEMBERS),
                f"--member-input-widths needs a committee (--members >= 2) and 1 to {MAX_MEMBERS} widths",
            ),
            (
                members is None or own is None,
                "--input-width and --member-input-widths do not combine: give every member's width in the "
                "list (0 = as written)",
            ),
            # The width normalisation takes each image's darkest value for its background, which one affine
            # map for all pixels keeps; per-pixel statistics give every pixel its own background.
            (
                not used or self.data.norm_stats == "global" or self.data.normalize in ("scale", "raw"),
                "--input-width needs one pixel transform for the whole image: --norm-stats global",
            ),
        ]

    # ---- serialisation -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error so that typos do not pass silently."""
        return _build(cls, raw)


# ---- the field declarations, flattened ---------------------------------------------------------------------
@dataclass(frozen=True)
class FieldSpec:
    """One leaf field of the config, as the CLI and the resume rules see it."""

    path: str  # "data.val_size"
    type: Any  # the resolved annotation, e.g. int | None, or Literal["sgd", "adam", "adamw"]
    default: Any  # the dataclass default
    help: str
    flag: str  # "--val-size"
    short: str | None
    resume_safe: bool
    registry: str | None = None  # "module:function" returning the allowed names
    section: str = "Training run"  # the title of the group the field belongs to

    @property
    def value_type(self) -> Any:
        """The type of a given value: ``int`` for ``int | None``."""
        return strip_optional(self.type)

    @property
    def literal(self) -> tuple[str, ...]:
        """The allowed values of a Literal field; () for other fields."""
        inner = self.value_type
        return tuple(typing.get_args(inner)) if typing.get_origin(inner) is Literal else ()

    def choices(self) -> tuple[str, ...]:
        """Allowed values: the Literal's, or the registry's (imported now); () when free."""
        if self.literal or self.registry is None:
            return self.literal
        module, _, function = self.registry.partition(":")
        return tuple(getattr(importlib.import_module(module), function)())


def config_fields(cls: type = TrainConfig, prefix: str = "", title: str = "Training run") -> list[FieldSpec]:
    """Every leaf field of ``cls`` in declaration order, sections flattened; flags are checked to be unique."""
    specs: list[FieldSpec] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            specs += config_fields(hints[f.name], f"{prefix}{f.name}.", f.metadata.get("title", f.name))
            continue
        if "help" not in f.metadata:
            raise TypeError(f"{cls.__name__}.{f.name} is not declared with opt(): it needs a help text")
        meta = f.metadata
        specs.append(
            FieldSpec(
                path=prefix + f.name,
                type=hints[f.name],
                default=f.default,
                help=meta["help"],
                flag="--" + (meta["flag"] or f.name).replace("_", "-"),
                short=meta["short"],
                resume_safe=meta["resume_safe"],
                registry=meta["choices"],
                section=title,
            )
        )
    flags = [s.flag for s in specs]
    if not prefix and len(set(flags)) != len(flags):
        twice = sorted({x for x in flags if flags.count(x) > 1})
        raise TypeError(
            f"{cls.__name__}: two fields share the flag(s) {', '.join(twice)}; set flag= in opt()"
        )
    return specs


def get_value(config: Any, path: str) -> Any:
    """``get_value(cfg, "optim.lr")`` is ``cfg.optim.lr``."""
    for part in path.split("."):
        config = getattr(config, part)
    return config


def with_values(config: TrainConfig, values: Mapping[str, Any]) -> TrainConfig:
    """A copy of ``config`` with the dotted-path ``values`` set (e.g. ``{"optim.lr": 0.05}``); not validated."""
    out = copy.deepcopy(config)
    for path, value in values.items():
        *parents, name = path.split(".")
        target = get_value(out, ".".join(parents)) if parents else out
        if not hasattr(target, name):
            raise ConfigError(f"unknown config field {path!r}")
        setattr(target, name, value)
    return out


def differences(old: TrainConfig, new: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """{path: (old value, new value)} for every leaf field that differs."""
    out = {}
    for spec in config_fields(type(old)):
        a, b = get_value(old, spec.path), get_value(new, spec.path)
        if a != b:
            out[spec.path] = (a, b)
    return out


# ---- helpers -----------------------------------------------------------------------------------------------
def strip_optional(tp: Any) -> Any:
    """X | None -> X; anything else unchanged."""
    args = typing.get_args(tp)
    if type(None) in args and len(args) == 2:
        return next(a for a in args if a is not type(None))
    return tp


def _build(cls: type, raw: Mapping[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from JSON-like ``raw``: sections recursively, JSON lists back into tuples.

    Each value must have its field's declared type (a config file is input like any other: ``"wide"`` for a
    width would otherwise fail far away, inside a model constructor).
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{cls.__name__}: expected an object, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    unknown = set(raw) - set(hints)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} keys: {', '.join(sorted(unknown))}")
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        tp = strip_optional(hints[name])
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, f"{prefix}{name}.")
            continue
        expected = _type_mismatch(value, hints[name])
        if expected:
            raise ConfigError(f"{prefix}{name} must be {expected}, got {value!r}")
        kwargs[name] = tuple(value) if typing.get_origin(tp) is tuple and value is not None else value
    return cls(**kwargs)


def _type_mismatch(value: Any, tp: Any) -> str | None:
    """None when JSON ``value`` fits the declared type ``tp``; else what it should have been, in words."""
    inner = strip_optional(tp)
    if value is None:
        return None if inner is not tp else "given (not null)"
    if typing.get_origin(inner) is Literal:
        return None if isinstance(value, str) else "a string"
    if typing.get_origin(inner) is tuple:
        element = typing.get_args(inner)[0]  # tuple[int, ...] or tuple[str, ...]
        ok = isinstance(value, list | tuple) and all(_type_mismatch(v, element) is None for v in value)
        return None if ok else f"a list of {'strings' if element is str else 'integers'}"
    if inner is bool:
        return None if isinstance(value, bool) else "true or false"
    if inner is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if inner is float:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return None if number and math.isfinite(value) else "a finite number"
    if inner is str:
        return None if isinstance(value, str) else "a string"
    return None
