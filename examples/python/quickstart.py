"""libmtl from Python: one shared trunk, a classification head and a regression head.

Run from the repository root after building the library:
    PYTHONPATH=bindings/python MTL_LIBRARY=build/libmtl/libmtl.so.1 \
        /usr/bin/python3 examples/python/quickstart.py
"""

import os
import tempfile

import numpy as np

import mtl


def make_data(n, rng):
    """Synthetic two-task data: 20 features; a 4-class label and a continuous score."""
    X = rng.normal(size=(n, 20)).astype(np.float32)
    label = (2 * (X[:, 0] + 0.5 * X[:, 1] > 0) + (X[:, 2] - X[:, 3] > 0)).astype(np.int32)
    score = (np.sin(X[:, 4]) + 0.5 * X[:, 5] * X[:, 0]).reshape(-1, 1).astype(np.float32)
    return X, {"label": label, "score": score}


def main():
    rng = np.random.default_rng(0)
    X, Y = make_data(4000, rng)
    Xv, Yv = make_data(1000, rng)
    print(f"libmtl {mtl.version_string()} ({mtl.library_path()})")

    model = mtl.MultiTaskModel(
        input_shape=(20,),
        trunk=[("linear", {"out": 64}), "relu", ("linear", {"out": 64}), "relu"],
        heads={
            "label": {"layers": [("linear", {"out": 4})], "loss": "cross_entropy"},
            "score": {"layers": [("linear", {"out": 16}), "relu", ("linear", {"out": 1})],
                      "loss": "mse"},
        },
        seed=0, max_batch=128)
    print(model.summary())

    model.compile(optimizer="adam", lr=3e-3, weighting="ew")

    def progress(epoch, logs):
        print(f"epoch {epoch + 1:2d}: loss {logs['loss']:.4f}  "
              f"label acc {logs['val_label_accuracy']:.3f}  score mse {logs['val_score_mse']:.4f}")

    model.fit(X, Y, epochs=10, batch_size=64, validation_data=(Xv, Yv), callback=progress)

    metrics = model.evaluate(Xv, Yv)
    print("validation:", {t: {k: round(v, 4) for k, v in d.items()} for t, d in metrics.items()})

    probs = model.predict(Xv[:3], probabilities=True)["label"]
    print("class probabilities of 3 samples:\n", np.round(probs, 3))

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "quickstart.npz")
        model.save(path)
        again = mtl.MultiTaskModel.load(path)
        same = np.array_equal(again.predict(Xv)["score"], model.predict(Xv)["score"])
        print(f"saved and reloaded {path}: identical predictions: {same}")
        again.close()

    assert metrics["label"]["accuracy"] > 0.85, metrics
    model.close()


if __name__ == "__main__":
    main()
