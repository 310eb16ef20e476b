"""The layers of pyproject.toml's import-linter contracts hold, and an import against them (an
arrow up, a circle) turns them red."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).parent / "lint-imports"


def lint(root):
    """lint-imports on the packages under `root`, with the project's contracts."""
    env = {"PYTHONPATH": str(root), "PATH": str(LINT.parent)}
    return subprocess.run([str(LINT), str(root / "pyproject.toml"), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_contracts_hold():
    out = lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


@pytest.fixture(scope="module")
def copy(tmp_path_factory):
    """The three packages and the contracts, copied: a change there touches nothing here."""
    root = tmp_path_factory.mktemp("tree")
    for package in ("tasks", "dynamics", "analysis"):
        shutil.copytree(ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__", "csrc"))
    shutil.copy(ROOT / "pyproject.toml", root)
    return root


@pytest.mark.parametrize("module,line,contract", [
    ("tasks/synthetic.py", "import analysis.read", "tasks/ is the ground floor"),
    ("dynamics/train.py", "from analysis import verdicts", "dynamics/ is below analysis/"),
    ("analysis/read.py", "import dynamics.commands.info", "analysis/ is below the commands"),
    ("dynamics/models/part.py", "from dynamics import config", "The rooms of dynamics/"),
    ("analysis/read.py", "from analysis import verdicts", "The rooms of analysis/"),
    ("analysis/canvas.py", "from analysis import figures", "No import circle"),
])
def test_an_import_against_the_layers_is_refused(copy, module, line, contract):
    path = copy / module
    before = path.read_text()
    path.write_text(before + f"\n{line}  # against the layers\n")
    try:
        out = lint(copy)
    finally:
        path.write_text(before)
    assert out.returncode != 0
    broken = out.stdout.split("Broken contracts")[-1]
    assert contract in broken, out.stdout
