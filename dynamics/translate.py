"""`dynamics translate RUN.h5 INPUT...`: decode inputs with a trained seq2seq model by beam search.

The model is the run's best by greedy exact match (`<name>_best.pt` beside the run file) or,
failing that, its last checkpoint (`<name>_checkpoint.pt`), rebuilt from the run file's config.
Each input is printed, then its n best hypotheses with their log-probabilities (and the
length-normalised score the beam ranks them by).
"""
from pathlib import Path


from tasks.errors import InputError, bad_value

from .checkpoint import load_checkpoint


def read_config(path):
    """The config of the seq2seq run whose file is at `path`."""
    from .sample import read_config as read_run_config
    return read_run_config(path, families=("seq2seq",))


def load_model(config, run):
    """(model, task, file it came from): the best model, or else the last checkpoint."""
    from .sources.seq2seq import model_of, task_of
    run = Path(run)
    for path in (run.with_name(f"{config.name}_best.pt"), run.with_name(f"{config.name}_checkpoint.pt")):
        if path.is_file():
            saved = load_checkpoint(path, "train the run again to translate with it", map_location="cpu")
            task = task_of(config)
            model = model_of(config, task)
            try:
                model.load_state_dict(saved["model"])
            except RuntimeError:   # e.g. a Bahdanau decoder from before its input took the context
                raise InputError(f"{path.name} does not fit the model that the run's config builds now "
                                 f"(saved by an earlier version); train the run again to translate with it") from None
            return model.eval(), task, path
    raise InputError(f"run={str(run)!r} has no model to translate with: neither {config.name}_best.pt "
                     f"nor {config.name}_checkpoint.pt is beside it")


def hypotheses(run, inputs, beam=5, n_best=1, norm=None, alpha=None):
    """[(input, [(output, log p, score), ...]), ...] for every input string."""
    from .models.seq2seq import beam_search
    from .sources.seq2seq import EXTRA_STEPS
    if beam < 1:
        raise bad_value("beam_size", beam, "an integer >= 1")
    if not 1 <= n_best <= beam:
        raise bad_value("n_best", n_best, f"an integer in 1..{beam} (the beam size)")
    config = read_config(run)
    model, task, _ = load_model(config, run)
    if not inputs:
        raise bad_value("input", "", "at least one input (arguments or --file)")
    for i, text in enumerate(inputs):
        task.check_source(text, key="input" if len(inputs) == 1 else f"input {i + 1}")
    src, src_len = task.encode_source(inputs)
    max_steps = task.longest_target() + EXTRA_STEPS
    hyps = beam_search(model, src, src_len, beam, max_steps, norm or config.length_norm,
                       config.length_alpha if alpha is None else alpha, n_best)
    return [(text, [(task.decode_target(ids), logp, score) for ids, logp, score in h]) for text, h in zip(inputs, hyps)]


def read_inputs(path):
    path = Path(path)
    if not path.is_file():
        raise bad_value("file", str(path), "no such file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise bad_value("file", str(path), "a UTF-8 text file") from None
    for i, line in enumerate(lines):
        if not line:
            raise bad_value("file", str(path), f"one non-empty input a line (line {i + 1} is empty)")
    return lines
