"""`sentiment`: a short snippet of words -> negative or positive, decided by one phrase.

    task = Sentiment(min_length=60, max_length=80, distance=50)
    ex = task.generate(100, np.random.default_rng(0))   # Examples(tokens, labels)
    task.text(ex.tokens[0])   # '... the film was not very good the plot and a scene ...'

A snippet is neutral filler words with one deciding phrase: [not] [intensifier] <sentiment word>.
The label is the word's polarity, flipped by "not". The phrase's words never occur in the filler,
so the phrase decides alone and the best possible error is 0. The length is uniform in
[min_length, max_length] tokens (raised to fit the phrase and the distance); `distance` is the
number of filler tokens after the phrase (None: the phrase lies anywhere), which makes the
dependency length a dial.
"""
import numpy as np

from .labelled import Examples, check_int, check_rng, refuse

POSITIVE = ("good", "great", "excellent", "wonderful", "lovely", "superb")
NEGATIVE = ("bad", "awful", "terrible", "poor", "dull", "boring")
NEGATION = "not"
INTENSIFIERS = ("very", "really", "truly")
FILLER = ("the", "a", "film", "movie", "plot", "story", "was", "is", "and", "it", "of", "actors",
          "scene", "ending", "music", "this", "with", "in", "that", "cast", "director", "we", "saw",
          "after", "then", "some", "its", "one", "two", "time")
VOCAB = FILLER + POSITIVE + NEGATIVE + (NEGATION,) + INTENSIFIERS   # token id = index in VOCAB
MAX_PHRASE = 3   # not + intensifier + word


class Sentiment:
    """Two classes, word tokens; p_negate / p_intensify: how often the phrase has "not" / "very"."""

    vocab = VOCAB
    classes = ("negative", "positive")
    n_classes = 2

    def __init__(self, min_length=8, max_length=20, distance=None, p_negate=0.3, p_intensify=0.3):
        self.min_length = check_int("min_length", min_length, 1)
        self.max_length = check_int("max_length", max_length, 1)
        if self.min_length > self.max_length:
            raise refuse("min_length", min_length, f"at most max_length={max_length}")
        if distance is not None:
            distance = check_int("distance", distance, 0)
            if distance + MAX_PHRASE > self.max_length:
                raise refuse("distance", distance, f"at most max_length - {MAX_PHRASE} = "
                             f"{self.max_length - MAX_PHRASE} (the phrase and the filler after it fit in max_length)")
        elif self.max_length < MAX_PHRASE:
            raise refuse("max_length", max_length, f"at least {MAX_PHRASE} (the longest deciding phrase)")
        self.distance, self.p_negate, self.p_intensify = distance, p_negate, p_intensify
        self.ids = {w: i for i, w in enumerate(VOCAB)}

    def snippet(self, rng):
        """One (word list, label): polarity, phrase, length, position, filler, in that order."""
        positive = rng.random() < 0.5
        words = [(POSITIVE if positive else NEGATIVE)[rng.integers(len(POSITIVE))]]
        if rng.random() < self.p_intensify:
            words.insert(0, INTENSIFIERS[rng.integers(len(INTENSIFIERS))])
        negated = rng.random() < self.p_negate
        if negated:
            words.insert(0, NEGATION)
        after_min = 0 if self.distance is None else self.distance
        length = int(rng.integers(max(self.min_length, len(words) + after_min), self.max_length + 1))
        after = self.distance if self.distance is not None else int(rng.integers(length - len(words) + 1))
        before = length - len(words) - after
        filler = [FILLER[i] for i in rng.integers(len(FILLER), size=before + after)]
        return filler[:before] + words + filler[before:], int(positive != negated)

    def generate(self, n, rng):
        """n labelled snippets, drawn only from `rng`, one after the other."""
        n = check_int("n", n, 1)
        check_rng(rng)
        pairs = [self.snippet(rng) for _ in range(n)]
        return Examples([self.encode(w) for w, _ in pairs], np.array([y for _, y in pairs], dtype=np.int64))

    def encode(self, words):
        return np.array([self.ids[w] for w in words], dtype=np.int64)

    def text(self, tokens):
        return " ".join(VOCAB[i] for i in tokens)
