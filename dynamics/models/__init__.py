"""Every model the trainer builds. The hand-written recurrent cells and their stacked model
(recurrent.py; the BPTT loops in recurrence.py, compiled on the CPU from csrc/recurrence.cpp by
compiled.py; initialisations by name in init.py), the LayerNorm LSTM cell (lnlstm.py), the
mini-Transformer (transformer.py, transformer_seq2seq.py), and the models of the task families
(classifier.py, pooling.py, seq2seq.py, mlp.py, conditional.py)."""
