"""`dynamics temperature RUN.h5`: diversity against coherence of a text run's samples over
sampling temperatures (dynamics/temperature.py; the figure: analysis/temperature.py)."""
import csv
from pathlib import Path

import click

from analysis.temperature import plot_table

from ..temperature import TEMPERATURES, parse_temperatures, temperature_table
from .common import writable_dir


def write_csv(table, path):
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)


@click.command()
@click.argument("run", type=click.Path(dir_okay=False))
@click.option("--temperatures", default=",".join(f"{t:g}" for t in TEMPERATURES), show_default=True,
              help="comma-separated sampling temperatures")
@click.option("-n", "n", default=300, show_default=True, type=click.IntRange(min=2), help="characters per sample")
@click.option("--samples", default=8, show_default=True, type=click.IntRange(min=1), help="samples per temperature")
@click.option("--seed", default=0, show_default=True, type=int, help="the same seed draws the same samples")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="the figure (default: figures/<run>/temperature.png); a CSV is written beside it")
def temperature(run, temperatures, n, samples, seed, output):
    """Diversity (distinct word n-grams) and coherence (the model's own loss) of the text run
    RUN.h5's samples, against the sampling temperature."""
    values = parse_temperatures(temperatures)
    table = temperature_table(run, values, n, samples, seed)
    name = Path(run).stem
    out = Path(output) if output else Path("figures") / name / "temperature.png"
    writable_dir(out.parent)
    plot_table(table, out, f"{name}: {samples} samples of {n} characters per temperature, seed {seed}")
    write_csv(table, out.with_suffix(".csv"))
    click.echo(f"{'temperature':>11}  {'distinct-1':>10}  {'distinct-2':>10}  {'own loss':>9}  sample")
    for r in table:
        snippet = " ".join(r["sample"].split())[:40]
        click.echo(f"{r['temperature']:>11g}  {100 * r['distinct_1']:>9.1f}%  {100 * r['distinct_2']:>9.1f}%  "
                   f"{r['own_loss']:>9.3f}  {snippet}")
    click.echo(f"figure: {out}")
