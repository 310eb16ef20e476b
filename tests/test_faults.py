"""Faults of the machine, met as a user meets them: a read-only folder, a file in the way of a
folder, a disk that fills during a run, too little memory, a scheduler address that is not one.
Each is one line and exit status 2; nothing recorded is lost, and --resume goes on once the cause
is gone. The file-system cases mount a real tmpfs and are skipped where the machine does not let
the tests mount one."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest


ROOT = Path(__file__).resolve().parent.parent

TINY = ["--task", "torder", "--nhid", "8", "--bs", "5", "--ebs", "40", "--cbs", "20", "--min-length", "10",
        "--max-length", "14", "--init", "smart_tanh", "--set", "check_freq=10", "--quiet"]


@pytest.fixture
def mount(tmp_path):
    """mount(options) → a fresh tmpfs folder mounted with `options` (e.g. "ro", "size=700k")."""
    if shutil.which("mount") is None:
        pytest.skip("no mount command on this machine")
    mounted = []

    def make(options):
        where = tmp_path / f"mnt{len(mounted)}"
        where.mkdir()
        out = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True,
                             text=True)
        if out.returncode:
            pytest.skip(f"this machine does not let the tests mount a tmpfs ({out.stderr.strip()[:80]})")
        mounted.append(where)
        return where
    yield make
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_a_read_only_folder_is_one_line_before_anything(mount, command):
    where = mount("ro,size=64k")
    code, err = command("train", *TINY, "--maxiters", "20", "--out-dir", str(where), "--name", "r")
    assert code == 2 and err == [f"error: cannot write in the run's folder '{where}/.r.h5.lock': a read-only file "
                                 f"system; choose a folder that can be written (--out-dir); nothing was written"]


def test_a_file_in_the_way_of_the_folder(tmp_path, command):
    (tmp_path / "afile").write_text("")
    for out_dir, why in ((tmp_path / "afile", "a file is in the way of a folder"),
                         (tmp_path / "afile" / "sub", "a part of the path is a file, not a folder")):
        code, err = command("train", *TINY, "--maxiters", "20", "--out-dir", str(out_dir), "--name", "r")
        assert code == 2 and len(err) == 1 and why in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_disk_that_fills_keeps_every_file_readable_and_resume_goes_on(mount, tmp_path, command):
    where = mount("size=700k")
    out = subprocess.run([sys.executable, "-m", "dynamics", "train", *TINY, "--maxiters", "1000000", "--out-dir",
                          str(where), "--name", "s"], capture_output=True, text=True, timeout=600)
    code, err = out.returncode, out.stderr.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    # the run file or the checkpoint, whichever write overflows first
    found = re.fullmatch(rf"error: cannot write '{where}/s(\.h5|_checkpoint\.tmp)': no space left on the device.*; "
                         rf"free some space; the run keeps its checkpoint at update (\d+): once that is fixed, the "
                         rf"same command with --resume continues from there", err[0])
    assert found, err[0]
    saved = int(found.group(2))
    assert sorted(p.name for p in where.iterdir()) == [".s.h5.lock", "s.h5", "s_checkpoint.pt"]  # no .tmp
    # the run file reads, with every check it wrote, and says that its writer is gone
    with h5py.File(where / "s.h5", "r", libver="latest", swmr=True) as f:
        # the last check whose every dataset was written (the one the disk filled in may lack some)
        lengths = []
        f["check"].visititems(lambda name, d: lengths.append(d.shape[0]) if isinstance(d, h5py.Dataset)
                              and d.maxshape[0] is None else None)
        last = int(f["check/iter"][min(lengths) - 1])
    assert last >= saved > 0
    code, _ = command("info", str(where / "s.h5"))
    status = [line for line in command.out.splitlines() if line.startswith("status")]
    assert code == 0 and status == [f"status    stopped without closing (last check at update {last}); "
                                    f"dynamics train --resume continues it"], status
    # once there is room again, --resume continues from the checkpoint to the end
    subprocess.run(["mount", "-o", "remount,size=8m", str(where)], check=True)
    code, err = command("train", *TINY, "--maxiters", str(saved + 20), "--out-dir", str(where),
                         "--name", "s", "--resume")
    assert code == 0, err
    command("train", *TINY, "--maxiters", str(saved + 20), "--out-dir", str(tmp_path), "--name", "s")
    with h5py.File(where / "s.h5", "r") as a, h5py.File(tmp_path / "s.h5", "r") as b:
        assert a.attrs["status"] == "finished"
        for k in ("iter/loss", "check/valid_loss", "final/weights/W_hh"):
            assert np.array_equal(a[k][()], b[k][()], equal_nan=True), k


def test_too_little_memory_is_one_line(tmp_path, command):
    code, err = command("train", *TINY, "--nhid", "200000", "--maxiters", "2", "--out-dir", str(tmp_path),
                         "--name", "big")
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: not enough memory to build the model and its data (it asked for ")
    assert list(tmp_path.iterdir()) == []


def test_a_scheduler_address_that_is_not_one(tmp_path, command):
    spec = ROOT / "runs" / "sweeps" / "tasks-add-quick.toml"
    code, err = command("sweep", str(spec), "--scheduler", "foo:::bar", "--out-dir", str(tmp_path / "o"))
    assert code == 2 and err == ["error: --scheduler 'foo:::bar' is not allowed: not an address (invalid address "
                                 "'foo:::bar'); give one such as tcp://127.0.0.1:8786"]
    assert not (tmp_path / "o").exists()


def test_python_m_dynamics_gives_the_same_one_line(tmp_path):
    (tmp_path / "afile").write_text("")
    out = subprocess.run([sys.executable, "-m", "dynamics", "train", *TINY, "--maxiters", "2", "--out-dir",
                          str(tmp_path / "afile"), "--name", "r"], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "a file is in the way" in out.stderr
