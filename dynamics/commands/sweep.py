"""`dynamics sweep SPEC.toml`: every point of a sweep's grid as its own run, in parallel on Dask
(dynamics/sweep/)."""
import click

from tasks.errors import InputError

from ..sweep import report, run_sweep


@click.command("sweep", context_settings={"max_content_width": 100})
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="worker processes of the local cluster (default: the number of CPUs)")
@click.option("--scheduler", metavar="ADDRESS", default=None,
              help="use a running Dask scheduler (e.g. tcp://127.0.0.1:8786) instead of a local cluster")
@click.option("--out-dir", type=click.Path(file_okay=False), default=None,
              help="folder of the run files (default: runs/<sweep name>)")
@click.option("--force", is_flag=True, help="rerun every run, replacing existing run files")
@click.option("--quiet", is_flag=True, help="no progress bar")
def sweep(spec, workers, scheduler, out_dir, force, quiet):
    """Run every point of the grid in SPEC.toml as its own run, in parallel on Dask.

    A rerun skips finished and solved runs, resumes interrupted ones and retries failed ones."""
    if workers and scheduler:
        raise InputError("--workers and --scheduler are not allowed together: the scheduler has its own workers")
    result = run_sweep(spec, workers=workers, scheduler=scheduler, out_dir=out_dir, force=force, progress=not quiet)
    for line in report(result):
        click.echo(line)
