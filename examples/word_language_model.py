"""A word-level LSTM language model, trained by its own loop and recorded by dynamics.

The model and the loop are plain PyTorch (an embedding, a torch.nn.LSTM, a linear decoder;
truncated BPTT over batchified streams, gradient clipping, the learning rate annealed when the
validation loss stops improving). Two things make it a diagnosed run:

    model = dynamics.nn.convert(model)      # its torch.nn.LSTM, now with exact ∂L/∂h_t
    rec.step(loss)                          # after each update: the run file grows

    python examples/word_language_model.py                       # the default corpus, 2 epochs
    python examples/word_language_model.py --data book.txt --epochs 6 --record runs/book.h5
    dynamics info runs/word_lm.h5; dynamics plot runs/word_lm.h5  # or examples/notebook.ipynb
"""
import argparse
import math
import time

import torch
import torch.nn as nn

import dynamics
import dynamics.nn
from tasks.text import load_text
from tasks.words import WordCorpus

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data", default=None, help="a UTF-8 text file (default: the project's default corpus)")
parser.add_argument("--vocab", type=int, default=5000, help="words in the vocabulary, the rest <unk>")
parser.add_argument("--emsize", type=int, default=200, help="size of the word embeddings")
parser.add_argument("--nhid", type=int, default=200, help="hidden units per layer")
parser.add_argument("--nlayers", type=int, default=2, help="LSTM layers")
parser.add_argument("--lr", type=float, default=20.0, help="initial learning rate (plain SGD)")
parser.add_argument("--clip", type=float, default=0.25, help="gradient clipping: the largest global norm")
parser.add_argument("--epochs", type=int, default=2, help="passes over the training text")
parser.add_argument("--batch-size", type=int, default=20, help="parallel streams of text")
parser.add_argument("--bptt", type=int, default=35, help="steps of truncated backpropagation through time")
parser.add_argument("--dropout", type=float, default=0.2, help="dropout on the embeddings and between layers")
parser.add_argument("--tied", action="store_true", help="share the embedding and decoder weights")
parser.add_argument("--seed", type=int, default=1111, help="random seed")
parser.add_argument("--max-batches", type=int, default=0, help="stop each epoch after this many batches (0: none)")
parser.add_argument("--record", default="runs/word_lm.h5", help="the run file dynamics writes")
parser.add_argument("--check-every", type=int, default=100, help="updates between the recorder's checks")
parser.add_argument("--log-interval", type=int, default=200, help="updates between progress lines")
args = parser.parse_args()

torch.manual_seed(args.seed)

###############################################################################
# Data: the text as word ids, cut into `batch_size` parallel streams
###############################################################################

text, source = load_text(args.data)
corpus = WordCorpus(text, source=source, vocab_size=args.vocab)
ntokens = corpus.vocab_size


def batchify(ids, bsz):
    """(n,) word ids → (n // bsz, bsz): column b is the b-th stretch of the text."""
    data = torch.as_tensor(ids)
    nbatch = data.size(0) // bsz
    return data[:nbatch * bsz].view(bsz, -1).t().contiguous()


train_data = batchify(corpus.train, args.batch_size)
val_data = batchify(corpus.valid, 10)
test_data = batchify(corpus.test, 10)


def get_batch(source, i):
    """The inputs at rows i … i + bptt − 1 and their targets, the next words."""
    seq_len = min(args.bptt, len(source) - 1 - i)
    return source[i:i + seq_len], source[i + 1:i + 1 + seq_len].reshape(-1)


###############################################################################
# The model: embedding → LSTM → decoder
###############################################################################

class RNNModel(nn.Module):
    def __init__(self, ntoken, ninp, nhid, nlayers, dropout, tie_weights):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        if tie_weights:
            if nhid != ninp:
                raise ValueError("--tied needs --nhid equal to --emsize")
            self.decoder.weight = self.encoder.weight
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        self.nlayers, self.nhid = nlayers, nhid

    def forward(self, input, hidden):
        output, hidden = self.rnn(self.drop(self.encoder(input)), hidden)
        return self.decoder(self.drop(output)).view(-1, self.decoder.out_features), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        return (weight.new_zeros(self.nlayers, bsz, self.nhid), weight.new_zeros(self.nlayers, bsz, self.nhid))


def repackage_hidden(h):
    """The state without its history: backpropagation stops at the batch's first step."""
    return tuple(v.detach() for v in h)


model = RNNModel(ntokens, args.emsize, args.nhid, args.nlayers, args.dropout, args.tied)
model = dynamics.nn.convert(model)      # the one change to the model: ∂L/∂h_t per layer, the same outputs
criterion = nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
settings = {k: v for k, v in vars(args).items() if k not in ("record", "log_interval")}
rec = dynamics.Recorder(model, args.record, check_every=args.check_every, optimizer=optimizer,
                        config={**settings, "clip": "rescale", "cutoff": args.clip, "corpus": source}, overwrite=True)


###############################################################################
# Training and evaluation
###############################################################################

def evaluate(data):
    model.eval()
    total, hidden = 0.0, model.init_hidden(data.size(1))
    with torch.no_grad():
        for i in range(0, data.size(0) - 1, args.bptt):
            x, y = get_batch(data, i)
            output, hidden = model(x, hidden)
            total += len(x) * criterion(output, y).item()
    return total / (len(data) - 1)


def train(epoch):
    model.train()
    hidden = model.init_hidden(args.batch_size)
    start, shown = time.time(), []
    for batch, i in enumerate(range(0, train_data.size(0) - 1, args.bptt)):
        if args.max_batches and batch == args.max_batches:
            break
        x, y = get_batch(train_data, i)
        hidden = repackage_hidden(hidden)
        optimizer.zero_grad()
        output, hidden = model(x, hidden)
        loss = criterion(output, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        optimizer.step()
        rec.step(loss)                  # the one line in the loop
        shown.append(loss.item())
        if (batch + 1) % args.log_interval == 0:
            mean = sum(shown) / len(shown)
            print(f"| epoch {epoch:3d} | {batch + 1:5d} batches | lr {optimizer.param_groups[0]['lr']:5.2f} | "
                  f"{(time.time() - start) * 1000 / len(shown):6.1f} ms/batch | loss {mean:5.2f} | "
                  f"ppl {math.exp(mean):8.2f}", flush=True)
            start, shown = time.time(), []


best_val_loss = None
print(f"{source}: {len(corpus.train):,} training words, vocabulary {ntokens:,}; recording {args.record}")
try:
    for epoch in range(1, args.epochs + 1):
        epoch_start = time.time()
        train(epoch)
        val_loss = evaluate(val_data)
        rec.validate(val_loss)          # the validation loss joins this update's check
        print(f"| end of epoch {epoch:3d} | {time.time() - epoch_start:5.1f} s | valid loss {val_loss:5.2f} | "
              f"valid ppl {math.exp(val_loss):8.2f}", flush=True)
        if best_val_loss is None or val_loss < best_val_loss:
            best_val_loss = val_loss
        else:                           # no progress on the validation text: a quarter of the rate
            for group in optimizer.param_groups:
                group["lr"] /= 4.0
except KeyboardInterrupt:
    print("stopped early")
    rec.close("interrupted")
rec.close()
test_loss = evaluate(test_data)
print(f"| end of training | test loss {test_loss:5.2f} | test ppl {math.exp(test_loss):8.2f}")
print(f"recorded: dynamics info {args.record}")
