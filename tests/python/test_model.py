"""The handle classes: Model with its trunk and heads, Optimizer, Weighting."""

import gc

import numpy as np
import pytest

import mtl
from mtl import _lib

from conftest import make_model


def batch(rng, n=8, d=6, classes=3, reg=2):
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = {"cls": rng.integers(0, classes, n).astype(np.int32),
         "reg": rng.normal(size=(n, reg)).astype(np.float32)}
    return x, y


def test_builders_and_structure():
    m = mtl.Model((6,))
    assert m.input_shape == (6,) and m.input_dtype == np.float32
    assert not m.is_built and m.num_heads == 0
    tr = m.trunk
    assert tr is m.trunk
    i0 = tr.add_layer("linear", out=8, bias=True)
    tr.add_layer("leaky_relu", slope=0.2)
    tr.add_linear(5)
    tr.set_int(-1, "out", 4)          # override the last layer's width
    tr.add_layer("dropout")
    tr.set_double(-1, "p", 0.0)
    tr.add_layer("gelu")
    tr.set_string(-1, "approximate", "tanh")
    assert i0 == 0 and tr.num_layers == 5 and len(tr) == 5
    assert tr.output_size == 0        # before build
    h = m.add_head("a")
    assert h.loss == "mse"            # the default
    h.add_linear(3)
    h.set_loss("cross_entropy", label_smoothing=0.1)
    h.set_class_weights([1.0, 2.0, 0.5])
    h.add_layer("relu")
    h.set_int(0, "out", 3)
    h.set_double(0, "gain", 1.0)
    h.set_string(0, "init", "xavier_uniform")
    assert h.num_layers == 2 and len(h) == 2
    h2 = m.add_head("b", loss="huber", layers=[("linear", {"out": 1})])
    h2.set_loss_option("delta", 2.0)
    assert h.name == "a" and h.loss == "cross_entropy" and h2.loss == "huber"
    assert m.num_heads == 2 and m.task_names == ["a", "b"]
    assert m.head_index("b") == 1 and m.head("b").name == "b" and m.head(0).name == "a"
    assert h2.index == 1
    m.set_double("l2_trunk", 1e-3)
    assert m.get_double("l2_trunk") == pytest.approx(1e-3)
    m.build(32, seed=5)
    assert m.is_built and m.max_batch == 32
    assert tr.output_size == 4 and h.output_size == 3 and h2.output_size == 1
    names = m.param_names()
    assert names[:2] == ["trunk.0.weight", "trunk.0.bias"]
    assert "heads.a.0.weight" in names and "heads.b.0.bias" in names
    assert m.param_shape("trunk.0.weight") == (8, 6)
    assert m.num_params == sum(int(np.prod(m.param_shape(n))) for n in names)
    assert 0 < m.num_shared_params < m.num_params
    assert "heads=['a', 'b']" in repr(m) and "Head 'a'" in repr(h) and "Trunk" in repr(tr)
    with pytest.raises(mtl.MtlError, match="mtl_model_add_head"):
        m.add_head("c")               # the architecture is fixed after build
    m.close()


def test_layer_option_errors_name_the_key():
    m = mtl.Model(4)
    with pytest.raises(mtl.MtlError, match="nosuchkey"):
        m.trunk.add_layer("linear", nosuchkey=1)
    with pytest.raises(mtl.MtlError, match="nosuchlayer"):
        m.trunk.add_layer("nosuchlayer")
    with pytest.raises(mtl.InvalidArgumentError, match="unsupported type dict"):
        m.trunk.add_layer("linear", out={"x": 1})
    with pytest.raises(mtl.InvalidArgumentError, match="expected a string"):
        m.add_head(5)
    m.close()


def test_params_roundtrip_and_state_dict(model, rng):
    sd = model.state_dict()
    assert list(sd) == model.param_names()
    w = rng.normal(size=model.param_shape("trunk.0.weight")).astype(np.float32)
    model.set_param("trunk.0.weight", w)
    assert np.array_equal(model.get_param("trunk.0.weight"), w)
    model.set_param("trunk.0.weight", w.astype(np.float64).T.copy().T)  # converted copy
    assert np.array_equal(model.get_param("trunk.0.weight"), w)
    with pytest.raises(mtl.ShapeError):
        model.set_param("trunk.0.weight", np.zeros(5, np.float32))
    model.load_state_dict(sd)
    for k, v in sd.items():
        assert np.array_equal(model.get_param(k), v)
    bad = dict(sd)
    bad.pop("trunk.0.bias")
    with pytest.raises(mtl.NotFoundError, match=r"missing \['trunk.0.bias'\]"):
        model.load_state_dict(bad)
    model.load_state_dict(bad, strict=False)
    bad["trunk.0.weight"] = np.zeros((2, 2))
    with pytest.raises(mtl.ShapeError, match="trunk.0.weight"):
        model.load_state_dict(bad, strict=False)


