"""`dynamics sample RUN.h5`: a text run's continuation of a prompt, or a conditional run's
sequences of one class (dynamics/sample.py, dynamics/sources/conditional.py)."""
import click

from tasks.errors import bad_value

from ..sample import continuation, read_config


@click.command()
@click.argument("run", type=click.Path(dir_okay=False))
@click.option("--prompt", "-p", default="\n", show_default="a newline",
              help="text to continue; its characters must be in the run's vocabulary")
@click.option("-n", "n", default=200, show_default=True, type=click.IntRange(min=0),
              help="tokens to write (characters, or words of a word model)")
@click.option("--temperature", "-t", default=0.8, show_default=True, type=float, help="0 is greedy")
@click.option("--top-k", default=None, type=int, help="keep the k most probable characters")
@click.option("--top-p", default=None, type=float, help="keep the most probable characters up to mass p")
@click.option("--seed", default=0, show_default=True, type=int, help="the same seed writes the same text")
@click.option("--no-prompt", is_flag=True, help="print only the continuation, not the prompt before it")
@click.option("--class", "label", default=None, metavar="K",
              help="conditional runs: the class to generate for (its index or name); -n sequences, one a line")
def sample(run, prompt, n, temperature, top_k, top_p, seed, no_prompt, label):
    """Continue PROMPT with the model of the text run RUN.h5 (its best checkpoint by validation
    loss), or write N sequences of class K with a conditional run."""
    config = read_config(run, families=("text", "conditional"))
    if config.task in ("names_gen", "sentiment_gen"):
        given = click.get_current_context().get_parameter_source("prompt") != click.core.ParameterSource.DEFAULT
        if given:   # a conditional model writes whole sequences from their start symbol: no prompt to continue
            raise bad_value("prompt", prompt, f"not given: {run} is a conditional run, which writes whole "
                                              f"sequences of the class --class K")
        from ..sources.conditional import sample_class
        for line in sample_class(run, config, label, n, temperature, top_k, top_p, seed):
            click.echo(line)
        return
    if label is not None:
        raise bad_value("class", label, f"not given: {run} is an unconditioned {config.task} run")
    text = continuation(run, prompt, n, temperature, top_k, top_p, seed)
    click.echo(text if no_prompt else prompt + text)
