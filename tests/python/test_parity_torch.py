"""Parity with PyTorch: the same architecture with identical weights (copied by parameter
name) gives the same forward outputs, per-task losses and gradients of every parameter, and
50 training steps with SGD (momentum) and with Adam (and the other optimizers) follow
PyTorch's loss trajectory.

Tolerances (float32 on both sides; only the order of floating-point sums differs):
  forward outputs, per-task losses, every gradient:  rtol 1e-4, atol 1e-5
  50-step loss trajectories:                         rtol 1e-4, atol 1e-6 per step
  parameters after 50 steps:                         rtol 1e-3, atol 1e-5
The largest deviations seen are printed by `pytest -s` (see PARITY_REPORT).
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

import mtl  # noqa: E402

torch.set_num_threads(1)

FWD_TOL = dict(rtol=1e-4, atol=1e-5)
TRAJ_TOL = dict(rtol=1e-4, atol=1e-6)
PARAM_TOL = dict(rtol=1e-3, atol=1e-5)
D, B = 12, 32
PARITY_REPORT = {}


def note(key, got, ref):
    """Record the largest absolute deviation, and the largest relative one among entries
    whose reference magnitude exceeds 1e-3."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if not got.size:
        return
    diff = np.abs(got - ref)
    big = np.abs(ref) > 1e-3
    rel = float(np.max(diff[big] / np.abs(ref[big]))) if big.any() else 0.0
    a, r = PARITY_REPORT.get(key, (0.0, 0.0))
    PARITY_REPORT[key] = (max(a, float(diff.max())), max(r, rel))


def torch_layer(kind, opts, width):
    """The PyTorch module for one layer spec and the width it outputs."""
    if kind == "linear":
        return nn.Linear(width, opts["out"], bias=bool(opts.get("bias", 1))), opts["out"]
    if kind == "relu":
        return nn.ReLU(), width
    if kind == "leaky_relu":
        return nn.LeakyReLU(opts.get("slope", 0.01)), width
    if kind == "gelu":
        return nn.GELU(approximate=opts.get("approximate", "none")), width
    if kind == "tanh":
        return nn.Tanh(), width
    if kind == "sigmoid":
        return nn.Sigmoid(), width
    if kind == "layer_norm":
        return nn.LayerNorm(width, eps=opts.get("eps", 1e-5)), width
    if kind == "batch_norm":
        return nn.BatchNorm1d(width, eps=opts.get("eps", 1e-5),
                              momentum=opts.get("momentum", 0.1)), width
    raise KeyError(kind)


class TorchMTL(nn.Module):
    def __init__(self, spec):
        super().__init__()
        layers, w = [], D
        for kind, opts in spec["trunk"]:
            mod, w = torch_layer(kind, opts, w)
            layers.append(mod)
        self.trunk = nn.Sequential(*layers)
        self.heads = nn.ModuleDict()
        for task, h in spec["heads"].items():
            hl, hw = [], w
            for kind, opts in h["layers"]:
                mod, hw = torch_layer(kind, opts, hw)
                hl.append(mod)
            self.heads[task] = nn.Sequential(*hl)

    def forward(self, x):
        z = self.trunk(x)
        return {t: h(z) for t, h in self.heads.items()}


def make_pair(spec, seed=0, l2_trunk=0.0, l2_heads=0.0):
    """An mtl model and a PyTorch module holding identical parameters (mtl's initial values
    copied into PyTorch by parameter name)."""
    m = mtl.Model((D,))
    for kind, opts in spec["trunk"]:
        m.trunk.add_layer(kind, **opts)
    for task, h in spec["heads"].items():
        head = m.add_head(task, loss=h["loss"],
                          layers=[(k, o) for k, o in h["layers"]])
        for k, v in h.get("loss_options", {}).items():
            head.set_loss_option(k, v)
        if "class_weights" in h:
            head.set_class_weights(h["class_weights"])
    if l2_trunk:
        m.set_double("l2_trunk", l2_trunk)
    if l2_heads:
        m.set_double("l2_heads", l2_heads)
    m.build(B, seed)
    tm = TorchMTL(spec)
    sd = tm.state_dict()
    names = m.param_names()
    torch_names = [k for k in sd if not k.endswith("num_batches_tracked")]
    assert sorted(names) == sorted(torch_names)     # same names, same layouts
    with torch.no_grad():
        for n in names:
            src = m.get_param(n)
            assert tuple(sd[n].shape) == src.shape, n
            sd[n].copy_(torch.from_numpy(src))
    return m, tm


