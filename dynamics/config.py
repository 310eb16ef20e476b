"""The run configuration: one frozen dataclass, built from a preset TOML plus overrides and
validated once. Keys may also be given by the reference code's names (ALIASES)."""
import dataclasses
import json
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from .errors import InputError, bad_value

CELLS = ("rnn", "gru", "lstm", "mlp")   # mlp: the fixed-window language model (text tasks)
OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
CLIPS = ("none", "rescale")
DTYPES = ("float32", "float64")
BATCHING = ("stream", "random")


@dataclass(frozen=True)
class Config:
    name: str = "run"                 # the run file is <out_dir>/<name>.h5
    out_dir: str = "runs"
    task: str = "torder"              # torder torder3 add mul mem perm text names sentiment
    n_values: int = 5                 # mem: number of symbols
    n_pos: int = 10                   # mem: pattern length
    text: str = ""                    # text: a UTF-8 file; empty for the default corpus
    cell: str = "rnn"
    activation: str = "tanh"          # rnn only: tanh sigmoid relu linear
    init: str = "uniform"             # sigmoid basic_tanh smart_tanh orthogonal identity uniform
    n_hidden: int = 50
    n_layers: int = 1
    embedding: int = 0                # text: embedding size (0: n_hidden)
    dropout: float = 0.0
    tie_weights: bool = False
    forget_bias: float = 1.0          # lstm: initial b_f
    batch_size: int = 20
    eval_batch_size: int = 10000      # sequences per validation (text: characters)
    chunk_batch_size: int = 1000      # validation chunk, each with its own length
    check_freq: int = 20              # updates between checks
    min_length: int = 50
    max_length: int = 200             # text: the truncated-BPTT window is min_length
    batching: str = "stream"          # text: stream (state carried) or random windows
    max_iters: int = 5000
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    clip: str = "none"
    cutoff: float = 1.0
    alpha: float = 0.0                # Ω weight; 0 switches the regulariser off
    seed: int = 52
    device: str = "cpu"
    threads: int = 1                  # CPU threads; these small recurrences gain nothing from more
    dtype: str = "float32"
    diagnostics: bool = True          # per-check g_t, histograms, saturation, ρ
    sample_chars: int = 200           # text: characters sampled per prompt at each check
    # classify (names, sentiment): sequence classification, dynamics/sources/classify.py
    pooling: str = "last"             # last mean max attention: how the top layer's steps become one vector
    bidirectional: bool = False       # true: every layer also reads each sequence backwards
    n_classes: int = 0                # names: number of families, 2 to 10 (0: 5); sentiment: 2 (0: 2)
    class_balance: tuple = ()         # names: K class probabilities >= 0 summing to 1 (empty: uniform)
    class_weighting: str = "none"     # none or balanced: class k's loss weight 1 / (K p_k)
    distance: int = -1                # sentiment: filler tokens after the deciding phrase, >= 0 (-1: anywhere)
    truncate: int = 0                 # keep only each sequence's last N tokens, N >= 1 (0: every token)
    # language models (text family): the fixed-window MLP, word tokens, class-conditioned generation
    window: int = 8                   # cell mlp: how many previous tokens it reads (>= 1)
    tokens: str = "char"              # text: char or word
    vocab_size: int = 5000            # tokens word: the most frequent training words kept, + <unk> (>= 2)
    condition: str = "first"          # gen tasks: the class enters through the initial state (first)
                                      # or is concatenated to every input (every)
    judge: str = ""                   # gen tasks: a classifier run (.h5) of the same classes that
                                      # judges the samples at every check; empty: none

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @property
    def run_path(self):
        return Path(self.out_dir) / f"{self.name}.h5"

    def replace(self, **changes):
        return make({**dataclasses.asdict(self), **changes}, given=changes)


# The reference code's flag names, and a few obvious synonyms.
ALIASES = {"nhid": "n_hidden", "bs": "batch_size", "ebs": "eval_batch_size", "cbs": "chunk_batch_size",
           "checkFreq": "check_freq", "maxiters": "max_iters", "clipstyle": "clip", "collectDiags": "diagnostics",
           "diagGates": "diagnostics", "hidden": "n_hidden", "layers": "n_layers", "iters": "max_iters"}
FIELDS = {f.name: f for f in fields(Config)}


def canonical(key):
    key = ALIASES.get(key, key)
    if key not in FIELDS:
        raise bad_value("key", key, "one of " + ", ".join(FIELDS))
    return key


def coerce(key, value):
    """A value of the field's type; strings (from --set) are parsed."""
    kind = type(Config.__dataclass_fields__[key].default)
    if kind is bool:
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        if isinstance(value, bool):
            return value
        raise bad_value(key, value, "true or false")
    if kind is int:
        try:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            raise bad_value(key, value, "an integer") from None
    if kind is float:
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise bad_value(key, value, "a number") from None
    if kind is tuple:   # a list of numbers: a TOML array, or "0.4,0.6" / "[0.4, 0.6]" from --set
        try:
            if isinstance(value, str):
                value = value.strip().strip("[]").replace(",", " ").split()
            if isinstance(value, (bool, int, float)) or any(isinstance(v, bool) for v in value):
                raise TypeError
            return tuple(float(v) for v in value)
        except (TypeError, ValueError):
            raise bad_value(key, value, "a list of numbers") from None
    if not isinstance(value, str):
        raise bad_value(key, value, "a string")
    return value