def test_forward_backward_compute_losses_and_grads(model, rng):
    x, y = batch(rng)
    before = model.state_dict()
    losses = model.forward_backward(x, y)
    assert losses.shape == (2,) and np.all(np.isfinite(losses))
    g = model.get_grad("trunk.0.weight")
    assert g.shape == (8, 6) and np.any(g != 0)
    for k, v in before.items():   # forward_backward does not update
        assert np.array_equal(model.get_param(k), v)
    ev = model.compute_losses(x, y)
    assert np.allclose(ev, losses, rtol=1e-6)  # no dropout/batchnorm: same in eval mode
    only = model.compute_losses(x, {"reg": y["reg"]})
    assert np.isnan(only[0]) and only[1] == pytest.approx(losses[1], rel=1e-6)
    # list form, Tensor inputs and masks
    with mtl.Tensor.from_numpy(x) as xt, mtl.Tensor.from_numpy(y["cls"]) as ct:
        l2 = model.compute_losses(xt, [ct, None])
    assert l2[0] == pytest.approx(losses[0], rel=1e-6)
    mask = np.array([1, 1, 1, 1, 0, 0, 0, 0], np.float32)
    lm = model.compute_losses(x, y, masks={"cls": mask})
    ref = model.compute_losses(x[:4], {"cls": y["cls"][:4], "reg": y["reg"][:4]})
    assert lm[0] == pytest.approx(ref[0], rel=1e-5)


def test_train_step_optimizer_and_weighting(model, rng):
    x, y = batch(rng)
    with mtl.Optimizer(model, "sgd", lr=0.1, momentum=0.9) as opt, \
            mtl.Weighting("fixed", 2) as w:
        assert opt.kind == "sgd" and opt.lr == pytest.approx(0.1)
        assert opt.get("momentum") == pytest.approx(0.9)
        assert "lr" in opt.keys() and "momentum" in opt.keys()
        assert opt.default("lr") == pytest.approx(0.01)
        assert opt.model is model
        w.weights = [1.0, 0.0]
        assert np.array_equal(w.weights, [1.0, 0.0])
        assert w.method == "fixed" and w.num_tasks == 2
        first = model.train_step(opt, x, y, weighting=w)
        assert opt.step_count == 1
        for _ in range(20):
            last = model.train_step(opt, x, y, weighting=w)
        assert last[0] < first[0]
        assert np.array_equal(w.weights, [1.0, 0.0])
        # zero weight: the regression head's parameters get zero gradient
        model.forward_backward(x, y, weighting=w)
        assert np.all(model.get_grad("heads.reg.0.weight") == 0)
        opt.set(momentum=0.5, nesterov=True)
        opt.set_double("lr", 0.05)
        opt.set_int("dampening", 0)
        assert opt.lr == pytest.approx(0.05)
        opt.set_lr_scale("trunk", 0.0)
        t0 = model.get_param("trunk.0.weight")
        model.forward_backward(x, y)
        opt.step()
        assert np.array_equal(model.get_param("trunk.0.weight"), t0)  # frozen part
        opt.reset()
        assert opt.step_count == 0
        with pytest.raises(mtl.MtlError, match="nosuch"):
            opt.set(nosuch=1.0)
        with pytest.raises(mtl.MtlError, match="momentum"):
            opt.set(momentum=1.5)
        assert "sgd" in repr(opt) and "fixed" in repr(w)


def test_optimizer_string_keys_and_schedules(model):
    opt = mtl.Optimizer(model, "adam", lr=1e-2, schedule="multistep", milestones=[2, 4],
                        gamma=0.5)
    opt.set_string("schedule", "step")
    opt.set(step_size=3, amsgrad=1)
    assert opt.get("step_size") == 3
    opt.close()
    opt.close()


def test_weighting_keys_and_options():
    with mtl.Weighting("ew", 3, reduction="mean") as w:
        assert w.keys() == ["reduction"]
        assert np.allclose(w.weights, 1 / 3)
        w.set_string("reduction", "sum")
        assert np.allclose(w.weights, 1.0)
        with pytest.raises(mtl.MtlError):
            w.set_double("nosuch", 1.0)
        with pytest.raises(mtl.MtlError):
            w.set_int("nosuch", 1)
    with pytest.raises(mtl.MtlError, match="mtl_weighting_set_weights"):
        mtl.Weighting("fixed", 2, weights=[1.0, -1.0])
    with pytest.raises(mtl.MtlError):
        mtl.Weighting("ew", 0)


