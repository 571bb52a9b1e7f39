"""The README's two commands are the ones CI and users run; keep them honest."""

import re
from pathlib import Path

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


def test_constraints_pin_the_cpu_torch_that_pyproject_allows():
    pins = dict(
        line.split("==", 1)
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert pins["torch"] == "2.13.0"
    assert '"torch>=2.4,<3"' in (ROOT / "pyproject.toml").read_text()
