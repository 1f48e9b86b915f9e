"""The Multi-Fashion builder (mtl_multifashion_build) against an independent NumPy
implementation of include/mtl/datasets.h, on synthetic IDX files and, when Debian's
dataset-fashion-mnist is installed, on the first images of the real data; typed errors."""

import gzip
import os
import struct

import numpy as np
import pytest

import mtl
from mtl import data

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

M = (1 << 64) - 1


class Rng:
    """xoshiro256** seeded by splitmix64, as the library's generator."""

    def __init__(self, seed):
        self.s, x = [], seed & M
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & M
            z = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
            self.s.append(z ^ (z >> 31))

    def next(self):
        a = self.s

        def rotl(x, k):
            return ((x << k) | (x >> (64 - k))) & M

        r, t = (rotl((a[1] * 5) & M, 7) * 9) & M, (a[1] << 17) & M
        a[2] ^= a[0]
        a[3] ^= a[1]
        a[1] ^= a[2]
        a[0] ^= a[3]
        a[2] ^= t
        a[3] = rotl(a[3], 45)
        return r

    def below(self, n):
        while True:
            x = self.next()
            if x >= ((1 << 64) - n) % n:
                return x % n


def read_idx(path):
    raw = open(path, "rb").read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw[4 + 4 * ndim:], np.uint8).reshape(dims)


def reference(src, seed, limit):
    out = {}
    test_seed = (seed + 0x9E3779B97F4A7C15) & M
    for split, pre, sd in [("train", "train", seed), ("test", "t10k", test_seed)]:
        def path(kind):
            p = os.path.join(src, f"{pre}-{kind}-idx{3 if kind == 'images' else 1}-ubyte")
            return p + ".gz" if os.path.exists(p + ".gz") else p
        imgs, labs = read_idx(path("images")), read_idx(path("labels"))
        n = min(limit or len(labs), len(labs))
        r = Rng(sd)
        X = np.zeros((2 * n, 1, 36, 36), np.float32)
        L = np.zeros(2 * n, np.int32)
        R = L.copy()
        for i in range(n):
            for k in range(2):
                j = r.below(n)
                while labs[j] == labs[i]:
                    j = r.below(n)
                r1, c1, r2, c2 = (r.below(5) for _ in range(4))
                o = 2 * i + k
                X[o, 0, r1:r1 + 28, c1:c1 + 28] = imgs[i]
                v = X[o, 0, 4 + r2:32 + r2, 4 + c2:32 + c2]
                v[...] = np.maximum(v, imgs[j])
                L[o], R[o] = labs[i], labs[j]
        out[split] = (X, L, R)
    return out


