"""Task families: what each brings to the one trainer (dynamics/train.py). A family is one
module here, dynamics/sources/<family>.py, whose Source subclass (its SOURCE) declares what the
family takes and does, and one entry in FAMILIES below, which names its tasks.

What the config checks through the family (dynamics/config.py), declared as class attributes:

    keys                     the keys it takes among those that belong to some families only
    cells                    the cells it builds
    full_diagnostics         whether diagnostics_level = full can probe its runs
    validate(config)         its own rules, one line of bad input each
    topic                    the module of analysis/panels/ that draws what it records

A source is built from the config by `make_source(config, device, dtype)` and has:

    family                   the family's name, written as the run file's root attribute `family`
    build_model()            the model it trains (recurrent parts are the hand-written layers)
    batch() -> (x, y)        one training batch on the device
    forward(model, x)        the model's Output for a batch (a family that needs more than
                             `model(x)`, e.g. carried state or teacher forcing, says how)
    loss(logits, y)          the scalar training loss
    evaluate(model) -> dict  per check: `valid_loss`, `valid_error` (percent) and every name of
                             `check_columns` (floats) and `check_arrays` (numpy arrays)
    check_columns            extra per-check scalars, each a /check/<name> column
    check_arrays             {name: (shape, dtype)} per-check arrays, each /check/<name> of
                             shape (checks, *shape); any axis may grow between checks
    static                   {path: array} written once when the run file is created
                             (class names, the tokens of fixed examples, ...)
    attrs                    root attributes (provenance of the data)
    state_dict(), load_state_dict(state), after_resume(model)   exact resume
    example()                one fixed input (T, 1, ...) for figures of a single sequence
                             (the Transformer's attention maps)

The model names its recurrent (or per-position) parts: `model.parts()` returns `Part`s
(dynamics/models/part.py), the main part last; the probes read each one after backward.
"""
import importlib

from tasks.errors import bad_value

# The task families, each with the tasks it runs: the one registration of a family, whose module
# dynamics/sources/<family>.py defines its Source as SOURCE (imported on use, so that the
# registry, which the config's checks read, loads no torch).
FAMILIES = {
    "synthetic": ("torder", "torder3", "add", "mul", "mem", "perm"),
    "text": ("text",),
    "classify": ("names", "sentiment"),
    "seq2seq": ("copy", "reverse", "date"),
    "conditional": ("names_gen", "sentiment_gen"),
}
TASKS = {task: family for family, tasks in FAMILIES.items() for task in tasks}   # task -> family
RECURRENT_CELLS = ("rnn", "gru", "lstm", "lnlstm")


class Source:
    """Defaults for the parts of the interface that a family may leave out."""

    family = None
    # What the family takes, which the config checks through it: the keys that belong to some
    # families only (dynamics/config.py), the cells it builds, whether the full diagnostics
    # (dynamics/probes/theory.py) can probe its runs.
    keys = ()
    cells = RECURRENT_CELLS + ("transformer",)
    full_diagnostics = False
    # The module of analysis/panels/ that draws what the family records beside every run's
    # panels (None: only those)
    topic = None
    check_columns = ()
    check_arrays = {}
    static = {}
    attrs = {}
    vocab_size = None

    @staticmethod
    def validate(config):
        """Refuse, with one line, what this family cannot run (before anything is written)."""

    def build_model(self):
        """The stacked model of dynamics/models/recurrent.py for this source's sizes and head, or the
        Transformer (dynamics/models/transformer.py) reading up to `block_size` steps."""
        from ..models.recurrent import build_model
        c = self.c
        if c.cell == "transformer":
            from ..models.transformer import build_transformer
            return build_transformer(c, self.n_in, self.n_out, self.head, self.block_size, self.vocab_size,
                                     device=self.device, dtype=self.dtype)
        return build_model(c.cell, self.n_in, c.n_hidden, self.n_out, self.head, c.activation, c.init,
                           n_layers=c.n_layers, vocab_size=self.vocab_size, dropout=c.dropout,
                           tie_weights=c.tie_weights, forget_bias=c.forget_bias, seed=c.seed,
                           device=self.device, dtype=self.dtype, gate_init=c.gate_init,
                           chrono_max=c.chrono_max or c.max_length)

    @property
    def block_size(self):
        """The longest sequence a model of this source reads."""
        return self.c.max_length

    def forward(self, model, x):
        return model(x)

    def after_resume(self, model):
        pass


def family(task):
    if task not in TASKS:
        raise bad_value("task", task, ", ".join(TASKS))
    return TASKS[task]


def family_class(name):
    """The Source of the family `name`."""
    return importlib.import_module(f"{__name__}.{name}").SOURCE


def source_class(task):
    return family_class(family(task))


def make_source(config, device, dtype):
    return source_class(config.task)(config, device, dtype)