def torch_task_loss(spec_head, out, y, mask=None):
    loss = spec_head["loss"]
    opts = spec_head.get("loss_options", {})
    if mask is not None:
        keep = torch.from_numpy(mask != 0)
        out, y = out[keep], y[keep]
    if loss == "cross_entropy":
        w = spec_head.get("class_weights")
        return F.cross_entropy(out, y.long(), ignore_index=-1,
                               weight=None if w is None else torch.tensor(w),
                               label_smoothing=opts.get("label_smoothing", 0.0))
    valid = ~torch.isnan(y)
    if loss == "bce":
        w = spec_head.get("class_weights")
        wt = None if w is None else torch.tensor(w).expand_as(out)[valid]
        return F.binary_cross_entropy_with_logits(out[valid], y[valid], weight=wt)
    if loss == "mse":
        return F.mse_loss(out[valid], y[valid])
    if loss == "l1":
        return F.l1_loss(out[valid], y[valid])
    if loss == "huber":
        return F.huber_loss(out[valid], y[valid], delta=opts.get("delta", 1.0))
    raise KeyError(loss)


def torch_objective(spec, tm, x, ys, masks=None, weights=None, l2_trunk=0.0, l2_heads=0.0):
    outs = tm(torch.from_numpy(x))
    losses = {}
    total = 0.0
    for i, (t, h) in enumerate(spec["heads"].items()):
        if t not in ys:
            continue
        L = torch_task_loss(h, outs[t], torch.from_numpy(ys[t]),
                            None if masks is None else masks.get(t))
        losses[t] = L
        total = total + (1.0 if weights is None else weights[i]) * L
    for name, p in tm.named_parameters():
        if name.endswith("weight") and p.dim() == 2:   # linear weights only
            lam = l2_trunk if name.startswith("trunk.") else l2_heads
            if lam:
                total = total + lam * (p * p).sum()
    return outs, losses, total


def data(spec, rng, n=B):
    x = rng.normal(size=(n, D)).astype(np.float32)
    ys = {}
    for t, h in spec["heads"].items():
        C = [o for k, o in h["layers"] if k == "linear"][-1]["out"]
        if h["loss"] == "cross_entropy":
            ys[t] = rng.integers(0, C, n).astype(np.int32)
        elif h["loss"] == "bce":
            ys[t] = (rng.random((n, C)) > 0.5).astype(np.float32)
        else:
            ys[t] = rng.normal(size=(n, C)).astype(np.float32)
    return x, ys


def lin(n):
    return ("linear", {"out": n})


BASE_HEADS = {"cls": {"layers": [lin(5)], "loss": "cross_entropy"},
              "reg": {"layers": [lin(3)], "loss": "mse"}}

ARCHS = {
    "relu": {"trunk": [lin(16), ("relu", {}), lin(16), ("relu", {})], "heads": BASE_HEADS},
    "leaky_tanh": {"trunk": [lin(16), ("leaky_relu", {"slope": 0.1}), lin(16), ("tanh", {})],
                   "heads": BASE_HEADS},
    "gelu_sigmoid": {"trunk": [lin(16), ("gelu", {}), lin(16), ("sigmoid", {})],
                     "heads": BASE_HEADS},
    "gelu_tanh_approx": {"trunk": [lin(16), ("gelu", {"approximate": "tanh"})],
                         "heads": BASE_HEADS},
    "layer_norm": {"trunk": [lin(16), ("layer_norm", {}), ("relu", {}), lin(16),
                             ("layer_norm", {"eps": 1e-3})], "heads": BASE_HEADS},
    "batch_norm": {"trunk": [lin(16), ("batch_norm", {}), ("relu", {}), lin(16),
                             ("batch_norm", {"momentum": 0.2})], "heads": BASE_HEADS},
    "deep_heads": {"trunk": [lin(16), ("relu", {})],
                   "heads": {"cls": {"layers": [lin(8), ("relu", {}), lin(5)],
                                     "loss": "cross_entropy"},
                             "reg": {"layers": [lin(8), ("tanh", {}), lin(3)],
                                     "loss": "mse"}}},
    "no_bias": {"trunk": [("linear", {"out": 16, "bias": 0}), ("relu", {})],
                "heads": BASE_HEADS},
}


