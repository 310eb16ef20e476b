"""Drop-in torch.nn.RNN, GRU and LSTM with exact ∂L/∂h_t (modules.py), and `convert`/`restore`
to swap them into and out of a model of your own (convert.py)."""
from .convert import convert, restore
from .modules import GRU, LSTM, RNN

__all__ = ["RNN", "GRU", "LSTM", "convert", "restore"]
