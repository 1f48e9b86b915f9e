"""A run described by a configuration (the schema of docs/config.md, here as a dict; a YAML
file works the same), trained by the library's trainer with a checkpoint per epoch, then
resumed from the checkpoint of epoch 3 in a fresh model: the resumed run ends with exactly
the same weights.

    PYTHONPATH=bindings/python MTL_LIBRARY=build/libmtl/libmtl.so.1 \
        /usr/bin/python3 examples/python/config_run.py
"""

import os
import shutil
import tempfile

import numpy as np

import mtl

work = tempfile.mkdtemp(prefix="mtl-config-")
rng = np.random.default_rng(0)
X = rng.normal(size=(1200, 12)).astype(np.float32)
np.save(os.path.join(work, "x.npy"), X)
np.save(os.path.join(work, "kind.npy"), np.argmax(X[:, :3], axis=1))
np.save(os.path.join(work, "size.npy"), X[:, 3:5].sum(axis=1, keepdims=True))

run = {
    "data": {"train": {"input": "x.npy", "labels": {"kind": "kind.npy", "size": "size.npy"}},
             "validation": 0.2},
    "model": {"trunk": [{"kind": "linear", "out": 32}, "relu"]},
    "tasks": {"kind": {"kind": "classification"},
              "size": {"kind": "regression", "loss": "huber"}},
    "weighting": {"method": "dwa"},
    "optimizer": {"kind": "adam", "lr": 5e-3, "schedule": "cosine"},
    "training": {"epochs": 6, "batch_size": 64, "seed": 1, "checkpoint_every": 1,
                 "checkpoint_pattern": os.path.join(work, "run.epoch{epoch}")},
}


def train(resume_from=None):
    cfg = mtl.Config.from_dict(run, base_dir=work)
    model = mtl.MultiTaskModel.from_config(cfg)
    trainer = cfg.build_trainer(model)
    if resume_from:
        trainer.resume(resume_from)
        print(f"resumed at epoch {trainer.epoch}")
    trainer.run(lambda event, epoch, step, v: print(
        f"epoch {epoch}: val loss {v['val.loss']:.4f}, accuracy "
        f"{v['val.kind.accuracy']:.3f}") if event == "eval" else None)
    return model, trainer


full, _ = train()
resumed, _ = train(resume_from=os.path.join(work, "run.epoch3"))
same = all(np.array_equal(full.get_param(n), resumed.get_param(n)) for n in full.param_names())
print("resumed run identical:", same)
print(mtl.describe_checkpoint(os.path.join(work, "run.epoch6")).splitlines()[0])
shutil.rmtree(work)
