"""`dynamics translate RUN.h5 INPUTS...`: greedy or beam decoding with a seq2seq run
(dynamics/translate.py)."""
import click

from tasks.errors import bad_value

from ..translate import hypotheses, read_inputs


@click.command()
@click.argument("run", type=click.Path(dir_okay=False))
@click.argument("inputs", nargs=-1)
@click.option("--file", "-f", "path", type=click.Path(dir_okay=False), help="read one input a line")
@click.option("--beam", default=5, show_default=True, type=int, help="beam size (1 is greedy)")
@click.option("--n-best", default=1, show_default=True, type=int, help="hypotheses printed per input")
@click.option("--norm", type=click.Choice(["none", "avg", "gnmt"]), default=None,
              help="length normalisation (default: the run's length_norm)")
@click.option("--alpha", type=float, default=None, help="GNMT exponent α (default: the run's length_alpha)")
def translate(run, inputs, path, beam, n_best, norm, alpha):
    """Translate INPUTS (or the lines of --file) with the seq2seq run RUN.h5."""
    inputs = list(inputs) + (read_inputs(path) if path else [])
    if any(text == "" for text in inputs):
        raise bad_value("input", "", "a non-empty string")
    for text, hyps in hypotheses(run, inputs, beam, n_best, norm, alpha):
        click.echo(text)
        for k, (output, logp, score) in enumerate(hyps, 1):
            click.echo(f"  {k}. {output}    log p = {logp:.4f}    score = {score:.4f}")
