"""Reading run files and turning them into figures, verdicts, comparisons and reports.

read        load(path) → Snapshot of a run file (also while it is written) or a final-state NPZ
stats       the numbers behind figures and verdicts
verdicts    one-line statements of what the data show; all thresholds in one place
canvas      what every figure shares: sizes, labels, axes, the Panel
panels/     one topic of panels per module, registered in panels.TOPICS
figures     a run's figures and its dashboard, from the panels whose data exist; plot_run
compare     overlays across runs
report      the multi-page PDF with CSV and Markdown tables
lab/        the lab study's chapter, one module per question; lab_report its PDF, CSV, Markdown
info, context, success, temperature   the text and figures of those commands
synthetic   run files with known contents, for tests and demonstrations
"""
