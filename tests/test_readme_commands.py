"""Every command the README advertises works right after the README's main-job install, without extras.

A fresh virtual environment (no system site-packages) gets mnistlab installed by the README's own install
command, so a dependency missing from pyproject.toml's base list fails here. The venv is built once and cached
under pytest's cache folder, keyed by pyproject.toml, constraints.txt, the install command and the Python
version (the first build takes about a minute; later runs reuse it, and the editable install always runs this
checkout's code). Then every command of the README's "Using it", "Use the model" and "Lab" sections runs, as
written (bash expands ``$RUN``, ``*.png``), in a scratch folder with its own HOME; each must exit 0 without a
traceback, or, where the README says a command needs an extra or a GPU, fail with the one-line message that
says so. ``MNISTLAB_SMOKE_STEPS=2`` keeps every training and lab command to seconds. ``serve`` is started on
port 0 through the installed ``mnistlab`` script, asked for /healthz and a prediction, and stopped.

The commands run in forks of one process (tests/readme_runner.py) so that torch is imported once, not once per
command; mnistlab itself is imported afresh by each.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SECTIONS = ("## Using it", "### Use the model", "## Lab")
INTERRUPTED_RUN = "runs/20261128-101500-cnn"  # the README's example of a run to resume
SMOKE_STEPS = "2"

pytestmark = pytest.mark.slow


# ---- the README's commands ---------------------------------------------------------------------------------
def section_lines(title: str) -> list[str]:
    """The command lines of a section's bash blocks (continuations joined; blank and comment lines dropped)."""
    text = README.read_text(encoding="utf-8")
    section = re.split(r"\n#{1,3} ", text.split(f"\n{title}\n", 1)[1], maxsplit=1)[0]
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                lines.append(line.strip())
    return lines


def readme_lines() -> list[str]:
    return [line for title in SECTIONS for line in section_lines(title)]


def main_job_install() -> list[str]:
    """The install half of the README's main job: ``python3 -m pip install -c constraints.txt -e .``."""
    text = README.read_text(encoding="utf-8").split("## The two commands", 1)[1]
    main_job = re.findall(r"```bash\n(.+?)\n```", text)[0]
    install = shlex.split(main_job.split("&&")[0])
    assert install[:4] == ["python3", "-m", "pip", "install"], main_job
    return install


def is_serve(line: str) -> bool:
    return line.startswith("mnistlab serve ")


# What may fail, and the one line it must then print. Everything else must exit 0.
ALLOWED_FAILURES = {
    "--device cuda": "torch sees no CUDA device",  # this machine may have no GPU
    "data download": "could not download",  # the dataset mirrors may be out of reach
}
REQUIRED_FAILURES = {  # the optional extras, absent from the base install
    "--format onnx": "pip install 'mnistlab[onnx]'",
    "--tensorboard": "pip install 'mnistlab[tensorboard]'",
}


# ---- the base-install venv -----------------------------------------------------------------------------------
def venv_key() -> str:
    digest = hashlib.sha256()
    for part in (ROOT / "pyproject.toml", ROOT / "constraints.txt"):
        digest.update(part.read_bytes())
    digest.update(" ".join(main_job_install()).encode())
    digest.update(sys.version.encode())
    return digest.hexdigest()[:16]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without anything that would reach the developer's own packages or data."""
    drop = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONUSERBASE")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("MNISTLAB_")}
    return env | extra


