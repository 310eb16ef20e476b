"""Damaged data is detected, not read as truth: bytes changed inside a run file's data or inside a
checkpoint (their sizes unchanged), and a valid checkpoint of another run, each give one line and
exit status 2, and change nothing. A run file removed during its run is written again with every
row; one replaced by another file is left alone, and what the run wrote is saved beside it."""
import shutil
import subprocess
import sys
import time
import zipfile

import h5py
import numpy as np
import pytest


TINY = ["--task", "torder", "--nhid", "8", "--bs", "5", "--ebs", "40", "--cbs", "20", "--min-length", "10",
        "--max-length", "14", "--set", "check_freq=10", "--quiet"]


@pytest.fixture
def run(tmp_path, command):
    """A finished run of 20 updates, with its checkpoint: --maxiters 30 --resume would continue it."""
    command("train", *TINY, "--maxiters", "20", "--out-dir", str(tmp_path), "--name", "r")
    return tmp_path / "r.h5"


def flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_changed_byte_in_a_run_file_is_an_error_not_a_number(run, command):
    with h5py.File(run, "r") as f:
        ds = f["check/valid_loss"]
        assert ds.fletcher32                                        # every chunk carries a checksum
        offset = ds.id.get_chunk_info(0).byte_offset + 3
    before = run.read_bytes()
    flip(run, offset)
    for args in (["info", str(run)], ["plot", str(run), "-o", str(run.parent / "figures")]):
        code, err = command(*args)
        assert code == 2 and err == [f"error: {run}: damaged run file: bytes of its data changed on disk and fail "
                                     f"their checksum, so its numbers cannot be trusted"]
    code, err = command("train", *TINY, "--maxiters", "30", "--out-dir", str(run.parent), "--name", "r",
                         "--resume")
    assert code == 2 and len(err) == 1 and err[0].startswith(f"error: run file '{run}' is damaged (check/valid_loss: ")
    assert err[0].endswith("--resume cannot continue from it, --force starts the run again (nothing was changed)")
    flip(run, offset)
    assert run.read_bytes() == before                               # nothing was changed


def test_a_changed_byte_in_a_checkpoint_is_refused(run, command):
    ckpt = run.with_name("r_checkpoint.pt")
    with zipfile.ZipFile(ckpt) as z:
        member = max(z.infolist(), key=lambda i: i.file_size)       # the largest tensor's bytes
    flip(ckpt, member.header_offset + 30 + len(member.filename.encode()) + member.file_size // 2 + 64)
    code, err = command("train", *TINY, "--maxiters", "30", "--out-dir", str(run.parent), "--name", "r",
                         "--resume")
    assert code == 2 and err == [f"error: checkpoint '{ckpt}' is damaged (the bytes of {member.filename!r} do not "
                                 f"match their checksum); --resume cannot continue from it, --force starts the run "
                                 f"again (nothing was changed)"]


def test_another_runs_checkpoint_is_refused(run, tmp_path, command):
    other = tmp_path / "other"
    command("train", *TINY, "--nhid", "12", "--maxiters", "20", "--out-dir", str(other), "--name", "r")
    ckpt = run.with_name("r_checkpoint.pt")
    shutil.copy(other / "r_checkpoint.pt", ckpt)
    before = run.read_bytes()
    code, err = command("train", *TINY, "--maxiters", "30", "--out-dir", str(run.parent), "--name", "r",
                         "--resume")
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"error: checkpoint '{ckpt}' does not fit this run (RuntimeError: ")
    assert run.read_bytes() == before


def test_a_run_file_from_before_the_checksums_still_reads(run, tmp_path):
    """Copy every dataset without its filter, as files written before the checksums are."""
    from analysis.read import load
    old = tmp_path / "old.h5"
    with h5py.File(run, "r") as src, h5py.File(old, "w") as dst:
        dst.attrs.update(dict(src.attrs))

        def copy(name, obj):
            if isinstance(obj, h5py.Dataset):
                kw = {"maxshape": obj.maxshape, "chunks": obj.chunks} if obj.chunks else {}
                dst.create_dataset(name, data=obj[()], **kw)
        src.visititems(copy)
        assert not dst["check/valid_loss"].fletcher32
    a, b = load(run), load(old)
    assert np.array_equal(a.check["valid_loss"], b.check["valid_loss"], equal_nan=True)


SLOW_RUN = ("import sys, time\n"
            "from dynamics.train import Run\n"
            "step = Run.step\n"
            "def slow(self):\n"
            "    time.sleep(0.01)\n"
            "    return step(self)\n"
            "Run.step = slow\n"
            "from dynamics.cli import main\n"
            "main(sys.argv[1:])\n")


def start_slow_run(out_dir, updates):
    """A run in another process, slowed to 10 ms an update, once it has written two checks."""
    proc = subprocess.Popen([sys.executable, "-c", SLOW_RUN, "train", *TINY, "--maxiters", str(updates),
                             "--out-dir", str(out_dir), "--name", "r"], stderr=subprocess.PIPE, text=True)
    path = out_dir / "r.h5"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with h5py.File(path, "r", libver="latest", swmr=True) as f:
                if f["check/iter"].shape[0] >= 2:
                    return proc, path
        except (OSError, KeyError):
            pass
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the run did not reach two checks")


def test_a_run_file_removed_during_the_run_is_written_again_with_every_row(tmp_path):
    proc, path = start_slow_run(tmp_path, 80)
    path.unlink()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert f"dynamics: run file '{path}' was removed during the run; written again from this process's copy, " \
           f"every row kept" in err
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "finished"
        assert list(f["check/iter"][:]) == list(range(10, 90, 10)) and f["iter/loss"].shape == (80,)


def test_a_run_file_replaced_during_the_run_is_left_alone(tmp_path):
    proc, path = start_slow_run(tmp_path, 200)
    other = tmp_path / "other.h5"
    other.write_bytes(b"someone else's file")
    other.replace(path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    saved = tmp_path / "r.replaced.h5"
    assert err.strip().splitlines()[-1] == (f"error: run file '{path}' was replaced by another file during the run; "
                                            f"the run stopped and what it recorded is in '{saved}'")
    assert path.read_bytes() == b"someone else's file"
    with h5py.File(saved, "r") as f:
        assert f["check/iter"].shape[0] >= 2 and f.attrs["status"] == "running"
