"""The best possible decisions on a `names` run's own validation set, beside the network's:

    python -m analysis.names_bayes runs/M5.h5 runs/M6.h5 runs/M7.h5

The validation set is redrawn from the run's seed exactly as the trainer drew it; each name's
probability under every family comes from the exact likelihood of tasks/names.py. "Bayes
(prior)" picks argmax_k p_k P(name | k), the highest accuracy possible; "Bayes (uniform prior)"
picks argmax_k P(name | k), the decision that balanced class weighting aims at.
"""
import sys

import numpy as np

from dynamics.sources.classify import confusion_matrix, scores
from tasks.names import Names

from .read import load


def bayes(s):
    """{rule: (accuracy, macro-F1, per-class recall), percent} of the Bayes decisions on the names
    run `s`'s own validation set: "prior" (the highest accuracy possible) and "uniform prior"."""
    c = s.cfg
    task = Names(c("n_classes") or 5, c("class_balance") or None)
    valid = task.generate(c("eval_batch_size"), np.random.default_rng([c("seed"), 1]))
    likelihood = np.array([task.likelihood(task.text(t)) for t in valid.tokens])
    return {rule: scores(confusion_matrix(valid.labels, (likelihood * prior).argmax(1), task.n_classes))
            for rule, prior in (("prior", task.balance), ("uniform prior", np.ones(task.n_classes)))}


def report(path):
    s = load(path)
    lines = []
    for rule, (accuracy, f1, recall) in bayes(s).items():
        rule = f"Bayes ({rule})"
        lines.append(f"{s.name}: {rule}: accuracy {accuracy:.1f}%, macro-F1 {f1:.1f}%, "
                     f"recall {np.round(recall, 1).tolist()}")
    acc, recall = s.check["accuracy"], s.arrays["recall"]
    lines.append(f"{s.name}: network: final accuracy {acc[-1]:.1f}% (best {acc.max():.1f}% at "
                 f"{int(s.check['iter'][acc.argmax()])}), macro-F1 {s.check['macro_f1'][-1]:.1f}%, "
                 f"recall {np.round(recall[-1], 1).tolist()}, mean of the last 5 checks "
                 f"{np.round(recall[-5:].mean(0), 1).tolist()}")
    classes = [str(c) for c in s.static.get("classes", [])]
    lines.append(f"{s.name}: confusion at the last check (rows true {', '.join(classes)}): "
                 f"{s.arrays['confusion'][-1].tolist()}")
    return lines


if __name__ == "__main__":
    for path in sys.argv[1:]:
        print("\n".join(report(path)))
