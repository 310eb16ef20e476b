"""Models beyond the stacked recurrent layers of dynamics/model.py, built from its hand-written
layers: the LayerNorm LSTM cell (lnlstm.py), the mini-Transformer (transformer.py), and the
models of the task families (classifier.py, pooling.py, seq2seq.py)."""
