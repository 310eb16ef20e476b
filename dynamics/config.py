"""The run configuration: one frozen dataclass, built from a preset TOML plus overrides and
validated once. Keys may also be given by the reference code's names (ALIASES)."""
import dataclasses
import difflib
import json
import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from tasks.errors import InputError, bad_value

from .schedule import SCHEDULES
from .sources import FAMILIES, RECURRENT_CELLS, TASKS, family, family_class, source_class

INF = math.inf
GROUPS = ("task", "model", "optimisation and clipping", "evaluation and diagnostics", "output")


@dataclass(frozen=True)
class Range:
    """The numbers a key allows: finite, from lo to hi, each end open or closed."""
    lo: float = -INF
    hi: float = INF
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, v):
        try:
            finite = math.isfinite(v)
        except OverflowError:   # an integer too large for a float
            return False
        return (finite and (self.lo < v if self.lo_open else self.lo <= v)
                and (v < self.hi if self.hi_open else v <= self.hi))

    def describe(self, kind):
        what = "an integer" if kind is int else "a finite number"
        lo, hi = (int(x) if math.isfinite(x) and float(x).is_integer() else x for x in (self.lo, self.hi))
        if self.lo == -INF and self.hi == INF:
            return what
        if self.hi == INF:
            return f"{what} {'>' if self.lo_open else '>='} {lo}"
        if self.lo == -INF:
            return f"{what} {'<' if self.hi_open else '<='} {hi}"
        return f"{what} in {'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"


POSITIVE = Range(0, INF, lo_open=True)
COUNT = Range(1)                       # integers from 1
NONNEGATIVE = Range(0)
FRACTION = Range(0, 1, hi_open=True)   # [0, 1)
FINITE = Range()


def key(default, group, help, range=None, choices=None, words=()):
    """A config key: its default, its group in `dynamics train --help`, one line of help (what it
    does, its unit), and what it allows (a Range of numbers, or a tuple of choices; `words`: what a
    number key also takes in words, e.g. "auto")."""
    assert group in GROUPS, group
    return field(default=default, metadata={"group": group, "help": help, "range": range, "choices": choices,
                                            "words": words})


# Choices named here so that the help and the checks need no torch; tests compare them with the
# modules that implement them (tasks.synthetic.NAMES, init.INITS, recurrence.ACTIVATIONS,
# compiled.BACKENDS).
CELLS = ("rnn", "gru", "lstm", "lnlstm", "transformer", "mlp")   # mlp: the fixed-window LM (text)
ACTIVATIONS = ("tanh", "sigmoid", "relu", "linear")
INITS = ("sigmoid", "basic_tanh", "smart_tanh", "orthogonal", "identity", "uniform")
OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
CLIPS = ("none", "rescale")
DTYPES = ("float32", "float64")
BATCHING = ("stream", "random")
BACKENDS = ("auto", "compiled", "python")
# threads = auto: below this batch_size x width a step is too small to share between cores (at
# (B, H) = (20, 50) a second thread gives nothing; at (20, 128) it gives 1.4x: make bench --lm)
SHARED_STEP = 2048


