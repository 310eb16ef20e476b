"""The `dynamics` command: a group of the commands in dynamics/commands/, one module each.
Bad input, and a fault of the machine (dynamics/faults.py): one line on stderr, exit status 2."""
import importlib
import sys

import click

from tasks.errors import InputError

from . import faults

# name -> its one-line help (a test compares it with the command's own docstring). The command is
# the attribute <name> of the module dynamics.commands.<name>, imported when called: `dynamics
# info` does not wait for torch to load, and `dynamics --help` imports none of them.
COMMANDS = {
    "compare": "Overlay runs: validation error, gradient norms, ρ, final log10 g_t, g_t against t.",
    "context": "Validation loss against context length: MLP runs by window, recurrent runs as lines.",
    "export": "Write a run file's numbers, histograms and samples as TensorBoard events.",
    "info": "Name, status, config, final figures and verdicts of a run (also while it runs).",
    "plot": "The dashboard <name>_dashboard.png and one PNG per figure of a run.",
    "report": "A PDF report: summary table, each run's dashboard, comparisons by task, LM table.",
    "sample": "Continue PROMPT with the model of the text run RUN.h5 (its best checkpoint by validation loss), "
              "or write N sequences of class K with a conditional run.",
    "success": "Success rate against sequence length for the runs of a sweep FOLDER (Pascanu et al. Fig. 7).",
    "sweep": "Run every point of the grid in SPEC.toml as its own run, in parallel on Dask.",
    "temperature": "Diversity (distinct word n-grams) and coherence (the model's own loss) of the text run "
                   "RUN.h5's samples, against the sampling temperature.",
    "train": "Train one run: PRESET.toml, then flags, then --set overrides.",
    "translate": "Translate INPUTS (or the lines of --file) with the seq2seq run RUN.h5.",
}


class Commands(click.Group):
    """The commands of COMMANDS, each imported when it is called; bad input in any of them is one
    line on stderr and exit status 2."""

    def invoke(self, ctx):
        try:
            try:
                return super().invoke(ctx)
            except OSError as e:            # the machine: a full disk, a folder that cannot be written
                raise faults.os_fault(e, "read or write") from None
            except (MemoryError, RuntimeError) as e:
                raise (faults.memory_fault(e, "go on") or e) from None
        except InputError as e:
            click.echo(f"error: {' '.join(str(e).split())}", err=True)
            ctx.exit(2)

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        return getattr(importlib.import_module(f"dynamics.commands.{name}"), name)

    def format_commands(self, ctx, formatter):
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))   # as click's own listing
        rows = [(name, click.Command(name, help=COMMANDS[name]).get_short_help_str(limit)) for name in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dynamics")
def cli():
    """Training dynamics of recurrent networks: train runs, then read their run files."""


def main(args=None):
    try:
        status = cli.main(args=args, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        click.echo(f"error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except FileNotFoundError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    if status:   # an exit status from ctx.exit (bad input: 2)
        sys.exit(status)
