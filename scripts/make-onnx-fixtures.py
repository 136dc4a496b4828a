#!/usr/bin/env python3
"""Make the ONNX fixtures of `mlart validate`'s tests (tests/fixtures/onnx/).

Usage: python scripts/make-onnx-fixtures.py [--out DIR]   (default DIR: tests/fixtures/onnx;
needs the packages of scripts/requirements-test.txt: numpy, onnx, onnxruntime, scikit-learn,
skl2onnx)

Every output is deterministic: fixed seeds, fixed graph names, no timestamps, protobuf
serialized deterministically, JSON with sorted keys. Running the script again gives the same
bytes: tests/it/validate.rs checks the committed fixtures against SHA256SUMS (which this script
writes too) and runs the script into a temp dir to compare.

Models (inputs -> outputs):
  multi_input.onnx   age float[N,1], visits int64[N,1], city string[N,1] -> label int64[N],
                     probabilities float[N,2]  (a small logistic model; ai.onnx.ml LabelEncoder)
  zipmap.onnx        input float[N,3] -> label int64[N], output_probability seq(map(int64, float))
                     (skl2onnx's default ZipMap output)
  dynamic.onnx       x float[batch,seq,4] -> y float[batch,4] (sum over seq), shape int64[3]
  int64_input.onnx   ids int64[N,5] -> emb float[N,3] (mean of an embedding table's rows;
                     ids outside 0..9 make the runtime fail)
  nan.onnx           x float[N,2] -> y float[N,2] = sqrt(-|x| - 1): always NaN
  external.onnx      x float[N,4] -> y float[N,2] = x @ w, w in external.onnx.data beside it
  invalid_graph.onnx x float[N,2] -> y = Add(x, ghost): `ghost` is defined nowhere
  truncated.onnx     the first 60% of zipmap.onnx
Schemas (mlart feature schema YAML): one per model (`<model>.yaml`, matching it), and
  mismatch.yaml      for multi_input.onnx: a retyped feature (visits: string) and a renamed
                     one (town for city)
  four_features.yaml for zipmap.onnx: 4 features where the model takes 3 columns
Samples: zipmap_samples.json and multi_input_samples.json (inputs + the expected outputs, as
  ONNX Runtime computes them), zipmap_samples_wrong.json (one expected label changed).
ONNX Model Zoo layout (a model folder with test_data_set_N/input_I.pb and output_I.pb, each a
  serialized TensorProto):
  reshape/model.onnx x float[N,6], shape int64[2] -> y float[rows,cols] = Reshape(x, shape)
                     (allowzero=1): no synthetic `shape` fits, only real sample data
  reshape/test_data_set_0, test_data_set_1: x and shape ([3, 4], then [4, 3]) as inputs and y
                     as ONNX Runtime computes it (checked against numpy) as output
"""

import hashlib
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.linear_model import LogisticRegression

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "onnx")
OPSET = 17
IR_VERSION = 8
written = []


def save_bytes(name, data):
    os.makedirs(os.path.dirname(os.path.join(OUT, name)), exist_ok=True)
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
    written.append(name)


def canonical(model):
    """The same bytes whatever PYTHONHASHSEED: skl2onnx lists opset imports in set order."""
    ops = sorted((o.domain, o.version) for o in model.opset_import)
    del model.opset_import[:]
    model.opset_import.extend(helper.make_opsetid(d, v) for d, v in ops)
    return model.SerializeToString(deterministic=True)


def save_model(name, model):
    save_bytes(name, canonical(model))


def save_text(name, text):
    save_bytes(name, text.encode("utf-8"))


def save_json(name, obj):
    save_text(name, json.dumps(obj, sort_keys=True, indent=2) + "\n")


def helper_model(nodes, inputs, outputs, initializers=(), opset=OPSET):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    m = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name="mlart-fixtures",
        producer_version="1",
    )
    m.ir_version = IR_VERSION
    return m


def run(model_bytes, feeds):
    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feeds)))


def to_json(v):
    """An output as JSON: arrays as nested lists, ZipMap's list of dicts with string keys."""
    if isinstance(v, list):
        return [{str(k): float(x) for k, x in sorted(d.items())} for d in v]
    if v.dtype.kind == "f":
        return [to_json_f(x) for x in v] if v.ndim else float(v)
    return v.tolist()


def to_json_f(x):
    return [to_json_f(y) for y in x] if isinstance(x, np.ndarray) else float(x)