@dataclass(frozen=True)
class Config:
    name: str = key("run", "output", "the run's name: the run file is <out_dir>/<name>.h5")
    out_dir: str = key("runs", "output", "folder of the run file, its checkpoints and final-state NPZ")
    task: str = key("torder", "task", "the task: a synthetic task (docs/tasks.md), or text (character-level LM)",
                    choices=tuple(TASKS))
    n_values: int = key(5, "task", "mem: number of symbols to memorise", COUNT)
    n_pos: int = key(10, "task", "mem: pattern length (symbols)", COUNT)
    text: str = key("", "task", "text: a UTF-8 file to model; empty for the default corpus (stdlib docstrings)")
    cell: str = key("rnn", "model", "the recurrent cell", choices=CELLS)
    activation: str = key("tanh", "model", "rnn only: the nonlinearity of the hidden state", choices=ACTIVATIONS)
    init: str = key("uniform", "model", "weight initialisation (docs/tasks.md)", choices=INITS)
    n_hidden: int = key(50, "model", "hidden units per layer", COUNT)
    n_layers: int = key(1, "model", "stacked recurrent layers (text only; the synthetic tasks use 1)", COUNT)
    embedding: int = key(0, "model", "text: embedding size (0: n_hidden)", NONNEGATIVE)
    dropout: float = key(0.0, "model", "text: dropout probability between layers and before the output",
                         FRACTION)
    tie_weights: bool = key(False, "model", "text: share the embedding with the output layer")
    forget_bias: float = key(1.0, "model", "lstm: initial forget-gate bias b_f", FINITE)
    gate_init: str = key("default", "model", "gru, lstm: gate biases; chrono draws time scales τ ~ U(1, "
                         "chrono_max − 1): LSTM b_f = log τ, b_i = −b_f; GRU b_z = −log τ (Tallec & Ollivier "
                         "2018)", choices=("default", "chrono"))
    chrono_max: int = key(0, "model", "gate_init=chrono: the longest time scale T_max in steps (0: max_length)",
                          NONNEGATIVE)
    batch_size: int = key(20, "task", "sequences per update (text: parallel streams)", COUNT)
    eval_batch_size: int = key(10000, "evaluation and diagnostics", "sequences per validation "
                               "(text: characters)", COUNT)
    chunk_batch_size: int = key(1000, "evaluation and diagnostics", "validation chunk (sequences), each "
                                "with its own length", COUNT)
    check_freq: int = key(20, "evaluation and diagnostics", "updates between checks (validation, "
                          "diagnostics, a row of /check, a checkpoint)", COUNT)
    min_length: int = key(50, "task", "shortest sequence (steps); text: the truncated-BPTT window (characters)",
                          COUNT)
    max_length: int = key(200, "task", "longest sequence (steps); each batch draws its length from "
                          "[min_length, max_length)", COUNT)
    batching: str = key("stream", "task", "text: stream (state carried between windows) or random windows",
                        choices=BATCHING)
    max_iters: int = key(5000, "optimisation and clipping", "updates to run (a solved task stops earlier)",
                         COUNT)
    cpu_budget: float = key(0.0, "optimisation and clipping", "stop at the first check after this many "
                            "seconds of the process's CPU time, for comparisons at equal compute (0: no "
                            "limit)", NONNEGATIVE)
    optimizer: str = key("sgd", "optimisation and clipping", "update rule (momentum: SGD with momentum)",
                         choices=OPTIMIZERS)
    lr: float = key(0.01, "optimisation and clipping", "learning rate", POSITIVE)
    momentum: float = key(0.9, "optimisation and clipping", "optimizer=momentum: the momentum coefficient",
                          FRACTION)
    lr_schedule: str = key("constant", "optimisation and clipping", "learning-rate schedule after the "
                           "warm-up (dynamics/schedule.py)", choices=SCHEDULES)
    warmup: int = key(0, "optimisation and clipping", "updates of linear learning-rate warm-up (0: none)",
                      NONNEGATIVE)
    lr_step: int = key(1000, "optimisation and clipping", "lr_schedule=step: updates between decays", COUNT)
    lr_gamma: float = key(0.1, "optimisation and clipping", "lr_schedule=step or plateau: the decay factor",
                          Range(0, 1, lo_open=True))
    lr_patience: int = key(5, "optimisation and clipping", "lr_schedule=plateau: checks without a better "
                           "validation loss before a decay", COUNT)
    weight_decay: float = key(0.0, "optimisation and clipping", "L2 weight decay (AdamW: decoupled)",
                              NONNEGATIVE)
    clip: str = key("none", "optimisation and clipping", "gradient clipping: rescale the whole gradient to "
                    "norm cutoff when it is larger", choices=CLIPS)
    cutoff: float = key(1.0, "optimisation and clipping", "clip=rescale: the largest gradient norm",
                        POSITIVE)
    alpha: float = key(0.0, "optimisation and clipping", "weight of the regulariser Ω (rnn only; 0: off)",
                       NONNEGATIVE)
    seed: int = key(52, "task", "seed of the weights, the batches and the validation sequences",
                    Range(0, 2**32 - 1))
    device: str = key("cpu", "model", "cpu, cuda or cuda:N")
    threads: int = key(1, "model", "CPU threads of one run; auto: the cores this process may use where a step "
                       f"has the work to share them (batch_size x width >= {SHARED_STEP}), else 1; a sweep runs "
                       "one thread per worker", COUNT, words=("auto",))
    dtype: str = key("float32", "model", "floating-point type of weights and activations", choices=DTYPES)
    backend: str = key("auto", "model", "CPU loops of the recurrences: compiled C++ (built on first use), "
                       "python, or auto (compiled where it builds; DYNAMICS_BACKEND may force either)",
                       choices=BACKENDS)
    diagnostics: bool = key(True, "evaluation and diagnostics", "record g_t, histograms and saturation at "
                            "each check")
    diagnostics_level: str = key("basic", "evaluation and diagnostics", "basic: g_t, histograms, saturation, ρ; "
                                 "full adds Jacobians, Lyapunov exponents, sharpness and error-surface slices "
                                 "(dynamics/probes/theory.py)", choices=("basic", "full"))
    probe_batch_size: int = key(8, "evaluation and diagnostics", "full: fixed validation sequences (of length "
                                "min_length) that the check probes read", COUNT)
    lyapunov_k: int = key(5, "evaluation and diagnostics", "full: how many of the top Lyapunov exponents", COUNT)
    sharpness_iters: int = key(10, "evaluation and diagnostics", "full: power-iteration steps for the top Hessian "
                               "eigenvalue (0: off)", NONNEGATIVE)
    surface_every: int = key(10, "evaluation and diagnostics", "full: an error-surface slice at every n-th check "
                             "and at large-gradient checks (0: off)", NONNEGATIVE)
    surface_at: str = key("", "evaluation and diagnostics", "full: also slice at these updates, e.g. \"1200,3417\" "
                          "(recorded at the next check)")
    sample_chars: int = key(200, "evaluation and diagnostics", "text: characters sampled per prompt at each "
                            "check", COUNT)
    # classify (names, sentiment): sequence classification, dynamics/sources/classify.py
    pooling: str = key("last", "model", "classify: how the top layer's steps become one vector",
                       choices=("last", "mean", "max", "attention"))
    bidirectional: bool = key(False, "model", "classify: every layer also reads each sequence backwards")
    n_classes: int = key(0, "task", "names: language families, 2 to 10 (0: 5); sentiment: 2 (0: 2)", Range(0, 10))
    class_balance: tuple = key((), "task", "names: K class probabilities >= 0 summing to 1, e.g. "
                               "0.4,0.3,0.15,0.1,0.05 (empty: uniform)")
    class_weighting: str = key("none", "optimisation and clipping", "classify: balanced weighs class k's loss "
                               "by 1 / (K p_k)", choices=("none", "balanced"))
    distance: int = key(-1, "task", "sentiment: filler tokens after the deciding phrase (-1: anywhere)", Range(-1))
    truncate: int = key(0, "task", "classify: keep only each sequence's last N tokens (0: every token)",
                        NONNEGATIVE)
    # reference architectures: cell = "lnlstm" (LayerNorm LSTM) or "transformer" (mini-Transformer)
    d_model: int = key(64, "model", "transformer: width of the residual stream", COUNT)
    n_heads: int = key(4, "model", "transformer: attention heads per block (must divide d_model)", COUNT)
    positions: str = key("learned", "model", "transformer: position embeddings", choices=("learned", "sinusoidal"))
    # seq2seq (copy, reverse, date): encoder-decoder, dynamics/sources/seq2seq.py
    alphabet: int = key(20, "task", "copy, reverse: symbols in the alphabet", Range(1, 62))
    attention: str = key("luong_general", "model", "seq2seq, recurrent cells: the decoder's attention over the "
                         "encoder states", choices=("none", "bahdanau", "luong_dot", "luong_general"))
    teacher_forcing: float = key(1.0, "optimisation and clipping", "seq2seq: teacher-forcing ratio at the start",
                                 Range(0, 1))
    tf_schedule: str = key("constant", "optimisation and clipping", "seq2seq: how the teacher-forcing ratio "
                           "decays (scheduled sampling)", choices=("constant", "linear", "exponential",
                                                                   "inverse_sigmoid"))
    tf_k: float = key(1000.0, "optimisation and clipping", "seq2seq: schedule parameter (linear: updates to 0; "
                      "exponential: decay per update in (0, 1); inverse_sigmoid: >= 1)", POSITIVE)
    beam_size: int = key(5, "evaluation and diagnostics", "seq2seq: beam width of each check's beam decoding",
                         COUNT)
    length_norm: str = key("gnmt", "evaluation and diagnostics", "seq2seq: beam score normalisation",
                           choices=("none", "avg", "gnmt"))
    length_alpha: float = key(0.6, "evaluation and diagnostics", "seq2seq: GNMT length-penalty exponent",
                              NONNEGATIVE)
    # language models (text family): the fixed-window MLP, word tokens; class-conditioned generation
    window: int = key(8, "model", "cell mlp: how many previous tokens it reads", COUNT)
    tokens: str = key("char", "task", "text: the tokens of the language model", choices=("char", "word"))
    vocab_size: int = key(5000, "task", "tokens word: the most frequent training words kept, plus <unk>",
                          Range(2))
    condition: str = key("first", "model", "names_gen, sentiment_gen: the class enters through the initial "
                         "state (first) or beside every input (every)", choices=("first", "every"))
    judge: str = key("", "evaluation and diagnostics", "names_gen, sentiment_gen: a classifier run (.h5) of the "
                     "same classes that judges the samples at every check (empty: none)")

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @property
    def run_path(self):
        return Path(self.out_dir) / f"{self.name}.h5"

    def replace(self, **changes):
        return make({**dataclasses.asdict(self), **changes}, given=changes)

    @classmethod
    def from_json(cls, text):
        """The config recorded in a run file or a checkpoint, checked again; a key newer than the
        file takes its default (the value the run had, since it did not know the key)."""
        return make(recorded(text), given=())


