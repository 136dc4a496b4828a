#!/usr/bin/env python3
"""Train the iris ONNX classifier and regenerate every artifact of this example.

Usage: python train.py   (no arguments; needs the packages of requirements.txt)

Reads config/params.yaml and writes, relative to this file:
  model/iris.onnx, schema/features.yaml, eval/metrics.json,
  eval/confusion_matrix.csv, samples/samples.json, logs/train.log,
  docs/model_card.md, requirements.txt

Every output is deterministic: fixed seeds, fixed split, no timestamps.
"""

import json
import os
from importlib import metadata

import numpy as np
import onnx
import onnxruntime as ort
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    log_loss,
)
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

HERE = os.path.dirname(os.path.abspath(__file__))
FEATURES = [
    ("sepal_length", "Sepal length in cm"),
    ("sepal_width", "Sepal width in cm"),
    ("petal_length", "Petal length in cm"),
    ("petal_width", "Petal width in cm"),
]
CLASS_NAMES = ["setosa", "versicolor", "virginica"]
PINNED = ["numpy", "onnx", "onnxruntime", "scikit-learn", "skl2onnx"]
N_SAMPLES = 5


def path(*parts):
    p = os.path.join(HERE, *parts)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    return p


def write_text(rel, text):
    if not text.endswith("\n"):
        text += "\n"
    with open(path(*rel.split("/")), "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def write_json(rel, obj):
    write_text(rel, json.dumps(obj, sort_keys=True, indent=2))


def load_params():
    """Parse the flat `key: value` params.yaml (values are JSON scalars or bare strings)."""
    params = {}
    with open(os.path.join(HERE, "config", "params.yaml"), encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            key, value = (s.strip() for s in line.split(":", 1))
            try:
                params[key] = json.loads(value)
            except ValueError:
                params[key] = value
    return params


def rounded(obj, digits=6):
    if isinstance(obj, dict):
        return {str(k): rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [rounded(v, digits) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return round(float(obj), digits)
    return obj


def fmt(x):
    """Short, stable text form of a float (6 digits max)."""
    return repr(round(float(x), 6))


def main():
    params = load_params()

    # --- data -----------------------------------------------------------------
    iris = load_iris()
    X = iris.data.astype(np.float64)
    y = iris.target.astype(np.int64)
    X_train, X_test, y_train, y_test = train_test_split(
        X,
        y,
        test_size=params["test_size"],
        random_state=params["split_random_state"],
        stratify=y if params["stratify"] else None,
    )

    # --- model ----------------------------------------------------------------
    clf = LogisticRegression(
        C=params["C"],
        max_iter=params["max_iter"],
        solver=params["solver"],
        random_state=params["random_state"],
    )
    pipe = Pipeline([("scaler", StandardScaler()), ("clf", clf)])
    pipe.fit(X_train.astype(np.float32), y_train)

    # --- export to ONNX (ZipMap disabled -> plain tensors) --------------------
    onx = convert_sklearn(
        pipe,
        name="iris_logreg",
        initial_types=[("input", FloatTensorType([None, 4]))],
        options={id(clf): {"zipmap": False}},
        target_opset={"": params["target_opset_onnx"], "ai.onnx.ml": params["target_opset_ai_onnx_ml"]},
    )
    onx.doc_string = "Iris classifier (StandardScaler + LogisticRegression), mlart example"
    # skl2onnx may list the same domain twice in opset_import; keep one entry per domain
    # (the highest version), in a stable order.
    opsets = {}
    for op in onx.opset_import:
        opsets[op.domain] = max(op.version, opsets.get(op.domain, 0))
    del onx.opset_import[:]
    for domain in sorted(opsets):
        onx.opset_import.append(onnx.helper.make_opsetid(domain, opsets[domain]))
    opset_text = ", ".join(f"{d or 'ai.onnx'}={v}" for d, v in sorted(opsets.items()))
    onnx.checker.check_model(onx)
    model_path = path("model", "iris.onnx")
    with open(model_path, "wb") as f:
        f.write(onx.SerializeToString(deterministic=True))

    # --- evaluate the exported model with onnxruntime -------------------------
    sess = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    in_names = [i.name for i in sess.get_inputs()]
    out_names = [o.name for o in sess.get_outputs()]
    assert in_names == ["input"], in_names
    assert out_names == ["label", "probabilities"], out_names

    X_test32 = X_test.astype(np.float32)
    onnx_label, onnx_proba = sess.run(None, {"input": X_test32})
    skl_label = pipe.predict(X_test32)
    skl_proba = pipe.predict_proba(X_test32)
    assert np.array_equal(onnx_label, skl_label), "ONNX labels differ from sklearn"
    assert np.allclose(onnx_proba, skl_proba, atol=1e-5), "ONNX probabilities differ from sklearn"

    pred = onnx_label.astype(np.int64)
    report = classification_report(y_test, pred, output_dict=True, zero_division=0)
    report["accuracy"] = accuracy_score(y_test, pred)
    # float32 rows sum to 1 only up to rounding; renormalise in float64 for log_loss
    proba64 = onnx_proba.astype(np.float64)
    proba64 /= proba64.sum(axis=1, keepdims=True)
    report["log_loss"] = log_loss(y_test, proba64, labels=[0, 1, 2])
    report["f1_macro"] = f1_score(y_test, pred, average="macro")
    metrics = rounded(report)
    write_json("eval/metrics.json", metrics)

    cm = confusion_matrix(y_test, pred, labels=[0, 1, 2])
    rows = ["true_class," + ",".join(CLASS_NAMES)]
    for name, row in zip(CLASS_NAMES, cm):
        rows.append(name + "," + ",".join(str(int(v)) for v in row))
    write_text("eval/confusion_matrix.csv", "\n".join(rows))

    # --- samples --------------------------------------------------------------
    sample_x = [[round(float(v), 6) for v in row] for row in X_test[:N_SAMPLES]]
    sample_label, _ = sess.run(None, {"input": np.array(sample_x, dtype=np.float32)})
    write_json(
        "samples/samples.json",
        {"inputs": {"input": sample_x}, "expected": {"label": [int(v) for v in sample_label]}},
    )

    # --- feature schema -------------------------------------------------------
    lines = ["# mlart feature schema: inputs in model order", "features:"]
    for j, (name, desc) in enumerate(FEATURES):
        lines += [
            f"  - name: {name}",
            "    dtype: float32",
            f"    description: {desc}",
            "    nullable: false",
            f"    range: {{min: {fmt(X_train[:, j].min())}, max: {fmt(X_train[:, j].max())}}}",
        ]
    lines += [
        "outputs:",
        f"  - name: {out_names[0]}",
        "    dtype: int64",
        "    categories: [0, 1, 2]",
        "    description: predicted class (0 setosa, 1 versicolor, 2 virginica)",
        f"  - name: {out_names[1]}",
        "    dtype: float32",
        "    shape: [3]",
        "    description: class probabilities",
    ]
    write_text("schema/features.yaml", "\n".join(lines))

    # --- requirements ---------------------------------------------------------
    versions = {pkg: metadata.version(pkg) for pkg in PINNED}
    write_text("requirements.txt", "\n".join(f"{p}=={v}" for p, v in versions.items()))

    # --- log ------------------------------------------------------------------
    log = ["iris training run", "params:"]
    log += [f"  {k} = {params[k]}" for k in sorted(params)]
    log += [
        f"data: {len(X)} rows, {X.shape[1]} features, {len(CLASS_NAMES)} classes",
        f"split: train={len(X_train)} test={len(X_test)}",
        f"onnx: inputs={in_names} outputs={out_names} opsets: {opset_text}",
        f"check: onnxruntime labels == sklearn labels on {len(X_test)} test rows",
        f"metrics: accuracy={fmt(metrics['accuracy'])} f1_macro={fmt(metrics['f1_macro'])}"
        f" log_loss={fmt(metrics['log_loss'])}",
        "confusion_matrix (rows=true, cols=pred): " + json.dumps(cm.tolist()),
        "versions: " + " ".join(f"{p}=={v}" for p, v in versions.items()),
    ]
    write_text("logs/train.log", "\n".join(log))

    # --- model card -----------------------------------------------------------
    table = ["| Class | Precision | Recall | F1 | Support |", "|---|---|---|---|---|"]
    for i, name in enumerate(CLASS_NAMES):
        r = metrics[str(i)]
        table.append(
            f"| {i} {name} | {r['precision']:.4f} | {r['recall']:.4f} | {r['f1-score']:.4f} | {int(r['support'])} |"
        )
    r = metrics["macro avg"]
    table.append(
        f"| macro avg | {r['precision']:.4f} | {r['recall']:.4f} | {r['f1-score']:.4f} | {int(r['support'])} |"
    )
    card = f"""# Model card: iris-logreg

## Model
- Type: scikit-learn pipeline `StandardScaler` + `LogisticRegression`
  (C={params['C']}, solver={params['solver']}, max_iter={params['max_iter']}), exported with skl2onnx.
- File: `model/iris.onnx` (opsets {opset_text}, ZipMap disabled).
- Input: `input`, float32 `[N, 4]` (sepal_length, sepal_width, petal_length, petal_width in cm);
  see `schema/features.yaml`.
- Outputs: `label` (int64 `[N]`, 0 setosa, 1 versicolor, 2 virginica) and
  `probabilities` (float32 `[N, 3]`).

## Intended use
A small, reproducible demonstration model for packaging ML artifacts with mlart
and for testing ONNX serving. Not intended for any real botanical or scientific decision.

## Data
The UCI Iris dataset as shipped with scikit-learn ({len(X)} samples, 3 balanced classes).
Stratified split with random_state={params['split_random_state']}: {len(X_train)} training rows,
{len(X_test)} test rows (test_size={params['test_size']}).

## Metrics (test set, computed with onnxruntime on the exported model)
- Accuracy: {metrics['accuracy']:.4f}
- Macro F1: {metrics['f1_macro']:.4f}
- Log loss: {metrics['log_loss']:.4f}

{chr(10).join(table)}

Full report: `eval/metrics.json`; confusion matrix: `eval/confusion_matrix.csv`.

## Limitations
- Trained on only {len(X_train)} examples from one historical collection of three iris species;
  any other species or measurement protocol is out of distribution.
- The test set has only {len(X_test)} rows, so the metrics have wide confidence intervals.
- Inputs outside the training ranges in `schema/features.yaml` are not validated by the model itself.

## Reproduce
`python train.py` with the packages pinned in `requirements.txt`.

## License
Apache-2.0
"""
    write_text("docs/model_card.md", card)

    print(f"accuracy={metrics['accuracy']} f1_macro={metrics['f1_macro']} log_loss={metrics['log_loss']}")


if __name__ == "__main__":
    main()