def multi_input():
    age = helper.make_tensor_value_info("age", TensorProto.FLOAT, ["N", 1])
    visits = helper.make_tensor_value_info("visits", TensorProto.INT64, ["N", 1])
    city = helper.make_tensor_value_info("city", TensorProto.STRING, ["N", 1])
    label = helper.make_tensor_value_info("label", TensorProto.INT64, ["N"])
    probs = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2])
    # A hand-made logistic model: standardised age and visits, the city's code, then softmax.
    w = helper.make_tensor("w", TensorProto.FLOAT, [3, 2], [0.08, -0.08, 0.02, -0.02, 0.5, -0.5])
    b = helper.make_tensor("b", TensorProto.FLOAT, [2], [-4.0, 4.0])
    onx = helper_model(
        [
            helper.make_node("Cast", ["visits"], ["visits_f"], to=TensorProto.FLOAT),
            helper.make_node(
                "LabelEncoder",
                ["city"],
                ["city_code"],
                domain="ai.onnx.ml",
                keys_strings=["paris", "lyon", "nice"],
                values_int64s=[0, 1, 2],
                default_int64=-1,
            ),
            helper.make_node("Cast", ["city_code"], ["city_f"], to=TensorProto.FLOAT),
            helper.make_node("Concat", ["age", "visits_f", "city_f"], ["features"], axis=1),
            helper.make_node("MatMul", ["features", "w"], ["logits0"]),
            helper.make_node("Add", ["logits0", "b"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
            helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
        ],
        [age, visits, city],
        [label, probs],
        [w, b],
    )
    onx.opset_import.append(helper.make_opsetid("ai.onnx.ml", 2))
    onnx.checker.check_model(onx)
    save_model("multi_input.onnx", onx)
    save_text(
        "multi_input.yaml",
        """features:
  - {name: age, dtype: float32, range: {min: 18, max: 90}}
  - {name: visits, dtype: int64, range: {min: 0, max: 20}}
  - {name: city, dtype: string, categories: [paris, lyon, nice]}
outputs:
  - {name: label, dtype: int64, categories: [0, 1]}
  - {name: probabilities, dtype: float32, shape: [2]}
""",
    )
    save_text(
        "mismatch.yaml",
        """features:
  - {name: age, dtype: float32, range: {min: 18, max: 90}}
  - {name: visits, dtype: string}
  - {name: town, dtype: string, categories: [paris, lyon, nice]}
""",
    )
    feeds = {
        "age": np.array([[25.0], [61.5], [40.0]], dtype=np.float32),
        "visits": np.array([[0], [7], [20]], dtype=np.int64),
        "city": np.array([["paris"], ["nice"], ["lyon"]]),
    }
    out = run(onx.SerializeToString(), feeds)
    save_json(
        "multi_input_samples.json",
        {
            "inputs": {k: v.tolist() for k, v in feeds.items()},
            "expected": {k: to_json(v) for k, v in out.items()},
        },
    )


def zipmap():
    rng = np.random.RandomState(1)
    X = rng.normal(size=(150, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5).astype(np.int64)
    clf = LogisticRegression(max_iter=500).fit(X, y)
    onx = convert_sklearn(
        clf,
        initial_types=[("input", FloatTensorType([None, 3]))],
        target_opset={"": OPSET, "ai.onnx.ml": 1},
    )
    onx.graph.name = "zipmap"  # skl2onnx names the graph with a random uuid
    data = canonical(onx)
    save_model("zipmap.onnx", onx)
    save_bytes("truncated.onnx", data[: len(data) * 6 // 10])
    save_text(
        "zipmap.yaml",
        """features:
  - {name: f0, dtype: float32, range: {min: -3, max: 3}}
  - {name: f1, dtype: float32, range: {min: -3, max: 3}}
  - {name: f2, dtype: float32, range: {min: -3, max: 3}}
outputs:
  - {name: output_label, dtype: int64, categories: [0, 1, 2]}
  - {name: output_probability, dtype: float32, shape: [3]}
""",
    )
    save_text(
        "four_features.yaml",
        """features:
  - {name: f0, dtype: float32}
  - {name: f1, dtype: float32}
  - {name: f2, dtype: float32}
  - {name: f3, dtype: float32}
""",
    )
    feeds = {"input": np.array([[1.0, 1.0, 0.0], [-1.0, 0.0, 2.0], [0.5, 2.0, -1.0]], dtype=np.float32)}
    out = run(data, feeds)
    samples = {
        "inputs": {k: to_json_f(v) for k, v in feeds.items()},
        "expected": {k: to_json(v) for k, v in out.items()},
    }
    save_json("zipmap_samples.json", samples)
    labels = samples["expected"]["output_label"]
    labels[0] = (labels[0] + 1) % 3
    save_json("zipmap_samples_wrong.json", samples)


def dynamic():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    s = helper.make_tensor_value_info("shape", TensorProto.INT64, [3])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    m = helper_model(
        [
            helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0),
            helper.make_node("Shape", ["x"], ["shape"]),
        ],
        [x],
        [y, s],
        [axes],
    )
    onnx.checker.check_model(m)
    save_model("dynamic.onnx", m)
    save_text(
        "dynamic.yaml",
        """features:
  - {name: x, dtype: float32, shape: [-1, 4], range: {min: -1, max: 1}}
outputs:
  - {name: y, dtype: float32, shape: [4]}
""",
    )


def int64_input():
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 5])
    emb = helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["N", 3])
    table = helper.make_tensor(
        "table", TensorProto.FLOAT, [10, 3], [float(i) / 10 for i in range(30)]
    )
    m = helper_model(
        [
            helper.make_node("Gather", ["table", "ids"], ["rows"], axis=0),
            helper.make_node("ReduceMean", ["rows", "axes"], ["emb"], keepdims=0),
        ],
        [ids],
        [emb],
        [table, helper.make_tensor("axes", TensorProto.INT64, [1], [1])],
        opset=18,
    )
    onnx.checker.check_model(m)
    save_model("int64_input.onnx", m)
    save_text(
        "int64_input.yaml",
        """features:
  - {name: ids, dtype: int64, shape: [5], range: {min: 0, max: 9}}
outputs:
  - {name: emb, dtype: float32, shape: [3]}
""",
    )


def nan():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])
    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    m = helper_model(
        [
            helper.make_node("Abs", ["x"], ["a"]),
            helper.make_node("Neg", ["a"], ["n"]),
            helper.make_node("Sub", ["n", "one"], ["m"]),
            helper.make_node("Sqrt", ["m"], ["y"]),
        ],
        [x],
        [y],
        [one],
    )
    onnx.checker.check_model(m)
    save_model("nan.onnx", m)
    save_text(
        "nan.yaml",
        """features:
  - {name: a, dtype: float32, range: {min: 0, max: 1}}
  - {name: b, dtype: float32, range: {min: 0, max: 1}}
""",
    )


