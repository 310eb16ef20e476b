"""Read a run file (HDF5, schema `dynamics-run/1`, docs/run-file.md) or a final-state NPZ into a
`Snapshot`: plain numpy arrays, consistent in length, detached from the file.

A run file may still be written while it is read. `load` opens such a file as an SWMR reader,
reads every dataset's current length first, and cuts all /check arrays to the smallest row count
K and all /iter arrays to the smallest N, so the snapshot never mixes rows of different checks.
Files of every age are read: with or without the `parts` attribute (older files number their
/check/layers groups). A final-state NPZ becomes a snapshot with its final state as the last check.
Every failure becomes one `InputError` line that names the path and the problem.
"""
import json
import os
from dataclasses import dataclass, field

import numpy as np

from dynamics.lock import writer_alive
from dynamics.schema import CHECKPOINT_SUFFIX, GATE_ORDER, RECURRENT_MATRIX, SCHEMA, SIGMOID_EDGES, TANH_EDGES
from tasks.errors import InputError

#: The 2-D per-check datasets of diagnostics_level = full (their 1-D ones are /check columns).
THEORY_2D = ("jac_step_norm", "jac_prod_norm", "lyapunov")


@dataclass
class Layer:
    """The per-check gradient data of one recurrent layer."""
    grad_time: np.ndarray | None = None              # (K, T_max)
    hists: dict = field(default_factory=dict)        # q -> (K, bins) counts
    edges: dict = field(default_factory=dict)        # q -> (bins + 1,)


@dataclass
class Snapshot:
    """Everything a figure or a verdict needs from one run, as numpy arrays.

    `iter` columns have N rows (one per SGD update), `check` columns, `grad_time`, the
    histograms and `samples` K rows (one per check). `layers[0]` is the unprefixed layer nearest
    the input; stacked models add `layers[l]` for l >= 1. Figures put the `iter` arrays on
    `iter_x` and the check arrays on `check_x` (both iteration numbers for a run file).
    """
    path: str
    source: str                                      # "h5" or "npz"
    attrs: dict
    config: dict
    iter: dict
    check: dict
    layers: dict                                     # l -> Layer
    samples: np.ndarray | None
    start_weights: dict
    final_weights: dict
    final_sample: dict
    iter_x: np.ndarray
    check_x: np.ndarray
    arrays: dict = field(default_factory=dict)        # name -> (K, ...) per-check arrays of a family
    part_names: dict = field(default_factory=dict)    # l -> the part's name in the run file
    static: dict = field(default_factory=dict)        # /static/<name>: fixed data written at the start
    iter_xlabel: str = "iteration (SGD update)"
    check_xlabel: str = "iteration (SGD update)"
    theory: dict = field(default_factory=dict)       # diagnostics_level = full: THEORY_2D, K rows
    surface: dict = field(default_factory=dict)      # /surface/<name>, M rows (one per surface)

    # --- the layer-0 data under the names of the schema
    @property
    def grad_time(self):
        return self.layers[0].grad_time if 0 in self.layers else None

    @property
    def hists(self):
        return self.layers[0].hists if 0 in self.layers else {}

    @property
    def edges(self):
        return self.layers[0].edges if 0 in self.layers else {}

    # --- root attributes
    @property
    def name(self):
        return str(self.attrs.get("name") or _stem(self.path))

    @property
    def status(self):
        """The run file's status; "stopped" for one that says "running" but has no writer left."""
        return str(self.attrs.get("status") or "unknown")

    @property
    def stopped_text(self):
        """What a reader of a stopped run needs: where it stopped and how it continues."""
        last = int(self.check["iter"][-1]) if self.n_check and "iter" in self.check else 0
        checkpoint = os.path.join(os.path.dirname(self.path), self.name + CHECKPOINT_SUFFIX)
        if self.family == "recorded":
            how = "recorded by a loop that ended without Recorder.close()"
        elif os.path.exists(checkpoint):
            how = "dynamics train --resume continues it"
        else:
            how = "it has no checkpoint: dynamics train --force starts it again"
        return f"stopped without closing (last check at update {last}); {how}"

    @property
    def error(self):
        return str(self.attrs.get("error") or "")

    @property
    def family(self):
        """The task family that wrote the file (synthetic, text, ...); older files by their task."""
        family = self.attrs.get("family")
        if family:
            return str(family)
        return "text" if self.task == "text" else "synthetic"

    @property
    def cell(self):
        return str(self.attrs.get("cell") or self.cfg("cell") or "?")

    @property
    def task(self):
        return str(self.attrs.get("task") or self.cfg("task") or "?")

    @property
    def recurrent_matrix(self):
        name = self.attrs.get("recurrent_matrix")
        if name:
            return str(name)
        return RECURRENT_MATRIX.get(self.cell, "W_hh")   # files from before the attribute

    @property
    def end_aligned(self):
        """g_t of this run is indexed by steps before each sequence's last token."""
        return str(self.attrs.get("grad_time_align", "start")) == "end"

    @property
    def n_iter(self):
        return len(self.iter_x)

    @property
    def n_check(self):
        return len(self.check_x)

    @property
    def iterations_done(self):
        """SGD updates done: the last /iter row, or the last check's iteration."""
        if self.n_iter and self.source == "h5":
            return int(self.iter_x[-1])
        if "iter" in self.check and self.n_check:
            return int(self.check["iter"][-1])
        return self.n_iter

    @property
    def gates(self):
        """Gate names with a histogram, in the order z r i f o."""
        return [g for g in GATE_ORDER if f"gate_{g}" in self.hists]

    def cfg(self, *keys, default=None):
        """The first config value found under any of `keys` (also inside nested sections)."""
        for key in keys:
            if key in self.config:
                return self.config[key]
        for key in keys:
            for value in self.config.values():
                if isinstance(value, dict) and key in value:
                    return value[key]
        return default


