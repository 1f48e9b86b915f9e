"""A scikit-learn estimator over libmtl: one shared trunk, one head per output column.

    from mtl.sklearn import MultiTaskEstimator
    est = MultiTaskEstimator(hidden_layers=(64,), epochs=30)
    est.fit(X, Y)          # Y: [n_samples] or [n_samples, n_tasks]
    est.predict(X)         # same layout as Y
    est.score(X, Y)        # mean over columns of accuracy / R^2

Each column of Y is a task. With ``task_types="auto"`` a column whose values are class
labels (``sklearn.utils.multiclass.type_of_target`` says binary or multiclass: integers,
strings, booleans) becomes a classification head (linear layer with one output per class,
cross-entropy loss; labels are encoded and decoded for you), and a continuous column a
regression head (one output, MSE loss on the standardised target). Pass a list such as
``["classification", "regression"]`` to choose explicitly.

It works with ``Pipeline``, ``GridSearchCV``, ``clone`` and pickling (the fitted model's
weights travel in the pickle; the optimizer state does not).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted

from .multitask import MultiTaskModel

__all__ = ["MultiTaskEstimator"]

_CLASSIFICATION = "classification"
_REGRESSION = "regression"


class MultiTaskEstimator(BaseEstimator):
    """Multi-output classifier/regressor with hard parameter sharing.

    Parameters:
        hidden_layers: widths of the trunk's linear layers, each followed by ``activation``
            (and ``dropout`` when > 0).
        activation: "relu", "gelu", "tanh", "sigmoid", "leaky_relu".
        head_hidden: widths of hidden linear layers inside every head (default none).
        task_types: "auto" or a list with "classification"/"regression" per column.
        optimizer, learning_rate, optimizer_options: libmtl optimizer by name ("adam",
            "sgd", "adamw", ...), its lr and other keys (e.g. {"momentum": 0.9}).
        weighting, weighting_options: task weighting by name ("ew", "fixed", ...).
        epochs, batch_size, shuffle: training loop.
        dropout: dropout probability after each trunk activation (0 = none).
        l2: L2 penalty on all weights (model keys l2_trunk and l2_heads).
        random_state: seed (int) for initialisation and shuffling; None draws one.
        verbose: print per-epoch logs.
    """

    def __init__(self, hidden_layers=(64,), activation="relu", head_hidden=(),
                 task_types="auto", optimizer="adam", learning_rate=1e-3,
                 optimizer_options=None, weighting="ew", weighting_options=None, epochs=50,
                 batch_size=32, shuffle=True, dropout=0.0, l2=0.0, random_state=None,
                 verbose=False):
        self.hidden_layers = hidden_layers
        self.activation = activation
        self.head_hidden = head_hidden
        self.task_types = task_types
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.optimizer_options = optimizer_options
        self.weighting = weighting
        self.weighting_options = weighting_options
        self.epochs = epochs
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.dropout = dropout
        self.l2 = l2
        self.random_state = random_state
        self.verbose = verbose

    def _more_tags(self):
        return {"multioutput": True, "requires_y": True, "allow_nan": False}

    # ---- helpers ----
    def _column_types(self, Y):
        k = Y.shape[1]
        if self.task_types == "auto":
            types = []
            for j in range(k):
                col = Y[:, j]
                if col.dtype == object:  # a mixed-type Y: judge numbers as numbers
                    try:
                        col = col.astype(np.float64)
                    except (TypeError, ValueError):
                        pass
                t = type_of_target(col)
                if t in ("binary", "multiclass"):
                    types.append(_CLASSIFICATION)
                elif t == "continuous":
                    types.append(_REGRESSION)
                else:
                    raise ValueError(f"Unknown label type: column {j} of y has target type "
                                     f"{t!r}; set task_types explicitly")
            return types
        types = [self.task_types] * k if isinstance(self.task_types, str) else list(
            self.task_types)
        if len(types) != k:
            raise ValueError(f"task_types has {len(types)} entries, y has {k} columns")
        for t in types:
            if t not in (_CLASSIFICATION, _REGRESSION):
                raise ValueError(f"task type {t!r}: expected 'classification' or 'regression'")
        return types

    def _spec(self, n_features, outputs):
        trunk = []
        for width in self.hidden_layers:
            trunk.append(("linear", {"out": int(width)}))
            trunk.append((self.activation, {}))
            if self.dropout:
                trunk.append(("dropout", {"p": float(self.dropout)}))
        heads = {}
        for name, (kind, n_out) in outputs.items():
            layers = []
            for width in self.head_hidden:
                layers += [("linear", {"out": int(width)}), (self.activation, {})]
            layers.append(("linear", {"out": int(n_out)}))
            heads[name] = {"layers": layers,
                           "loss": "cross_entropy" if kind == _CLASSIFICATION else "mse"}
        return trunk, heads

    # ---- API ----
    def fit(self, X, y):
        X, y = self._validate_data(X, y, multi_output=True, dtype=np.float32,
                                   y_numeric=False)
        Y = np.asarray(y)
        self.single_output_ = Y.ndim == 1
        if Y.ndim == 1:
            Y = Y.reshape(-1, 1)
        n = X.shape[0]
        self.task_types_ = self._column_types(Y)
        self.task_names_ = [f"y{j}" for j in range(Y.shape[1])]
        self.classes_ = []
        self.y_mean_, self.y_scale_ = [], []
        targets, outputs = {}, {}
        for j, (name, kind) in enumerate(zip(self.task_names_, self.task_types_)):
            col = Y[:, j]
            if kind == _CLASSIFICATION:
                classes, enc = np.unique(col, return_inverse=True)
                self.classes_.append(classes)
                self.y_mean_.append(None)
                self.y_scale_.append(None)
                targets[name] = enc.astype(np.int32)
                # cross-entropy needs two outputs; a constant column gets an unused one
                outputs[name] = (kind, max(2, len(classes)))
            else:
                col = col.astype(np.float64)
                mean, std = float(col.mean()), float(col.std())
                std = std if std > 0 else 1.0
                self.classes_.append(None)
                self.y_mean_.append(mean)
                self.y_scale_.append(std)
                targets[name] = ((col - mean) / std).astype(np.float32)
                outputs[name] = (kind, 1)
        seed = int(check_random_state(self.random_state).randint(0, 2**31 - 1))
        batch = max(1, min(int(self.batch_size), n))
        trunk, heads = self._spec(X.shape[1], outputs)
        model = MultiTaskModel(input_shape=(X.shape[1],), trunk=trunk, heads=heads, seed=seed,
                               max_batch=batch, l2_trunk=float(self.l2),
                               l2_heads=float(self.l2))
        model.compile(optimizer=self.optimizer, lr=float(self.learning_rate),
                      weighting=self.weighting,
                      weighting_options=dict(self.weighting_options or {}),
                      **dict(self.optimizer_options or {}))
        self.history_ = model.fit(X, targets, epochs=int(self.epochs), batch_size=batch,
                                  shuffle=bool(self.shuffle), seed=seed, verbose=self.verbose)
        self.model_ = model
        return self

    def _outputs(self, X, probabilities=False):
        check_is_fitted(self, "model_")
        X = self._validate_data(X, reset=False, dtype=np.float32)
        return self.model_.predict(X, probabilities=probabilities)

    def predict(self, X):
        """Predictions with the layout of the y given to fit: class labels for
        classification columns, values for regression columns."""
        out = self._outputs(X)
        cols = []
        for j, name in enumerate(self.task_names_):
            o = out[name]
            if self.task_types_[j] == _CLASSIFICATION:
                k = len(self.classes_[j])
                cols.append(self.classes_[j][o[:, :k].argmax(axis=1)])
            else:
                cols.append(o[:, 0].astype(np.float64) * self.y_scale_[j] + self.y_mean_[j])
        if self.single_output_:
            return cols[0]
        if all(c.dtype.kind in "iufb" for c in cols):
            return np.column_stack(cols)
        res = np.empty((len(cols[0]), len(cols)), dtype=object)
        for j, c in enumerate(cols):
            res[:, j] = c
        return res

    def predict_proba(self, X):
        """Class probabilities: one [n_samples, n_classes] array per classification column
        (a list, or the array itself for a single-output classifier)."""
        out = self._outputs(X, probabilities=True)
        probs = []
        for j, name in enumerate(self.task_names_):
            if self.task_types_[j] == _CLASSIFICATION:
                p = out[name][:, :len(self.classes_[j])]
                probs.append(p / p.sum(axis=1, keepdims=True))
        if not probs:
            raise AttributeError("predict_proba: no classification columns")
        return probs[0] if self.single_output_ else probs

    def score(self, X, y):
        """Mean over columns of accuracy (classification) and R^2 (regression)."""
        pred = self.predict(X)
        Y = np.asarray(y)
        if self.single_output_ and Y.ndim == 1:
            Y, pred = Y.reshape(-1, 1), np.asarray(pred).reshape(-1, 1)
        Y = Y.reshape(len(Y), -1)
        scores = []
        for j, kind in enumerate(self.task_types_):
            if kind == _CLASSIFICATION:
                scores.append(accuracy_score(Y[:, j], pred[:, j]))
            else:
                scores.append(r2_score(Y[:, j].astype(np.float64),
                                       pred[:, j].astype(np.float64)))
        return float(np.mean(scores))
