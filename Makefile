# dynamics: install, test, benchmark, and one target per preset run (runs/<NAME>.toml → runs/<NAME>.h5).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PRESETS := A1 A2 A3 A4 A5 B1 B2 C0 C1 L1 L2 L3 T1 T2 T3 T4 T5 T6
PRESETS += M1 M2 M3 M4 M5 M6 M7
PRESETS += S1 S2 S3 S4 S5 S6
PRESETS += W1 W2 G0 G1 G2   # word LMs; the judge G0 and conditional generation G1/G2
# solve_<task>[_gru|_lstm]: each synthetic task of docs/tasks.md solved (COMMANDS.md)
PRESETS += solve_torder solve_torder3 solve_add solve_add_gru solve_add_lstm solve_mul solve_perm
PRESETS += solve_mem solve_mem_gru solve_mem_lstm
TASKS_QUICK := torder torder3 add mul mem perm
RUNS   := $(PRESETS)
ARGS   ?=

.PHONY: install test bench numbers golden keys runs report lab fig7-quick s2s-quick context-quick tasks-quick clean-runs $(PRESETS)

# the tested torch, installed (the CPU build) only into an environment that has none
TORCH  ?= 2.13.0

install:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -c 'import torch' 2>/dev/null || $(BIN)/pip install 'torch==$(TORCH)'
	$(BIN)/pip install -e '.[dev]'

# The suite on every core (pytest-xdist >= 3.8; a module's tests stay together, so that its fixtures
# are built once, and tests/conftest.py starts the modules with fewest tests, the long ones, first).
# One process: `$(BIN)/pytest` or `make test ARGS="-n 0"`.
test:
	$(BIN)/pytest -n auto --dist loadfile --no-loadscope-reorder $(ARGS)

bench:
	$(BIN)/python benchmarks/bench.py $(ARGS)

numbers:  # rerun the cheap commands whose numbers README.md and COMMANDS.md quote (about 2 minutes)
	$(BIN)/python docs/quoted_numbers.py

keys:    # docs/config-keys.md from the key declarations in dynamics/config.py
	$(BIN)/python -m dynamics.config > docs/config-keys.md

golden:  # only when a change of the golden numbers is intended
	$(BIN)/python tests/golden_steps.py

# A preset run; an existing run file is continued (--resume), never overwritten.
$(PRESETS):
	@if [ -f runs/$@.h5 ]; then $(BIN)/dynamics train runs/$@.toml --resume $(ARGS); \
	 else $(BIN)/dynamics train runs/$@.toml $(ARGS); fi

G1 G2: | runs/G0.h5   # their judge: the classifier run G0

runs/G0.h5:
	$(MAKE) G0

runs: $(RUNS)

report:
	$(BIN)/dynamics report $(wildcard runs/*.h5) -o report/report.pdf

# The lab study (README, "The lab study"): five sweeps, then its chapter report/lab.pdf (+ .csv,
# .md, lab_figures/). A rerun skips finished runs and resumes interrupted ones. The conditional
# generators are judged by a classifier trained first (runs/lab-quick/judge/judge.h5).
LAB_PARTS   ?= presets lm classify seq2seq conditional
LAB_SPECS   ?= runs/sweeps
LAB_DIR     ?= runs/lab-quick
LAB_PDF     ?= report/lab.pdf
LAB_WORKERS ?= 2

lab: runs/lab-quick/judge/judge.h5
	@for p in $(LAB_PARTS); do \
	  $(BIN)/dynamics sweep $(LAB_SPECS)/lab-quick-$$p.toml --workers $(LAB_WORKERS) --out-dir $(LAB_DIR)/$$p \
	    || exit $$?; done
	$(BIN)/dynamics report $(LAB_DIR)/ -o $(LAB_PDF)

runs/lab-quick/judge/judge.h5:
	$(BIN)/dynamics train runs/G0.toml --name judge --out-dir runs/lab-quick/judge

fig7-quick:
	$(BIN)/dynamics sweep runs/sweeps/fig7-quick.toml --workers 2
	$(BIN)/dynamics success runs/fig7-quick/ -o runs/fig7-quick/success.png

s2s-quick:
	$(BIN)/dynamics sweep runs/sweeps/s2s-quick.toml --workers 2

context-quick:   # validation loss against context length: MLP windows 1-32 beside RNN/GRU/LSTM
	$(BIN)/dynamics sweep runs/sweeps/context-quick.toml --workers 2
	$(BIN)/dynamics context runs/context-quick/ -o runs/context-quick/context.png

tasks-quick:     # Figure 7 for every task: length × {RNN, RNN recipe, GRU, LSTM} × 3 seeds, one sweep per task
	@for t in $(TASKS_QUICK); do \
	  $(BIN)/dynamics sweep runs/sweeps/tasks-$$t-quick.toml --workers 2 && \
	  $(BIN)/dynamics success runs/tasks-$$t-quick/ -o runs/tasks-$$t-quick/success.png || exit 1; \
	done

clean-runs:  # removes run outputs (not presets)
	rm -f runs/*.h5 runs/*.npz runs/*.pt
