"""The command line as people use it daily: progress in logs, the help of every key."""
import re
import subprocess
import sys

import h5py

TINY = ["--task", "torder", "--n-hidden", "8", "--batch-size", "5", "--eval-batch-size", "20",
        "--chunk-batch-size", "20", "--min-length", "10", "--max-length", "12", "--check-freq", "5"]


def test_progress_in_a_log_is_one_line_per_check(tmp_path):
    """stdout and stderr are pipes (a log file, CI): no carriage returns, one line per check."""
    out = subprocess.run([sys.executable, "-c", "from dynamics.cli import main; main()", "train", *TINY, "--max-iters", "20",
                          "--name", "log", "--out-dir", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "\r" not in out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1] == f"{tmp_path / 'log.h5'}: finished"
    with h5py.File(tmp_path / "log.h5", "r") as f:
        iters, valid = f["check/iter"][:].astype(int), f["check/valid_loss"][:]
    assert len(lines) - 1 == len(iters) == 4
    for line, it, v in zip(lines, iters, valid):
        m = re.fullmatch(r"log iter (\d+)/20 \| loss \S+ \| gnorm \S+ \| valid (\S+), \S+% \| \S+ it/s \| ETA (\S+)",
                         line)
        assert m, line
        assert int(m[1]) == it and float(m[2]) == float(f"{v:.4g}")
    assert lines[-2].endswith("ETA 0:00:00")
