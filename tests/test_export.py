"""dynamics export --tensorboard: the events read back equal the run file."""
import sys

import h5py
import numpy as np
import pytest

from dynamics.cli import main


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    """A 2-layer character LM of 4 updates, checked every 2: scalars, histograms of both layers, samples."""
    out = tmp_path_factory.mktemp("runs")
    main(["train", "--quiet", "--task", "text", "--name", "lm", "--out-dir", str(out), "--n-hidden", "16",
          "--n-layers", "2", "--cell", "gru", "--min-length", "16", "--max-length", "16", "--batch-size", "4",
          "--max-iters", "4", "--check-freq", "2", "--eval-batch-size", "256", "--sample-chars", "5"])
    return out / "lm.h5"


def test_events_equal_the_run_file(text_run, tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    main(["export", str(text_run), "--tensorboard", str(tmp_path / "tb")])
    events = EventAccumulator(str(tmp_path / "tb" / "lm"), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    with h5py.File(text_run, "r") as f:
        steps = f["check/iter"][:].astype(int).tolist()
        assert steps == [2, 4]
        for group, at in (("iter", list(range(1, 5))), ("check", steps)):
            for name, ds in f[group].items():
                if not isinstance(ds, h5py.Dataset) or ds.ndim != 1:
                    continue                                  # g_t, histograms, samples: below
                values = ds[:]
                if name == "iter" or not np.isfinite(values).any():
                    assert f"{group}/{name}" not in tags["scalars"]
                    continue
                got = events.Scalars(f"{group}/{name}")
                keep = np.isfinite(values)
                assert [e.step for e in got] == [s for s, k in zip(at, keep) if k], name
                assert np.array_equal([e.value for e in got], values[keep].astype(np.float32)), name
        assert {"check/rho", "check/valid_loss", "check/valid_bpc", "iter/loss", "iter/grad_norm"} <= set(tags["scalars"])
        for prefix, hist in (("hist", f["check/hist"]), ("layer0/hist", f["check/layers/0/hist"])):
            for q in ("log10_grad", "saturation", "gate_z", "gate_r"):
                got = events.Histograms(f"{prefix}/{q}")
                assert [e.step for e in got] == steps
                for e, counts in zip(got, hist[q][:]):
                    assert np.array_equal(e.histogram_value.bucket, counts) and counts.sum() > 0
                    assert np.allclose(e.histogram_value.bucket_limit, hist[f"{q}_edges"][1:])
        samples = f["check/samples"][:]
        for p in range(samples.shape[1]):
            got = events.Tensors(f"samples/{p}/text_summary")
            assert [e.step for e in got] == steps
            for e, text in zip(got, samples[:, p]):
                assert e.tensor_proto.string_val[0].decode() == f"```\n{text.decode()}\n```"
    assert "tensorboard --logdir" in capsys.readouterr().out


def test_named_parts_of_a_family_are_exported(tmp_path):
    """A bidirectional classifier's parts have names, not layer numbers: each gets its histograms."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    main(["train", "--quiet", "--task", "names", "--cell", "gru", "--bidirectional", "true", "--n-hidden", "8",
          "--max-iters", "4", "--check-freq", "2", "--eval-batch-size", "50", "--name", "bi",
          "--out-dir", str(tmp_path)])
    main(["export", str(tmp_path / "bi.h5"), "--tensorboard", str(tmp_path / "tb")])
    events = EventAccumulator(str(tmp_path / "tb" / "bi"), size_guidance={"histograms": 0})
    events.Reload()
    with h5py.File(tmp_path / "bi.h5", "r") as f:
        named = list(f["check/layers"])
        assert named and not any(n.isdigit() for n in named)
        for name in named:
            got = events.Histograms(f"{name}/hist/log10_grad")
            assert [e.step for e in got] == [2, 4]
            for e, counts in zip(got, f[f"check/layers/{name}/hist/log10_grad"][:]):
                assert np.array_equal(e.histogram_value.bucket, counts)


def test_without_the_extra_one_line_naming_it(text_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)     # as if it were not installed
    with pytest.raises(SystemExit) as e:
        main(["export", str(text_run), "--tensorboard", str(tmp_path / "tb")])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and err == ["error: --tensorboard needs the optional extra tensorboard: "
                                         "pip install 'dynamics[tensorboard]'"]
    assert not (tmp_path / "tb").exists()
