"""The run file (schema dynamics-run/1, dynamics/schema.py, docs/run-file.md): one HDF5 file per run.

The writer creates every growing dataset up front, then switches to SWMR so that readers can open
the file while it grows; rows are appended and the file flushed at every check. Attributes and
the /final group cannot change under SWMR, so `close()` reopens the file normally for them.
"""
import datetime
import errno
import json
import os
import re
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import torch

from tasks.errors import InputError

from .faults import free_bytes
from .schema import CHECK_COLUMNS, ITER_COLUMNS, RECURRENT_MATRIX, SCHEMA


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def git_commit():
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def checksummed(dtype, shape=(1,)):
    """Whether a dataset gets HDF5's fletcher32 filter, a checksum per chunk that every read checks,
    so that damaged bytes are an error rather than numbers: arrays of numbers (HDF5 allows no
    filter on a scalar or on strings)."""
    return len(shape) > 0 and np.dtype(dtype).kind in "biuf"


def fixed(group, name, data):
    """A dataset written once (weights, edges, static data), checksummed where it can be."""
    data = np.asarray(data)
    return group.create_dataset(name, data=data, fletcher32=checksummed(data.dtype, data.shape))


def growing(group, name, width=None, dtype="f8", fill=np.nan):
    shape, maxshape, chunks = ((0,), (None,), (1024,)) if width is None else \
        ((0, width), (None, None), (16, max(width, 1)))
    return group.create_dataset(name, shape=shape, maxshape=maxshape, chunks=chunks, dtype=dtype,
                                fillvalue=fill, fletcher32=True)


def growing_array(group, name, shape, dtype):
    """(0, *shape) rows, every axis resizable: a per-check array whose size may change."""
    if dtype == "str":
        dtype, fill = h5py.string_dtype(), None
    else:
        fill = 0 if np.issubdtype(np.dtype(dtype), np.integer) else np.nan
    shape = tuple(shape)
    return group.create_dataset(name, shape=(0, *shape), maxshape=(None,) * (1 + len(shape)),
                                chunks=(1, *(max(n, 1) for n in shape)), dtype=dtype, fillvalue=fill,
                                fletcher32=checksummed(dtype))


def append_rows(ds, rows):
    """Append rows along axis 0; trailing axes grow to fit (what they do not cover keeps the fill)."""
    rows = np.asarray(rows)
    n = ds.shape[0]
    for axis in range(1, ds.ndim):
        if rows.shape[axis] > ds.shape[axis]:
            ds.resize(rows.shape[axis], axis=axis)
    ds.resize(n + rows.shape[0], axis=0)
    ds[(slice(n, None), *(slice(0, k) for k in rows.shape[1:]))] = rows


