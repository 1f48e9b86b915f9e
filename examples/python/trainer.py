"""The library's own data pipeline and training loop from Python: a zero-copy Dataset over
numpy arrays, a seeded split, the Trainer with early stopping and a progress callback, and
the evaluation of the held-out part.

    PYTHONPATH=bindings/python MTL_LIBRARY=build/libmtl/libmtl.so.1 \
        /usr/bin/python3 examples/python/trainer.py
"""

import numpy as np

import mtl

rng = np.random.default_rng(0)
X = rng.normal(size=(2000, 16)).astype(np.float32)
label = np.argmax(X[:, :4], axis=1).astype(np.int32)          # 4 classes
score = (X[:, 4:6].sum(axis=1, keepdims=True) * 0.5).astype(np.float32)

model = mtl.Model((16,))
model.trunk.add_layer("linear", out=64)
model.trunk.add_layer("relu")
model.add_head("label", loss="cross_entropy", layers=[("linear", {"out": 4})])
model.add_head("score", loss="mse", layers=[("linear", {"out": 1})])
model.build(max_batch=128, seed=0)
optimizer = mtl.Optimizer(model, "adam", lr=3e-3)
weighting = mtl.Weighting("dwa", 2)

data = mtl.Dataset(X, {"label": label, "score": score}, tasks=model)   # no copy
train, val, test = data.split(val=0.15, test=0.15, seed=1)


def progress(event, epoch, step, values):
    if event == "eval":
        print(f"epoch {epoch:2d}  val loss {values['val.loss']:.4f}  "
              f"accuracy {values['val.label.accuracy']:.3f}  r2 {values['val.score.r2']:.3f}")
    return False                  # a true value would stop training


trainer = mtl.Trainer(model, optimizer, weighting, train=train, val=val, epochs=40,
                      batch_size=64, early_stopping_patience=5, seed=2)
reason = trainer.run(progress)
best, best_epoch, _ = trainer.best()
print(f"stopped: {reason} after {trainer.epoch} epochs; best val loss {best:.4f} "
      f"at epoch {best_epoch}")
result = mtl.evaluate(model, test, prefix="test")
print({k: round(v, 4) for k, v in result.items()})
