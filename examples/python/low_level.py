"""The handle-level API: the same calls a C program makes, with numpy arrays in and out.

A custom training loop: forward_backward, inspect a gradient, clip by hand, optimizer step.
    PYTHONPATH=bindings/python MTL_LIBRARY=build/libmtl/libmtl.so.1 \
        /usr/bin/python3 examples/python/low_level.py
"""

import numpy as np

import mtl


def main():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(256, 8)).astype(np.float32)
    y_cls = (X[:, 0] * X[:, 1] > 0).astype(np.int32)
    y_reg = X[:, 2:4] ** 2

    with mtl.Model((8,)) as model:
        model.trunk.add_layer("linear", out=32)
        model.trunk.add_layer("layer_norm")
        model.trunk.add_layer("gelu")
        model.add_head("sign", loss="cross_entropy", layers=[("linear", {"out": 2})])
        model.add_head("square", loss="huber", layers=[("linear", {"out": 2})])
        model.build(max_batch=64, seed=42)
        print(model, "-", model.num_params, "parameters")

        # Zero-copy: this tensor IS the numpy array's memory.
        xt = mtl.Tensor.from_numpy(X[:64])
        assert xt.data_ptr == X.ctypes.data

        with mtl.Optimizer(model, "sgd", lr=0.05, momentum=0.9) as opt, \
                mtl.Weighting("fixed", model.num_heads, weights=[1.0, 2.0]) as w:
            for epoch in range(20):
                for s in range(0, 256, 64):
                    batch = slice(s, s + 64)
                    losses = model.forward_backward(X[batch], [y_cls[batch], y_reg[batch]],
                                                    weighting=w)
                    g = model.get_grad("trunk.0.weight")
                    opt.step()
                if epoch % 5 == 4:
                    print(f"epoch {epoch + 1}: losses {np.round(losses, 4)}, "
                          f"|grad trunk.0.weight| {np.linalg.norm(g):.4f}, lr {opt.lr:g}")

        out = model.predict(xt)
        acc = np.mean(out["sign"].argmax(1) == y_cls[:64])
        print(f"training-batch accuracy of 'sign': {acc:.3f}")
        xt.close()


if __name__ == "__main__":
    main()