@contextlib.contextmanager
def locked(path: Path):
    """An exclusive lock (two pytest sessions must not build the same venv at once)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def pinned_version(name: str) -> str | None:
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.lower().startswith(f"{name}=="):
            return line.split("==", 1)[1].strip()
    return None


def reuse_installed_torch(venv: Path) -> bool:
    """Show the venv this interpreter's torch, when it is the pinned version, through a ``.pth`` file: pip then
    counts it as installed instead of unpacking its 1 GB wheel again (about 2 of the build's 3 minutes on 2
    busy cores). Only torch's own files are shared: its dependencies, and every dependency of mnistlab, pip
    installs into the venv as usual, so a dependency missing from pyproject.toml still fails the test."""
    try:
        torch_dist = importlib.metadata.distribution("torch")
    except importlib.metadata.PackageNotFoundError:
        return False
    if torch_dist.version.split("+")[0] != pinned_version("torch") or not torch_dist.files:
        return False
    site = Path(torch_dist.locate_file(""))
    names = {f.parts[0] for f in torch_dist.files if f.parts[0] != ".."}  # torch, torchgen, …, its dist-info
    shared = venv / "shared-torch"
    shared.mkdir()
    for name in sorted(names):
        if (site / name).exists():
            (shared / name).symlink_to(site / name)
    purelib = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(purelib, "shared-torch.pth").write_text(f"{shared}\n")
    return True


def index_reachable(python: Path) -> bool:
    """Can pip fetch setuptools (the build backend, on every package index)? Asked after an install failed, to
    tell a machine without an index (skip) from a broken dependency list (fail)."""
    with tempfile.TemporaryDirectory() as tmp:
        probe = [str(python), "-m", "pip", "download", "--no-deps", "--dest", tmp, "setuptools>=68"]
        done = subprocess.run(probe, env=clean_env(), capture_output=True, timeout=600)
    return done.returncode == 0


def build_venv(cache: Path) -> Path:
    venv = cache / venv_key()
    marker = venv / "mnistlab-base-install.ok"
    cache.mkdir(parents=True, exist_ok=True)
    with locked(cache / ".lock"):
        if marker.is_file():
            return venv
        for stale in cache.iterdir():  # venvs of earlier pyproject/constraints versions
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        reuse_installed_torch(venv)
        install = [str(venv / "bin" / "python"), *main_job_install()[1:]]
        done = subprocess.run(
            install, cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=1500
        )
        if done.returncode != 0:
            output = done.stdout[-3000:] + done.stderr[-3000:]
            if not index_reachable(Path(install[0])):
                shutil.rmtree(venv, ignore_errors=True)
                pytest.skip(
                    "the README's install needs a package index (or pip's find-links/cache) and pip reached "
                    "none (not even setuptools could be fetched); run once where pip can install"
                )
            shutil.rmtree(venv, ignore_errors=True)
            pytest.fail(f"the README's install failed in a fresh venv:\n{output}")
        marker.write_text(" ".join(install) + "\n")
    return venv


@pytest.fixture(scope="session")
def base_venv(request, tmp_path_factory) -> Path:
    if sys.platform == "win32":
        pytest.skip("the README's commands are bash")
    cache = getattr(request.config, "cache", None)
    root = Path(cache.mkdir("readme-base-venv")) if cache else tmp_path_factory.mktemp("readme-base-venv")
    return build_venv(root)


# ---- running them ------------------------------------------------------------------------------------------
def write_user_images(folder: Path) -> None:
    """Two digits as a user would bring them: dark ink on light paper, 3x larger, as JPEG and PNG."""
    from PIL import Image

    from mnistlab.data import load_dataset

    digits = load_dataset("mnist", progress=False).test_images[:2]
    for digit, name in zip(digits, ("my-digit.jpg", "scan.png"), strict=True):
        big = np.kron(255 - digit, np.ones((3, 3), dtype=np.uint8))
        Image.fromarray(big).save(folder / name)


@pytest.fixture(scope="session")
def readme_run(base_venv, tmp_path_factory) -> dict:
    """Every README command but ``serve``, run in one scratch folder; {"lines": [...], "variables": {...}}."""
    work = tmp_path_factory.mktemp("readme-commands")
    home = work / "home"
    home.mkdir()
    write_user_images(work)
    job = work / "job.json"
    lines = [line for line in readme_lines() if not is_serve(line)]
    job.write_text(json.dumps({"lines": lines, "interrupted_run": INTERRUPTED_RUN, "timeout": 300}))
    env = clean_env(
        HOME=str(home),
        PATH=f"{base_venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        MNISTLAB_SMOKE_STEPS=SMOKE_STEPS,
        MPLCONFIGDIR=str(base_venv / "mplconfig"),  # matplotlib's font cache, built once
        OMP_NUM_THREADS="1",  # tiny steps: a second thread only adds contention on a shared machine
    )
    runner = [str(base_venv / "bin" / "python"), str(Path(__file__).with_name("readme_runner.py"))]
    done = subprocess.run(
        [*runner, str(job), str(work / "result.json")],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((work / "result.json").read_text()) | {"cwd": work, "env": env}


def test_without_a_package_index_the_venv_test_skips_saying_why(tmp_path, monkeypatch):
    for name, value in {
        "PIP_CONFIG_FILE": os.devnull,  # no find-links, no local index
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",  # the discard port: refused at once
        "PIP_FIND_LINKS": "",
        "PIP_RETRIES": "0",
        "PIP_NO_CACHE_DIR": "1",
    }.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(pytest.skip.Exception, match="needs a package index"):
        build_venv(tmp_path / "venvs")
    assert not any((tmp_path / "venvs").glob("*/bin"))  # the half-built venv is gone


def test_the_readme_sections_have_the_commands_this_test_knows():
    lines = readme_lines()
    assert len(lines) >= 20 and sum(map(is_serve, lines)) == 1
    assert any(INTERRUPTED_RUN in line for line in lines), (
        "the resume example changed: update INTERRUPTED_RUN"
    )
    for needle in (*ALLOWED_FAILURES, *REQUIRED_FAILURES):
        assert any(needle in line for line in lines), f"no README command has {needle!r}: update this test"


def command_of(line: str) -> str:
    return line.split("  #")[0].strip()


@pytest.mark.parametrize(
    "line", [x for x in readme_lines() if not is_serve(x) and "=" not in x.split()[0]], ids=command_of
)
def test_readme_command(readme_run, line):
    (result,) = [r for r in readme_run["lines"] if r["line"] == line]
    output = result["stdout"] + result["stderr"]
    assert "Traceback" not in output, output[-4000:]
    required = [hint for needle, hint in REQUIRED_FAILURES.items() if needle in line]
    allowed = [text for needle, text in ALLOWED_FAILURES.items() if needle in line]
    if result["code"] == 0 and not required:
        return
    errors = [x for x in result["stderr"].splitlines() if x.strip()]
    assert result["code"] == 1 and (required or allowed), f"exit {result['code']}:\n{output[-4000:]}"
    assert len(errors) == 1 and errors[0].startswith("mnistlab: error: "), output[-4000:]
    assert any(text in errors[0] for text in required or allowed), errors[0]


def test_readme_commands_did_what_they_say(readme_run):
    by_command = {command_of(r["line"]): r for r in readme_run["lines"]}
    out = {line: r["stdout"] for line, r in by_command.items()}
    cwd = readme_run["cwd"]
    assert readme_run["variables"]["RUN"].startswith("runs/")
    assert all(
        line.startswith("mnistlab: ") and "SMOKE TEST" in line
        for text in out.values()
        for line in text.splitlines()
        if line.startswith("mnistlab: ") and " parameters) on " in line
    )
    resumed = cwd / INTERRUPTED_RUN
    assert (resumed / "summary.json").is_file() and not (resumed / "last.safetensors").exists()
    assert [json.loads(x)["epoch"] for x in (resumed / "steps.jsonl").read_text().splitlines()] == [1, 2]
    predictions = [x for x in out["mnistlab predict $RUN my-digit.jpg scan.png --top-k 3"].splitlines() if x]
    assert [x.split(":")[0] for x in predictions] == ["my-digit.jpg", "scan.png"]
    assert (cwd / "seen").is_dir() and list((cwd / "seen").iterdir())
    labs = sorted(p.name.split("-", 2)[-1] for p in (cwd / "lab").iterdir() if (p / "report.html").is_file())
    advertised = [line.split()[2] for line in readme_lines() if line.startswith("mnistlab lab ")]
    assert len(advertised) >= 8 and labs == sorted(advertised)  # every lab the README lists wrote its report
    report = Path(out["mnistlab report $RUN"].split("report: ", 1)[1].strip())
    assert (cwd / report).is_file() and (cwd / report).with_name("learning_curves.png").is_file()
    assert out["mnistlab --version"].startswith("mnistlab ")


def test_serve_answers_and_stops(readme_run, base_venv):
    (line,) = [x for x in readme_lines() if is_serve(x)]
    variables = readme_run["variables"]
    prefix = "".join(f"{k}={shlex.quote(v)}; " for k, v in variables.items())
    argv = subprocess.run(
        ["bash", "-c", f'{prefix}set -- {line} --port 0\nprintf "%s\\0" "$@"'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")[:-1]
    argv[0] = str(base_venv / "bin" / "mnistlab")  # the installed script itself
    server = subprocess.Popen(
        argv,
        cwd=readme_run["cwd"],
        env=readme_run["env"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = server.stdout.readline()
        url = re.search(r"at (http://\S+/)", first)
        assert url, first + server.stderr.read() if server.poll() is not None else first
        with urllib.request.urlopen(url.group(1) + "healthz", timeout=60) as response:
            assert response.status == 200
        body = (readme_run["cwd"] / "scan.png").read_bytes()
        request = multipart_request(url.group(1) + "api/predict", "scan.png", body)
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        assert len(answer["probabilities"]) == 10 and 0 <= answer["label"] <= 9
    finally:
        server.send_signal(signal.SIGINT)
        try:
            _, err = server.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            _, err = server.communicate()
    assert "Traceback" not in err, err


def multipart_request(url: str, filename: str, content: bytes) -> urllib.request.Request:
    boundary = uuid.uuid4().hex
    body = io.BytesIO()
    body.write(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'.encode()
    )
    body.write(b"Content-Type: image/png\r\n\r\n" + content + f"\r\n--{boundary}--\r\n".encode())
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    return urllib.request.Request(url, data=body.getvalue(), headers=headers, method="POST")
