"""Word-level text: a tokenizer that keeps punctuation and newlines, a frequency vocabulary with
<unk>, and the splits as word ids. Pure Python (and numpy); no imports from dynamics/.

    corpus = WordCorpus(text, source="book.txt", vocab_size=5000)
    corpus.train                          # 1-D int64 word ids of the training split
    corpus.decode(corpus.encode("It rains, today.\\n"))   # 'It rains, today.\\n' (or <unk> for unknown words)

Tokens are <unk>, words (letters, digits and underscores, with inner apostrophes: "don't"), single
punctuation marks, and newlines; other whitespace only separates tokens. `detokenize` joins
tokens with single spaces, none before closing punctuation or after opening brackets, none
around newlines: normalised text comes back exactly.

The splits are cut from the text by characters with the same fractions as the character corpus
(tasks.text.Corpus), then tokenized: the word and character models of one text read the same
validation text, so their bits per character compare. `chars(split, i, j)` is the number of
characters that tokens i..j−1 of a split span, their separating spaces included.
"""
import re
from collections import Counter

import numpy as np

UNK = "<unk>"
TOKEN = re.compile(r"<unk>|\n|\w+(?:'\w+)*|[^\w\s]")
NO_SPACE_BEFORE = set(".,;:!?)]}%'") | {"\n"}
NO_SPACE_AFTER = set("([{") | {"\n"}


def tokenize(text):
    """The tokens of `text`: words, punctuation marks and newlines, in order."""
    return TOKEN.findall(text)


def spans(text):
    """(tokens, starts, ends): the tokens and their character offsets in `text`."""
    found = list(TOKEN.finditer(text))
    return [m.group() for m in found], [m.start() for m in found], [m.end() for m in found]


def detokenize(tokens):
    """Readable text from tokens: one space between tokens except before closing punctuation,
    after opening brackets and around newlines; double quotes open and close in turn."""
    out, quote_open, glue = [], False, True       # glue: no space before the next token
    for tok in tokens:
        closing = tok in NO_SPACE_BEFORE or (tok == '"' and quote_open)
        if not glue and not closing:
            out.append(" ")
        out.append(tok)
        glue = tok in NO_SPACE_AFTER or (tok == '"' and not quote_open)
        if tok == '"':
            quote_open = not quote_open
    return "".join(out)


def build_vocab(tokens, size):
    """[<unk>] + the `size` most frequent tokens (ties: in order of first appearance)."""
    counts = Counter(tokens)
    counts.pop(UNK, None)
    return [UNK] + [tok for tok, _ in counts.most_common(size)]


class WordCorpus:
    """A text as word ids (see the module). Attributes: vocab (list of str, id 0 is <unk>),
    vocab_size, train/valid/test (int64 arrays), source, sha256 (set by the caller), unk_share
    (of the validation tokens)."""

    def __init__(self, text, source="<string>", splits=(0.9, 0.05, 0.05), vocab_size=5000):
        n = len(text)
        cut = [0, int(splits[0] * n), int(splits[0] * n) + int(splits[1] * n), n]
        self.source, self.splits = source, tuple(splits)
        pieces = [spans(text[a:b]) for a, b in zip(cut[:-1], cut[1:])]
        self.vocab = build_vocab(pieces[0][0], vocab_size)
        self.vocab_size = len(self.vocab)
        self._index = {tok: i for i, tok in enumerate(self.vocab)}
        self.train, self.valid, self.test = (self.ids(toks) for toks, _, _ in pieces)
        self._offsets = {name: (np.array(s), np.array(e)) for name, (_, s, e) in zip(("train", "valid", "test"), pieces)}
        self.unk_share = float(np.mean(self.valid == 0)) if len(self.valid) else 0.0
        newline = self._index.get("\n")
        self.newline = newline

    def ids(self, tokens):
        return np.array([self._index.get(tok, 0) for tok in tokens], dtype=np.int64)

    def encode(self, s):
        """The word ids of str `s`; unknown words become <unk> (id 0)."""
        return self.ids(tokenize(s))

    def decode(self, ids):
        """Readable text of a sequence of word ids (list, array or tensor)."""
        ids = np.asarray(ids.tolist() if hasattr(ids, "tolist") else ids, dtype=np.int64).reshape(-1)
        return detokenize([self.vocab[i] for i in ids])

    def chars(self, split, i, j):
        """Characters spanned by tokens i..j−1 of `split`, from the end of token i − 1 (the
        spaces before token i count) to the end of token j − 1."""
        starts, ends = self._offsets[split]
        return int(ends[j - 1] - (ends[i - 1] if i > 0 else starts[0]))

    def words_within(self, split, n_chars):
        """How many tokens of `split` end within its first `n_chars` characters."""
        starts, ends = self._offsets[split]
        return int(np.searchsorted(ends, n_chars, side="right"))