def external():
    """A model whose weights are in an external data file beside it."""
    from onnx import external_data_helper

    if os.path.exists(os.path.join(OUT, "external.onnx.data")):
        os.remove(os.path.join(OUT, "external.onnx.data"))  # written by appending
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])
    w = numpy_helper.from_array(
        np.array([[0.5, -1.0], [0.25, 2.0], [1.0, 0.0], [-0.5, 1.5]], dtype=np.float32), "w"
    )
    m = helper_model([helper.make_node("MatMul", ["x", "w"], ["y"])], [x], [y], [w])
    onnx.checker.check_model(m)
    external_data_helper.convert_model_to_external_data(
        m, all_tensors_to_one_file=True, location="external.onnx.data", size_threshold=0
    )
    # write_external_data_tensors writes the data file and points the model at it
    m = external_data_helper.write_external_data_tensors(m, OUT)
    written.append("external.onnx.data")
    save_model("external.onnx", m)


def invalid_graph():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])
    m = helper_model([helper.make_node("Add", ["x", "ghost"], ["y"])], [x], [y])
    save_model("invalid_graph.onnx", m)


def reshape():
    """A model only real data can run: its `shape` input must hold a valid shape."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])
    shape = helper.make_tensor_value_info("shape", TensorProto.INT64, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", "cols"])
    m = helper_model([helper.make_node("Reshape", ["x", "shape"], ["y"], allowzero=1)], [x, shape], [y])
    onnx.checker.check_model(m)
    save_model("reshape/model.onnx", m)
    data = m.SerializeToString()
    for i, (n, to) in enumerate([(2, [3, 4]), (2, [4, 3])]):
        feeds = {
            "x": (np.arange(n * 6, dtype=np.float32) * 0.5 - 1.25 + i).reshape(n, 6),
            "shape": np.array(to, dtype=np.int64),
        }
        out = run(data, feeds)
        assert np.array_equal(out["y"], feeds["x"].reshape(to))
        d = f"reshape/test_data_set_{i}/"
        for j, (k, v) in enumerate(feeds.items()):
            save_bytes(f"{d}input_{j}.pb", numpy_helper.from_array(v, k).SerializeToString())
        save_bytes(f"{d}output_0.pb", numpy_helper.from_array(out["y"], "y").SerializeToString())
        # what a reader of the files gets back is what ONNX Runtime computed
        t = onnx.load_tensor(os.path.join(OUT, f"{d}output_0.pb"))
        assert np.array_equal(numpy_helper.to_array(t), out["y"])


def main():
    global OUT
    args = sys.argv[1:]
    if args[:1] == ["--out"] and len(args) == 2:
        OUT = args[1]
    elif args:
        sys.exit("usage: make-onnx-fixtures.py [--out DIR]")
    os.makedirs(OUT, exist_ok=True)
    multi_input()
    zipmap()
    dynamic()
    int64_input()
    nan()
    external()
    invalid_graph()
    reshape()
    lines = []
    for name in sorted(written):
        with open(os.path.join(OUT, name), "rb") as f:
            lines.append(f"{hashlib.sha256(f.read()).hexdigest()}  {name}\n")
    save_text("SHA256SUMS", "".join(lines))
    print(f"wrote {len(written)} files to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
