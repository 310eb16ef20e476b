"""The `dynamics` command. Bad input: one line on stderr, exit status 2."""
import importlib
import sys

import click

from . import config as cfg
from .errors import InputError

# --flag NAME: config key; every config key is also a flag (--n-hidden), plus the reference names.
def config_options(f):
    for key, field in reversed(list(cfg.FIELDS.items())):
        names = [f"--{key.replace('_', '-')}"] + [f"--{a}" for a, k in cfg.ALIASES.items() if k == key]
        kind = type(field.default)
        help_text = f"config key {key} (default {field.default!r})"
        f = click.option(*names, key, default=None, help=help_text,
                         type={int: int, float: float, str: str, bool: click.BOOL, tuple: str}[kind])(f)
    return f


class Commands(click.Group):
    """Commands that live in other modules are imported when called: `dynamics info` and
    `dynamics plot` do not wait for torch to load."""
    elsewhere = {"info": "analysis.commands", "plot": "analysis.commands", "compare": "analysis.commands",
                 "report": "analysis.commands", "sample": "dynamics.sample", "sweep": "dynamics.sweep",
                 "success": "dynamics.sweep", "context": "analysis.context"}

    def list_commands(self, ctx):
        return sorted([*super().list_commands(ctx), *self.elsewhere])

    def get_command(self, ctx, name):
        if name in self.elsewhere:
            return getattr(importlib.import_module(self.elsewhere[name]), name)
        return super().get_command(ctx, name)


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dynamics")
def cli():
    """Training dynamics of recurrent networks: train runs, then read their run files."""


@cli.command(context_settings={"max_content_width": 100})
@click.argument("preset", required=False, type=click.Path(dir_okay=False))
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="override a config key (repeatable)")
@click.option("--force", is_flag=True, help="overwrite an existing run file")
@click.option("--resume", is_flag=True, help="continue an existing run file from its last checkpoint")
@click.option("--quiet", is_flag=True, help="no progress bar")
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
