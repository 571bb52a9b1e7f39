"""The layout is the architecture: data and models never import training, the CLI or the app."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("package", ["mnistlab.data", "mnistlab.models"])
def test_lower_layers_do_not_import_training(package):
    code = (
        f"import sys, {package}\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('mnistlab.training', 'mnistlab.cli',"
        " 'mnistlab.app', 'mnistlab.lab', 'mnistlab.api')))\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{package} imports {out.stdout.strip()}"


def test_scratch_engine_imports_only_numpy():
    """mnistlab.scratch is the NumPy-only teaching engine: no torch, and nothing else of mnistlab."""
    code = (
        "import sys, mnistlab.scratch\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'torch'"
        " or (m.startswith('mnistlab.') and not m.startswith('mnistlab.scratch')))\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"mnistlab.scratch imports {out.stdout.strip()}"
