"""The examples run as a user runs them: the word language model script trains and records a run,
and the notebook, executed by a Jupyter kernel, opens that run and a preset's and draws them."""
import base64
import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from dynamics.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A small recorded run of the example script and a short A3, under <tmp>/runs."""
    tmp = tmp_path_factory.mktemp("examples")
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "word_language_model.py"), "--epochs", "2", "--max-batches", "12",
         "--emsize", "16", "--nhid", "16", "--vocab", "300", "--check-every", "5", "--log-interval", "6"],
        cwd=tmp, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    main(["train", str(ROOT / "runs" / "A3.toml"), "--set", "max_iters=60", "--set", "check_freq=20",
          "--out-dir", str(tmp / "runs"), "--quiet"])
    return tmp, out.stdout


def test_the_script_trains_and_records(runs):
    tmp, stdout = runs
    assert "end of epoch   2" in stdout and "test ppl" in stdout
    with h5py.File(tmp / "runs" / "word_lm.h5", "r") as f:
        assert f.attrs["status"] == "finished" and f.attrs["cell"] == "lstm"
        assert f["iter/loss"].shape == (24,)                        # 2 epochs of 12 batches
        # a check every 5 updates, and one at each epoch's validation (12, 24)
        assert list(f["check/iter"][:]) == [5, 10, 12, 15, 20, 24]
        valid = f["check/valid_loss"][:]
        assert (valid[[2, 5]] > 0).all() and sum(v == v for v in valid) == 2


def test_the_notebook_executes(runs):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    tmp, _ = runs
    nb = nbformat.read(EXAMPLES / "notebook.ipynb", as_version=4)
    env = {"DYNAMICS_MINE": str(tmp / "runs" / "word_lm.h5"), "DYNAMICS_PRESET": str(tmp / "runs" / "A3.h5")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)             # the kernel inherits the environment
    try:
        nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": str(tmp)}}).execute()
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    pngs = [base64.b64decode(o.data["image/png"]) for o in outputs if "image/png" in o.get("data", {})]
    assert len(pngs) >= 3 and all(p.startswith(b"\x89PNG") and len(p) > 10_000 for p in pngs)
    text = "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "RecordedRun('word_lm': finished, 24 updates" in text and "ρ(W_hc)" in text