def load(path):
    """A `Snapshot` of the run file or final-state NPZ at `path`; `InputError` if unreadable."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, not a run file")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(b"PK"):
        return _load_npz(path)
    return _load_h5(path)


# ----------------------------------------------------------------------------------- HDF5

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _check_superblock(path):
    """Fail fast on a file that is not HDF5 or is shorter than its superblock says: an SWMR
    reader does not check the end of file and would retry unreadable metadata for minutes."""
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        head = fh.read(48)
    if not head.startswith(HDF5_SIGNATURE):
        return                      # maybe a user block; h5py decides
    version = head[8] if len(head) > 8 else None
    if version in (2, 3) and len(head) >= 12:
        width = head[9]
        start = 12 + 2 * width      # base address, superblock extension, then end-of-file address
        if width in (2, 4, 8) and len(head) >= start + width:
            eof = int.from_bytes(head[start:start + width], "little")
            if eof > size:
                raise InputError(f"{path}: truncated HDF5 file ({size} of {eof} bytes), cannot be read")


def _open_h5(path):
    """Open read-only. A plain open first: it checks the file's end and fails fast on damage.
    A file that a run is still writing refuses a plain open (it is marked open for writing);
    that one is opened as an SWMR reader, which sees every row the writer has flushed."""
    import h5py
    _check_superblock(path)
    errors = []
    for kwargs in ({}, {"libver": "latest", "swmr": True}, {"locking": False}):
        try:
            return h5py.File(path, "r", **kwargs)
        except Exception as exc:    # noqa: BLE001 - every h5py failure is reported the same way
            errors.append(exc)
            text = _one_line(exc).lower()
            if "signature" in text or "truncat" in text or "eof" in text:
                break
    text = _one_line(errors[0])
    low = text.lower()
    if "signature" in low:
        raise InputError(f"{path}: not an HDF5 file (expected a dynamics run file or an NPZ)")
    if "truncat" in low or "eof" in low:
        raise InputError(f"{path}: truncated HDF5 file, cannot be read ({text})")
    raise InputError(f"{path}: cannot open as HDF5 ({text})")


def _load_h5(path):
    f = _open_h5(path)
    try:
        attrs = {k: _plain(v) for k, v in f.attrs.items()}
        schema = attrs.get("schema")
        if schema != SCHEMA:
            what = "has no schema attribute" if schema is None else f"has schema {schema!r}"
            raise InputError(f"{path}: not a dynamics run file ({what}; expected {SCHEMA!r})")
        if attrs.get("status") == "running" and writer_alive(path) is False:
            attrs["status"] = "stopped"     # its writer ended without closing it (killed, a lost machine)
        snap = _read_groups(f, path, attrs)
    except InputError:
        raise
    except Exception as exc:        # noqa: BLE001 - a corrupt dataset can raise almost anything
        if "filter returned failure" in str(exc):   # a chunk's fletcher32 checksum
            raise InputError(f"{path}: damaged run file: bytes of its data changed on disk and fail their "
                             f"checksum, so its numbers cannot be trusted") from None
        raise InputError(f"{path}: corrupt or truncated run file ({_one_line(exc)})") from None
    finally:
        try:
            f.close()
        except Exception:           # noqa: BLE001
            pass
    return snap


def _datasets(group, prefix=""):
    """{relative path: dataset} below `group`, refreshed to their current length (SWMR)."""
    import h5py
    out = {}
    if group is None:
        return out
    for key, item in group.items():
        if isinstance(item, h5py.Dataset):
            try:
                item.refresh()
            except Exception:       # noqa: BLE001 - not opened in SWMR mode
                pass
            out[prefix + key] = item
        elif isinstance(item, h5py.Group):
            out.update(_datasets(item, prefix + key + "/"))
    return out


def _read_groups(f, path, attrs):
    """The `Snapshot` of an open run file: every /check array cut to K rows, /iter to N."""
    config = _read_config(attrs, path)
    it = _datasets(f.get("iter"))
    ch = _datasets(f.get("check"))
    n, k_rows = _row_counts(it, ch)
    iter_cols = {k: np.asarray(d[:n], dtype=float) for k, d in it.items() if d.ndim == 1}
    check_cols = {k: np.asarray(d[:k_rows], dtype=float) for k, d in ch.items()
                  if "/" not in k and d.ndim == 1 and k != "samples"}
    names = _part_names(attrs, path)
    index, main = _part_index(names, ch)
    layers = _read_layers(ch, index, main, k_rows)
    part_names = {i: name for name, i in index.items()} if names else {l: str(l) for l in layers}
    # per-check arrays of a family (confusion matrices, attention maps, ...): (K, ...) numpy
    arrays = {k: _text_or_array(d, k_rows) for k, d in ch.items()
              if "/" not in k and d.ndim >= 2 and k not in ("grad_time", "samples")}
    samples = _read_samples(ch["samples"], k_rows) if "samples" in ch else None
    start = _read_whole(f.get("start/weights"))
    final = _read_whole(f.get("final/weights"))
    sample = _read_whole(f.get("final/sample"))
    theory = {k: np.asarray(ch[k][:k_rows], dtype=float) for k in THEORY_2D
              if k in ch and ch[k].ndim == 2}
    surface = _read_surface(f.get("surface"), n)
    static = {k: _text_or_array(d) for k, d in _datasets(f.get("static")).items()}
    check_x = check_cols["iter"] if "iter" in check_cols else np.arange(1, k_rows + 1, dtype=float)
    return Snapshot(path=path, source="h5", attrs=attrs, config=config, iter=iter_cols,
                    check=check_cols, layers=layers, samples=samples, arrays=arrays,
                    part_names=part_names, static=static, start_weights=start,
                    final_weights=final, final_sample=sample,
                    iter_x=np.arange(1, n + 1, dtype=float), check_x=np.asarray(check_x, float),
                    check_xlabel="iteration (SGD update)" if "iter" in check_cols else "check number",
                    theory=theory, surface=surface)


def _read_config(attrs, path):
    """The `config` attribute as a dict ({} if absent; a JSON non-dict under the key "config")."""
    if not attrs.get("config"):
        return {}
    try:
        config = json.loads(attrs["config"])
    except (TypeError, ValueError):
        raise InputError(f"{path}: the config attribute is not valid JSON") from None
    return config if isinstance(config, dict) else {"config": config}


def _row_counts(it, ch):
    """(N, K): the rows of the shortest /iter and /check dataset, so that a row the writer has
    not finished (one dataset already longer than the others) is never used."""
    n = min((d.shape[0] for d in it.values() if d.ndim >= 1), default=0)
    per_check = {k: d for k, d in ch.items() if d.ndim >= 1 and not k.endswith("_edges")}
    k_rows = min((d.shape[0] for d in per_check.values()), default=0)
    return n, k_rows


# docs/run-file.md: the root attribute `parts` names the probed parts, the input side first and
# the main part last; the main part's datasets are unprefixed, the others lie under
# /check/layers/<name>. Older files have no `parts`: their prefixed groups are numbered. If
# /check/layers/0 exists they are the lower layers 0 .. L-2 under the unprefixed top layer; else
# the unprefixed datasets are layer 0. Either way layers[0] is the part nearest the input.

def _part_names(attrs, path):
    """The names in the `parts` attribute, or None in an older file without it."""
    if not attrs.get("parts"):
        return None
    try:
        return [str(n) for n in json.loads(attrs["parts"])]
    except (TypeError, ValueError):
        raise InputError(f"{path}: the parts attribute is not valid JSON") from None


def _part_index(names, ch):
    """({group name under /check/layers: layer index}, the index of the unprefixed part)."""
    if names:
        return {name: i for i, name in enumerate(names)}, len(names) - 1
    prefixed = set()
    for key in ch:
        parts = key.split("/")
        if parts[0] == "layers" and len(parts) >= 3 and parts[1].isdigit():
            prefixed.add(int(parts[1]))
    main = max(prefixed) + 1 if 0 in prefixed else 0
    return {str(l): l for l in prefixed}, main


def _read_layers(ch, index, main, k_rows):
    """{layer index: Layer} with each layer's g_t and histograms; layer 0 is always there."""
    layers = {}
    for key, d in ch.items():
        parts = key.split("/")
        if parts[0] == "layers" and len(parts) >= 3 and parts[1] in index:
            l_index, rest = index[parts[1]], parts[2:]
        elif parts[0] in ("grad_time", "hist"):
            l_index, rest = main, parts
        else:
            continue
        layer = layers.setdefault(l_index, Layer())
        if rest == ["grad_time"]:
            layer.grad_time = np.asarray(d[:k_rows], dtype=float)
        elif len(rest) == 2 and rest[0] == "hist":
            q = rest[1]
            if q.endswith("_edges"):
                layer.edges[q[:-len("_edges")]] = np.asarray(d[()], dtype=float)
            else:
                layer.hists[q] = np.asarray(d[:k_rows], dtype=float)
    for layer in layers.values():     # a histogram without its edges cannot be drawn
        layer.hists = {q: h for q, h in layer.hists.items()
                       if q in layer.edges and h.ndim == 2 and h.shape[1] == len(layer.edges[q]) - 1}
    layers.setdefault(0, Layer())
    return dict(sorted(layers.items()))