def parse_sets(pairs):
    """['key=value', ...] → {key: value} with canonical keys."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise InputError(f"--set {pair!r} is not allowed: write key=value")
        key, value = pair.split("=", 1)
        out[canonical(key.strip())] = value.strip()
    return out


def read_toml(path, key="preset"):
    """A TOML file as a dict; a missing or malformed file is bad input named by `key`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{key}={str(path)!r} is not allowed: no such file")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{key}={str(path)!r} is not allowed: not valid TOML ({e})") from None


def read_preset(path):
    path = Path(path)
    values = {canonical(k): v for k, v in read_toml(path).items()}
    values.setdefault("name", path.stem)
    return values


def make(values, given=None):
    """Coerce, then validate everything that can be checked before a run starts. `given`: the
    keys set explicitly (default: all of `values`); a recorded config passes none."""
    values = {canonical(k): coerce(canonical(k), v) for k, v in values.items()}
    c = Config(**values)
    validate(c, given=values if given is None else [canonical(k) for k in given])
    return c



def load(preset=None, overrides=None):
    values = read_preset(preset) if preset else {}
    values.update(overrides or {})
    return make(values)


# Keys that belong to some task families only: setting one explicitly for another family's task is
# bad input. key -> the families it applies to.
FAMILY_KEYS = {
    "n_values": ("synthetic",), "n_pos": ("synthetic",), "alpha": ("synthetic", "text"),
    "text": ("text",), "batching": ("text",), "sample_chars": ("text",), "tie_weights": ("text",),
    **{key: ("classify",) for key in ("pooling", "bidirectional", "n_classes", "class_balance",
                                      "class_weighting", "distance", "truncate")},
    "window": ("text",), "tokens": ("text",), "vocab_size": ("text",), "condition": ("conditional",),
    "judge": ("conditional",),
}


def check_family_keys(c, given):
    """Explicitly given keys (`given`) must belong to the family of the run's task."""
    from .sources import family
    fam = family(c.task)
    for key in given:
        if key in FAMILY_KEYS and fam not in FAMILY_KEYS[key]:
            raise bad_value(key, getattr(c, key), f"not set: it applies to {' and '.join(FAMILY_KEYS[key])} "
                                                  f"tasks, and task {c.task} is a {fam} task")


def validate(c, given=()):
    from .init import INITS
    from .recurrence import ACTIVATIONS
    from .sources import SOURCES, source_class, family

    def choice(key, allowed):
        if getattr(c, key) not in allowed:
            raise bad_value(key, getattr(c, key), ", ".join(allowed))

    def positive(*keys):
        for key in keys:
            if getattr(c, key) <= 0:
                raise bad_value(key, getattr(c, key), "a positive number")

    choice("task", tuple(SOURCES))
    choice("cell", CELLS)
    choice("activation", tuple(ACTIVATIONS))
    choice("init", INITS)
    choice("optimizer", OPTIMIZERS)
    choice("clip", CLIPS)
    choice("dtype", DTYPES)
    choice("batching", BATCHING)
    positive("n_hidden", "n_layers", "batch_size", "eval_batch_size", "chunk_batch_size", "check_freq",
             "min_length", "max_length", "max_iters", "lr", "cutoff", "n_values", "n_pos", "sample_chars", "threads")
    for key in ("alpha", "weight_decay", "momentum", "embedding"):
        if getattr(c, key) < 0:
            raise bad_value(key, getattr(c, key), "a number >= 0")
    if not 0 <= c.dropout < 1:
        raise bad_value("dropout", c.dropout, "a number in [0, 1)")
    if c.min_length > c.max_length:
        raise InputError(f"min_length={c.min_length} is not allowed: it exceeds max_length={c.max_length}")
    if c.cell != "rnn" and c.activation != "tanh":
        raise bad_value("activation", c.activation, f"tanh (a {c.cell} has fixed nonlinearities)")
    if c.alpha > 0 and c.cell != "rnn":
        raise bad_value("alpha", c.alpha, "0 for a gru or lstm (the regulariser is defined for the RNN's W_hh)")
    if c.cell == "mlp" and family(c.task) != "text":
        raise bad_value("cell", c.cell, f"rnn, gru or lstm (the mlp is a language model of the text task)")
    if c.n_layers > 1 and family(c.task) == "synthetic":
        raise bad_value("n_layers", c.n_layers, "1 for the synthetic tasks")
    if not c.name or "/" in c.name or c.name.startswith("."):
        raise bad_value("name", c.name, "a plain file name")
    if c.device != "cpu" and not c.device.startswith("cuda"):
        raise bad_value("device", c.device, "cpu, cuda or cuda:N")
    check_family_keys(c, given)
    source_class(c.task).validate(c)


def task_options(c):
    return {"n_values": c.n_values, "n_pos": c.n_pos} if c.task == "mem" else {}
