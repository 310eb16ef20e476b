"""The sweep spec: a TOML file that names a base preset, overrides applied to every run, and a
grid whose product gives the runs (the grammar is in dynamics/sweep/__init__.py).

`load_spec` reads and checks a spec; `expand` turns it into its points, one validated config
each. Nothing here touches a run file or a cluster.
"""
import re
from dataclasses import dataclass
from itertools import product
from pathlib import Path

from tasks.errors import InputError

from .. import config as cfg

SPEC_KEYS = ("name", "base", "description", "set", "grid")
LENGTH = "length"          # shortcut axis and [set] key: min_length = max_length = value


@dataclass
class Axis:
    name: str
    labels: list                     # one label per entry
    values: list                     # one {config key: value} per entry
    bases: list                      # one preset path (or None: the spec's base) per entry


@dataclass
class Spec:
    path: Path
    name: str
    base: Path | None
    sets: dict
    axes: list


@dataclass
class Point:
    name: str                        # the run name: axis=label,...
    labels: dict                     # axis -> label
    config: cfg.Config


# -- reading a spec -------------------------------------------------------------------------------
def load_spec(path):
    """Read and check a sweep spec; `base` is resolved relative to the spec file's folder."""
    path = Path(path)
    raw = cfg.read_toml(path, "spec")
    unknown = [k for k in raw if k not in SPEC_KEYS]
    if unknown:
        raise InputError(f"{path}: key {unknown[0]!r} is not allowed: one of {', '.join(SPEC_KEYS)}")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", name):
        raise InputError(f"{path}: name={name!r} is not allowed: letters, digits and ._+- (a folder name)")
    base = raw.get("base")
    if base is not None:
        base = resolve_base(base, path.parent, str(path))
    sets = raw.get("set", {})
    grid = raw.get("grid", {})
    if not isinstance(sets, dict) or not isinstance(grid, dict):
        raise InputError(f"{path}: [set] and [grid] must be tables")
    if not grid:
        raise InputError(f"{path}: [grid] is empty: give at least one axis, e.g. seed = [1, 2, 3]")
    overrides = expand_table(sets, f"{path}: set")
    axes = [parse_axis(k, v, f"{path}: grid", path.parent) for k, v in grid.items()]
    return Spec(path, name, base, overrides, axes)


def resolve_base(base, folder, where):
    """A preset path given in a spec, relative to the spec file's folder; it must exist."""
    if not isinstance(base, str):
        raise InputError(f"{where}: base={base!r} is not allowed: the path of a preset TOML")
    path = folder / base
    if not path.is_file():
        raise InputError(f"{where}: base={base!r} is not allowed: no such file {str(path)!r} "
                         f"(base is relative to the spec file's folder)")
    return path


def parse_axis(name, entries, where, folder=Path(".")):
    """One grid axis: a list of plain values (an axis named after a config key) or of tables."""
    if not isinstance(entries, list) or not entries:
        raise InputError(f"{where}.{name}={entries!r} is not allowed: a non-empty list of values")
    is_key = name == LENGTH or cfg.ALIASES.get(name, name) in cfg.FIELDS
    labels, values, bases = [], [], []
    for i, entry in enumerate(entries):
        at = f"{where}.{name}[{i}]"
        if isinstance(entry, dict):
            label, keys, base = parse_table_entry(entry, at, folder)
        elif isinstance(entry, list):
            raise InputError(f"{at}={entry!r} is not allowed: a value or a table of keys")
        elif not is_key:
            raise InputError(f"{at}={entry!r} is not allowed: {name!r} is not a config key, so its entries "
                             f"must be tables of keys, e.g. {{label = \"a\", clip = \"rescale\"}}")
        else:
            label, keys, base = label_of(entry), expand_key(name, entry, at), None
        labels.append(label)
        values.append(keys)
        bases.append(base)
    duplicated = sorted({l for l in labels if labels.count(l) > 1})
    if duplicated:
        raise InputError(f"{where}.{name}: label {duplicated[0]!r} is not allowed twice: give the entries distinct labels")
    return Axis(name, labels, values, bases)


def parse_table_entry(entry, at, folder):
    """A grid entry given as a table: (label, {config key: value}, its own base or None). The label
    defaults to the base's file name, else to the values joined by '-'."""
    entry = dict(entry)
    label = entry.pop("label", None)
    base = None
    if "base" in entry:
        base = resolve_base(entry.pop("base"), folder, at)
        label = base.stem if label is None else label
    if not entry and base is None:
        raise InputError(f"{at}={entry!r} is not allowed: a table of config keys and values")
    keys = expand_table(entry, at)
    label = label_of(label if label is not None else "-".join(label_of(v) for v in entry.values()))
    return label, keys, base


def expand_table(table, where):
    """A table of single values (a [set] table, one labelled grid entry) → canonical config keys."""
    keys = {}
    for k, v in table.items():
        if isinstance(v, (dict, list)):
            raise InputError(f"{where}: {k}={v!r} is not allowed: a single value")
        keys.update(expand_key(k, v, where))
    return keys


def expand_key(key, value, where):
    """One spec key → {canonical config key: value}; `length` sets both lengths."""
    if key == LENGTH:
        return {"min_length": value, "max_length": value}
    try:
        key = cfg.canonical(key)
    except InputError as e:
        raise InputError(f"{where}: {e}") from None
    if key in ("name", "out_dir"):
        raise InputError(f"{where}: {key} is not allowed in a sweep: the sweep names its runs and their folder")
    return {key: value}


def label_of(value):
    """A value as it appears in a run name."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return re.sub(r"[^A-Za-z0-9._+-]", "_", text) or "_"


# -- the points of a spec -------------------------------------------------------------------------
def expand(spec, out_dir=None):
    """The runs of a spec, in grid order (the last axis varies fastest), each config validated.
    One invalid point fails the whole sweep before anything runs."""
    out_dir = Path(out_dir or Path("runs") / spec.name).resolve()
    base = cfg.read_preset(spec.base) if spec.base else {}
    own_bases = {b: cfg.read_preset(b) for a in spec.axes for b in a.bases if b is not None}
    if not own_bases:                # else each point is checked with its own base
        try:
            cfg.make({**base, **spec.sets, "name": "check"})
        except InputError as e:
            raise InputError(f"{spec.path}: base and [set]: {e}") from None
    points, names = [], set()
    for combo in product(*(range(len(a.labels)) for a in spec.axes)):
        point = grid_point(spec, combo, base, own_bases, out_dir)
        if point.name in names:
            raise InputError(f"{spec.path}: two grid points share the run name {point.name!r}")
        names.add(point.name)
        points.append(point)
    return points


def grid_point(spec, combo, base, own_bases, out_dir):
    """The point at one entry index per axis: its base (the spec's, or the one entry that names its
    own), then [set], then the entries' keys; its name and folder last."""
    entries = list(zip(spec.axes, combo))
    labels = {a.name: a.labels[i] for a, i in entries}
    name = ",".join(f"{k}={v}" for k, v in labels.items())
    own = [a.bases[i] for a, i in entries if a.bases and a.bases[i] is not None]
    if len(own) > 1:
        raise InputError(f"{spec.path}: grid point {name}: two entries name a base; at most one may")
    values = {**(own_bases[own[0]] if own else base), **spec.sets}
    for a, i in entries:
        values.update(a.values[i])
    values.update(name=name, out_dir=str(out_dir))
    try:
        config = cfg.make(values)
    except InputError as e:
        raise InputError(f"{spec.path}: grid point {name}: {e}") from None
    return Point(name, labels, config)
