"""Parity of the vision layers with PyTorch: conv2d (both of its routes: the direct kernels for
stride-1 rows and the im2col lowering), max_pool2d and avg_pool2d give the same outputs on
random inputs as torch.nn.Conv2d / MaxPool2d / AvgPool2d with identical weights, and a
training step through them gives the same gradient of every parameter.

Tolerances (float32 on both sides, only the order of sums differs): rtol 1e-4, atol 1e-5.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import mtl  # noqa: E402

torch.set_num_threads(1)
TOL = dict(rtol=1e-4, atol=1e-5)
B = 6


def pair2(v):
    return v if isinstance(v, tuple) else (v, v)


def conv(out, kernel, stride=1, padding=0, dilation=1, bias=1):
    return ("conv2d", dict(out=out, kernel=kernel, stride=stride, padding=padding,
                           dilation=dilation, bias=bias))


def mtl_opts(kind, o):
    """Our option keys: a pair (h, w) becomes <name>_h / <name>_w."""
    res = {}
    for k, v in o.items():
        if isinstance(v, tuple):
            res[f"{k}_h"], res[f"{k}_w"] = v
        else:
            res[k] = v
    return res


def torch_module(kind, o, c):
    """The PyTorch module of one layer spec and the channels it outputs."""
    if kind == "conv2d":
        return nn.Conv2d(c, o["out"], pair2(o["kernel"]), pair2(o.get("stride", 1)),
                         pair2(o.get("padding", 0)), pair2(o.get("dilation", 1)),
                         bias=bool(o.get("bias", 1))), o["out"]
    if kind == "max_pool2d":
        return nn.MaxPool2d(pair2(o["kernel"]), pair2(o.get("stride", o["kernel"])),
                            pair2(o.get("padding", 0))), c
    if kind == "avg_pool2d":
        return nn.AvgPool2d(pair2(o["kernel"]), pair2(o.get("stride", o["kernel"])),
                            pair2(o.get("padding", 0))), c
    if kind == "relu":
        return nn.ReLU(), c
    if kind == "flatten":
        return nn.Flatten(), c
    raise KeyError(kind)


# name: (input [C, H, W], trunk layers)
CASES = {
    # 12x12 maps: the direct kernels forward and backward, then a max pool
    "conv_same_maxpool": ((2, 12, 12), [conv(4, 3, padding=1), ("relu", {}),
                                        ("max_pool2d", {"kernel": 2})]),
    # stride along the height only, dilation along the width, rectangular windows; a padded
    # average pool with stride
    "conv_mixed_avgpool": ((3, 17, 23), [conv(6, (3, 5), stride=(2, 1), padding=(1, 2),
                                              dilation=(1, 2)),
                                         ("avg_pool2d", {"kernel": 3, "stride": 2,
                                                         "padding": 1})]),
    # stride 2 along the width: the im2col lowering; an overlapping padded max pool
    "conv_strided_maxpool": ((1, 10, 10), [conv(5, 2, stride=2, bias=0),
                                           ("max_pool2d", {"kernel": 3, "stride": 1,
                                                           "padding": 1})]),
    # two convolutions on 20x20 maps: the second passes its input gradient back
    "two_convs": ((3, 20, 20), [conv(8, 3, padding=1), ("relu", {}), conv(7, 3),
                                ("relu", {})]),
    # the Multi-Fashion LeNet trunk
    "lenet": ((1, 36, 36), [conv(10, 9), ("relu", {}), ("max_pool2d", {"kernel": 2}),
                            conv(20, 5), ("relu", {}), ("max_pool2d", {"kernel": 2})]),
}


def make_pair(shape, layers, seed):
    m = mtl.Model(shape)
    for kind, o in layers + [("flatten", {})]:
        m.trunk.add_layer(kind, **mtl_opts(kind, o))
    m.add_head("y", loss="mse", layers=[("linear", {"out": 3})])
    m.build(B, seed)
    mods, c = [], shape[0]
    for kind, o in layers + [("flatten", {})]:
        mod, c = torch_module(kind, o, c)
        mods.append(mod)
    trunk = nn.Sequential(*mods)
    with torch.no_grad():
        feat = trunk(torch.zeros((1,) + shape)).shape[1]
    head = nn.Linear(feat, 3)
    tm = nn.ModuleDict({"trunk": trunk, "head": head})
    names = {f"trunk.{k}": v for k, v in trunk.state_dict().items()}
    names.update({f"heads.y.0.{k}": v for k, v in head.state_dict().items()})
    assert sorted(names) == sorted(m.param_names())
    with torch.no_grad():
        for n, v in names.items():
            src = m.get_param(n)
            assert tuple(v.shape) == src.shape, n
            v.copy_(torch.from_numpy(src))
    return m, tm, names, feat


@pytest.mark.parametrize("case", sorted(CASES))
def test_vision_layers_match_pytorch(case):
    shape, layers = CASES[case]
    rng = np.random.default_rng(sorted(CASES).index(case))
    m, tm, names, feat = make_pair(shape, layers, seed=5)
    assert m.trunk.output_size == feat
    x = rng.uniform(-1, 1, (B,) + shape).astype(np.float32)
    y = rng.normal(size=(B, 3)).astype(np.float32)

    m.predict_raw(x)
    tx = torch.from_numpy(x)
    with torch.no_grad():
        ref = tm["head"](tm["trunk"](tx)).numpy()
    np.testing.assert_allclose(m.output("y"), ref, **TOL)

    losses = m.forward_backward(x, {"y": y})
    out = tm["head"](tm["trunk"](tx))
    loss = nn.functional.mse_loss(out, torch.from_numpy(y))
    loss.backward()
    np.testing.assert_allclose(losses[0], loss.item(), rtol=1e-5)
    params = dict(tm.named_parameters())
    for n in names:
        tn = n.replace("heads.y.0.", "head.")
        np.testing.assert_allclose(m.get_grad(n), params[tn].grad.numpy(), err_msg=n, **TOL)


def test_pool_outputs_match_pytorch_exactly():
    """Pools only select or average: the trunk output itself, read through an identity-like
    head (a linear layer set to the identity), equals PyTorch's."""
    shape = (3, 11, 13)
    rng = np.random.default_rng(42)
    x = rng.normal(size=(B,) + shape).astype(np.float32)
    for kind, o in [("max_pool2d", {"kernel": 2}), ("max_pool2d", {"kernel": 3, "stride": 2,
                                                                   "padding": 1}),
                    ("avg_pool2d", {"kernel": (2, 3), "stride": (2, 1)}),
                    ("avg_pool2d", {"kernel": 3, "padding": 1})]:
        m = mtl.Model(shape)
        m.trunk.add_layer(kind, **mtl_opts(kind, o))
        m.trunk.add_layer("flatten")
        mod, _ = torch_module(kind, o, shape[0])
        with torch.no_grad():
            ref = mod(torch.from_numpy(x)).reshape(B, -1).numpy()
        f = ref.shape[1]
        m.add_head("id", loss="mse", layers=[("linear", {"out": f})])
        m.build(B, 0)
        m.set_param("heads.id.0.weight", np.eye(f, dtype=np.float32))
        m.set_param("heads.id.0.bias", np.zeros(f, np.float32))
        m.predict_raw(x)
        np.testing.assert_allclose(m.output("id"), ref, rtol=1e-6, atol=1e-6,
                                   err_msg=f"{kind} {o}")
