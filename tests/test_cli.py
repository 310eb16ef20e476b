"""The command line as people use it daily: progress in logs, the help of every key."""
import re
import subprocess
import sys

import h5py
import pytest

TINY = ["--task", "torder", "--n-hidden", "8", "--batch-size", "5", "--eval-batch-size", "20",
        "--chunk-batch-size", "20", "--min-length", "10", "--max-length", "12", "--check-freq", "5"]


def test_progress_in_a_log_is_one_line_per_check(tmp_path):
    """stdout and stderr are pipes (a log file, CI): no carriage returns, one line per check."""
    out = subprocess.run([sys.executable, "-c", "from dynamics.cli import main; main()", "train", *TINY, "--max-iters", "20",
                          "--name", "log", "--out-dir", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "\r" not in out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1] == f"{tmp_path / 'log.h5'}: finished"
    with h5py.File(tmp_path / "log.h5", "r") as f:
        iters, valid = f["check/iter"][:].astype(int), f["check/valid_loss"][:]
    assert len(lines) - 1 == len(iters) == 4
    for line, it, v in zip(lines, iters, valid):
        m = re.fullmatch(r"log iter (\d+)/20 \| loss \S+ \| gnorm \S+ \| valid loss (\S+), error \S+% \| \S+ it/s \| ETA (\S+)",
                         line)
        assert m, line
        assert int(m[1]) == it and float(m[2]) == float(f"{v:.4g}")
    assert lines[-2].endswith("ETA 0:00:00")


def squeeze(text):
    return "".join(text.split())   # the help wraps lines anywhere between words


def test_train_help_explains_every_key_under_its_group(capsys):
    from dynamics import config as cfg
    from dynamics.cli import main
    main(["train", "--help"])
    out = capsys.readouterr().out
    names = re.findall(r"^Keys: (.+):$", out, flags=re.M)
    assert names == list(cfg.GROUPS)
    body = dict(zip(names, re.split(r"^Keys: .+:$", out, flags=re.M)[1:]))
    for key, field in cfg.FIELDS.items():
        text = body[field.metadata["group"]]
        assert f"--{key.replace('_', '-')}" in text, key
        assert squeeze(field.metadata["help"]) in squeeze(text), key
        if field.metadata["range"]:
            assert squeeze(cfg.allowed(key)) in squeeze(text), key
        for choice in field.metadata["choices"] or ():
            assert choice in text


def test_config_keys_doc_is_generated_from_the_declarations():
    from pathlib import Path

    from dynamics import config as cfg
    doc = Path(__file__).parent.parent / "docs" / "config-keys.md"
    assert doc.read_text() == cfg.keys_markdown(), "run `make keys`"


def test_command_list_is_that_of_the_commands():
    """`dynamics --help` lists the commands without importing them: the one-line helps it shows
    must be those of the commands, and every module of dynamics/commands/ but the shared one is
    a command."""
    import importlib
    import pkgutil

    import dynamics.commands
    from dynamics.cli import COMMANDS
    modules = {m.name for m in pkgutil.iter_modules(dynamics.commands.__path__)} - {"common"}
    assert modules == set(COMMANDS)
    for name, text in COMMANDS.items():
        command = getattr(importlib.import_module(f"dynamics.commands.{name}"), name)
        assert " ".join(command.help.split("\n\n")[0].split()) == text, name


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"]])
def test_help_loads_neither_torch_nor_dask(args):
    code = (f"import sys; from dynamics.cli import main\ntry:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'distributed', 'h5py', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.splitlines()[-1] == "[]" and ("Commands:" in out.stdout or "Keys: task:" in out.stdout)


def test_python_m_dynamics_is_the_command():
    out = subprocess.run([sys.executable, "-m", "dynamics", "info", "no-such-run.h5"], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.strip() == "error: no-such-run.h5: no such file"


def test_resume_of_a_run_that_does_not_exist_is_refused(refused):
    line = refused("--task", "torder", "--nhid", "5", "--name", "nothing", "--resume")
    assert line.startswith("error: --resume: there is no run file") and "nothing.h5" in line
