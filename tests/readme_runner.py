"""Run README command lines as a shell would, each in its own forked process; used by test_readme_commands.py.

Run by the *test venv's* Python (mnistlab installed there without extras), never imported by pytest:

    python readme_runner.py JOB.json RESULT.json

JOB.json: ``{"lines": [...], "interrupted_run": "runs/...", "timeout": 300}``. Each line is expanded by bash
(variables, ``$(...)``, globs; comments dropped) in the current folder; ``NAME=value`` lines set a variable
for the lines after them; every other line must start with ``mnistlab`` and runs as
``mnistlab.cli.main(argv)`` in a fork of this process, with its stdout and stderr captured. Forking skips
paying torch's import once per command: this process imports the heavy *third-party* libraries first (each
only if it is installed, so a missing dependency still fails in the command that needs it), and never
mnistlab itself, so each command imports mnistlab from scratch, as the ``mnistlab`` script does.

RESULT.json: one entry per line (argv, exit code, stdout, stderr, seconds) and the variables set.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = (  # third-party modules every command would otherwise import again (torch.optim pulls in torch._dynamo)
    "torch",
    "torch._dynamo",
    "numpy",
    "matplotlib.figure",
    "matplotlib.backends.backend_agg",
    "PIL.Image",
    "fastapi",
    "safetensors.torch",
)
ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def bash(script: str) -> str:
    return subprocess.run(["bash", "-c", script], check=True, capture_output=True, text=True).stdout


def expand(line: str, variables: dict[str, str]) -> list[str]:
    """The argv bash would run for ``line`` (one simple command: no pipes, no redirections)."""
    prefix = "".join(f"{name}={shlex.quote(value)}; " for name, value in variables.items())
    out = bash(f'{prefix}set -- {line}\nprintf "%s\\0" "$@"')
    return out.split("\0")[:-1]


def in_child(function, timeout: float) -> tuple[int, str, str, float]:
    """Run ``function()`` in a forked child; (exit code, stdout, stderr, seconds)."""
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 1
            try:
                signal.alarm(int(timeout))
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                function()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                with contextlib.suppress(Exception):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        seconds = time.perf_counter() - t0
        code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return code, out.read(), err.read(), seconds


def run_mnistlab(argv: list[str]) -> None:
    from mnistlab.cli import main

    main(argv)


def make_interrupted_run(folder: str) -> None:
    """A run stopped by Ctrl-C as its second epoch starts: what `train --resume` continues."""
    import mnistlab
    from mnistlab.training import trainer

    real, calls = trainer.train_one_epoch, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    trainer.train_one_epoch = interrupted
    config = mnistlab.recipe("mlp")
    config.epochs, config.out, config.quiet = 2, folder, True
    try:
        mnistlab.train(config)
    except KeyboardInterrupt:
        raise SystemExit(0) from None
    raise SystemExit("the run was not interrupted")


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    for name in HEAVY:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    assert not any(m == "mnistlab" or m.startswith("mnistlab.") for m in sys.modules)
    timeout = job.get("timeout", 300)
    results: dict = {"lines": [], "variables": {}}
    if job.get("interrupted_run"):
        code, out, err, _ = in_child(lambda: make_interrupted_run(job["interrupted_run"]), timeout)
        if code != 0:
            raise SystemExit(f"could not make the interrupted run (exit {code}):\n{out}\n{err}")
    for line in job["lines"]:
        assignment = ASSIGNMENT.match(line)
        if assignment:
            name = assignment.group(1)
            prefix = "".join(f"{k}={shlex.quote(v)}; " for k, v in results["variables"].items())
            results["variables"][name] = bash(f'{prefix}{line}\nprintf "%s" "${name}"')
            continue
        argv = expand(line, results["variables"])
        if not argv or argv[0] != "mnistlab":
            raise SystemExit(f"not a mnistlab command: {line}")
        code, out, err, seconds = in_child(lambda argv=argv: run_mnistlab(argv[1:]), timeout)
        entry = {"line": line, "argv": argv, "code": code, "stdout": out, "stderr": err, "seconds": seconds}
        results["lines"].append(entry)
    Path(sys.argv[2]).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
