"""`dynamics export RUN.h5 --tensorboard DIR`: a run file as TensorBoard events, to view runs
beside other projects. Needs the optional extra `tensorboard` (pip install 'dynamics[tensorboard]').

DIR/<name>/ gets, read from the run file:
    iter/<column>           per update (step = update 1, 2, ...): loss, grad_norm, grad_norm_clipped, ...
    check/<column>          per check (step = its update): train_loss, valid_loss, valid_error, rho, ...
    hist/<q>                per check, histograms of the top layer (log10_grad: log10 g_t, saturation,
                            gate_*); layer<l>/hist/<q> for the lower layers of a stacked model
    samples/<p>             per check, the text sampled from prompt p (language models)
"""
from pathlib import Path

import numpy as np

from tasks.errors import InputError, bad_value

from .runfile import read_only

EXTRA = "pip install 'dynamics[tensorboard]'"


def summary_writer(folder):
    try:
        import tensorboard  # noqa: F401  (torch's writer needs it)
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise InputError(f"--tensorboard needs the optional extra tensorboard: {EXTRA}") from None
    return SummaryWriter(str(folder))


def finite_columns(group):
    """{name: values} of the 1-D datasets of a group that hold a finite value."""
    out = {}
    for name, ds in group.items():
        if getattr(ds, "ndim", None) == 1 and ds.dtype.kind == "f":
            values = ds[:]
            if np.isfinite(values).any():
                out[name] = values
    return out


def add_histogram(writer, tag, counts, edges, step):
    """One histogram from the run file's counts on its bins (moments from the bin centres)."""
    counts = counts.astype(np.float64)
    if counts.sum() == 0:
        return
    centres = (edges[:-1] + edges[1:]) / 2
    used = np.flatnonzero(counts)
    writer.add_histogram_raw(tag, min=float(edges[used[0]]), max=float(edges[used[-1] + 1]), num=float(counts.sum()),
                             sum=float(counts @ centres), sum_squares=float(counts @ centres ** 2),
                             bucket_limits=edges[1:].tolist(), bucket_counts=counts.tolist(), global_step=step)


def histogram_groups(check):
    """(tag prefix, hist group) of every probed part, the main one first: a stacked model's lower
    layers as layer<l>/hist, a family's named parts (layer0_bwd, enc0, block1, ...) by name."""
    groups = [("hist", check["hist"])] if "hist" in check else []
    parts = check.get("layers", {})
    return groups + [(f"layer{name}/hist" if name.isdigit() else f"{name}/hist", parts[name]["hist"])
                     for name in parts if "hist" in parts[name]]


def export_tensorboard(run, folder):
    """Write the events of the run file `run` into `folder`/<name>/; return that folder."""
    run = Path(run)
    if not run.is_file():
        raise bad_value("run", str(run), "no such run file")
    try:
        f = read_only(run)
    except OSError:
        raise bad_value("run", str(run), "not a run file (HDF5)") from None
    with f:
        if "iter" not in f or "check" not in f:
            raise bad_value("run", str(run), "not a run file (it has no /iter and /check)")
        target = Path(folder) / str(f.attrs.get("name", run.stem))
        if target.exists() and any(target.iterdir()):
            raise InputError(f"--tensorboard {str(target)!r} exists and is not empty: remove it or give another folder")
        writer = summary_writer(target)
        with writer:
            for name, values in finite_columns(f["iter"]).items():
                for i, v in enumerate(values, start=1):
                    if np.isfinite(v):
                        writer.add_scalar(f"iter/{name}", float(v), i)
            check = f["check"]
            steps = check["iter"][:].astype(int)
            for name, values in finite_columns(check).items():
                if name != "iter":
                    for step, v in zip(steps, values):
                        if np.isfinite(v):
                            writer.add_scalar(f"check/{name}", float(v), int(step))
            for prefix, hist in histogram_groups(check):
                for q in hist:
                    if not q.endswith("_edges"):
                        edges, counts = hist[f"{q}_edges"][:], hist[q][:]
                        for step, row in zip(steps, counts):
                            add_histogram(writer, f"{prefix}/{q}", row, edges, int(step))
            if "samples" in check:
                for step, row in zip(steps, check["samples"][:]):
                    for p, text in enumerate(row):
                        text = text.decode() if isinstance(text, bytes) else str(text)
                        writer.add_text(f"samples/{p}", f"```\n{text}\n```", int(step))
    return target
