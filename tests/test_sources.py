"""The family interface of the trainer: a source's extra columns, per-check arrays and static data
reach the run file and the reader; variable-length parts are probed on their valid steps only."""
import numpy as np
import torch

from analysis.read import load
from dynamics import probes
from dynamics import schema
from dynamics.config import make
from dynamics.models.part import Part
from dynamics.sources.synthetic import Synthetic
from dynamics.train import train


def test_masked_diagnostics_equal_a_direct_count():
    g = torch.Generator().manual_seed(0)
    T, B, H = 6, 3, 4
    lengths = torch.tensor([6, 2, 4])
    hidden = torch.rand(T, B, H, generator=g, dtype=torch.float64) * 2 - 1
    grad = torch.randn(T, B, H, generator=g, dtype=torch.float64)
    for b, n in enumerate(lengths.tolist()):
        grad[n:, b] = 0
    gates = {"z": torch.rand(T, B, H, generator=g, dtype=torch.float64)}
    for align in ("start", "end"):
        part = Part("p", "gru", "tanh", hidden, gates, grad, lengths, align)
        d = probes.layer_diagnostics(part, probes.hist_edges(part))
        norms = grad.norm(dim=2)
        for j in range(T):   # step j from the start, or j steps before each sequence's last token
            values = [norms[j if align == "start" else n - 1 - j, b].item()
                      for b, n in enumerate(lengths.tolist()) if j < n]
            assert abs(d["grad_time"][j].item() - np.mean(values)) < 1e-12
        valid = [(t, b) for b, n in enumerate(lengths.tolist()) for t in range(n)]
        assert d["hist"]["log10_grad"].sum().item() == len(valid) == 12
        assert d["hist"]["saturation"].sum().item() == len(valid) * H
        sat = np.array([1 - abs(hidden[t, b, k].item()) for t, b in valid for k in range(H)])
        expect, _ = np.histogram(sat, bins=schema.TANH_EDGES)
        assert (d["hist"]["saturation"].numpy() == expect).all()


class Tagged(Synthetic):
    """Temporal order as another family would report it: a per-check array, a column, static text."""

    family = "tagged"
    check_columns = ("extra",)
    check_arrays = {"matrix": ((2, 3), "f8"), "words": ((2,), "str")}
    static = {"class_names": np.array(["first class", "second"])}

    def __init__(self, config, device, dtype):
        super().__init__(config, device, dtype)
        self.k = 0

    def evaluate(self, model):
        out, k = super().evaluate(model), self.k
        self.k += 1
        return {**out, "extra": float(k), "matrix": np.full((2, 3), float(k)),
                "words": np.array([f"w{k}", "x"], dtype=object)}


def test_a_family_source_reaches_the_run_file_and_the_reader(tmp_path, monkeypatch):
    import dynamics.sources.synthetic as module
    monkeypatch.setattr(module, "SOURCE", Tagged)
    c = make({"task": "torder", "min_length": 10, "max_length": 10, "max_iters": 6, "check_freq": 2,
              "eval_batch_size": 4, "chunk_batch_size": 4, "out_dir": str(tmp_path), "name": "t"})
    snap = load(train(c, progress=False))
    assert snap.family == "tagged" and snap.part_names == {0: "0"}
    assert list(snap.check["extra"]) == [0.0, 1.0, 2.0]
    assert snap.arrays["matrix"].shape == (3, 2, 3) and (snap.arrays["matrix"][2] == 2).all()
    assert snap.arrays["words"].tolist() == [["w0", "x"], ["w1", "x"], ["w2", "x"]]
    assert list(snap.static["class_names"]) == ["first class", "second"]


def test_every_family_declares_what_the_config_and_the_figures_read():
    """Each family of the registry: its Source names its family, takes only keys the config
    declares, builds known cells, and draws with a topic of analysis/panels/ that exists."""
    from analysis import panels
    from dynamics import config as cfg
    from dynamics.sources import FAMILIES, family_class
    topics = {t.__name__.rsplit(".", 1)[-1] for t in panels.TOPICS}
    for name in FAMILIES:
        src = family_class(name)
        assert src.family == name
        assert set(src.keys) <= set(cfg.FIELDS) and set(src.cells) <= set(cfg.CELLS)
        assert src.topic is None or src.topic in topics, name