def compare_grads(m, tm, key):
    for name, p in tm.named_parameters():
        g = m.get_grad(name)
        ref = p.grad.detach().numpy()
        note(f"{key} grad", g, ref)
        np.testing.assert_allclose(g, ref, err_msg=name, **FWD_TOL)


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_forward_losses_and_all_gradients(arch, rng):
    spec = ARCHS[arch]
    m, tm = make_pair(spec, seed=11)
    x, ys = data(spec, rng)
    # forward in evaluation mode
    tm.eval()
    with torch.no_grad():
        ref = tm(torch.from_numpy(x))
    out = m.predict(x)
    for t in spec["heads"]:
        note("forward", out[t], ref[t].numpy())
        np.testing.assert_allclose(out[t], ref[t].numpy(), err_msg=t, **FWD_TOL)
    # losses and gradients in training mode
    tm.train()
    tm.zero_grad()
    _, losses, total = torch_objective(spec, tm, x, ys)
    total.backward()
    got = m.forward_backward(x, ys)
    for i, t in enumerate(spec["heads"]):
        note("loss", got[i], losses[t].item())
        np.testing.assert_allclose(got[i], losses[t].item(), err_msg=t, **FWD_TOL)
    compare_grads(m, tm, "arch")
    if arch == "batch_norm":   # the running statistics follow PyTorch's update too
        sd = tm.state_dict()
        for n in m.param_names():
            if "running" in n:
                np.testing.assert_allclose(m.get_param(n), sd[n].numpy(), err_msg=n,
                                           **FWD_TOL)
    m.close()


LOSS_CASES = {
    "label_smoothing": {"cls": {"layers": [lin(5)], "loss": "cross_entropy",
                                "loss_options": {"label_smoothing": 0.2}}},
    "class_weights": {"cls": {"layers": [lin(5)], "loss": "cross_entropy",
                              "class_weights": [1.0, 2.0, 0.5, 1.5, 3.0]}},
    "bce": {"tags": {"layers": [lin(4)], "loss": "bce"}},
    "bce_weights": {"tags": {"layers": [lin(4)], "loss": "bce",
                             "class_weights": [1.0, 0.5, 2.0, 1.0]}},
    "l1": {"reg": {"layers": [lin(3)], "loss": "l1"}},
    "huber": {"reg": {"layers": [lin(3)], "loss": "huber", "loss_options": {"delta": 0.5}}},
    "three_tasks": {"cls": {"layers": [lin(5)], "loss": "cross_entropy"},
                    "reg": {"layers": [lin(3)], "loss": "huber"},
                    "tags": {"layers": [lin(2)], "loss": "bce"}},
}


@pytest.mark.parametrize("case", sorted(LOSS_CASES))
def test_loss_variants(case, rng):
    spec = {"trunk": [lin(16), ("relu", {})], "heads": LOSS_CASES[case]}
    m, tm = make_pair(spec, seed=5)
    x, ys = data(spec, rng)
    if "reg" in ys:
        ys["reg"] *= 2.0            # some residuals beyond huber's delta
    _, losses, total = torch_objective(spec, tm, x, ys)
    total.backward()
    got = m.forward_backward(x, ys)
    for i, t in enumerate(spec["heads"]):
        note("loss", got[i], losses[t].item())
        np.testing.assert_allclose(got[i], losses[t].item(), err_msg=t, **FWD_TOL)
    compare_grads(m, tm, "loss")
    m.close()


