"""python3 -m mtl.plot renders a real metrics log written by fit()."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import mtl

pytest.importorskip("matplotlib")

from conftest import ROOT  # noqa: E402


def test_plot_real_training_log(tmp_path, rng):
    X = rng.normal(size=(200, 6)).astype(np.float32)
    Y = {"cls": (X[:, 0] > 0).astype(np.int32), "reg": X[:, 1:2]}
    log = tmp_path / "metrics.jsonl"
    with mtl.MultiTaskModel((6,), [("linear", {"out": 16}), "relu"],
                            {"cls": {"layers": [("linear", {"out": 2})],
                                     "loss": "cross_entropy"},
                             "reg": {"layers": [("linear", {"out": 1})], "loss": "mse"}},
                            max_batch=50) as m:
        m.compile("adam", lr=1e-2)
        m.fit(X, Y, epochs=6, batch_size=50, validation_data=(X[:50], {
            "cls": Y["cls"][:50], "reg": Y["reg"][:50]}), log_path=log)
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3, 4, 5, 6]
    assert {"loss", "cls_loss", "reg_weight", "val_cls_accuracy"} <= set(lines[0])
    out = tmp_path / "curves.png"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(ROOT, "bindings", "python")
    r = subprocess.run([sys.executable, "-m", "mtl.plot", str(log), str(out), "--title", "t"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "2 tasks: cls, reg" in r.stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image as mpimg
    img = mpimg.imread(out)
    assert img.shape[0] > 200 and img.shape[1] > 600      # three panels side by side
    assert img[..., :3].std() > 0.05                       # not a blank canvas


def test_plot_tolerates_partial_records(tmp_path):
    from mtl import plot
    log = tmp_path / "m.jsonl"
    log.write_text('{"step": 10, "a_loss": 1.0, "a_weight": 0.5}\n'
                   "not json\n"
                   '[1, 2]\n'
                   '{"step": 20, "a_loss": 0.5, "val_a_loss": 0.7, "b_loss": null}\n')
    assert plot.plot_log(log, tmp_path / "o.svg") == ["a", "b"]
    assert (tmp_path / "o.svg").stat().st_size > 1000
    (tmp_path / "empty.jsonl").write_text("\n")
    assert plot.main([str(tmp_path / "empty.jsonl"), str(tmp_path / "x.png")]) == 1
    assert plot.main([str(tmp_path / "missing.jsonl"), str(tmp_path / "x.png")]) == 1