def _read_samples(d, k_rows):
    """The generated text samples, (K, prompts) of str."""
    try:
        samples = np.asarray(d.asstr()[:k_rows], dtype=object)
    except (TypeError, ValueError, AttributeError):
        samples = np.vectorize(_plain, otypes=[object])(d[:k_rows])
    return samples[:, None] if samples.ndim == 1 else samples


def _read_whole(group):
    """{name: array} of every dataset below `group`, read whole (weights, the final sample)."""
    return {k: np.asarray(d[()]) for k, d in _datasets(group).items()}


def _read_surface(group, n):
    """The /surface datasets cut to the shortest, without a surface whose update the /iter
    rows do not reach yet."""
    sf = _datasets(group)
    m_rows = min((d.shape[0] for d in sf.values()), default=0)
    surface = {k: np.asarray(d[:m_rows], dtype=float) for k, d in sf.items()}
    if "iter" in surface and n:
        keep = surface["iter"] <= n
        surface = {k: v[keep] for k, v in surface.items()}
    return surface


# ------------------------------------------------------------------------------------ NPZ

_NPZ_CHECK = {"train_nll": "train_loss", "valid_error": "valid_error", "rho_Whh": "rho"}
_NPZ_SERIES = {"gradient_norm": "grad_norm", "gradient_norm_clipped": "grad_norm_clipped",
               "Omega": "omega"}