def test_missing_labels_masks_weights_and_l2(rng):
    spec = ARCHS["relu"]
    m, tm = make_pair(spec, seed=2, l2_trunk=1e-3, l2_heads=2e-3)
    x, ys = data(spec, rng)
    ys["cls"][::3] = -1                    # missing class ids
    ys["reg"][1::4, 1] = np.nan            # missing regression entries
    masks = {"reg": (np.arange(B) % 5 != 0).astype(np.float32)}
    weights = [0.7, 1.9]
    _, losses, total = torch_objective(spec, tm, x, ys, masks, weights, 1e-3, 2e-3)
    total.backward()
    with mtl.Weighting("fixed", 2, weights=weights) as w:
        got = m.forward_backward(x, ys, masks=masks, weighting=w)
    for i, t in enumerate(spec["heads"]):
        np.testing.assert_allclose(got[i], losses[t].item(), err_msg=t, **FWD_TOL)
    compare_grads(m, tm, "masks")
    m.close()


OPTIMIZERS = {
    "sgd_momentum": ("sgd", dict(lr=0.05, momentum=0.9),
                     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
    "adam": ("adam", dict(lr=1e-3), lambda p: torch.optim.Adam(p, lr=1e-3)),
    "sgd_nesterov_wd": ("sgd", dict(lr=0.02, momentum=0.8, nesterov=1, weight_decay=1e-3),
                        lambda p: torch.optim.SGD(p, lr=0.02, momentum=0.8, nesterov=True,
                                                  weight_decay=1e-3)),
    "adam_amsgrad_wd": ("adam", dict(lr=2e-3, amsgrad=1, weight_decay=1e-2, beta2=0.99),
                        lambda p: torch.optim.Adam(p, lr=2e-3, amsgrad=True,
                                                   weight_decay=1e-2, betas=(0.9, 0.99))),
    "adamw": ("adamw", dict(lr=2e-3, weight_decay=0.05),
              lambda p: torch.optim.AdamW(p, lr=2e-3, weight_decay=0.05)),
    "rmsprop": ("rmsprop", dict(lr=1e-3, momentum=0.5, centered=1),
                lambda p: torch.optim.RMSprop(p, lr=1e-3, momentum=0.5, centered=True)),
    "adagrad": ("adagrad", dict(lr=0.02, lr_decay=0.01),
                lambda p: torch.optim.Adagrad(p, lr=0.02, lr_decay=0.01)),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_fifty_steps_follow_pytorch(name, rng):
    spec = ARCHS["relu"]
    kind, opts, make_torch_opt = OPTIMIZERS[name]
    m, tm = make_pair(spec, seed=1)
    batches = [data(spec, rng) for _ in range(10)]
    topt = make_torch_opt(tm.parameters())
    mine, theirs = [], []
    with mtl.Optimizer(m, kind, **opts) as opt:
        for step in range(50):
            x, ys = batches[step % len(batches)]
            mine.append(m.train_step(opt, x, ys))
            topt.zero_grad()
            _, losses, total = torch_objective(spec, tm, x, ys)
            total.backward()
            topt.step()
            theirs.append([losses[t].item() for t in spec["heads"]])
    mine, theirs = np.array(mine), np.array(theirs)
    note(f"trajectory {name}", mine, theirs)
    np.testing.assert_allclose(mine, theirs, **TRAJ_TOL)
    # it did train: the same 10 batches, first pass against the last
    assert mine[40:].sum() < mine[:10].sum()
    for n, p in tm.named_parameters():
        note(f"params after 50 steps {name}", m.get_param(n), p.detach().numpy())
        np.testing.assert_allclose(m.get_param(n), p.detach().numpy(), err_msg=n, **PARAM_TOL)
    m.close()


def test_zz_report_parity():
    """Print the largest deviations measured (run with -s to see them)."""
    print("\nPyTorch parity: largest |mtl - torch|, and largest relative deviation where "
          "|torch| > 1e-3")
    for k in sorted(PARITY_REPORT):
        a, r = PARITY_REPORT[k]
        print(f"  {k:<40} abs {a:.2e}   rel {r:.2e}")
