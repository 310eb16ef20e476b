"""The `dynamics` command. Bad input: one line on stderr, exit status 2."""
import importlib
import sys

import click

from . import config as cfg
from tasks.errors import InputError

class KeyChoice(click.Choice):
    """The choices of a config key: listed in the help, checked by the config's own check, so a
    near miss gets the same one line (with a did-you-mean) as in a preset or --set."""

    def convert(self, value, param, ctx):
        cfg.check_key(param.name, value)
        return value


def key_help(key):
    field = cfg.FIELDS[key]
    allowed = "" if field.metadata["choices"] or type(field.default) is str else f"{cfg.allowed(key)}; "
    return f"{field.metadata['help']} [{allowed}default {field.default!r}]"


# --flag NAME: config key; every config key is also a flag (--n-hidden), plus the reference names.
def config_options(f):
    for key, field in reversed(list(cfg.FIELDS.items())):
        names = [f"--{key.replace('_', '-')}"] + [f"--{a}" for a, k in cfg.ALIASES.items() if k == key]
        kind = type(field.default)
        choices = field.metadata["choices"]
        f = click.option(*names, key, default=None, help=key_help(key),
                         type=KeyChoice(choices) if choices else
                         {int: int, float: float, str: str, bool: click.BOOL, tuple: str}[kind])(f)
    return f


class KeysByGroup(click.Command):
    """Help with the command's own options first, then the config keys under their groups."""

    def format_options(self, ctx, formatter):
        own, groups = [], {g: [] for g in cfg.GROUPS}
        for param in self.get_params(ctx):
            record = None if isinstance(param, click.Argument) else param.get_help_record(ctx)
            if record is not None:
                (groups[cfg.FIELDS[param.name].metadata["group"]] if param.name in cfg.FIELDS else own).append(record)
        with formatter.section("Options"):
            formatter.write_dl(own)
        for group, records in groups.items():
            if records:
                with formatter.section(f"Keys: {group}"):
                    formatter.write_dl(records)


class Commands(click.Group):
    """Commands that live in other modules are imported when called: `dynamics info` and
    `dynamics plot` do not wait for torch to load, and `dynamics --help` imports none of them."""
    # name -> (module, the command's one-line help, which a test compares with the command's own)
    elsewhere = {
        "context": ("analysis.context", "Validation loss against context length: MLP runs by window, recurrent runs as "
                                        "lines."),
        "export": ("dynamics.export", "Write a run file's numbers, histograms and samples as TensorBoard events."),
        "info": ("analysis.commands", "Name, status, config, final figures and verdicts of a run (also while it runs)."),
        "plot": ("analysis.commands", "The dashboard <name>_dashboard.png and one PNG per figure of a run."),
        "compare": ("analysis.commands", "Overlay runs: validation error, gradient norms, ρ, final log10 g_t, "
                                         "g_t against t."),
        "report": ("analysis.commands", "A PDF report: summary table, each run's dashboard, comparisons by task, "
                                        "LM table."),
        "sample": ("dynamics.sample", "Continue PROMPT with the model of the text run RUN.h5 (its best checkpoint "
                                      "by validation loss), or write N sequences of class K with a conditional "
                                      "run."),
        "sweep": ("dynamics.sweep", "Run every point of the grid in SPEC.toml as its own run, in parallel on Dask."),
        "success": ("dynamics.success", "Success rate against sequence length for the runs of a sweep FOLDER "
                                        "(Pascanu et al. Fig. 7)."),
        "temperature": ("dynamics.temperature", "Diversity (distinct word n-grams) and coherence (the model's "
                                                "own loss) of the text run RUN.h5's samples, against the sampling "
                                                "temperature."),
        "translate": ("dynamics.translate", "Translate INPUTS (or the lines of --file) with the seq2seq run RUN.h5."),
    }

    def list_commands(self, ctx):
        return sorted([*super().list_commands(ctx), *self.elsewhere])

    def get_command(self, ctx, name):
        if name in self.elsewhere:
            return getattr(importlib.import_module(self.elsewhere[name][0]), name)
        return super().get_command(ctx, name)

    def format_commands(self, ctx, formatter):
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))   # as click's own listing
        rows = [(name, (click.Command(name, help=self.elsewhere[name][1]) if name in self.elsewhere
                        else self.commands[name]).get_short_help_str(limit)) for name in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dynamics")
def cli():
    """Training dynamics of recurrent networks: train runs, then read their run files."""


@cli.command(cls=KeysByGroup, context_settings={"max_content_width": 100})
@click.argument("preset", required=False, type=click.Path(dir_okay=False))
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="override a config key (repeatable)")
@click.option("--force", is_flag=True, help="overwrite an existing run file")
@click.option("--resume", is_flag=True, help="continue an existing run file from its last checkpoint")
@click.option("--quiet", is_flag=True, help="no progress bar (and no progress lines in a log)")
@config_options
def train(preset, sets, force, resume, quiet, **flags):
    """Train one run: PRESET.toml, then flags, then --set overrides."""
    from .train import train as run_training
    overrides = {k: v for k, v in flags.items() if v is not None}
    overrides.update(cfg.parse_sets(sets))
    config = cfg.load(preset, overrides)
    path = run_training(config, command=" ".join(["dynamics"] + sys.argv[1:]), force=force, resume=resume,
                        progress=not quiet)
    from .train import run_status
    click.echo(f"{path}: {run_status(path)}")


def main(args=None):
    try:
        cli.main(args=args, standalone_mode=False)
    except InputError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        click.echo(f"error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except FileNotFoundError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