_NPZ_KNOWN = set(_NPZ_CHECK) | set(_NPZ_SERIES) | {"g_t", "saturation"}


def _load_npz(path):
    """The `Snapshot` of a final-state NPZ: one value per check, the final state (g_t,
    saturation, gates) as the last check's histograms."""
    data = _read_npz(path)
    check, k_rows = _npz_rows(data, _NPZ_CHECK)
    series, n = _npz_rows(data, _NPZ_SERIES)
    if "grad_norm" in series and "grad_norm_clipped" in series:
        g, gc = series["grad_norm"], series["grad_norm_clipped"]
        with np.errstate(invalid="ignore"):
            series["clipped"] = (gc < g * (1 - 1e-9)).astype(float)
        series["nonfinite"] = (~np.isfinite(g)).astype(float)
    has_final = any(k in data for k in ("g_t", "saturation")) or any(k.startswith("gate_") for k in data)
    if has_final and k_rows == 0:
        k_rows = 1
    check_x = np.arange(1, k_rows + 1, dtype=float)
    if n and n == k_rows:          # the reference code keeps one value per check
        iter_x, iter_label = check_x, "check number"
    else:
        iter_x, iter_label = np.arange(1, n + 1, dtype=float), "update"
    layer, sample = _npz_layer(data, k_rows)
    final = _npz_weights(data)
    cell = "lstm" if "W_hc" in final else "gru" if "W_hz" in final else "rnn"
    attrs = {"schema": SCHEMA, "name": _stem(path), "status": "unknown", "cell": cell,
             "recurrent_matrix": RECURRENT_MATRIX[cell]}
    return Snapshot(path=path, source="npz", attrs=attrs, config={}, iter=series, check=check,
                    layers={0: layer}, samples=None, start_weights={}, final_weights=final,
                    final_sample=sample, iter_x=iter_x, check_x=check_x,
                    iter_xlabel=iter_label, check_xlabel="check number")


