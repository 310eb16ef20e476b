"""Models beyond the stacked recurrent layers of dynamics/model.py: the LayerNorm LSTM cell
(lnlstm.py) and the mini-Transformer (transformer.py)."""