class RunFile:
    """Creates the run file with its growing datasets and /start/weights, then appends to /iter
    and /check under SWMR. `parts` maps each probed part's name to its histogram edges, the main
    part (unprefixed datasets) last; the source declares its extra check columns and arrays, the
    probes (dynamics/probes/) theirs: `columns` (/check/<name>) and `datasets` {path: width}."""

    def __init__(self, path, config, command, parts, start_weights, source, columns=(), datasets=None):
        self.path = Path(path)
        self.main = list(parts)[-1] if parts else None
        tmp = self.path.with_suffix(".h5.part")
        try:
            self._create(tmp, config, command, parts, start_weights, source, columns, datasets or {})
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        tmp.replace(self.path)   # a run file appears whole or not at all
        self._open()

    def _create(self, tmp, config, command, parts, start_weights, source, columns, datasets):
        with h5py.File(tmp, "w", libver="latest") as f:
            # a family's attrs come last: it may name its own recurrent matrix (its key in weights())
            f.attrs.update(dict(schema=SCHEMA, name=config.name, status="running", config=config.to_json(),
                                command=command, created=now(), finished="", torch_version=str(torch.__version__),
                                dynamics_version=version(), git_commit=git_commit(), device=config.device,
                                threads=torch.get_num_threads(),
                                error="", cell=config.cell, task=config.task, family=source.family,
                                parts=json.dumps(list(parts)),
                                recurrent_matrix=RECURRENT_MATRIX.get(config.cell, "W_hh")) | source.attrs)
            it = f.create_group("iter")
            for name in ITER_COLUMNS:
                growing(it, name)
            check = f.create_group("check")
            for name in (*CHECK_COLUMNS, *columns, *source.check_columns):
                growing(check, name)
            for name, (shape, dtype) in source.check_arrays.items():
                growing_array(check, name, shape, dtype)
            for name, hist_edges in parts.items():
                group = check if name == self.main else check.create_group(f"layers/{name}")
                growing(group, "grad_time", width=1)
                hist = group.create_group("hist")
                for q, edges in hist_edges.items():
                    growing(hist, q, width=len(edges) - 1, dtype="i8", fill=0)
                    fixed(hist, f"{q}_edges", edges)
            for k, v in source.static.items():
                v = np.asarray(v)
                if v.dtype.kind in "UO":   # text: class names, the tokens of fixed examples
                    v = np.asarray(v, dtype=object).astype(h5py.string_dtype())
                fixed(f, f"static/{k}", v)
            for name, width in datasets.items():
                growing(f, name, width)
            for k, v in start_weights.items():
                fixed(f, f"start/weights/{k}", to_numpy(v))

    @classmethod
    def resume(cls, path, n_iters, n_checks, columns=()):
        """Reopen a run file and cut it back to a checkpoint: n_iters updates, n_checks checks.
        A /check column newer than the file (of CHECK_COLUMNS or `columns`) is added, NaN at the
        checks before the resume."""
        self = cls.__new__(cls)
        self.path = Path(path)
        with read_only(self.path) as f:
            layers = json.loads(f.attrs["config"]).get("n_layers", 1)   # files from before `parts`
            self.main = json.loads(f.attrs.get("parts", json.dumps([str(layers - 1)])))[-1]
        try:
            open_for_writing(self.path).close()
        except OSError:
            rewrite(self.path)
        with open_for_writing(self.path) as f:
            n_surfaces = int(np.sum(f["surface/iter"][:] <= n_iters)) if "surface/iter" in f else 0

            def cut(name, obj):
                if isinstance(obj, h5py.Dataset) and obj.maxshape[0] is None:
                    rows = {"iter": n_iters, "surface": n_surfaces}.get(name.split("/")[0], n_checks)
                    obj.resize(rows, axis=0)
            f.visititems(cut)
            for name in (*CHECK_COLUMNS, *columns):
                if name not in f["check"]:
                    growing(f["check"], name).resize(n_checks, axis=0)
            f.attrs.update(status="running", error="", finished="", threads=torch.get_num_threads())
            if "final" in f:
                del f["final"]
        self._open()
        return self

    def _open(self):
        self.f = open_for_writing(self.path)
        self.f.swmr_mode = True

    def still_there(self):
        """Make sure that the path still names the file being written; returns what was done. A run
        file removed during the run (a clean-up, a mistaken rm) is written back from the copy this
        process still holds open (Linux's /proc/self/fd), every row kept: "recreated". One replaced
        by another file is not touched: what this run wrote is saved beside it as
        <name>.replaced.h5 and an InputError stops the run."""
        fd = self.f.id.get_vfd_handle()
        try:
            here = os.stat(self.path)
        except FileNotFoundError:
            here = None
        held = os.fstat(fd)
        if here is not None and (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino):
            return None
        where = self.path if here is None else self.path.with_name(f"{self.path.stem}.replaced.h5")
        if not os.path.exists(f"/proc/self/fd/{fd}"):
            self.f, f = None, self.f
            f.close()
            raise InputError(f"run file {str(self.path)!r} was removed or replaced during the run; the run stopped")
        self.f.flush()
        tmp = where.with_suffix(".h5.part")
        shutil.copyfile(f"/proc/self/fd/{fd}", tmp)   # the unlinked file, as this process sees it
        self.f, f = None, self.f
        f.close()
        tmp.replace(where)
        rewrite(where)                                # the copy is marked open for writing: clean it
        if here is not None:
            raise InputError(f"run file {str(self.path)!r} was replaced by another file during the run; the run "
                             f"stopped and what it recorded is in {str(where)!r}")
        self._open()
        return "recreated"

    def append_iters(self, columns):
        with failed_writes_as_os_errors(self.path):
            for name, values in columns.items():
                append_rows(self.f["iter"][name], values)

    def append_check(self, row, parts):
        """row: {column or array name: value}, a name starting with / a path from the root
        (/surface/...); parts: {name: {"grad_time": (T,), "hist": {q: counts}}}."""
        with failed_writes_as_os_errors(self.path):
            self._append_check(row, parts)

    def _append_check(self, row, parts):
        for name, value in row.items():
            value = np.asarray(value)
            ds = self.f[name] if name.startswith("/") else self.f["check"][name]
            append_rows(ds, value[None] if value.ndim else [value])
        for name, diag in parts.items():
            group = self.f["check"] if name == self.main else self.f[f"check/layers/{name}"]
            append_rows(group["grad_time"], diag["grad_time"][None, :])
            for q, counts in diag["hist"].items():
                append_rows(group["hist"][q], counts[None, :])
        self.f.flush()

    def amend_check(self, row):
        """Write values into the last check's row (a column of it that is still NaN, say)."""
        with failed_writes_as_os_errors(self.path):
            for name, value in row.items():
                self.f["check"][name][-1] = value
            self.f.flush()

    def counts(self):
        return self.f["iter/loss"].shape[0], self.f["check/iter"].shape[0]

    def close(self, status, error="", final_weights=None, final_sample=None):
        """Close the SWMR handle, then record the status and the /final group. On a disk too full
        for that, raise OSError (ENOSPC) rather than begin: a write that fails halfway would leave
        the file marked open and unreadable, while the SWMR session leaves it readable, with every
        row of the last check."""
        if getattr(self, "f", None) is None:
            return
        f, self.f = self.f, None
        with failed_writes_as_os_errors(self.path):
            f.close()
        final = [to_numpy(v) for v in (*(final_weights or {}).values(), *(final_sample or {}).values())]
        if free_bytes(self.path) < CLOSE_MARGIN + sum(v.nbytes for v in final):
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
        with open_for_writing(self.path) as f:
            f.attrs.update(status=status, error=error, finished=now())
            if final_weights is not None:
                if "final" in f:
                    del f["final"]
                for k, v in final_weights.items():
                    fixed(f, f"final/weights/{k}", to_numpy(v))
                for k, v in (final_sample or {}).items():
                    f.create_dataset(f"final/sample/{k}", data=to_numpy(v), compression="gzip")


