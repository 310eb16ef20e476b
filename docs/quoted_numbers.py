"""Rerun the cheap commands whose numbers README.md and COMMANDS.md quote, and say where a number
there is not what the command gives on this machine (`make numbers`, about 2 minutes).

Each check runs its commands in one fresh folder (in order: the translation reads S1's run),
reads one number from what they wrote, formats it as the text quotes it, and looks for that
phrase in the file (whitespace and line breaks aside).
Exit status 1 when a phrase is missing: the text or the code has moved. Some numbers move between
machines (float rounding of the compiled loops differs with the CPU's vector unit): rerun the
command and write what it gives.
"""
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py

ROOT = Path(__file__).resolve().parent.parent
DYNAMICS = [sys.executable, "-m", "dynamics"]


def run(*args, cwd):
    out = subprocess.run([*DYNAMICS, *args], cwd=cwd, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"dynamics {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout


def updates(path):
    with h5py.File(path, "r") as f:
        return int(f["check/iter"][-1])


def minus(x, digits):
    """A number as the docs write it: a typographic minus."""
    return f"{x:.{digits}f}".replace("-", "−")


def s1_solved(d):
    run("train", str(ROOT / "runs/S1.toml"), "--out-dir", str(d), "--quiet", cwd=d)
    return f"(greedy exact 100 %) at update {updates(d / 'S1.h5')}"


def s1_translate(d):
    out = run("translate", str(d / "S1.h5"), "2025-09-30", "--beam", "5", "--n-best", "1", cwd=d)
    log_p = float(re.search(r"log p = (\S+)", out).group(1))
    return f"`Sep 30, 2025` (log p {minus(log_p, 4)})"


def a5_progress(d):
    out = run("train", str(ROOT / "runs/A5.toml"), "--set", "max_iters=200", "--out-dir", str(d), cwd=d)
    line = next(ln for ln in out.splitlines() if " iter 100/200 " in ln)
    return re.search(r"\| loss .* error \S+%", line).group(0)


def preset_solved(name):
    def check(d):
        run("train", str(ROOT / f"runs/{name}.toml"), "--out-dir", str(d), "--quiet", cwd=d)
        return f"| {name} | solved | {updates(d / f'{name}.h5')} |"
    return check


# (what, the file that quotes it, how to get the phrase)
CHECKS = [
    ("S1: the update at which it is solved", "COMMANDS.md", s1_solved),
    ("S1: the log-probability of the best translation", "COMMANDS.md", s1_translate),
    ("A5: the progress line at update 100", "README.md", a5_progress),
    ("M3: the update at which it is solved", "COMMANDS.md", preset_solved("M3")),
    ("T3: the update at which it is solved", "COMMANDS.md", preset_solved("T3")),
]


def flat(text):
    return " ".join(text.split())


def main():
    missing = 0
    with tempfile.TemporaryDirectory() as tmp:
        for what, doc, phrase_of in CHECKS:     # in order, in one folder: a check may read an earlier one's run
            phrase = phrase_of(Path(tmp))
            found = flat(phrase) in flat((ROOT / doc).read_text())
            missing += not found
            print(f"{'ok' if found else 'DIFFERS':8} {what}: {doc} {'quotes' if found else 'does not quote'} "
                  f"{phrase!r}", flush=True)
    sys.exit(1 if missing else 0)


if __name__ == "__main__":
    main()