# The reference code's flag names, and a few obvious synonyms.
ALIASES = {"nhid": "n_hidden", "bs": "batch_size", "ebs": "eval_batch_size", "cbs": "chunk_batch_size",
           "checkFreq": "check_freq", "maxiters": "max_iters", "clipstyle": "clip", "collectDiags": "diagnostics",
           "diagGates": "diagnostics", "hidden": "n_hidden", "layers": "n_layers", "iters": "max_iters"}
FIELDS = {f.name: f for f in fields(Config)}


def canonical(key):
    key = ALIASES.get(key, key)
    if key not in FIELDS:
        near = difflib.get_close_matches(key, [*FIELDS, *ALIASES], n=1)
        if near:   # a near miss: the one key meant, not all of them
            raise bad_value("key", key, f"a config key (did you mean {ALIASES.get(near[0], near[0])!r}?)")
        raise bad_value("key", key, "one of " + ", ".join(FIELDS))
    return key


def coerce(key, value):
    """A value of the field's type, or one of the words it takes; strings (from --set) are parsed."""
    kind = type(Config.__dataclass_fields__[key].default)
    words = FIELDS[key].metadata["words"]
    if isinstance(value, str) and value.strip().lower() in words:
        return value.strip().lower()
    in_words = "".join(f", or {w}" for w in words)
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
            raise bad_value(key, value, "an integer" + in_words) from None
    if kind is float:
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise bad_value(key, value, "a number" + in_words) from None
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