def write_idx(path, array, gz):
    array = np.ascontiguousarray(array, np.uint8)
    raw = bytes([0, 0, 8, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape) \
        + array.tobytes()
    with open(path, "wb") as f:
        f.write(gzip.compress(raw) if gz else raw)


def synthetic_sources(d, n_train=24, n_test=10, gz=True):
    rng = np.random.default_rng(5)
    os.makedirs(d, exist_ok=True)
    for pre, n in (("train", n_train), ("t10k", n_test)):
        sfx = ".gz" if gz else ""
        write_idx(os.path.join(d, f"{pre}-images-idx3-ubyte{sfx}"),
                  rng.integers(0, 256, (n, 28, 28)), gz)
        write_idx(os.path.join(d, f"{pre}-labels-idx1-ubyte{sfx}"), np.arange(n) % 10, gz)
    return d


def check_against_reference(src, out, seed, limit):
    ref = reference(src, seed, limit)
    for split in ("train", "test"):
        X, L, R = ref[split]
        got = [np.load(os.path.join(out, f"{split}_{s}.npy")) for s in ("x", "y_left",
                                                                        "y_right")]
        assert got[0].dtype == np.float32 and got[1].dtype == np.int32
        assert np.array_equal(got[0], X) and np.array_equal(got[1], L)
        assert np.array_equal(got[2], R)


@pytest.mark.parametrize("gz", [True, False])
def test_synthetic_build_matches_numpy(tmp_path, gz):
    src = synthetic_sources(str(tmp_path / "src"), gz=gz)
    out = data.build_multifashion(tmp_path / "out", src, seed=7)
    assert sorted(os.listdir(out)) == sorted(data.MULTIFASHION_FILES)
    check_against_reference(src, out, 7, 0)
    train, test = data.load_multifashion(out)
    assert len(train) == 48 and len(test) == 20 and train.tasks == ["left", "right"]
    assert train.inputs.shape == (48, 1, 36, 36)
    # the same seed gives the same bytes; another seed others
    again = data.build_multifashion(tmp_path / "again", src, seed=7)
    assert open(os.path.join(again, "train_x.npy"), "rb").read() == \
        open(os.path.join(out, "train_x.npy"), "rb").read()
    data.build_multifashion(again, src, seed=8, limit=12)
    assert np.load(os.path.join(again, "train_x.npy")).shape == (24, 1, 36, 36)
    check_against_reference(src, again, 8, 12)


@pytest.mark.skipif(not os.path.exists(os.path.join(data.FASHION_MNIST_DIR,
                                                    "train-images-idx3-ubyte.gz")),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_first_images(tmp_path):
    out = data.build_multifashion(tmp_path / "mf", limit=40)     # default source folder
    check_against_reference(data.FASHION_MNIST_DIR, out, data.MULTIFASHION_SEED, 40)


def test_builder_errors(tmp_path):
    with pytest.raises(mtl.MtlIOError, match="dataset-fashion-mnist"):
        data.build_multifashion(tmp_path / "out", tmp_path / "nothing-here")
    src = synthetic_sources(str(tmp_path / "src"))
    with pytest.raises(mtl.InvalidArgumentError):
        data.build_multifashion(tmp_path / "out", src, limit=-1)
    (tmp_path / "file").write_text("a file, not a folder")
    with pytest.raises(mtl.MtlIOError):
        data.build_multifashion(tmp_path / "file" / "out", src)
    nested = data.build_multifashion(tmp_path / "new" / "nested" / "out", src, limit=4)
    assert os.path.exists(os.path.join(nested, "test_x.npy"))     # folders are created
    bad = tmp_path / "bad"
    synthetic_sources(str(bad))
    with open(bad / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(gzip.compress(bytes([0, 0, 8, 1]) + struct.pack(">I", 23) + bytes(23)))
    with pytest.raises(mtl.FormatError, match="24 images but 'train-labels-idx1-ubyte' has "
                                              "23 labels"):
        data.build_multifashion(tmp_path / "out2", bad)
    with open(bad / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(b"not gzip at all")
    with pytest.raises(mtl.FormatError):
        data.build_multifashion(tmp_path / "out3", bad)
    same = tmp_path / "same"
    synthetic_sources(str(same))
    write_idx(str(same / "train-labels-idx1-ubyte.gz"), np.zeros(24), True)
    with pytest.raises(mtl.InvalidArgumentError):
        data.build_multifashion(tmp_path / "out4", same)


@pytest.mark.skipif(not os.path.exists(os.path.join(data.FASHION_MNIST_DIR,
                                                    "train-images-idx3-ubyte.gz")),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_lenet_learns_a_real_subset(tmp_path):
    """The recipe's LeNet trunk (examples/configs/multifashion/) on 8,000 real composites, four
    epochs of Adam: each task's test accuracy must reach 0.45, 4.5 times chance (0.10); this
    machine reaches about 0.58."""
    out = data.build_multifashion(tmp_path / "mf", limit=4000)
    path = os.path.join(ROOT, "examples", "configs", "multifashion", "lenet-ew.yaml")
    text = open(path).read()
    assert "dir: ../../data/multifashion" in text
    cfg = mtl.Config.parse(text.replace("dir: ../../data/multifashion", f"dir: {out}"),
                           name=path)
    model = mtl.MultiTaskModel.from_config(cfg)
    d = {n: np.load(os.path.join(out, f"{n}.npy"))
         for n in ("train_x", "train_y_left", "train_y_right", "test_x", "test_y_left",
                   "test_y_right")}
    assert d["train_x"].shape == (8000, 1, 36, 36)
    model.compile(optimizer="adam", lr=1e-3)
    model.fit(d["train_x"], {"left": d["train_y_left"], "right": d["train_y_right"]},
              epochs=4, batch_size=128, seed=2019, engine="c")
    res = model.evaluate(d["test_x"], {"left": d["test_y_left"], "right": d["test_y_right"]})
    for task in ("left", "right"):
        print(f"{task}: test accuracy {res[task]['accuracy']:.4f}")
        assert res[task]["accuracy"] >= 0.45, (task, res[task])
