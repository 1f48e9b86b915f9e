"""The Pythonic layer: :class:`MultiTaskModel` builds a model from a description, trains it
on numpy arrays and reports per-task metrics as dicts.

    model = mtl.MultiTaskModel(
        input_shape=(784,),
        trunk=[("linear", {"out": 256}), "relu"],
        heads={"digit": {"layers": [("linear", {"out": 10})], "loss": "cross_entropy"},
               "value": {"layers": [("linear", {"out": 1})], "loss": "mse"}},
        seed=0, max_batch=256)
    model.compile(optimizer="adam", lr=1e-3, weighting="ew")
    history = model.fit(X, {"digit": y1, "value": y2}, epochs=5, batch_size=64)
    metrics = model.evaluate(X, {"digit": y1, "value": y2})
    outputs = model.predict(X, probabilities=True)

Layer specs: ``"relu"``, ``("linear", {"out": 10})``, or ``{"type": "linear", "out": 10}``.
Head specs: a dict with ``layers``, ``loss`` (default "mse"), optional ``loss_options``
(label_smoothing, delta) and ``class_weights``.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict

import numpy as np

from . import errors
from .core import Model, Optimizer, Weighting
from .tensor import Tensor

__all__ = ["MultiTaskModel", "CLASSIFICATION_LOSSES"]

CLASSIFICATION_LOSSES = ("cross_entropy", "ce")
_INDEX_LOSSES = CLASSIFICATION_LOSSES
_FORMAT_VERSION = 1


def _layer_spec(spec, where):
    if isinstance(spec, str):
        return [spec, {}]
    if isinstance(spec, dict):
        spec = dict(spec)
        kind = spec.pop("type", None) or spec.pop("kind", None)
        if not kind:
            raise errors.InvalidArgumentError(f"{where}: layer dict needs a 'type' key: {spec}")
        return [kind, spec]
    if isinstance(spec, (list, tuple)) and len(spec) in (1, 2) and isinstance(spec[0], str):
        opts = spec[1] if len(spec) == 2 else {}
        if opts is None:
            opts = {}
        if not isinstance(opts, dict):
            raise errors.InvalidArgumentError(
                f"{where}: layer options must be a dict, got {opts!r}")
        return [spec[0], dict(opts)]
    raise errors.InvalidArgumentError(
        f"{where}: cannot read layer spec {spec!r} (use 'relu', ('linear', {{'out': 8}}) "
        "or {'type': 'linear', 'out': 8})")


def _head_spec(task, spec):
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise errors.InvalidArgumentError(f"head {task!r}: spec must be a dict, got {spec!r}")
    unknown = set(spec) - {"layers", "loss", "loss_options", "class_weights"}
    if unknown:
        raise errors.InvalidArgumentError(
            f"head {task!r}: unknown key(s) {sorted(unknown)} (layers, loss, loss_options, "
            "class_weights)")
    out = {"layers": [_layer_spec(s, f"head {task!r} layer {i}")
                      for i, s in enumerate(spec.get("layers", []))],
           "loss": spec.get("loss", "mse"),
           "loss_options": dict(spec.get("loss_options") or {})}
    if spec.get("class_weights") is not None:
        out["class_weights"] = [float(w) for w in np.asarray(spec["class_weights"]).ravel()]
    return out


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _config_from_info(info) -> dict:
    """A constructor-style description from a checkpoint summary (mtl.checkpoint_info)."""
    return _jsonable({
        "input_shape": info["input_shape"], "input_dtype": info["input_dtype"],
        "trunk": info["trunk"],
        "heads": OrderedDict(
            (t, {"layers": h["layers"], "loss": h["loss"], "loss_options": h["loss_options"]})
            for t, h in info["heads"].items()),
        "seed": info["seed"], "max_batch": info["max_batch"],
        "l2_trunk": info["l2_trunk"], "l2_heads": info["l2_heads"]})


class MultiTaskModel:
    """A built multi-task model with optional optimizer and weighting (see module docs)."""

    def __init__(self, input_shape, trunk=(), heads=None, *, input_dtype="float32", seed=0,
                 max_batch=256, l2_trunk=0.0, l2_heads=0.0):
        if not heads:
            raise errors.InvalidArgumentError("MultiTaskModel: at least one head is needed")
        shape = [int(input_shape)] if np.isscalar(input_shape) else [int(s) for s in input_shape]
        self.config = _jsonable({
            "input_shape": shape,
            "input_dtype": str(np.dtype(input_dtype)),
            "trunk": [_layer_spec(s, f"trunk layer {i}") for i, s in enumerate(trunk)],
            "heads": OrderedDict((str(t), _head_spec(t, s)) for t, s in heads.items()),
            "seed": int(seed),
            "max_batch": int(max_batch),
            "l2_trunk": float(l2_trunk),
            "l2_heads": float(l2_heads),
        })
        self.model = Model(shape, input_dtype)
        try:
            self._build()
        except BaseException:
            self.model.close()
            raise
        self.optimizer: Optimizer | None = None
        self.weighting: Weighting | None = None
        self._compile_args = None
        self._exact_config = True       # self.config rebuilds this architecture exactly
        self.source_config = None       # the mtl.Config a model built from one came from
        self.history: dict = {}

    def _build(self):
        cfg, m = self.config, self.model
        if cfg["l2_trunk"]:
            m.set_double("l2_trunk", cfg["l2_trunk"])
        if cfg["l2_heads"]:
            m.set_double("l2_heads", cfg["l2_heads"])
        for kind, opts in cfg["trunk"]:
            m.trunk.add_layer(kind, **opts)
        for task, spec in cfg["heads"].items():
            h = m.add_head(task)
            for kind, opts in spec["layers"]:
                h.add_layer(kind, **opts)
            h.set_loss(spec["loss"], **spec["loss_options"])
            if "class_weights" in spec:
                h.set_class_weights(spec["class_weights"])
        m.build(cfg["max_batch"], cfg["seed"])
        self.tasks = m.task_names
        self.losses = {h.name: h.loss for h in m.heads}
        self.output_sizes = {h.name: h.output_size for h in m.heads}

    # ---- lifecycle ----
    def close(self):
        """Free the optimizer, weighting and model now."""
        for h in (self.optimizer, self.weighting, self.model):
            if h is not None:
                h.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    @property
    def max_batch(self) -> int:
        return self.config["max_batch"]

    @property
    def num_params(self) -> int:
        return self.model.num_params

    def summary(self) -> str:
        lines = [f"MultiTaskModel: input {tuple(self.config['input_shape'])} "
                 f"{self.config['input_dtype']}, {self.model.num_params} parameters "
                 f"({self.model.num_shared_params} shared)"]
        for n in self.model.param_names():
            lines.append(f"  {n:<32} {self.model.param_shape(n)}")
        for t in self.tasks:
            lines.append(f"  head {t!r}: loss {self.losses[t]}, {self.output_sizes[t]} outputs")
        return "\n".join(lines)

    # ---- training setup ----
    def compile(self, optimizer="adam", lr=None, weighting="ew", weighting_options=None,
                lr_scales=None, **optimizer_options) -> "MultiTaskModel":
        """Choose the optimizer and the task weighting by name with keyword hyper-parameters
        (``compile(optimizer="sgd", lr=0.1, momentum=0.9, weighting="fixed",
        weighting_options={"weights": [1, 0.5]})``). lr_scales: {part: scale} per-part
        learning-rate multipliers ("trunk", a task name, "heads")."""
        opts = dict(optimizer_options)
        if lr is not None:
            opts["lr"] = lr
        new_opt = optimizer if isinstance(optimizer, Optimizer) else Optimizer(
            self.model, optimizer, **opts)
        try:
            new_w = weighting if isinstance(weighting, Weighting) or weighting is None else \
                Weighting(weighting, len(self.tasks), **(weighting_options or {}))
        except BaseException:
            if new_opt is not optimizer:
                new_opt.close()
            raise
        for part, scale in (lr_scales or {}).items():
            new_opt.set_lr_scale(part, scale)
        for old, new in ((self.optimizer, new_opt), (self.weighting, new_w)):
            if old is not None and old is not new:
                old.close()
        self.optimizer, self.weighting = new_opt, new_w
        if isinstance(optimizer, str) and (weighting is None or isinstance(weighting, str)):
            self._compile_args = _jsonable(dict(
                optimizer=optimizer, weighting=weighting,
                weighting_options=dict(weighting_options or {}),
                lr_scales=dict(lr_scales or {}), **opts))
        return self

    def _need_optimizer(self):
        if self.optimizer is None:
            raise errors.StateError("call compile(optimizer=..., ...) before training")

    # ---- data conversion ----
    def _x(self, X) -> np.ndarray:
        X = np.asarray(X)
        want = tuple(self.config["input_shape"])
        dt = np.dtype(self.config["input_dtype"])
        if X.ndim == len(want) and X.shape == want:
            raise errors.ShapeError(
                f"input has shape {X.shape}: a batch dimension is needed ({(1,) + want})")
        if X.shape[1:] != want:
            raise errors.ShapeError(
                f"input has shape {X.shape}, expected (N, {', '.join(map(str, want))})")
        if dt == np.int32 and X.dtype.kind == "f":
            raise errors.InvalidArgumentError("input must hold integer token ids")
        if X.dtype != dt or not X.flags.c_contiguous:
            X = np.ascontiguousarray(X, dtype=dt)  # one conversion copy
        return X

    def _y(self, task, y, n) -> np.ndarray:
        y = np.asarray(y)
        if len(y) != n:
            raise errors.ShapeError(f"targets for task {task!r} have {len(y)} rows, "
                                    f"the input has {n}")
        if self.losses[task] in _INDEX_LOSSES:
            if y.ndim == 2 and y.shape[1] == 1:
                y = y[:, 0]
            if y.dtype.kind == "f":
                missing = np.isnan(y)
                if np.any(np.isfinite(y) & (y != np.round(y))):
                    raise errors.InvalidArgumentError(
                        f"targets for classification task {task!r} must be class ids "
                        "(integers; -1 or NaN for missing)")
                y = np.where(missing, -1, y)
            elif y.dtype.kind not in "iub":
                raise errors.InvalidArgumentError(
                    f"targets for classification task {task!r} must be integer class ids, "
                    f"got dtype {y.dtype}")
            return np.ascontiguousarray(y, dtype=np.int32)
        C = self.output_sizes[task]
        y = np.ascontiguousarray(y, dtype=np.float32)
        if y.ndim == 1 and C != 1:
            raise errors.ShapeError(
                f"targets for task {task!r} have shape {y.shape}, expected ({n}, {C})")
        return y

    def _ys(self, Y, n, what="targets") -> dict:
        if not isinstance(Y, dict):
            if len(self.tasks) == 1:
                Y = {self.tasks[0]: Y}
            else:
                raise errors.InvalidArgumentError(
                    f"{what} must be a dict by task name ({self.tasks})")
        unknown = [k for k in Y if k not in self.tasks]
        if unknown:
            raise errors.NotFoundError(
                f"{what}: unknown task(s) {unknown}; the model's tasks are {self.tasks}")
        return {t: self._y(t, Y[t], n) for t in self.tasks if Y.get(t) is not None}

    def _masks(self, masks, ys, n) -> dict:
        if masks is None:
            return {}
        out = {}
        for t, m in masks.items():
            if t not in self.tasks:
                raise errors.NotFoundError(f"masks: unknown task {t!r}")
            if m is None:
                continue
            if t not in ys:
                raise errors.InvalidArgumentError(f"masks: task {t!r} has a mask but no target")
            m = np.ascontiguousarray(m, dtype=np.float32).ravel()
            if m.size != n:
                raise errors.ShapeError(f"mask for task {t!r} has {m.size} entries, "
                                        f"expected {n}")
            out[t] = m
        return out

    def _valid_counts(self, ys, ms, idx=None) -> dict:
        counts = {}
        for t, y in ys.items():
            yy = y if idx is None else y[idx]
            if self.losses[t] in _INDEX_LOSSES:
                v = yy != -1
            else:
                v = ~np.isnan(yy)
                if v.ndim > 1:
                    v = v.reshape(len(v), -1)
            m = ms.get(t)
            if m is not None:
                mm = (m if idx is None else m[idx]) != 0
                v = v & (mm if v.ndim == 1 else mm[:, None])
            counts[t] = int(np.count_nonzero(v))
        return counts

    # ---- batches ----
    class _Batcher:
        """Preallocated batch buffers wrapped once as tensors (zero-copy)."""

        def __init__(self, X, ys, ms, tasks, size):
            self.tasks = tasks
            self.X, self.ys, self.ms = X, ys, ms
            self.bx = np.empty((size,) + X.shape[1:], X.dtype)
            self.by = {t: np.empty((size,) + y.shape[1:], y.dtype) for t, y in ys.items()}
            self.bm = {t: np.empty(size, np.float32) for t in ms}
            self.cache = {}

        def tensors(self, n):
            if n not in self.cache:
                x = Tensor.from_numpy(self.bx[:n], copy=False)
                tg = [Tensor.from_numpy(self.by[t][:n], copy=False) if t in self.by else None
                      for t in self.tasks]
                mk = [Tensor.from_numpy(self.bm[t][:n], copy=False) if t in self.bm else None
                      for t in self.tasks] if self.bm else None
                self.cache[n] = (x, tg, mk)
            return self.cache[n]

        def fill(self, idx):
            n = len(idx)
            np.take(self.X, idx, axis=0, out=self.bx[:n])
            for t, y in self.ys.items():
                np.take(y, idx, axis=0, out=self.by[t][:n])
            for t, m in self.ms.items():
                np.take(m, idx, axis=0, out=self.bm[t][:n])
            return self.tensors(n)

        def close(self):
            for x, tg, mk in self.cache.values():
                for t in [x] + list(tg) + list(mk or []):
                    if t is not None:
                        t.close()
            self.cache.clear()

    def _batch_size(self, batch_size):
        bs = self.max_batch if batch_size is None else int(batch_size)
        if bs < 1 or bs > self.max_batch:
            raise errors.InvalidArgumentError(
                f"batch_size is {bs}, expected 1..{self.max_batch} (the model's max_batch)")
        return bs

    # ---- training ----
    def train_step(self, X, Y, masks=None) -> dict:
        """One optimizer step on one batch (at most max_batch samples); returns the
        per-task losses (NaN for tasks without targets)."""
        self._need_optimizer()
        X = self._x(X)
        ys = self._ys(Y, len(X))
        ms = self._masks(masks, ys, len(X))
        losses = self.model.train_step(
            self.optimizer, X, {t: ys[t] for t in ys},
            {t: ms[t] for t in ms} if ms else None, self.weighting)
        return dict(zip(self.tasks, (float(v) for v in losses)))

    def fit(self, X, Y, epochs=1, batch_size=32, shuffle=True, seed=None, masks=None,
            validation_data=None, callback=None, verbose=False, log_path=None,
            engine="python") -> dict:
        """Train for a number of epochs on numpy arrays.

        Y: {task: targets} (class ids for cross_entropy heads, -1/NaN = missing; float
        [N, C] or [N] for the others; tasks left out are not trained). masks: {task: [N]}
        (0 drops a sample for that task). validation_data: (X_val, Y_val) evaluated after
        each epoch. callback(epoch, logs) is called after each epoch with that epoch's logs;
        returning False stops training; an exception it raises ends fit and propagates.

        Returns the history: {"loss": [...], "<task>_loss": [...], "<task>_weight": [...],
        "lr": [...], and "val_..." entries}, one value per epoch (also kept in
        ``self.history``). log_path: append each epoch's logs to this file as one JSON object
        per line ({"epoch": 1, "loss": ..., ...}), the metrics log that
        ``python3 -m mtl.plot`` draws.

        engine: "python" (this loop over numpy batches) or "c" (the library's trainer,
        :class:`mtl.Trainer`, over zero-copy :class:`mtl.Dataset` s: batches are gathered
        and the loop runs in C; the shuffling order differs from the Python engine's). Both
        return the same history keys; with "c", ``<task>_loss`` is the mean of the epoch's
        step losses and the validation entries are the library's default metrics
        (``val_<task>_loss``, ``val_<task>_accuracy``, ``val_<task>_f1_macro``, ...,
        ``val_loss`` their tasks' sum as with "python")."""
        if engine not in ("python", "c"):
            raise errors.InvalidArgumentError(f"fit: engine is {engine!r}, expected 'python' "
                                              "or 'c'")
        self._need_optimizer()
        X = self._x(X)
        n = len(X)
        if n == 0:
            raise errors.InvalidArgumentError("fit: no samples")
        ys = self._ys(Y, n)
        if not ys:
            raise errors.InvalidArgumentError("fit: no targets for any task")
        ms = self._masks(masks, ys, n)
        bs = min(self._batch_size(batch_size), n)
        history = {"loss": [], "lr": []}
        for t in self.tasks:
            history[f"{t}_loss"] = []
            history[f"{t}_weight"] = []
        if engine == "c":
            return self._fit_c(X, ys, ms, int(epochs), bs, shuffle, seed, validation_data,
                               callback, verbose, log_path, history)
        rng = np.random.default_rng(self.config["seed"] if seed is None else seed)
        log = open(log_path, "a", encoding="utf-8") if log_path is not None else None
        batcher = self._Batcher(X, ys, ms, self.tasks, bs)
        opt, w = self.optimizer, self.weighting
        T = len(self.tasks)
        try:
            for epoch in range(int(epochs)):
                order = rng.permutation(n) if shuffle else np.arange(n)
                sums = np.zeros(T)
                counts = np.zeros(T)
                wsum = np.zeros(T)
                total, steps = 0.0, 0
                for start in range(0, n, bs):
                    idx = order[start:start + bs]
                    x, tg, mk = batcher.fill(idx)
                    losses = self.model.train_step(opt, x, tg, mk, w)
                    cnt = self._valid_counts(batcher.by, batcher.bm,
                                             slice(0, len(idx))) if ys else {}
                    weights = w.weights if w is not None else np.ones(T)
                    for i, t in enumerate(self.tasks):
                        c = cnt.get(t, 0)
                        if c:
                            sums[i] += float(losses[i]) * c
                            counts[i] += c
                    active = ~np.isnan(losses)
                    total += float(np.dot(weights[active], losses[active]))
                    wsum += weights
                    steps += 1
                logs = {"loss": total / steps, "lr": opt.lr}
                for i, t in enumerate(self.tasks):
                    logs[f"{t}_loss"] = sums[i] / counts[i] if counts[i] else float("nan")
                    logs[f"{t}_weight"] = wsum[i] / steps
                if validation_data is not None:
                    vx, vy = validation_data[0], validation_data[1]
                    vm = validation_data[2] if len(validation_data) > 2 else None
                    metrics = self.evaluate(vx, vy, masks=vm)
                    vl = 0.0
                    for t, d in metrics.items():
                        for k, v in d.items():
                            logs[f"val_{t}_{k}"] = v
                        vl += d["loss"]
                    logs["val_loss"] = vl
                if self._end_epoch(epoch, epochs, logs, history, log, verbose, callback):
                    break
        finally:
            batcher.close()
            if log is not None:
                log.close()
        self.history = history
        return history

    @staticmethod
    def _end_epoch(epoch, epochs, logs, history, log, verbose, callback) -> bool:
        """Record one epoch's logs; True when the callback asks to stop."""
        for k, v in logs.items():
            history.setdefault(k, []).append(v)
        if log is not None:
            log.write(json.dumps({"epoch": epoch + 1, **{
                k: (None if v != v else float(v)) for k, v in logs.items()}}) + "\n")
            log.flush()
        if verbose:
            print(f"epoch {epoch + 1}/{epochs}: " + ", ".join(
                f"{k}={v:.4g}" for k, v in logs.items()))
        return callback is not None and callback(epoch, dict(logs)) is False

    def _fit_c(self, X, ys, ms, epochs, bs, shuffle, seed, validation_data, callback,
               verbose, log_path, history) -> dict:
        from .dataset import Dataset
        from .train import Trainer

        T = len(self.tasks)
        opt, w = self.optimizer, self.weighting
        order = list(self.tasks)
        train = Dataset(X, [ys.get(t) for t in order], [ms.get(t) for t in order],
                        tasks=order)
        val = None
        handles = [train]
        log = None
        try:
            if validation_data is not None:
                vx = self._x(validation_data[0])
                vys = self._ys(validation_data[1], len(vx), "validation targets")
                vm = validation_data[2] if len(validation_data) > 2 else None
                vms = self._masks(vm, vys, len(vx))
                val = Dataset(vx, [vys.get(t) for t in order], [vms.get(t) for t in order],
                              tasks=order)
                handles.append(val)
            tr = Trainer(self.model, opt, w, train=train, val=val, epochs=epochs,
                         batch_size=bs, shuffle=bool(shuffle), eval_every=1,
                         seed=int(self.config["seed"] if seed is None else seed))
            handles.append(tr)
            log = open(log_path, "a", encoding="utf-8") if log_path is not None else None
            acc = {"total": 0.0, "steps": 0, "wsum": np.zeros(T), "epoch": None}

            def progress(event, epoch, step, values):
                if event == "step":
                    losses = np.array([values[f"{t}.loss"] for t in order])
                    weights = w.weights if w is not None else np.ones(T)
                    active = ~np.isnan(losses)
                    acc["total"] += float(np.dot(weights[active], losses[active]))
                    acc["wsum"] += weights
                    acc["steps"] += 1
                elif event == "epoch":
                    steps = max(acc["steps"], 1)
                    logs = {"loss": acc["total"] / steps, "lr": opt.lr}
                    for i, t in enumerate(order):
                        logs[f"{t}_loss"] = values[f"{t}.loss"]
                        logs[f"{t}_weight"] = acc["wsum"][i] / steps
                    acc.update(total=0.0, steps=0, wsum=np.zeros(T), epoch=(epoch, logs))
                elif event == "eval" and acc["epoch"] is not None:
                    (ep, logs), acc["epoch"] = acc["epoch"], None
                    if val is not None:
                        vl = 0.0
                        for t in order:
                            head = f"val.{t}."
                            for name, v in values.items():
                                if name.startswith(head):
                                    logs[f"val_{t}_{name[len(head):]}"] = v
                            vl += values.get(head + "loss", 0.0)
                        logs["val_loss"] = vl
                    return self._end_epoch(ep - 1, epochs, logs, history, log, verbose,
                                           callback)
                return False

            tr.run(progress)
        finally:
            for h in reversed(handles):
                h.close()
            if log is not None:
                log.close()
        self.history = history
        return history

    # ---- inference ----
    def predict(self, X, probabilities=False, batch_size=None) -> dict:
        """Outputs of every head: {task: array [N, output_size]} (logits / regression values;
        with probabilities=True softmax for cross_entropy and sigmoid for bce heads)."""
        X = self._x(X)
        n = len(X)
        bs = self._batch_size(batch_size)
        out = {t: np.empty((n, self.output_sizes[t]), np.float32) for t in self.tasks}
        for start in range(0, n, bs):
            xb = X[start:start + bs]
            with Tensor.from_numpy(xb) as xt:
                self.model.predict_raw(xt)
            for i, t in enumerate(self.tasks):
                self.model.output(i, probabilities, out=out[t][start:start + bs])
        return out

    def predict_classes(self, X, batch_size=None) -> dict:
        """Class ids for cross_entropy heads (argmax), 0/1 for bce heads, values otherwise."""
        raw = self.predict(X, batch_size=batch_size)
        res = {}
        for t, o in raw.items():
            if self.losses[t] in _INDEX_LOSSES:
                res[t] = o.argmax(axis=1)
            elif self.losses[t] == "bce":
                res[t] = (o > 0).astype(np.int32)
            else:
                res[t] = o
        return res

    def evaluate(self, X, Y, masks=None, batch_size=None, metrics=None) -> dict:
        """Per-task metrics on the given data: {task: {"loss": mean loss, and "accuracy"
        (cross_entropy, bce) or "mse" and "mae" (regression losses)}}. Tasks left out of Y
        are left out of the result. Means are over valid (non-missing, unmasked) entries.

        metrics: more metrics computed by the library (names of :func:`mtl.metrics.names`,
        e.g. "f1_macro", "roc_auc", "r2"): a list applied to every task it fits
        (classification names to classification heads, regression names to the others), or
        {task: [names]}."""
        X = self._x(X)
        n = len(X)
        ys = self._ys(Y, n)
        ms = self._masks(masks, ys, n)
        bs = self._batch_size(batch_size)
        T = len(self.tasks)
        sums, counts = np.zeros(T), np.zeros(T)
        for start in range(0, n, bs):
            sl = slice(start, start + bs)
            losses = self.model.compute_losses(
                X[sl], {t: y[sl] for t, y in ys.items()},
                {t: m[sl] for t, m in ms.items()} if ms else None)
            cnt = self._valid_counts(ys, ms, sl)
            for i, t in enumerate(self.tasks):
                if cnt.get(t):
                    sums[i] += float(losses[i]) * cnt[t]
                    counts[i] += cnt[t]
        outputs = self.predict(X, batch_size=bs)
        result = {}
        for i, t in enumerate(self.tasks):
            if t not in ys:
                continue
            y, o, m = ys[t], outputs[t], ms.get(t)
            d = {"loss": sums[i] / counts[i] if counts[i] else float("nan")}
            if self.losses[t] in _INDEX_LOSSES:
                valid = y != -1
                if m is not None:
                    valid &= m != 0
                d["accuracy"] = float(np.mean(o.argmax(axis=1)[valid] == y[valid])) \
                    if valid.any() else float("nan")
            else:
                yy = y.reshape(n, -1)
                valid = ~np.isnan(yy)
                if m is not None:
                    valid &= (m != 0)[:, None]
                if self.losses[t] == "bce":
                    d["accuracy"] = float(np.mean((o[valid] > 0) == (yy[valid] > 0.5))) \
                        if valid.any() else float("nan")
                else:
                    diff = (o.astype(np.float64) - yy)[valid]
                    d["mse"] = float(np.mean(diff ** 2)) if diff.size else float("nan")
                    d["mae"] = float(np.mean(np.abs(diff))) if diff.size else float("nan")
            for name in self._metric_names(metrics, t):
                d[name] = self._library_metric(name, t, o, y, m)
            result[t] = d
        return result

    _REGRESSION_METRICS = ("mse", "rmse", "mae", "r2")

    def _metric_names(self, metrics, task):
        if metrics is None:
            return []
        if isinstance(metrics, dict):
            return list(metrics.get(task, []))
        classification = self.losses[task] in _INDEX_LOSSES or self.losses[task] == "bce"
        return [n for n in metrics if (n in self._REGRESSION_METRICS) != classification]

    def _library_metric(self, name, task, out, y, mask):
        from . import metrics as M

        loss = self.losses[task]
        regression = name in self._REGRESSION_METRICS
        if loss in _INDEX_LOSSES and not regression:
            labels = y if mask is None else np.where(mask != 0, y, -1)
            return M.compute(name, out, labels)
        if loss == "bce" and not regression:
            if out.shape[1] != 1:
                raise errors.UnsupportedError(
                    f"metric {name!r} on the multi-label head {task!r} ({out.shape[1]} "
                    "outputs): use it per column")
            yy = y.reshape(len(y), -1)[:, 0]
            labels = np.where(np.isnan(yy), -1, yy > 0.5).astype(np.int32)
            if mask is not None:
                labels[mask == 0] = -1
            if name == "roc_auc":
                return M.compute(name, out[:, 0], labels)
            return M.compute(name, (out[:, 0] > 0).astype(np.int32), labels)
        if not regression:
            raise errors.InvalidArgumentError(
                f"metric {name!r} is a classification metric; head {task!r} has loss {loss!r}")
        target = y.reshape(len(y), -1).astype(np.float32)
        if mask is not None:
            target = np.where((mask != 0)[:, None], target, np.nan).astype(np.float32)
        return M.compute(name, out, target)

    # ---- parameters ----
    def param_names(self) -> list:
        return self.model.param_names()

    def get_param(self, name) -> np.ndarray:
        return self.model.get_param(name)

    def set_param(self, name, value) -> None:
        self.model.set_param(name, value)

    def state_dict(self):
        return self.model.state_dict()

    def load_state_dict(self, state, strict=True) -> None:
        self.model.load_state_dict(state, strict)

    # ---- checkpoints ----
    # Two formats: libmtl's checkpoint (any path not ending in ".npz": the whole training
    # state, model + optimizer + weighting, atomic and checksummed, readable by every libmtl
    # program) and a numpy .npz archive (the architecture as JSON and every named tensor;
    # the optimizer is compiled afresh on load). Weights alone also travel as safetensors.
    @staticmethod
    def _is_npz(path) -> bool:
        return os.fspath(path).lower().endswith(".npz")

    def save(self, path) -> None:
        """Save to ``path``: a ".npz" path writes the numpy archive, any other path a libmtl
        checkpoint (:meth:`save_checkpoint`). Both are written atomically."""
        if not self._is_npz(path):
            self.save_checkpoint(path)
            return
        if not self._exact_config:
            raise errors.UnsupportedError(
                "save: this model was built by the library (from a configuration or a "
                "checkpoint), so its architecture has no exact constructor description for a "
                ".npz archive; save a libmtl checkpoint (a path not ending in .npz) or "
                "safetensors instead")
        path = os.fspath(path)
        arrays = {"param/" + k: v for k, v in self.state_dict().items()}
        meta = {"format": "mtl-npz", "version": _FORMAT_VERSION, "config": self.config,
                "compile": self._compile_args}
        arrays["__meta__"] = np.array(json.dumps(meta))
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def save_checkpoint(self, path) -> None:
        """The whole training state (model, and the optimizer and weighting when compiled)
        as a libmtl checkpoint: training continued after :meth:`load_checkpoint` is
        bit-identical to training that never stopped."""
        self.model.save_checkpoint(path, self.optimizer, self.weighting)

    def load_checkpoint(self, path, optimizer=None, weighting=None) -> None:
        """Restore a checkpoint into this model (same architecture; max_batch and seed may
        differ) and into its optimizer and weighting. optimizer / weighting: None = restore
        when both this model and the file have one, True = must, False = leave as is.
        Nothing changes on an error."""
        from .checkpoint import checkpoint_info

        info = checkpoint_info(path)

        def pick(flag, mine, present, what):
            if flag is False or mine is None:
                if flag is True:
                    raise errors.StateError(f"load_checkpoint: this model has no {what} "
                                            "(compile it first)")
                return None
            return mine if (flag is True or present) else None

        self.model.load_checkpoint(
            path, pick(optimizer, self.optimizer, info["has_optimizer"], "optimizer"),
            pick(weighting, self.weighting, info["has_weighting"], "weighting"))

    def save_safetensors(self, path) -> None:
        """The weights and state tensors by name, as safetensors (PyTorch can read them)."""
        self.model.save_safetensors(path)

    def load_safetensors(self, path) -> None:
        self.model.load_safetensors(path)

    @staticmethod
    def _read_npz(path):
        try:
            with np.load(os.fspath(path), allow_pickle=False) as z:
                if "__meta__" not in z.files:
                    raise errors.FormatError(f"{path}: not an mtl checkpoint (no __meta__)")
                meta = json.loads(str(z["__meta__"]))
                state = OrderedDict((k[len("param/"):], z[k]) for k in z.files
                                    if k.startswith("param/"))
        except (ValueError, OSError) as exc:
            if isinstance(exc, errors.MtlError):
                raise
            if isinstance(exc, FileNotFoundError):
                raise errors.MtlIOError(f"{path}: {exc.strerror}") from exc
            raise errors.FormatError(f"{path}: cannot read checkpoint: {exc}") from exc
        if meta.get("format") != "mtl-npz" or meta.get("version", 0) > _FORMAT_VERSION:
            raise errors.FormatError(f"{path}: unsupported checkpoint format {meta.get('format')}"
                                     f" version {meta.get('version')}")
        return meta, state

    @classmethod
    def load(cls, path) -> "MultiTaskModel":
        """Rebuild a model saved with :meth:`save`: from a ".npz" archive (compiled again if
        it was compiled with named optimizer and weighting), otherwise from a libmtl
        checkpoint (:meth:`from_checkpoint`)."""
        if not cls._is_npz(path):
            return cls.from_checkpoint(path)
        meta, state = cls._read_npz(path)
        model = cls.from_config(meta["config"])
        model.load_state_dict(state)
        if meta.get("compile"):
            model.compile(**meta["compile"])
        return model

    @classmethod
    def from_checkpoint(cls, path, config=None) -> "MultiTaskModel":
        """A model with the exact state of a libmtl checkpoint (written by
        :meth:`save_checkpoint`, the trainer or any C program): weights, random state, and
        the optimizer and weighting when the file has them. ``config`` (optional) is the
        description kept in ``self.config``; by default it is read from the checkpoint's
        summary (real-valued options to 6 significant digits, class weights left out)."""
        from .checkpoint import checkpoint_info, load_checkpoint

        exact = config is not None
        if config is None:
            config = _config_from_info(checkpoint_info(path))
        model, opt, w = load_checkpoint(path)
        self = cls._from_handles(model, opt, w, config)
        self._exact_config = exact
        return self

    @classmethod
    def _from_handles(cls, model, optimizer, weighting, config) -> "MultiTaskModel":
        self = cls.__new__(cls)
        self.config = config
        self.model = model
        self.tasks = model.task_names
        self.losses = {h.name: h.loss for h in model.heads}
        self.output_sizes = {h.name: h.output_size for h in model.heads}
        self.optimizer, self.weighting = optimizer, weighting
        self._compile_args = None
        self._exact_config = False
        self.source_config = None
        self.history = {}
        return self

    def load_weights(self, path) -> None:
        """Load the weights of a file into this (same-architecture) model: a ".npz"
        archive, a ".safetensors" file, or a libmtl checkpoint (its model part only)."""
        p = os.fspath(path).lower()
        if p.endswith(".safetensors"):
            self.load_safetensors(path)
        elif self._is_npz(path):
            _, state = self._read_npz(path)
            self.load_state_dict(state)
        else:
            self.model.load_checkpoint(path)

    # ---- configuration ----
    @classmethod
    def from_config(cls, config) -> "MultiTaskModel":
        """Build from a run configuration in the library's schema (docs/config.md): a YAML
        file path, an :class:`mtl.Config`, or a dict with its sections (``model``, ``tasks``,
        ``weighting``, ``optimizer``, ``training``, ``data``). The library parses and
        validates it and builds the model, the optimizer and the weighting
        (``self.source_config`` keeps the Config, e.g. for ``build_trainer``).

        A dict with the constructor's keys (input_shape, input_dtype, trunk, heads, seed,
        max_batch, l2_trunk, l2_heads, and optional ``optimizer`` {"kind": ..., keys} and
        ``weighting`` {"method": ..., keys} sections), what :meth:`get_config` returns, is
        built through the constructor instead."""
        from .config import Config

        if isinstance(config, (str, bytes, os.PathLike)):
            return cls._from_c_config(Config.load(config))
        if isinstance(config, Config):
            return cls._from_c_config(config)
        if not isinstance(config, dict):
            raise errors.InvalidArgumentError(
                f"from_config: expected a path, an mtl.Config or a dict, got "
                f"{type(config).__name__}")
        if "heads" not in config:
            return cls._from_c_config(Config.from_dict(config))
        cfg = dict(config)
        opt = cfg.pop("optimizer", None)
        wcfg = cfg.pop("weighting", None)
        heads = cfg.pop("heads")
        model = cls(cfg.pop("input_shape"), cfg.pop("trunk", ()), heads, **cfg)
        if opt is not None:
            opt = dict(opt)
            kind = opt.pop("kind", None) or opt.pop("type", "adam")
            w_method, w_opts = "ew", {}
            if wcfg is not None:
                w_opts = dict(wcfg)
                w_method = w_opts.pop("method", None) or w_opts.pop("type", "ew")
            model.compile(optimizer=kind, weighting=w_method, weighting_options=w_opts, **opt)
        return model

    @classmethod
    def _from_c_config(cls, cfg) -> "MultiTaskModel":
        from .checkpoint import model_info

        model = cfg.build_model()
        opt = w = None
        try:
            opt = cfg.build_optimizer(model)
            w = cfg.build_weighting()
            info = model_info(model._ptr)
        except BaseException:
            for h in (w, opt, model):
                if h is not None:
                    h.close()
            raise
        self = cls._from_handles(model, opt, w, _config_from_info(info))
        self.source_config = cfg
        return self

    def get_config(self) -> dict:
        return json.loads(json.dumps(self.config))

    # ---- pickling: the libmtl checkpoint's bytes (weights, random state, optimizer and
    # weighting exactly), the description and the history ----
    def __getstate__(self):
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "model.ckpt")
            self.save_checkpoint(p)
            with open(p, "rb") as f:
                blob = f.read()
        return {"config": self.config, "checkpoint": blob, "compile": self._compile_args,
                "exact_config": self._exact_config, "history": self.history}

    def __setstate__(self, st):
        if "checkpoint" in st:
            import tempfile

            from .checkpoint import load_checkpoint

            with tempfile.TemporaryDirectory() as d:
                p = os.path.join(d, "model.ckpt")
                with open(p, "wb") as f:
                    f.write(st["checkpoint"])
                model, opt, w = load_checkpoint(p)
            other = MultiTaskModel._from_handles(model, opt, w, st["config"])
            other._compile_args = st.get("compile")
            other._exact_config = st.get("exact_config", True)
        else:   # written before checkpoints existed: weights by name, compiled afresh
            other = MultiTaskModel.from_config(st["config"])
            other.load_state_dict(st["state"])
            if st.get("compile"):
                other.compile(**st["compile"])
        self.__dict__.update(other.__dict__)
        other.__dict__ = {}
        self.history = st.get("history", {})

    def __repr__(self):
        return (f"<mtl.MultiTaskModel input={tuple(self.config['input_shape'])} "
                f"tasks={self.tasks} params={self.model.num_params}>")
