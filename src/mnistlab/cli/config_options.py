"""`mnistlab train`'s config flags, generated from the config's field declarations.

Every leaf field of :class:`~mnistlab.config.TrainConfig` (declared once, with :func:`mnistlab.config.opt`)
becomes one Typer option: the flag from the field name (``data.val_size`` -> ``--val-size``), its help text
from the declaration, ``--x/--no-x`` for a bool, the choices of a ``Literal``, comma-separated values for a
tuple. Every option defaults to "not given", which keeps the value of the config the flags are applied to: the
model's recipe, or the run's own config on ``--resume``. So adding a field to the config adds its flag.

How: :func:`with_config_options` gives the command function a generated ``__signature__`` (and matching
``__annotations__``) holding one ``Annotated[..., typer.Option(...)]`` parameter per field, which Typer reads
like any hand-written signature. The command stays an ordinary Typer command (help, types, errors, the
``--nproc`` relaunch all work unchanged) and no second CLI framework is involved; Typer's own vendored click
is never touched directly.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from mnistlab.config import FieldSpec, TrainConfig, config_fields, get_value, with_values
from mnistlab.errors import ConfigError

ConfigFlags = dict[str, Any]  # {field path: value} for the config flags the user gave


def with_config_options(cls: type = TrainConfig) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a command that takes ``config_flags: ConfigFlags``: it gets one option per field of ``cls``."""
    specs = {parameter_name(s): s for s in config_fields(cls)}

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        own = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)  # Typer passes everything by name
            for p in inspect.signature(command, eval_str=True).parameters.values()
            if p.name != "config_flags"
        ]
        clash = {p.name for p in own} & set(specs)
        if clash:
            raise TypeError(f"{command.__name__}: parameters {sorted(clash)} clash with config flags")
        generated = [_parameter(name, spec) for name, spec in specs.items()]

        def wrapper(**kwargs: Any) -> Any:
            given = {name: kwargs.pop(name) for name in specs}
            flags = {specs[n].path: parse_value(specs[n], v) for n, v in given.items() if v is not None}
            return command(config_flags=flags, **kwargs)

        parameters = [*generated, *own]
        wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        wrapper.__name__, wrapper.__doc__ = command.__name__, command.__doc__
        wrapper.__module__, wrapper.__qualname__ = command.__module__, command.__qualname__
        return wrapper

    return decorate


def config_from_flags(flags: ConfigFlags, resume: Path | None = None) -> TrainConfig:
    """The config to train: the recipe of the model on the engine (with ``--members N``: the committee recipe,
    or the model's long-budget one; on resume, the run's own config) with the flags applied. ``--engine numpy``
    alone is the NumPy engine's own mlp recipe."""
    from mnistlab.recipes import starting_recipe

    if resume is None:  # a new run: no torch needed to know its config (or to reject it)
        first_member = (flags.get("member_models") or (None,))[0]  # --member-models a,b alone: --model a
        model = flags.get("model.name") or first_member
        base = starting_recipe(model, flags.get("members", 1), flags.get("engine", "torch"))
    else:
        from mnistlab.runs import read_config

        base = read_config(resume)
    return with_values(base, flags).validate()


def parameter_name(spec: FieldSpec) -> str:
    """The Python name of a field's option: its flag without dashes (``--val-size`` -> ``val_size``)."""
    return spec.flag.removeprefix("--").replace("-", "_")


def parse_value(spec: FieldSpec, value: Any) -> Any:
    """What the option gave -> the field's value; only tuples need work (``"512,256"`` -> ``(512, 256)``)."""
    inner = spec.value_type
    if typing.get_origin(inner) is not tuple:
        return value
    element = typing.get_args(inner)[0]
    try:
        parts = tuple(element(part) for part in str(value).split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"{spec.flag} must be comma-separated values like 512,256, got {value!r}") from None
    if not parts:
        raise ConfigError(f"{spec.flag} needs at least one value, got {value!r}")
    return parts


def resume_safe_flags(cls: type = TrainConfig) -> list[str]:
    return [s.flag for s in config_fields(cls) if s.resume_safe]


# ---- building one option -----------------------------------------------------------------------------------
def _parameter(name: str, spec: FieldSpec) -> inspect.Parameter:
    inner = spec.value_type
    decls = [spec.flag]
    if inner is bool:
        decls = [f"{spec.flag}/--no-{spec.flag.removeprefix('--')}"]
    if spec.short:
        decls.append(spec.short)
    value_type: Any = inner
    metavar = None
    if typing.get_origin(inner) is tuple:
        value_type, metavar = str, "A,B,..."
    option = typer.Option(
        *decls, help=help_text(spec), show_default=False, metavar=metavar, rich_help_panel=spec.section
    )
    annotation = Annotated[value_type | None, option]  # None: not given
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)


def help_text(spec: FieldSpec) -> str:
    """The declared help, the registry's names for a free-text choice, and the default over the recipes."""
    text = spec.help
    if spec.registry is not None:
        text += f" One of: {', '.join(spec.choices())}."
    default = _default_text(spec)
    return f"{text} (default: {default})" if default else text


def _default_text(spec: FieldSpec) -> str:
    """The value every recipe gives the field, or "the model's recipe" when they differ; "" when unset."""
    from mnistlab.recipes import DEFAULT_MODEL, RECIPES

    if spec.path == "model.name":  # the field that chooses the recipe
        return DEFAULT_MODEL
    try:
        values = [get_value(make(), spec.path) for make in RECIPES.values()]
    except AttributeError:  # a field of a config class the recipes do not build: its declared default
        values = [spec.default]
    if any(v != values[0] for v in values):
        return "the model's recipe"
    value = values[0]
    if value is None:
        return ""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


__all__ = ["ConfigFlags", "config_from_flags", "parse_value", "with_config_options"]
