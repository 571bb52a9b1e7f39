"""The README's two commands are the ones CI and users run; keep them honest."""

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## The two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_readme_gives_a_main_job_and_a_test_command():
    main_job, tests = readme_commands()
    assert "mnistlab train" in main_job and "constraints.txt" in main_job
    assert "pytest" in tests and "constraints.txt" in tests


def test_ci_runs_the_readme_test_command_verbatim():
    _, tests = readme_commands()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert tests in ci.splitlines()


def test_every_pin_satisfies_the_range_pyproject_allows():
    """pip would refuse `-c constraints.txt` with a pin outside a dependency's range: check each one."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = {
        canonicalize_name(name): version
        for name, version in (
            line.split("==", 1)
            for line in (ROOT / "constraints.txt").read_text().splitlines()
            if "==" in line and not line.startswith("#")
        )
    }
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    required = [Requirement(r) for r in project["dependencies"]]
    required += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    checked = 0
    for requirement in required:
        name = canonicalize_name(requirement.name)
        if name == "mnistlab":  # the dev extra names the other extras
            continue
        assert name in pins, f"{requirement.name} has no tested pin in constraints.txt"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} is outside {requirement}"
        checked += 1
    assert checked >= 15


def test_every_install_hint_names_an_extra_that_exists():
    """`pip install 'mnistlab[X]'` in an error message or the README must name an extra pyproject defines,
    holding the packages the message is about."""
    tomllib = pytest.importorskip("tomllib")
    from mnistlab.app.export import ONNX_EXTRA

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    texts = [(ROOT / "README.md").read_text(encoding="utf-8")]
    texts += [p.read_text(encoding="utf-8") for p in (ROOT / "src").rglob("*.py")]
    named = set(re.findall(r"mnistlab\[(\w+)\]", "\n".join(texts))) | {ONNX_EXTRA}
    assert {"onnx", "tensorboard"} <= named <= set(extras), named - set(extras)
    packages = {name: {re.split(r"[<>=!~\[ ]", r)[0] for r in reqs} for name, reqs in extras.items()}
    assert {"onnx", "onnxruntime", "onnxscript"} <= packages[ONNX_EXTRA]
    assert "tensorboard" in packages["tensorboard"]


def test_the_onnx_hint_is_one_line_naming_the_extra(monkeypatch, app_run, tmp_path):
    """Without the onnx extra, `export --format onnx` says how to get it, before doing any work."""
    import importlib.util

    from mnistlab.app import export

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a)
    )
    with pytest.raises(export.ExportError) as error:
        export.export_run(app_run, "onnx", tmp_path / "model.onnx")
    assert "\n" not in str(error.value) and "pip install 'mnistlab[onnx]'" in str(error.value)
    assert str(error.value).startswith("--format onnx needs onnx, which is not installed")
    assert not (tmp_path / "model.onnx").exists()


def readme_mnistlab_lines() -> list[str]:
    """Every ``mnistlab ...`` line of every bash block in the README (its comment dropped)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.startswith("mnistlab "):
                lines.append(re.sub(r"\s+#.*$", "", line).strip())
    return lines


def parse_only(argv: list[str]) -> None:
    """Parse ``mnistlab ARGV`` down to its command (flags exist, values convert) without running anything."""
    import typer

    from mnistlab.cli.app import _register_commands, app

    _register_commands()
    command = typer.main.get_command(app)
    ctx = command.make_context("mnistlab", list(argv))
    while hasattr(command, "resolve_command"):  # a group: on to its subcommand
        name, command, rest = command.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
        ctx = command.make_context(name, rest, parent=ctx)


def test_every_readme_command_pastes_into_bash_and_parses():
    """All sections, also those tests/test_readme_commands.py does not run (the committee's take minutes)."""
    lines = readme_mnistlab_lines()
    assert len(lines) >= 35
    for line in lines:
        assert not re.search(r"[<>|;&]", line), f"bash would not run this as one command: {line}"
        argv = shlex.split(line.replace("$RUN", "runs/example").replace("$(", "("))[1:]
        if argv in (["--help"], ["--version"]) or "--help" in argv:
            continue  # eager options exit while parsing
        parse_only(argv)