@contextmanager
def failed_writes_as_os_errors(path):
    """h5py reports a write that the file system refused (a full disk) as a RuntimeError with the
    errno in its text, and a close after one as a RuntimeError without: both as the OSError they
    are, so that the trainer treats them as a fault of the machine."""
    try:
        yield
    except RuntimeError as e:
        found = re.search(r"errno = (\d+)", str(e))
        code = int(found.group(1)) if found else errno.EIO
        raise OSError(code, f"{os.strerror(code)} (HDF5: {str(e).splitlines()[0][:80]})", str(path)) from None


LOCK_PATIENCE = 10.0   # seconds a writer waits for readers to let go of a run file
CLOSE_MARGIN = 1 << 20  # bytes free that closing a run file asks for beyond its final weights and sample


def open_for_writing(path, patience=None):
    """Open a run file normally for writing. A reader that holds the file (a plot or a notebook,
    while the writer is between SWMR sessions) keeps HDF5's lock and refuses the writer; wait for
    it a while, then open without the lock: a run must never be lost because someone looked."""
    deadline = time.monotonic() + (LOCK_PATIENCE if patience is None else patience)
    while True:
        try:
            return h5py.File(path, "a", libver="latest")
        except OSError as exc:
            if exc.errno != errno.EAGAIN and "unable to lock file" not in str(exc):
                raise
            if time.monotonic() > deadline:
                return h5py.File(path, "a", libver="latest", locking=False)
            time.sleep(0.05)


def read_only(path):
    """Open a run file for reading, also one that a writer holds (or held, until it was killed).
    A truncated file stays an error: opened for SWMR reading, HDF5 would not check its end."""
    try:
        return h5py.File(path, "r")
    except OSError as e:
        if "truncated file" in str(e):
            raise
        return h5py.File(path, "r", libver="latest", swmr=True)


def rewrite(path):
    """Copy a run file into a fresh one. A writer killed outright (SIGKILL, power loss) leaves the
    file marked as open for SWMR writing, which HDF5 refuses to open for writing again; a reader
    still sees every flushed row, and the copy (chunking and resizability kept) is clean."""
    tmp = path.with_suffix(".h5.part")
    with h5py.File(path, "r", libver="latest", swmr=True) as src, h5py.File(tmp, "w", libver="latest") as dst:
        dst.attrs.update(dict(src.attrs))
        for name in src:
            src.copy(src[name], dst, name=name)
    tmp.replace(path)


def verify(path, remedy):
    """Read every dataset of a run file once: a chunk whose checksum fails (damaged bytes) is an
    InputError that names the dataset. Files from before the checksums read as they are."""
    failed = []

    def read(name, obj):
        if isinstance(obj, h5py.Dataset) and not failed:
            try:
                obj[()]
            except (OSError, RuntimeError) as e:
                failed.append(f"{name}: {' '.join(str(e).split())[:80]}")
    with read_only(path) as f:
        f.visititems(read)
    if failed:
        raise InputError(f"run file {str(path)!r} is damaged ({failed[0]}); {remedy}")


def to_numpy(v):
    return v.detach().cpu().numpy() if torch.is_tensor(v) else np.asarray(v)


def version():
    from . import __version__
    return __version__


def write_npz(path):
    """runs/<name>_final_state.npz with the reference code's keys, read back from the run file."""
    with h5py.File(path, "r") as f:
        out = {"train_nll": f["check/train_loss"][:], "valid_error": f["check/valid_error"][:],
               "gradient_norm": f["iter/grad_norm"][:], "gradient_norm_clipped": f["iter/grad_norm_clipped"][:],
               "rho_Whh": f["check/rho"][:], "Omega": f["iter/omega"][:]}
        out.update({k: v[:] for k, v in f["final/weights"].items()})
        if "grad_time" in f["check"] and f["check/grad_time"].shape[0]:
            out["g_t"] = f["check/grad_time"][-1]
        sample = f.get("final/sample")
        if sample is not None:
            if "h" in sample and f.attrs["cell"] != "transformer":   # a residual stream has no saturation
                h = sample["h"][:]
                activation = json.loads(f.attrs["config"])["activation"]
                out["saturation"] = np.minimum(h, 1 - h) if activation == "sigmoid" else 1 - np.abs(h)
            out.update({f"gate_{k}": v[:] for k, v in sample.items() if k not in ("g", "h")})
    np.savez(path.with_name(f"{path.stem}_final_state.npz"), **out)
