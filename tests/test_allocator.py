"""dynamics.allocator: freed blocks stay in the process for the next step instead of going back to
the system (glibc), each case in a fresh process so that no earlier test's heap is reused."""
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")

# the resident size while a 256 MB tensor lives, and after it is freed
SCRIPT = """
import sys
from pathlib import Path
import torch
from dynamics.allocator import keep_freed_memory
def rss():
    return int(Path("/proc/self/status").read_text().split("VmRSS:")[1].split()[0]) * 1024
if sys.argv[1] == "kept":
    assert keep_freed_memory() and keep_freed_memory()
x = torch.ones(64 * 2 ** 20)
during = rss()
del x
print(during - rss())
"""


def returned_bytes(mode):
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
    return int(out.stdout)


def test_freed_memory_is_kept_for_reuse():
    assert returned_bytes("default") > 200 * 2 ** 20    # glibc hands a large block back at once ...
    assert returned_bytes("kept") < 16 * 2 ** 20        # ... and keeps it once the thresholds are raised


def test_a_cpu_run_keeps_freed_memory(tmp_path, monkeypatch):
    from dynamics import allocator
    from dynamics import config as cfg
    from dynamics.train import Run
    monkeypatch.setattr(allocator, "_kept", None)
    calls = []
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: type("C", (), {
        "mallopt": staticmethod(lambda key, value: calls.append((key, value)) or 1)}))
    Run(cfg.make({"out_dir": str(tmp_path), "n_hidden": 8}))
    assert calls == [(allocator.M_MMAP_THRESHOLD, 1 << 30), (allocator.M_TRIM_THRESHOLD, 2 ** 31 - 1)]
    assert allocator.keep_freed_memory() and len(calls) == 2    # once per process