def recorded(config_json):
    """A run file's or checkpoint's recorded config as a dict, a key newer than the file at its
    default (the value the run had, since it did not know the key)."""
    return {**json.loads(Config().to_json()), **json.loads(config_json)}


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


def allowed(key):
    """What `key` allows, in words."""
    meta, kind = FIELDS[key].metadata, type(FIELDS[key].default)
    if meta.get("choices"):
        return "one of " + ", ".join(meta["choices"])
    if meta.get("range"):
        return meta["range"].describe(kind) + "".join(f", or {w}" for w in meta["words"])
    return "true or false" if kind is bool else "a string"


def check_key(key, value):
    """The one check of a key's declared range or choices (a did-you-mean for a near miss)."""
    meta = FIELDS[key].metadata
    choices, span = meta.get("choices"), meta.get("range")
    if value in meta["words"]:
        return
    if choices and value not in choices:
        near = difflib.get_close_matches(str(value), choices, n=1)
        raise bad_value(key, value, allowed(key) + (f" (did you mean {near[0]!r}?)" if near else ""))
    if span is not None and value not in span:
        raise bad_value(key, value, allowed(key))


# Keys that belong to some cells only (architecture keys): key -> the cells it applies to.
ARCH_KEYS = {
    "activation": RECURRENT_CELLS, "init": RECURRENT_CELLS, "n_hidden": RECURRENT_CELLS + ("mlp",),
    "embedding": RECURRENT_CELLS + ("mlp",), "forget_bias": ("lstm", "lnlstm"), "bidirectional": RECURRENT_CELLS,
    "gate_init": ("gru", "lstm", "lnlstm"), "chrono_max": ("gru", "lstm", "lnlstm"),
    "d_model": ("transformer",), "n_heads": ("transformer",), "positions": ("transformer",),
    "attention": RECURRENT_CELLS,
}


