"""Run configurations parsed by the library (mtl_config_*): loading and validation errors
with their positions, overrides, typed getters, the builders (model, optimizer, weighting,
datasets, trainer), CSV encoding, and MultiTaskModel.from_config on top of them."""

import os
import pickle
import textwrap

import numpy as np
import pytest

import mtl

MIN_ACCURACY = 0.9

RUN = """
data:
  train: {input: x.npy, labels: {cls: c.npy, val: v.npy}}
  validation: 0.2
  test: {input: tx.npy, labels: {cls: tc.npy}}
model:
  trunk: [{kind: linear, out: 16}, relu]
tasks:
  cls: {kind: classification, metrics: [accuracy, f1_macro]}
  val: {kind: regression, loss: huber}
weighting: {method: dwa, temperature: 2}
optimizer: {kind: adam, lr: 0.01, schedule: cosine}
training: {epochs: 12, batch_size: 32, seed: 3}
"""


@pytest.fixture
def run_dir(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", X[:300])
    np.save(tmp_path / "c.npy", (X[:300, 0] + X[:300, 1] > 0).astype(np.int64))
    np.save(tmp_path / "v.npy", X[:300, 2:3] * 2)
    np.save(tmp_path / "tx.npy", X[300:])
    np.save(tmp_path / "tc.npy", (X[300:, 0] + X[300:, 1] > 0).astype(np.int64))
    (tmp_path / "run.yaml").write_text(RUN)
    return tmp_path


def write(tmp_path, text, name="c.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


MINIMAL = """
tasks:
  a: {kind: classification, classes: 3}
model: {input: {shape: [4]}, trunk: [relu]}
training: {shuffle: false}
"""


def test_load_get_and_dump(run_dir):
    cfg = mtl.Config.load(run_dir / "run.yaml")
    assert cfg.path == str(run_dir / "run.yaml") and cfg.tasks == ["cls", "val"]
    assert cfg.get("training.epochs") == 12 and cfg.get_int("training.batch_size") == 32
    assert cfg["optimizer.lr"] == 0.01 and cfg.get_double("training.epochs") == 12.0
    assert cfg.get("tasks.val.loss.name") == "huber" and cfg.get("tasks.1.kind") == "regression"
    assert cfg.get("training.shuffle") is True                 # a default, as a bool
    assert cfg.count("model.trunk") == 2 and cfg.count("tasks.cls.metrics") == 2
    assert cfg.count("model.input") == 0
    assert cfg.data_path("data.train.input") == str(run_dir / "x.npy")
    text = cfg.dump()
    assert "epochs: 12" in text and "name: cls" in text
    again = mtl.Config.parse(text, name="dumped", base_dir=run_dir)
    assert again.dump().split("\n", 1)[1] == text.split("\n", 1)[1]   # first line: source
    assert again.data_path("data.train.input") == str(run_dir / "x.npy")
    yaml = pytest.importorskip("yaml")
    d = cfg.to_dict()
    assert d["training"]["epochs"] == 12 and [t["name"] for t in d["tasks"]] == ["cls", "val"]
    assert yaml is not None
    with pytest.raises(mtl.InvalidArgumentError, match="'model.trunk' is a list, not a "
                                                       "single value"):
        cfg.get("model.trunk")
    with pytest.raises(mtl.InvalidArgumentError, match="'tasks.cls.kind' is "
                                                       "'classification', not an integer"):
        cfg.get_int("tasks.cls.kind")
    with pytest.raises(mtl.NotFoundError, match="'nothing.here' is not set"):
        cfg.get_string("nothing.here")
    for h in (again, cfg):
        h.close()


def test_validation_errors_name_the_place(tmp_path):
    cases = [
        ("model: {input: {shape: [4]}, trunkk: []}\ntasks: {a: {kind: regression}}\n",
         mtl.InvalidArgumentError, r":1:30: unknown key 'trunkk' in model \(did you mean "
                                   r"'trunk'\?\)"),
        ("tasks: [\n", mtl.FormatError, ":2:1: YAML syntax error"),
        ("model: {input: {shape: [4]}}\n", mtl.NotFoundError,
         ":1:1: missing required key 'tasks'"),
        ("tasks: {a: {kind: regression, outputs: 1}}\nmodel: {input: {shape: [4]}}\n"
         "training: {batch_size: -8}\n", mtl.RangeError,
         ":3:24: training.batch_size = -8 is out of range"),
        ("tasks: {a: {kind: regression, outputs: 1}}\n"
         "model: {input: {shape: [4]}, trunk: [{kind: linaer}]}\n", mtl.NotFoundError,
         ":2:45: trunk: unknown layer kind 'linaer'"),
        ("tasks: {a: {kind: regression, outputs: 1}}\nmodel: {input: {shape: [4]}}\n"
         "training: {epochs: many}\n", mtl.FormatError, "training.epochs: expected an integer"),
    ]
    for i, (text, exc, msg) in enumerate(cases):
        p = tmp_path / f"bad{i}.yaml"
        p.write_text(text)
        with pytest.raises(exc, match=f"bad{i}.yaml{msg}" if msg.startswith(":") else msg):
            mtl.Config.load(p)
    with pytest.raises(mtl.MtlIOError, match="cannot open '.*none.yaml': No such file"):
        mtl.Config.load(tmp_path / "none.yaml")
    with pytest.raises(mtl.FormatError, match="^inline:2:1: YAML syntax error"):
        mtl.Config.parse("tasks: [\n", name="inline")
    with pytest.raises(mtl.InvalidArgumentError, match="expected a dict"):
        mtl.Config.from_dict([1])
    with pytest.raises(mtl.InvalidArgumentError, match="Out of range float values"):
        mtl.Config.from_dict({"tasks": {"a": {"kind": "regression", "weight": float("nan")}}})


def test_overrides(tmp_path):
    cfg = mtl.Config.parse(MINIMAL)
    cfg.set("training.epochs", 3).set("training.shuffle", True).set("optimizer.lr", 1e-3)
    cfg["model.l2_trunk"] = 0.5
    cfg.set("model.trunk.1", {"kind": "linear", "out": 5})       # one past the end appends
    cfg.set("model.trunk.0", "tanh")
    cfg.set("training.log_path", "#1.jsonl")                      # strings literally
    assert cfg.get("training.epochs") == 3 and cfg.get("training.shuffle") is True
    assert cfg.get("optimizer.lr") == 1e-3 and cfg.get("model.l2_trunk") == 0.5
    assert cfg.count("model.trunk") == 2 and cfg.get("model.trunk.1.out") == 5
    assert cfg.get("model.trunk.0.kind") == "tanh" and cfg.get("training.log_path") == "#1.jsonl"
    cfg.set("tasks.a.head", [{"kind": "linear", "out": 4}, "relu"])
    assert cfg.count("tasks.a.head") == 2
    before = cfg.dump()
    with pytest.raises(mtl.RangeError, match=r"--set 'training.epochs=-1', column 1: "
                                             r"training.epochs = -1 is out of range"):
        cfg.set("training.epochs", -1)
    with pytest.raises(mtl.InvalidArgumentError, match="unknown key 'epohcs' in training "
                                                       r"\(did you mean 'epochs'\?\)"):
        cfg.set("training.epohcs", 3)
    with pytest.raises(mtl.FormatError, match="expected an integer, got 'many'"):
        cfg.set("training.epochs", "many")
    with pytest.raises(mtl.InvalidArgumentError, match="use str, bool, int, float"):
        cfg.set("training.epochs", object())
    assert cfg.dump() == before                                 # nothing changed
    cfg.close()


def test_builders_and_training(run_dir):
    cfg = mtl.Config.load(run_dir / "run.yaml")
    model = cfg.build_model()
    assert model.input_shape == (8,) and model.task_names == ["cls", "val"]
    assert model.max_batch == 32 and model.head("cls").output_size == 2
    opt = cfg.build_optimizer(model)
    assert opt.kind == "adam" and opt.get("lr") == 0.01 and opt.model is model
    w = cfg.build_weighting()
    assert w.method == "dwa" and w.get("temperature") == 2.0
    tr = cfg.build_trainer(model, opt, w)
    assert tr.get("epochs") == 12 and tr.steps_per_epoch == 8       # 240 rows / 32
    assert tr.run() == "completed"
    ev = tr.eval_result
    assert set(k for k in ev if k.startswith("val.cls.")) == {
        "val.cls.loss", "val.cls.accuracy", "val.cls.f1_macro"}     # the file's metric list
    assert ev["val.cls.accuracy"] >= MIN_ACCURACY
    test = cfg.build_dataset("test")
    assert len(test) == 100 and test.tasks == ["cls", "val"] and not test.has_target("val")
    res = mtl.evaluate(model, test, prefix="test")
    assert res["test.cls.accuracy"] >= MIN_ACCURACY and "test.val.loss" not in res
    # the data is in use now: changes are refused
    with pytest.raises(mtl.StateError, match="the configuration's data is in use"):
        cfg.set("training.epochs", 3)
    with pytest.raises(mtl.InvalidArgumentError):
        cfg.build_dataset("holdout")
    with pytest.raises(mtl.StateError, match="an optimizer is needed"):
        cfg.build_trainer(model)
    # the datasets and the trainer keep the configuration alive
    cfg.close()
    tr.set(epochs=13)
    assert tr.run() == "completed" and tr.epoch == 13
    for h in (tr, test, w, opt, model):
        h.close()


def test_build_without_data(tmp_path):
    cfg = mtl.Config.parse(MINIMAL, name="inline")
    m = cfg.build_model()
    assert m.input_shape == (4,) and m.head("a").output_size == 3
    with pytest.raises(mtl.NotFoundError, match="inline: no training data"):
        cfg.build_dataset("train")
    with pytest.raises(mtl.NotFoundError, match="'data.train.input' is not set"):
        cfg.data_path("data.train.input")
    with pytest.raises(mtl.MtlError):
        cfg.encode_csv(tmp_path / "x.csv")
    m.close()
    # without model.input the shape comes from the data: the built model reports it
    np.save(tmp_path / "x.npy", np.zeros((10, 2, 3), np.float32))
    np.save(tmp_path / "y.npy", np.zeros(10, np.int64))
    c2 = mtl.Config.parse("data: {train: {input: x.npy, labels: {a: y.npy}}}\n"
                          "tasks: {a: {kind: classification, classes: 2}}\n"
                          "model: {trunk: [flatten]}\n", base_dir=tmp_path)
    m2 = c2.build_model()
    assert m2.input_shape == (2, 3) and m2.input_dtype == np.float32
    m2.close()


def test_csv_configuration(tmp_path):
    (tmp_path / "train.csv").write_text(
        "age,job,income\n39,tech,>50K\n50,sales,<=50K\n38,tech,<=50K\n53,sales,>50K\n"
        "28,sales,<=50K\n37,tech,>50K\n")
    (tmp_path / "new.csv").write_text("age,job\n45,tech\n22,farm\n")
    p = write(tmp_path, """
        data:
          train: {file: train.csv}
          features: [age, {column: job, encode: onehot}]
        tasks:
          income: {kind: binary, positive: ">50K"}
        model: {trunk: [{kind: linear, out: 8}, relu]}
        training: {batch_size: 4, epochs: 2}
        """)
    cfg = mtl.Config.load(p)
    enc = cfg.encode_csv(tmp_path / "new.csv")
    assert enc.shape == (2, 3) and enc.dtype == np.float32
    assert enc[1, 1:].tolist() == [0.0, 0.0]          # an unseen category: all zeros
    ds = cfg.build_dataset("train")
    assert ds.target("income")[:, 0].tolist() == [1, 0, 0, 1, 0, 1]
    assert cfg.data_path("data.train.file") == str(tmp_path / "train.csv")
    with pytest.raises(mtl.NotFoundError, match="age"):       # no feature column 'age'
        cfg.encode_csv(write(tmp_path, "x\n1\n", "other.csv"))
    with pytest.raises(mtl.MtlIOError):
        cfg.encode_csv(tmp_path / "missing.csv")
    ds.close()
    cfg.close()


# ---- MultiTaskModel.from_config ------------------------------------------------------------

def test_multitask_from_config_trains_and_saves(run_dir, tmp_path):
    with mtl.MultiTaskModel.from_config(run_dir / "run.yaml") as m:
        cfg = m.source_config
        assert isinstance(cfg, mtl.Config) and m.tasks == ["cls", "val"]
        assert m.optimizer.kind == "adam" and m.weighting.method == "dwa"
        assert m.config["input_shape"] == [8] and m.config["max_batch"] == 32
        tr = cfg.build_trainer(m)                          # the model's own optimizer
        assert tr.run() == "completed" and m.optimizer.step_count == 12 * 8
        assert tr.eval_result["val.cls.accuracy"] >= MIN_ACCURACY
        x = np.load(run_dir / "tx.npy")
        ref = m.predict(x)
        # a checkpoint (and pickle) keep the exact state; an .npz archive is refused
        m.save(tmp_path / "m.ckpt")
        with mtl.MultiTaskModel.load(tmp_path / "m.ckpt") as back:
            assert np.array_equal(back.predict(x)["cls"], ref["cls"])
        copy = pickle.loads(pickle.dumps(m))
        assert np.array_equal(copy.predict(x)["val"], ref["val"])
        assert copy.optimizer.step_count == m.optimizer.step_count
        with pytest.raises(mtl.UnsupportedError, match="save a libmtl checkpoint"):
            copy.save(tmp_path / "m.npz")
        copy.close()
        tr.close()


def test_from_config_forms(tmp_path):
    schema = {"model": {"input": {"shape": [4]}, "trunk": [{"kind": "linear", "out": 6}]},
              "tasks": {"a": {"kind": "regression", "outputs": 2}},
              "optimizer": {"kind": "sgd", "lr": 0.1, "momentum": 0.9}}
    with mtl.MultiTaskModel.from_config(schema) as m:          # a dict of the file's schema
        assert m.optimizer.kind == "sgd" and m.optimizer.get("momentum") == 0.9
        assert m.weighting.method == "ew" and m.output_sizes == {"a": 2}
        m.fit(np.zeros((8, 4), np.float32), {"a": np.zeros((8, 2))}, epochs=1, batch_size=8)
    cfg = mtl.Config.from_dict(schema)
    with mtl.MultiTaskModel.from_config(cfg) as m:
        assert m.source_config is cfg
    # the constructor's keys (what get_config returns) still build through the constructor
    ctor = {"input_shape": [4], "trunk": [["linear", {"out": 6}]],
            "heads": {"a": {"layers": [["linear", {"out": 2}]], "loss": "mse"}}}
    with mtl.MultiTaskModel.from_config(ctor) as m:
        assert m.source_config is None and m.get_config()["input_shape"] == [4]
    with pytest.raises(mtl.NotFoundError, match="missing required key 'tasks'"):
        mtl.MultiTaskModel.from_config({"model": {"input": {"shape": [4]}}})
    with pytest.raises(mtl.InvalidArgumentError, match="expected a path, an mtl.Config"):
        mtl.MultiTaskModel.from_config(42)
    bad = write(tmp_path, "tasks: {a: {kind: regression, outputs: 1}}\n"
                          "model: {input: {shape: [4]}}\noptimizer: {kind: adamm}\n")
    with pytest.raises(mtl.MtlError, match="adamm"):
        mtl.MultiTaskModel.from_config(str(bad))


def test_example_configurations_validate():
    # every configuration shipped in examples/configs loads (data is read only by builders)
    root = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "configs")
    names = sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files
                   if f.endswith(".yaml"))
    assert names
    for name in names:
        cfg = mtl.Config.load(name)
        assert cfg.tasks, name
        cfg.close()
