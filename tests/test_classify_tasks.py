"""The sequence-classification generators (tasks/names.py, tasks/sentiment.py): determinism,
the options, and the properties the family's experiments rely on."""
import numpy as np
import pytest

from tasks.labelled import pad
from tasks.names import CLASS_NAMES, Names
from tasks.sentiment import FILLER, MAX_PHRASE, NEGATION, NEGATIVE, POSITIVE, Sentiment


def same(a, b):
    return len(a.tokens) == len(b.tokens) and all(np.array_equal(x, y) for x, y in zip(a.tokens, b.tokens)) \
        and np.array_equal(a.labels, b.labels)


@pytest.mark.parametrize("task", [Names(), Sentiment(min_length=5, max_length=30)])
def test_same_seed_same_examples(task):
    a = task.generate(50, np.random.default_rng(3))
    assert same(a, task.generate(50, np.random.default_rng(3)))
    assert not same(a, task.generate(50, np.random.default_rng(4)))
    assert all(t.dtype == np.int64 and t.min() >= 0 and t.max() < len(task.vocab) for t in a.tokens)
    assert a.labels.dtype == np.int64 and set(a.labels) <= set(range(len(task.classes)))


def test_pad():
    ids, lengths = pad([np.array([1, 2, 3]), np.array([4])], pad_id=9)
    assert ids.tolist() == [[1, 4], [2, 9], [3, 9]] and lengths.tolist() == [3, 1]


def test_names_families_do_not_depend_on_k():
    small, large = Names(n_classes=2), Names(n_classes=7)
    assert large.classes[:2] == small.classes == CLASS_NAMES[:2]
    for a, b in zip(small.families, large.families):
        assert all(np.array_equal(a[k], b[k]) for k in a)


def test_names_class_balance():
    task = Names(class_balance=[0.4, 0.3, 0.15, 0.1, 0.05])
    labels = task.generate(4000, np.random.default_rng(0)).labels
    share = np.bincount(labels, minlength=5) / len(labels)
    assert np.allclose(share, [0.4, 0.3, 0.15, 0.1, 0.05], atol=0.025)


def test_names_are_hard_but_not_too_hard():
    """A character-bigram naive Bayes (independent of any network) gets most names right; its
    mistakes are mostly between the sibling families 0 and 1; and some names come from several
    families, so no classifier can be perfect."""
    task = Names()
    rng = np.random.default_rng(1)
    train, test = task.generate(6000, rng), task.generate(2000, rng)
    V = len(task.vocab) + 1   # + the start symbol

    def bigrams(tokens):
        t = np.concatenate([[V - 1], tokens])
        return t[:-1] * V + t[1:]

    counts = np.ones((5, V * V))
    for t, y in zip(train.tokens, train.labels):
        np.add.at(counts[y], bigrams(t), 1)
    logp = np.log(counts / counts.sum(1, keepdims=True))
    guess = np.array([logp[:, bigrams(t)].sum(1).argmax() for t in test.tokens])
    confusion = np.zeros((5, 5), int)
    np.add.at(confusion, (test.labels, guess), 1)
    error = 1 - np.trace(confusion) / len(guess)
    assert 0.01 < error < 0.2
    off = confusion - np.diag(np.diag(confusion))
    assert off[0, 1] + off[1, 0] > off.sum() / 2
    seen = {}
    for t, y in zip(train.tokens, train.labels):
        seen.setdefault(t.tobytes(), set()).add(int(y))
    assert any(len(labels) > 1 for labels in seen.values())


@pytest.mark.parametrize("kwargs, key", [
    ({"n_classes": 1}, "n_classes"), ({"n_classes": 11}, "n_classes"),
    ({"class_balance": [0.5, 0.5]}, "class_balance"),
    ({"class_balance": [0.5, 0.5, 0.2, -0.1, -0.1]}, "class_balance"),
    ({"class_balance": [0.3, 0.3, 0.2, 0.1, 0.2]}, "class_balance")])
def test_names_refuses(kwargs, key):
    with pytest.raises(ValueError, match=f"^{key}=.* is not allowed: "):
        Names(**kwargs)


def test_sentiment_phrase_distance_and_label():
    task = Sentiment(min_length=12, max_length=20, distance=6)
    ex = task.generate(300, np.random.default_rng(0))
    phrase_words = set(POSITIVE + NEGATIVE)
    for tokens, label in zip(ex.tokens, ex.labels):
        words = task.text(tokens).split()
        assert 12 <= len(words) <= 20
        at = [i for i, w in enumerate(words) if w in phrase_words]
        assert len(at) == 1 and at[0] == len(words) - 1 - 6     # exactly `distance` tokens after it
        negated = NEGATION in words[max(0, at[0] - 2):at[0]]
        assert label == int((words[at[0]] in POSITIVE) != negated)
        assert sum(w not in FILLER for w in words) <= MAX_PHRASE
    assert 0.4 < ex.labels.mean() < 0.6


def test_sentiment_without_distance_places_the_phrase_anywhere():
    task = Sentiment(min_length=10, max_length=10)
    ex = task.generate(400, np.random.default_rng(0))
    ends = {len(t) - 1 - [i for i, w in enumerate(task.text(t).split()) if w in POSITIVE + NEGATIVE][0]
            for t in ex.tokens}
    assert min(ends) == 0 and max(ends) >= 8


@pytest.mark.parametrize("kwargs, key", [
    ({"min_length": 5, "max_length": 20, "distance": 18}, "distance"),
    ({"min_length": 5, "max_length": 20, "distance": -1}, "distance"),
    ({"min_length": 30, "max_length": 20}, "min_length"), ({"min_length": 0}, "min_length")])
def test_sentiment_refuses(kwargs, key):
    with pytest.raises(ValueError, match=f"^{key}=.* is not allowed: "):
        Sentiment(**kwargs)