def test_predict_and_outputs(model, rng):
    x, _ = batch(rng, n=5)
    out = model.predict(x)
    assert set(out) == {"cls", "reg"} and out["cls"].shape == (5, 3)
    assert model.output_batch == 5
    probs = model.output("cls", probabilities=True)
    e = np.exp(out["cls"] - out["cls"].max(1, keepdims=True))
    assert np.allclose(probs, e / e.sum(1, keepdims=True), rtol=1e-5, atol=1e-6)
    assert np.array_equal(model.output(1), out["reg"])
    buf = np.empty((5, 2), np.float64)        # converted through one copy, written back
    model.output("reg", out=buf)
    assert np.allclose(buf, out["reg"])
    with pytest.raises(mtl.ShapeError):
        model.output(1, out=np.empty((4, 2), np.float32))
    model.compute_losses(x, {"reg": out["reg"]})   # invalidates the stored outputs
    with pytest.raises(mtl.StateError, match="predict"):
        model.output(0)
    model.reseed(7)


def test_int32_input_model_with_embedding(rng):
    m = mtl.Model((4,), input_dtype="int32")
    m.trunk.add_layer("embedding", num_embeddings=10, out=3, pooling="mean")
    m.add_head("t", loss="mse", layers=[("linear", {"out": 1})])
    m.build(8, 1)
    ids = rng.integers(0, 10, (6, 4))     # int64: converted to int32 with one copy
    out = m.predict(ids)["t"]
    assert out.shape == (6, 1)
    with pytest.raises(mtl.MtlError):
        m.predict(np.full((2, 4), 10))    # id out of range
    m.close()


def test_borrowed_handles_keep_the_model_alive(calls):
    frees = calls["mtl_model_free"]
    m = make_model()
    head, trunk = m.head("cls"), m.trunk
    del m
    gc.collect()
    assert calls["mtl_model_free"] == frees          # the head keeps the model
    assert head.name == "cls" and trunk.num_layers == 2
    del head, trunk
    gc.collect()
    assert calls["mtl_model_free"] == frees + 1


def test_closed_model_and_its_heads_raise_state_error():
    m = make_model()
    h = m.head(0)
    t = m.trunk
    m.close()
    assert repr(m) == "<mtl.Model (closed)>"
    with pytest.raises(mtl.StateError, match="model is closed"):
        m.param_names()
    with pytest.raises(mtl.StateError, match="closed"):
        h.name
    with pytest.raises(mtl.StateError, match="closed"):
        t.add_layer("relu")
    with pytest.raises(mtl.StateError, match="closed"):
        m.trunk


def test_optimizer_keeps_model_memory_until_freed(calls, rng):
    m = make_model()
    opt = mtl.Optimizer(m, "adam")
    frees = calls["mtl_model_free"]
    m.close()                                         # the optimizer still needs it
    assert calls["mtl_model_free"] == frees
    opt.close()
    assert calls["mtl_model_free"] == frees + 1       # now both are gone, once each
    assert repr(opt) == "<mtl.Optimizer (closed)>"
    with pytest.raises(mtl.StateError):
        opt.step()


def test_optimizer_of_another_model_is_rejected(rng):
    a, b = make_model(), make_model()
    x, y = batch(rng)
    with mtl.Optimizer(b, "sgd") as opt:
        with pytest.raises(mtl.InvalidArgumentError, match="another model"):
            a.train_step(opt, x, y)
    a.close()
    b.close()


def test_numeric_error_leaves_model_unchanged(model, rng):
    x, y = batch(rng)
    w = model.get_param("heads.reg.0.weight")
    with pytest.raises(mtl.NumericError, match="element 0 is inf"):
        model.set_param("heads.reg.0.weight", np.full_like(w, np.inf))
    w[:] = 3e38                                       # finite, but the output overflows
    model.set_param("heads.reg.0.weight", w)
    before = model.state_dict()
    with mtl.Optimizer(model, "sgd") as opt:
        with pytest.raises(mtl.NumericError, match="reg"):
            model.train_step(opt, x, y)
        assert opt.step_count == 0
    for k, v in before.items():
        assert np.array_equal(model.get_param(k), v, equal_nan=True)
    y["reg"][0, 0] = np.inf                           # a bad target is an argument error
    with pytest.raises(mtl.InvalidArgumentError, match="is inf"):
        model.compute_losses(x, y)


def test_unbuilt_model_state_errors():
    m = mtl.Model((3,))
    m.trunk.add_linear(2)
    m.add_head("a", layers=[("linear", {"out": 1})])
    with pytest.raises(mtl.StateError, match="not built"):
        m.predict_raw(np.zeros((1, 3), np.float32))
    with pytest.raises(mtl.StateError):
        mtl.Optimizer(m, "sgd")
    m.close()


def test_low_level_checked_pointer_and_trunk_ptr(model):
    assert _lib.C.mtl_model_trunk(model._ptr) == model.trunk._handle
    assert _lib.C.mtl_model_head(model._ptr, b"reg") == model.head("reg")._handle
