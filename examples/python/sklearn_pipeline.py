"""libmtl inside scikit-learn: a Pipeline with scaling, tuned by GridSearchCV, on a
multi-output problem (one classification and one regression column).

    PYTHONPATH=bindings/python MTL_LIBRARY=build/libmtl/libmtl.so.1 \
        /usr/bin/python3 examples/python/sklearn_pipeline.py
"""

import numpy as np
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mtl.sklearn import MultiTaskEstimator


def main():
    rng = np.random.default_rng(0)
    X = rng.normal(loc=3.0, scale=[1, 5, 2, 0.5, 1, 1], size=(600, 6))
    kind = np.where(X[:, 0] - 3 + (X[:, 1] - 3) / 5 > 0, "high", "low")   # string labels
    amount = X[:, 2] * 0.5 + np.sin(X[:, 3]) + rng.normal(scale=0.1, size=600)
    Y = np.empty((600, 2), dtype=object)
    Y[:, 0], Y[:, 1] = kind, amount
    Xtr, Xte, Ytr, Yte = train_test_split(X, Y, random_state=0)

    pipe = make_pipeline(StandardScaler(),
                         MultiTaskEstimator(hidden_layers=(32,), epochs=30, batch_size=32,
                                            task_types=["classification", "regression"],
                                            random_state=0))
    search = GridSearchCV(pipe, {"multitaskestimator__learning_rate": [1e-3, 1e-2],
                                 "multitaskestimator__hidden_layers": [(16,), (32, 32)]},
                          cv=3)
    search.fit(Xtr, Ytr)
    print("best parameters:", search.best_params_)
    print(f"test score (mean of accuracy and R^2): {search.score(Xte, Yte):.3f}")
    print("first predictions:\n", search.predict(Xte[:3]))


if __name__ == "__main__":
    main()
