"""The Multi-Fashion LeNet of examples/configs/multifashion/ as torch modules, started from
libmtl's initial weights (same parameter names and layouts as torch.nn.Conv2d / Linear).
Shared by bench/torch_multifashion.py and bench/lenet_step.py."""


def lenet_from_mtl(torch, tasks, init):
    """(trunk, heads) with the parameters of init, libmtl's state dict by name."""
    nn = torch.nn
    trunk = nn.Sequential(nn.Conv2d(1, 10, 9), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(10, 20, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(500, 50), nn.ReLU())
    heads = nn.ModuleList([nn.Linear(50, 10) for _ in tasks])
    named = {f"trunk.{k}": v for k, v in trunk.state_dict().items()}
    for t, h in zip(tasks, heads):
        named.update({f"heads.{t}.0.{k}": v for k, v in h.state_dict().items()})
    if sorted(named) != sorted(init):
        raise SystemExit(f"parameter names differ: torch {sorted(named)}, libmtl {sorted(init)}")
    with torch.no_grad():
        for k, v in named.items():
            v.copy_(torch.from_numpy(init[k]).reshape(v.shape))
    return trunk, heads
