"""Plain-text help that reads at any width: in an 80-column terminal, a pipe or a log.

Rich's boxed help tables squeezed `train --help`'s descriptions into ~17 characters at 80 columns. Here each
option's help is wrapped beside its flag (or under it, when the flag is long), sections follow the options'
``rich_help_panel`` titles, and lines break only at spaces: never inside ``per-class`` or ``no-report``.
The width is the terminal's (``COLUMNS``), at most :data:`HELP_WIDTH`. No Rich is imported for help.
"""

from __future__ import annotations

import textwrap
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

HELP_WIDTH = 100  # columns: wide terminals still get lines short enough to read
TERM_COLUMN = 30  # flags up to this wide get their help beside them; longer ones get it on the next line


def wrap(text: str, width: int, indent: int = 0) -> list[str]:
    """``text`` as lines of at most ``width`` columns (including ``indent``), broken at spaces only."""
    return textwrap.wrap(
        " ".join(text.split()),
        max(width, indent + 20),
        break_on_hyphens=False,
        break_long_words=False,
        initial_indent=" " * indent,
        subsequent_indent=" " * indent,
    )


def write_help_text(text: str | None, formatter: Any) -> None:
    """A command's description, paragraph by paragraph (``\\f`` ends the part shown, as in click)."""
    text = (text or "").split("\f", 1)[0].strip()
    if not text:
        return
    formatter.write_paragraph()
    paragraphs = [p for p in textwrap.dedent(text).split("\n\n") if p.strip()]
    for index, paragraph in enumerate(paragraphs):
        if index:
            formatter.write("\n")
        for line in wrap(paragraph, formatter.width, formatter.current_indent + 2):
            formatter.write(line + "\n")


def write_rows(rows: list[tuple[str, str]], formatter: Any) -> None:
    """A definition list: ``term  help...``, the help wrapped in its own column."""
    indent = formatter.current_indent
    column = min(max(len(term) for term, _ in rows), TERM_COLUMN) + 2
    for term, text in rows:
        lines = wrap(text, formatter.width, indent + column) or [""]
        if len(term) + 2 <= column:
            formatter.write(" " * indent + term.ljust(column) + lines[0].lstrip() + "\n")
            lines = lines[1:]
        else:
            formatter.write(" " * indent + term + "\n")
        formatter.write("".join(line + "\n" for line in lines))


class PlainHelpCommand(TyperCommand):
    """A Typer command whose help lists its options under their panels' titles, as plain wrapped text."""

    def format_help_text(self, ctx: Any, formatter: Any) -> None:
        write_help_text(self.help, formatter)

    def format_options(self, ctx: Any, formatter: Any) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            default = "Arguments" if param.param_type_name == "argument" else "Options"
            sections.setdefault(getattr(param, "rich_help_panel", None) or default, []).append(record)
        for title, records in sections.items():
            with formatter.section(title):
                write_rows(records, formatter)


class PlainHelpGroup(TyperGroup):
    """A Typer group with the same plain description (its command list is click's)."""

    def format_help_text(self, ctx: Any, formatter: Any) -> None:
        write_help_text(self.help, formatter)


class PlainTyper(typer.Typer):
    """typer.Typer with plain-text help for the group and, by default, for each of its commands."""

    def __init__(self, **kwargs: Any) -> None:
        settings = {"help_option_names": ["-h", "--help"], "max_content_width": HELP_WIDTH}
        super().__init__(cls=PlainHelpGroup, rich_markup_mode=None, context_settings=settings, **kwargs)

    def command(self, *args: Any, cls: type | None = None, **kwargs: Any) -> Any:
        return super().command(*args, cls=cls or PlainHelpCommand, **kwargs)
