"""Config keys: every declared range and choice is checked before anything runs."""
import math

import pytest

import tasks.synthetic as tasks
from dynamics import config as cfg
from dynamics.cli import main
from dynamics.models.init import INITS
from dynamics.models.recurrence import ACTIVATIONS
from dynamics.sources import source_class
from tasks.errors import InputError

# keys whose values are free strings, checked by hand in validate() (or not at all)
FREE = {"name", "out_dir", "text", "device", "surface_at", "class_balance", "judge"}   # checked in validate()


def bad_values(key):
    """Values just outside what `key` declares: the open or crossed end of its range, NaN and
    ±inf for a float, a near miss and a stranger for a choice."""
    meta, kind = cfg.FIELDS[key].metadata, type(cfg.FIELDS[key].default)
    if meta["choices"]:
        return [meta["choices"][0][:-1] + "#", "nonsense"]
    if kind is bool:
        return ["maybe"]
    span, step = meta["range"], 1 if kind is int else 0.5
    out = ["nan", "inf", "-inf"] if kind is float else []
    if span.lo > -math.inf:
        out.append(span.lo if span.lo_open else span.lo - step)
    if span.hi < math.inf:
        out.append(span.hi if span.hi_open else span.hi + step)
    return out


WALK = [(k, v) for k in cfg.FIELDS if k not in FREE for v in bad_values(k)]


def test_every_key_declares_what_it_allows():
    for key, f in cfg.FIELDS.items():
        assert f.metadata["group"] in cfg.GROUPS and f.metadata["help"], key
        if key not in FREE and type(f.default) is not bool:
            assert f.metadata["range"] or f.metadata["choices"], f"{key} declares no range or choices"
        cfg.check_key(key, f.default)            # the default is allowed


def test_choices_are_those_of_the_implementation():
    assert set(tasks.NAMES) | {"text"} <= set(cfg.TASKS)
    assert all(source_class(task).family for task in cfg.TASKS)     # every task has its source
    assert cfg.INITS == INITS and cfg.ACTIVATIONS == tuple(ACTIVATIONS)
    from dynamics.models.compiled import BACKENDS
    from dynamics.models.conditional import CONDITIONS
    from dynamics.models.pooling import POOLINGS
    from dynamics.models.seq2seq import ATTENTIONS, NORMS
    assert cfg.BACKENDS == BACKENDS
    for key, implemented in (("pooling", POOLINGS), ("attention", ATTENTIONS), ("length_norm", NORMS),
                             ("condition", CONDITIONS)):
        assert set(cfg.FIELDS[key].metadata["choices"]) == set(implemented), key


