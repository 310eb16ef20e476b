"""The panels of one run's figures, one topic a module. Each topic declares `PANELS` (a list of
canvas.Panel: key, whether the run has the data, how to draw it) and `FIGURES` ({figure name:
(title, [panel keys])}), plus whole figures of its own where a row of panels does not fit.

A new topic is one new module and one entry in TOPICS. The order of TOPICS, and of FIGURES
within each topic, is the order of the figures on the dashboard.
"""
from . import (classify, conditional, gradients, horizon, omega, saturation, seq2seq, spectrum, theory, training,
               transformer)

TOPICS = (training, gradients, horizon, saturation, spectrum, omega, theory, transformer, classify, conditional, seq2seq)


def _merge(tables):
    merged = {}
    for table in tables:
        clash = merged.keys() & table.keys()
        if clash:
            raise ValueError(f"two topics use the names {sorted(clash)}")
        merged.update(table)
    return merged


#: panel key -> Panel, over every topic
PANELS = _merge({p.key: p for p in topic.PANELS} for topic in TOPICS)

#: figure name -> (title, [panel keys]), in dashboard order
FIGURES = _merge(topic.FIGURES for topic in TOPICS)

_unknown = {k for _, keys in FIGURES.values() for k in keys} - PANELS.keys()
if _unknown:
    raise ValueError(f"figures name panels that no topic declares: {sorted(_unknown)}")
