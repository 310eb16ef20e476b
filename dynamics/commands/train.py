"""`dynamics train [PRESET.toml]`: one run, its config from a preset, flags and --set overrides
(dynamics/config.py), trained by dynamics/train.py. Every config key is also a flag."""
import signal
import sys

import click

from .. import config as cfg


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
                         str if field.metadata["words"] else   # a number or a word, coerced by the config
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


@click.command(cls=KeysByGroup, context_settings={"max_content_width": 100})
@click.argument("preset", required=False, type=click.Path(dir_okay=False))
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="override a config key (repeatable)")
@click.option("--force", is_flag=True, help="overwrite an existing run file")
@click.option("--resume", is_flag=True, help="continue an existing run file from its last checkpoint")
@click.option("--quiet", is_flag=True, help="no progress bar (and no progress lines in a log)")
@config_options
def train(preset, sets, force, resume, quiet, **flags):
    """Train one run: PRESET.toml, then flags, then --set overrides."""
    overrides = {k: v for k, v in flags.items() if v is not None}
    overrides.update(cfg.parse_sets(sets))
    config = cfg.load(preset, overrides)
    from ..train import run_status, train as run_training   # torch: not for `dynamics train --help`
    path = run_training(config, command=" ".join(["dynamics"] + sys.argv[1:]), force=force, resume=resume,
                        progress=not quiet)
    status = run_status(path)
    click.echo(f"{path}: {status}")
    if status == "interrupted":   # stopped by a signal: --resume continues; the exit status says so
        from .. import stopping
        sys.exit(128 + int(stopping.received or signal.SIGINT))