def check_arch_keys(c, given):
    """Explicitly given keys (`given`) must belong to the run's cell."""
    for key in given:
        if key in ARCH_KEYS and c.cell not in ARCH_KEYS[key]:
            raise bad_value(key, getattr(c, key), f"not set: it applies to cell {', '.join(ARCH_KEYS[key])}, "
                                                  f"and this run's cell is {c.cell}")


def families_taking(what, value):
    """The families whose Source lists `value` in its attribute `what` (keys, cells)."""
    return [name for name in FAMILIES if value in getattr(family_class(name), what)]


def check_family_keys(c, given):
    """Explicitly given keys (`given`) that some families take must belong to the run's family."""
    src = source_class(c.task)
    for key in given:
        takers = families_taking("keys", key)
        if takers and key not in src.keys:
            raise bad_value(key, getattr(c, key), f"not set: it applies to {' and '.join(takers)} "
                                                  f"tasks, and task {c.task} is a {src.family} task")


def check_family(c):
    """What the run's family builds and probes: its cells, the chrono gates, the full level."""
    src, fam = source_class(c.task), family(c.task)
    if c.cell not in src.cells:
        raise bad_value("cell", c.cell, f"{', '.join(src.cells)} for {fam} tasks (a {c.cell} runs on "
                                        f"{' and '.join(families_taking('cells', c.cell))} tasks)")
    if c.gate_init == "chrono" and "gate_init" not in src.keys:
        raise bad_value("gate_init", c.gate_init, f"default for {fam} tasks (chrono is for the "
                                                  f"{' and '.join(families_taking('keys', 'gate_init'))} tasks)")
    if c.diagnostics_level == "full" and not src.full_diagnostics:
        raise bad_value("diagnostics_level", c.diagnostics_level, f"basic for {fam} runs (full probes a "
                                                                  f"synthetic task)")
    src.validate(c)


def validate(c, given=()):
    """Every key against its declared range or choices, then what depends on several keys, then
    what the run's task family takes (dynamics/sources/)."""
    for key in FIELDS:
        check_key(key, getattr(c, key))
    check_arch_keys(c, given)
    check_model(c)
    check_family_keys(c, given)
    check_family(c)


