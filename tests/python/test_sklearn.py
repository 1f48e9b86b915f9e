"""The scikit-learn estimator.

sklearn.utils.estimator_checks: MultiTaskEstimator is a multi-output estimator that is
neither a ClassifierMixin nor a RegressorMixin, so check_estimator generates 29 checks for
it (scikit-learn 1.2). All of them pass and run here, each as its own test:
check_no_attributes_set_in_init, check_estimators_dtypes, check_fit_score_takes_y,
check_estimators_fit_returns_self (twice, also on read-only memmaps), check_complex_data,
check_dtype_object, check_estimators_empty_data_messages, check_pipeline_consistency,
check_estimators_nan_inf, check_estimators_overwrite_params, check_estimator_sparse_data,
check_estimators_pickle, check_estimator_get_tags_default_keys,
check_parameters_default_constructible, check_methods_sample_order_invariance,
check_methods_subset_invariance, check_fit2d_1sample, check_fit2d_1feature,
check_get_params_invariance, check_set_params, check_dict_unchanged,
check_dont_overwrite_parameters, check_fit_idempotent, check_fit_check_is_fitted,
check_n_features_in, check_fit1d, check_fit2d_predict1d, check_requires_y_none.
The multi-output checks of classifiers and regressors (check_classifier_multioutput,
check_regressor_multioutput) also pass, with the estimator set to classification or
regression columns.
"""

import pickle
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils import estimator_checks  # noqa: E402

from mtl.sklearn import MultiTaskEstimator  # noqa: E402


def small(**kw):
    args = dict(hidden_layers=(8,), epochs=3, batch_size=16, random_state=0)
    args.update(kw)
    return MultiTaskEstimator(**args)


CHECKS = [(est, chk) for est, chk in estimator_checks.check_estimator(small(),
                                                                       generate_only=True)]


def check_id(pair):
    chk = pair[1]
    name = getattr(chk, "func", chk).__name__
    kw = getattr(chk, "keywords", {})
    return name + ("[" + ",".join(f"{k}={v}" for k, v in kw.items()) + "]" if kw else "")


def test_number_of_generated_checks():
    assert len(CHECKS) == 29


@pytest.mark.parametrize("pair", CHECKS, ids=[check_id(p) for p in CHECKS])
def test_sklearn_estimator_check(pair):
    est, chk = pair
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chk(est)


def test_check_regressor_multioutput():
    estimator_checks.check_regressor_multioutput(
        "MultiTaskEstimator", small(task_types="regression", epochs=20))


def test_check_classifier_multioutput():
    estimator_checks.check_classifier_multioutput(
        "MultiTaskEstimator", small(task_types="classification", epochs=20))


def mixed_data(rng, n=300):
    X = rng.normal(loc=2.0, scale=[1, 4, 1, 1], size=(n, 4))
    kind = np.where(X[:, 0] - 2 > 0, "yes", "no")
    amount = 3 * X[:, 2] + rng.normal(scale=0.1, size=n)
    Y = np.empty((n, 2), dtype=object)
    Y[:, 0], Y[:, 1] = kind, amount
    return X, Y, kind, amount


def test_mixed_columns_fit_predict_score(rng):
    X, Y, kind, amount = mixed_data(rng)
    est = MultiTaskEstimator(hidden_layers=(16,), epochs=40, learning_rate=1e-2,
                             task_types=["classification", "regression"], random_state=0)
    est.fit(X, Y)
    assert est.n_features_in_ == 4
    assert est.task_types_ == ["classification", "regression"]
    assert list(est.classes_[0]) == ["no", "yes"]
    pred = est.predict(X)
    assert pred.shape == (300, 2) and pred.dtype == object
    assert set(pred[:, 0]) <= {"yes", "no"}
    assert est.score(X, Y) > 0.9
    proba = est.predict_proba(X)
    assert len(proba) == 1 and proba[0].shape == (300, 2)
    assert np.allclose(proba[0].sum(1), 1, atol=1e-5)
    # auto types: strings -> classification, floats -> regression
    auto = MultiTaskEstimator(hidden_layers=(8,), epochs=2, random_state=0).fit(X, Y)
    assert auto.task_types_ == ["classification", "regression"]
    # single output keeps the 1-D layout
    single = MultiTaskEstimator(hidden_layers=(8,), epochs=5, random_state=0).fit(X, kind)
    assert single.predict(X).shape == (300,)
    assert single.predict_proba(X).shape == (300, 2)
    regonly = MultiTaskEstimator(hidden_layers=(8,), epochs=5, random_state=0).fit(X, amount)
    with pytest.raises(AttributeError, match="no classification columns"):
        regonly.predict_proba(X)
    with pytest.raises(ValueError, match="task_types has 1 entries"):
        MultiTaskEstimator(task_types=["regression"]).fit(X, Y)
    with pytest.raises(ValueError, match="expected 'classification' or 'regression'"):
        MultiTaskEstimator(task_types="clustering").fit(X, amount)


def test_pipeline_gridsearch_clone_pickle(rng):
    X, Y, _, _ = mixed_data(rng, n=240)
    pipe = make_pipeline(StandardScaler(), small(epochs=10, learning_rate=1e-2,
                                                 task_types=["classification", "regression"]))
    search = GridSearchCV(pipe, {"multitaskestimator__hidden_layers": [(4,), (16,)],
                                 "multitaskestimator__weighting_options": [
                                     {"reduction": "sum"}, {"reduction": "mean"}]}, cv=2)
    search.fit(X, Y)
    assert len(search.cv_results_["params"]) == 4
    assert search.best_score_ > 0.5
    assert search.predict(X).shape == (240, 2)
    est = search.best_estimator_[-1]
    c = clone(est)
    assert c.get_params() == est.get_params() and not hasattr(c, "model_")
    back = pickle.loads(pickle.dumps(search.best_estimator_))
    assert (back.predict(X) == search.predict(X)).all()


def test_optimizer_options_pass_through(rng):
    X = rng.normal(size=(64, 3))
    y = X[:, 0] * 2
    est = MultiTaskEstimator(hidden_layers=(8,), optimizer="sgd", learning_rate=0.05,
                             optimizer_options={"momentum": 0.9}, epochs=10, dropout=0.1,
                             l2=1e-4, head_hidden=(4,), activation="tanh", random_state=1)
    est.fit(X, y)
    assert est.model_.optimizer.get("momentum") == pytest.approx(0.9)
    assert "heads.y0.2.weight" in est.model_.param_names()
    assert est.score(X, y) > 0.5
