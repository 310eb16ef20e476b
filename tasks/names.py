"""`names`: a made-up name -> the language family it comes from (character tokens).

    task = Names(n_classes=5, class_balance=[0.4, 0.3, 0.15, 0.1, 0.05])
    ex = task.generate(1000, np.random.default_rng(0))   # Examples(tokens, labels)
    task.text(ex.tokens[0]), task.classes[ex.labels[0]]  # e.g. ('brakoven', 'Amber')
    ids, lengths = pad(ex.tokens)                        # tasks.labelled.pad: (T, N), (N,)

Every family has its own character-level generator: a name is 1-4 syllables (onset + vowel +
coda), each part drawn from the family's own weights over a shared inventory, then, with the
family's probability, its signature ending. The families are drawn once from a fixed seed
(`LANGUAGE_SEED`), independent of the data seed, so family k is the same for every K and every
run. Families come in sibling pairs (0-1, 2-3, 4-5, ...) drawn from one parent with a small
perturbation: siblings are close and get confused, other pairs hardly. Some short names can come
from several families, so the best possible error is small but not zero.
"""
import string

import numpy as np

from .labelled import Examples, check_balance, check_int, check_rng, refuse

LANGUAGE_SEED = 2026
CLASS_NAMES = ("Amber", "Birch", "Cedar", "Dune", "Ember", "Fjord", "Glade", "Heath", "Iris", "Juniper")
ONSETS = ("", "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w",
          "z", "ch", "sh", "th", "br", "dr", "kr", "st", "tr", "gl")
VOWELS = ("a", "e", "i", "o", "u", "y", "aa", "ei", "ou", "ia")
CODAS = ("", "n", "r", "l", "s", "k", "m", "t", "nd", "rt", "sk")
ENDINGS = ("ov", "ez", "ini", "sen", "ak", "ette", "ur", "is", "ander", "ka")
VOCAB = tuple(string.ascii_lowercase)   # token id = index in VOCAB


def _weights(rng, n, keep, concentration=0.7):
    """Weights over n items: `keep` of them get Dirichlet weights, the others none."""
    chosen = rng.choice(n, size=keep, replace=False)
    w = np.zeros(n)
    w[chosen] = rng.dirichlet(np.full(keep, concentration))
    return w


def _perturb(rng, w, swaps):
    """A sibling's weights: `swaps` used items handed to unused ones, the rest reweighted a little."""
    w = w.copy()
    used, unused = np.flatnonzero(w), np.flatnonzero(w == 0)
    for old, new in zip(rng.choice(used, swaps, replace=False), rng.choice(unused, swaps, replace=False)):
        w[new], w[old] = w[old], 0.0
    w[w > 0] *= rng.uniform(0.5, 1.5, size=(w > 0).sum())
    return w / w.sum()


def family(k):
    """Family k's generator: weights over ONSETS, VOWELS, CODAS, syllable counts 1-4, its
    ending and the ending's probability. Drawn from LANGUAGE_SEED only."""
    parent = np.random.default_rng([LANGUAGE_SEED, k // 2])
    base = {"onset": _weights(parent, len(ONSETS), 8), "vowel": _weights(parent, len(VOWELS), 4),
            "coda": _weights(parent, len(CODAS), 4), "syllables": parent.dirichlet([2, 4, 3, 1])}
    own = np.random.default_rng([LANGUAGE_SEED, k // 2, 1 + k % 2])
    return {"onset": _perturb(own, base["onset"], 1), "vowel": _perturb(own, base["vowel"], 1),
            "coda": _perturb(own, base["coda"], 0), "syllables": base["syllables"],
            "ending": ENDINGS[k % len(ENDINGS)], "p_ending": own.uniform(0.2, 0.4)}


class Names:
    """K families (2 <= K <= 10); `class_balance` the probability of each (None: uniform)."""

    vocab = VOCAB

    def __init__(self, n_classes=5, class_balance=None):
        self.n_classes = check_int("n_classes", n_classes, 2)
        if self.n_classes > len(CLASS_NAMES):
            raise refuse("n_classes", n_classes, f"an integer from 2 to {len(CLASS_NAMES)}")
        self.balance = check_balance(class_balance, self.n_classes)
        self.classes = CLASS_NAMES[:self.n_classes]
        self.families = [family(k) for k in range(self.n_classes)]
        self.max_length = 4 * (2 + 2 + 2) + max(len(e) for e in ENDINGS)

    def name(self, k, rng):
        """One name of family k, as a string."""
        f = self.families[k]
        parts = []
        for _ in range(1 + rng.choice(4, p=f["syllables"])):
            parts += [ONSETS[rng.choice(len(ONSETS), p=f["onset"])], VOWELS[rng.choice(len(VOWELS), p=f["vowel"])],
                      CODAS[rng.choice(len(CODAS), p=f["coda"])]]
        if rng.random() < f["p_ending"]:
            parts.append(f["ending"])
        return "".join(parts)

    def generate(self, n, rng):
        """n labelled names, drawn only from `rng` (labels first, then the names in order)."""
        n = check_int("n", n, 1)
        check_rng(rng)
        labels = rng.choice(self.n_classes, size=n, p=self.balance).astype(np.int64)
        return Examples([self.encode(self.name(k, rng)) for k in labels], labels)

    def encode(self, text):
        return np.array([VOCAB.index(ch) for ch in text], dtype=np.int64)

    def text(self, tokens):
        return "".join(VOCAB[i] for i in tokens)
