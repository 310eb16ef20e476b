"""Reading run files and turning them into figures, comparisons and reports.

read      load(path) → Snapshot of a run file (also while it is written) or a final-state NPZ
stats     the numbers behind figures and verdicts
verdicts  one-line statements of what the data show; all thresholds in one place
figures   one function per figure, the dashboard, plot_run
compare   overlays across runs
report    the multi-page PDF with CSV and Markdown tables
commands  the click commands info, plot, compare, report
synthetic run files with known contents, for tests and demonstrations
"""