def _read_npz(path):
    """{key: array} of the NPZ; `InputError` if unreadable or none of its keys is known."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: np.asarray(z[k]) for k in z.files}
    except Exception as exc:        # noqa: BLE001
        raise InputError(f"{path}: corrupt or unreadable NPZ file ({_one_line(exc)})") from None
    if not _NPZ_KNOWN & set(data):
        raise InputError(f"{path}: not a final-state NPZ (none of the keys "
                         f"train_nll valid_error gradient_norm rho_Whh g_t saturation)")
    return data


def _npz_rows(data, renames):
    """({our name: 1-D float array} of the keys in `renames`, cut to the shortest; its length)."""
    cols = {new: data[old].astype(float).ravel() for old, new in renames.items() if old in data}
    rows = min((len(v) for v in cols.values()), default=0)
    return {k: v[:rows] for k, v in cols.items()}, rows


def _npz_layer(data, k_rows):
    """(the Layer whose last check holds the final g_t and histograms, the gates as sample)."""
    layer = Layer()
    if "g_t" in data:
        layer.grad_time = _last_row(data["g_t"].astype(float).ravel(), np.nan, k_rows)
    if "saturation" in data:
        d = np.abs(data["saturation"].astype(float)).ravel()
        layer.hists["saturation"] = _last_row(_histogram(d, TANH_EDGES), 0.0, k_rows)
        layer.edges["saturation"] = TANH_EDGES
    sample = {}
    for key, value in data.items():
        if key.startswith("gate_") and key[5:] in GATE_ORDER:
            v = value.astype(float)
            sample[key[5:]] = v
            counts = _histogram(np.minimum(v, 1 - v).ravel(), SIGMOID_EDGES)
            layer.hists[key] = _last_row(counts, 0.0, k_rows)
            layer.edges[key] = SIGMOID_EDGES
    return layer, sample


def _npz_weights(data):
    """The final weights: the 1-D and 2-D W_*, b_* and E arrays."""
    reserved = _NPZ_KNOWN | {k for k in data if k.startswith("gate_")}
    return {k: v for k, v in data.items() if k not in reserved and v.ndim in (1, 2)
            and (k.startswith("W_") or k.startswith("b_") or k == "E")}


def _last_row(values, fill, k_rows):
    """A (k_rows, len(values)) array of `fill` with `values` as its last row."""
    out = np.full((k_rows, len(values)), fill)
    out[-1] = values
    return out


def _histogram(values, edges):
    """Counts on fixed `edges`; values outside go to the first or last bin, NaN is dropped."""
    values = values[np.isfinite(values)]
    values = np.clip(values, edges[0], edges[-1])
    return np.histogram(values, bins=edges)[0].astype(float)


# ---------------------------------------------------------------------------------- helpers

def _text_or_array(d, rows=None):
    """A dataset (its first `rows` rows) as numpy; strings decoded to str."""
    pick = () if rows is None else slice(rows)
    if d.dtype.kind in "OS":
        return np.asarray(d.asstr()[pick], dtype=object)
    return np.asarray(d[pick])


def _stem(path):
    base = os.path.basename(os.fspath(path))
    for suffix in ("_final_state.npz", ".npz", ".h5", ".hdf5"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return os.path.splitext(base)[0]


def _plain(value):
    """An attribute value as a Python str/float/int/list."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        if value.shape == ():
            return _plain(value[()])
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _one_line(exc):
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