def check_model(c):
    """The rules between keys of the model, the sequence lengths and the diagnostics."""
    if c.d_model % c.n_heads:
        raise InputError(f"n_heads={c.n_heads} is not allowed: it must divide d_model={c.d_model}")
    if c.gate_init == "chrono" and c.cell not in ARCH_KEYS["gate_init"]:
        raise bad_value("gate_init", c.gate_init, f"default for a {c.cell} (chrono sets the gate biases of a "
                                                  f"gru or lstm)")
    if c.gate_init == "chrono" and (c.chrono_max or c.max_length) <= 2:
        raise bad_value("chrono_max", c.chrono_max, "a number > 2" if c.chrono_max else
                        f"a number > 2; 0 takes max_length, here {c.max_length}: set chrono_max")
    if c.min_length > c.max_length:
        raise InputError(f"min_length={c.min_length} is not allowed: it exceeds max_length={c.max_length}")
    if c.cell != "rnn" and c.activation != "tanh":
        raise bad_value("activation", c.activation, f"tanh (a {c.cell} has fixed nonlinearities)")
    if c.alpha > 0 and c.cell != "rnn":
        raise bad_value("alpha", c.alpha, "0 for a gru or lstm (the regulariser is defined for the RNN's W_hh)")
    if c.diagnostics_level == "full" and c.cell not in ("rnn", "gru", "lstm"):
        raise bad_value("diagnostics_level", c.diagnostics_level, f"basic for a {c.cell} (full probes the step "
                                                                  f"Jacobians of an rnn, gru or lstm)")
    if surface_iterations(c.surface_at) is None:
        raise bad_value("surface_at", c.surface_at, "iteration numbers separated by commas, e.g. 1200,3417")
    state = 2 * c.n_hidden if c.cell == "lstm" else c.n_hidden   # the LSTM's state is [h, c]
    if c.diagnostics_level == "full" and c.lyapunov_k > state:   # only the full level computes them
        raise bad_value("lyapunov_k", c.lyapunov_k, f"at most the state size {state}")
    check_name(c.name)
    if c.device != "cpu" and not c.device.startswith("cuda"):
        raise bad_value("device", c.device, "cpu, cuda or cuda:N")


# the longest file a run writes beside its run file is <name>_final_state.npz; file systems allow
# names of 255 bytes
NAME_MAX_BYTES = 255 - len("_final_state.npz")


def check_name(name):
    """A run's name becomes file names: a plain one, printable, short enough for the file system."""
    if not name or "/" in name or name.startswith("."):
        raise bad_value("name", name, "a plain file name")
    if not name.isprintable():
        raise bad_value("name", name, "a file name without control characters (a newline, a tab, ...)")
    if len(name.encode()) > NAME_MAX_BYTES:
        raise bad_value("name", f"{name[:20]}…", f"a name of at most {NAME_MAX_BYTES} bytes (this one has "
                                                 f"{len(name.encode())}): the files of a run are named after it")


def surface_iterations(text):
    """The iterations of the key surface_at, "1200,3417" → {1200, 3417}; None if malformed."""
    try:
        out = {int(v) for v in text.replace(" ", "").split(",") if v}
    except ValueError:
        return None
    return out if all(v > 0 for v in out) else None


def keys_markdown():
    """docs/config-keys.md: every key with its flags, default, what it allows and does, by group."""
    lines = ["# Config keys", "",
             "Every key of a preset TOML, `--set KEY=VALUE` and `dynamics train --KEY`, generated from the",
             "declarations in `dynamics/config.py` by `make keys` (a test keeps this file in step). A value",
             "outside what a key allows is refused with one line, before anything runs.", ""]
    for group in GROUPS:
        lines += [f"## {group[0].upper()}{group[1:]}", "", "| key | flags | default | allowed | what it does |",
                  "| --- | --- | --- | --- | --- |"]
        for key, f in FIELDS.items():
            if f.metadata["group"] == group:
                flags = ", ".join(f"`--{k.replace('_', '-')}`" for k in [key] + [a for a, k in ALIASES.items() if k == key])
                lines.append(f"| `{key}` | {flags} | `{f.default!r}` | {allowed(key)} | {f.metadata['help']} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(keys_markdown(), end="")
