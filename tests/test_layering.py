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