def refused(capsys, tmp_path, args):
    with pytest.raises(SystemExit) as e:
        main(["train", "--maxiters", "5", "--out-dir", str(tmp_path), "--quiet", *args])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2, err
    assert len(err.splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []        # nothing written
    return err


@pytest.mark.parametrize("key,value", WALK)
def test_bad_value_refused_before_anything_runs(tmp_path, capsys, key, value):
    err = refused(capsys, tmp_path, ["--set", f"{key}={value}"])
    assert f"{key}=" in err and str(value) in err and cfg.allowed(key) in err
    err = refused(capsys, tmp_path, [f"--{key.replace('_', '-')}", str(value)])   # the flag, the same check
    assert key.replace("_", "-") in err or key in err


def test_bad_value_in_a_preset_refused(tmp_path, capsys):
    preset = tmp_path.parent / f"{tmp_path.name}-p.toml"
    preset.write_text("lr = nan\n")
    err = refused(capsys, tmp_path, [str(preset)])
    assert err == "error: lr=nan is not allowed: a finite number > 0"


def test_chrono_time_scale_from_a_short_max_length_refused_with_the_way_out(tmp_path, capsys):
    err = refused(capsys, tmp_path, ["--task", "mem", "--cell", "gru", "--set", "gate_init=chrono",
                                     "--set", "min_length=1", "--set", "max_length=1"])
    assert err == "error: chrono_max=0 is not allowed: a number > 2; 0 takes max_length, here 1: set chrono_max"


def test_near_miss_gets_a_suggestion(tmp_path, capsys):
    err = refused(capsys, tmp_path, ["--cell", "gur"])
    assert "did you mean 'gru'" in err
    err = refused(capsys, tmp_path, ["--set", "optimizer=adan"])
    assert "did you mean 'adam'" in err


def test_ranges_in_words():
    assert cfg.allowed("lr") == "a finite number > 0"
    assert cfg.allowed("dropout") == "a finite number in [0, 1)"
    assert cfg.allowed("batch_size") == "an integer >= 1"
    assert 0.5 in cfg.FRACTION and 1.0 not in cfg.FRACTION and math.nan not in cfg.FINITE
    assert 10**400 not in cfg.COUNT and 10**400 not in cfg.FINITE


def test_chrono_gate_init_is_for_gated_cells_on_synthetic_tasks(tmp_path, capsys):
    from dynamics.models.init import GATE_INITS
    assert cfg.FIELDS["gate_init"].metadata["choices"] == GATE_INITS
    err = refused(capsys, tmp_path, ["--task", "add", "--cell", "rnn", "--set", "gate_init=chrono"])
    assert "gate_init=" in err and "gru, lstm" in err
    err = refused(capsys, tmp_path, ["--task", "text", "--cell", "lstm", "--set", "gate_init=chrono"])
    assert "gate_init=" in err and "synthetic" in err
    err = refused(capsys, tmp_path, ["--task", "add", "--cell", "gru", "--set", "gate_init=chrono",
                                     "--min-length", "2", "--max-length", "2"])
    assert "chrono_max=0" in err and "> 2" in err
    c = cfg.load(overrides={"task": "mem", "cell": "lstm", "gate_init": "chrono", "min_length": 10,
                                    "max_length": 40})
    assert (c.gate_init, c.chrono_max) == ("chrono", 0)      # 0: the run's max_length


def test_a_misspelt_key_gets_the_key_meant():
    with pytest.raises(InputError, match=r"key='max_iter' is not allowed: a config key \(did you mean 'max_iters'\?\)"):
        cfg.parse_sets(["max_iter=5"])
    with pytest.raises(InputError, match="did you mean 'check_freq'"):
        cfg.parse_sets(["checkfreq=5"])                # near the reference name checkFreq


def test_a_name_must_make_file_names():
    for bad, why in (("a\nb", "without control characters"), ("tab\there", "without control characters"),
                     ("x" * 240, "at most 239 bytes")):
        with pytest.raises(InputError, match=why):
            cfg.make({"name": bad})
    assert cfg.make({"name": "x" * 239}).name == "x" * 239
    assert cfg.make({"name": "ünïcödé-run"}).name == "ünïcödé-run"


def test_lyapunov_k_is_checked_only_where_it_is_used():
    assert cfg.make({"n_hidden": 2}).lyapunov_k == 5                       # the basic level reads no exponent
    with pytest.raises(InputError, match="lyapunov_k=5 is not allowed: at most the state size 2"):
        cfg.make({"n_hidden": 2, "diagnostics_level": "full"})


def test_threads_take_a_count_or_auto(tmp_path, capsys):
    """`threads = auto`: the cores this process may use where a step has the work to share them,
    else 1; a count is taken as it is; anything else is refused with what is allowed."""
    from dynamics.config import SHARED_STEP
    from dynamics.train import threads_for
    assert cfg.allowed("threads") == "an integer >= 1, or auto"
    assert cfg.make({"threads": " Auto "}).threads == "auto" and cfg.make({"threads": "3"}).threads == 3
    for bad in ("autp", "0", "1.5"):
        err = refused(capsys, tmp_path, ["--threads", bad])
        assert err.startswith("error: threads=") and bad in err and err.endswith(", or auto"), err
    lm = cfg.make({"threads": "auto", "task": "text", "n_hidden": 256, "batch_size": 32})
    small = cfg.make({"threads": "auto", "n_hidden": 50, "batch_size": 20})
    wide = cfg.make({"threads": "auto", "cell": "transformer", "task": "torder", "d_model": 128, "batch_size": 20})
    assert 20 * 50 < SHARED_STEP <= min(32 * 256, 20 * 128)
    assert threads_for(lm, cores=16) == 16 and threads_for(wide, cores=4) == 4 and threads_for(small, cores=16) == 1
    assert threads_for(cfg.make({"threads": 3}), cores=16) == 3
    import os
    assert threads_for(lm) == len(os.sched_getaffinity(0))   # by default, the cores this process may use


def test_threads_auto_sets_the_run_and_a_sweep_keeps_one_per_worker(tmp_path, monkeypatch):
    import os

    import torch

    from dynamics.runfile import read_only
    from dynamics.sweep import execute
    from dynamics.train import Run
    monkeypatch.setattr(execute, "stopping", lambda sweep_id: False)   # whatever sweeps ran before here
    run_task = execute.run_task
    c = cfg.make({"threads": "auto", "n_hidden": 128, "batch_size": 20, "out_dir": str(tmp_path), "max_iters": 4,
                  "check_freq": 2, "eval_batch_size": 20, "chunk_batch_size": 20})
    try:
        Run(c)
        assert torch.get_num_threads() == len(os.sched_getaffinity(0))
        result = run_task(c, "fresh")
        assert result["status"] == "finished", result
        assert torch.get_num_threads() == 1
        with read_only(c.run_path) as f:
            import json
            assert json.loads(f.attrs["config"])["threads"] == 1 and f.attrs["threads"] == 1   # what the run had
        from dynamics.train import train
        import dataclasses
        alone = dataclasses.replace(c, name="alone")
        train(alone, progress=False)
        with read_only(alone.run_path) as f:   # a run of its own: `auto` resolved, and recorded
            assert json.loads(f.attrs["config"])["threads"] == "auto"
            assert f.attrs["threads"] == len(os.sched_getaffinity(0))
    finally:
        torch.set_num_threads(1)
