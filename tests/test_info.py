"""What `dynamics info` shows of each family: the headline numbers it records beside its error,
labelled, and ρ before training read from the weights the run started with."""
from pathlib import Path

import h5py
import numpy as np
import pytest

from dynamics.cli import main

ROOT = Path(__file__).resolve().parent.parent


def info(capsys, path):
    main(["info", str(path)])
    return capsys.readouterr().out.splitlines()


@pytest.mark.parametrize("preset, labels", [
    ("M1", ("valid accuracy", "valid macro-F1")),
    ("S1", ("exact match, greedy", "exact match, beam", "token accuracy, greedy")),
])
def test_each_family_shows_its_headline_numbers(preset, labels, tmp_path, capsys):
    main(["train", str(ROOT / "runs" / f"{preset}.toml"), "--set", "max_iters=2", "--set", "check_freq=1",
          "--set", "eval_batch_size=200", "--set", "chunk_batch_size=100", "--out-dir", str(tmp_path), "--quiet"])
    capsys.readouterr()
    lines = info(capsys, tmp_path / f"{preset}.h5")
    with h5py.File(tmp_path / f"{preset}.h5", "r") as f:
        columns = {"valid accuracy": "accuracy", "valid macro-F1": "macro_f1", "exact match, greedy": "greedy_exact",
                   "exact match, beam": "beam_exact", "token accuracy, greedy": "greedy_token_acc"}
        for label in labels:
            line = [ln for ln in lines if ln.strip().startswith(label)]
            value = f["check"][columns[label]][-1]
            assert len(line) == 1 and line[0].split()[-4] == f"{value:.3g}" and line[0].endswith("% (last check)")
        # ρ at the start is that of the weights before the first update, not of the first check
        name = f.attrs["recurrent_matrix"]
        rho0 = np.abs(np.linalg.eigvals(f["start/weights"][name][()])).max()
        rho_line = [ln for ln in lines if ln.strip().startswith(f"ρ({name})")][0]
        assert rho_line.split()[1] == f"{rho0:.3g}"
