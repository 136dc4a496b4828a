"""Make the inputs of tests/it/import.rs with the real tools: MLflow models saved by the real
`mlflow` package (scikit-learn with a signature and an input example; ONNX through
mlflow.onnx), and a sharded Hugging Face checkpoint written by the real `safetensors` package
with config files as transformers writes them.

usage: python import_make.py mlflow-sklearn|mlflow-onnx|mlflow-run|hf OUT_DIR
"""
import json
import os
import sys


def iris():
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True, as_frame=True)
    return x, y, LogisticRegression(max_iter=500).fit(x, y)


def mlflow_sklearn(out):
    import mlflow.sklearn
    from mlflow.models import infer_signature

    x, y, clf = iris()
    sig = infer_signature(x, clf.predict(x))
    mlflow.sklearn.save_model(
        clf, out, signature=sig, input_example=x.head(3), serialization_format="cloudpickle"
    )


def mlflow_run(out):
    """A run logged to MLflow's file store (OUT/mlruns): a scikit-learn model logged, then its
    metrics (accuracy three times, f1 once); OUT/model is the logged model's folder as the
    store keeps it (mlruns/<experiment>/models/<model_id>: artifacts/MLmodel, metrics/, ...)."""
    import glob
    import shutil

    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # the file store is what this layout is
    import mlflow
    import mlflow.sklearn

    mlflow.set_tracking_uri("file://" + os.path.abspath(os.path.join(out, "mlruns")))
    x, y, clf = iris()
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(clf, name="model", serialization_format="cloudpickle")
        # metrics of the logged model (MLflow 3): a line per value in models/<id>/metrics/
        for step, acc in enumerate([0.5, 0.75, 0.9]):
            mlflow.log_metric("accuracy", acc, step=step, model_id=info.model_id)
        mlflow.log_metric("f1", 0.8, model_id=info.model_id)
    (model,) = glob.glob(os.path.join(out, "mlruns", "*", "models", "m-*"))
    shutil.copytree(model, os.path.join(out, "model"))


def mlflow_onnx(out):
    import mlflow.onnx
    import numpy as np
    from mlflow.models import infer_signature
    from skl2onnx import to_onnx

    x, y, clf = iris()
    xs = x.to_numpy(dtype=np.float32)
    onx = to_onnx(clf, xs[:1], options={id(clf): {"zipmap": False}}, target_opset=17)
    import onnxruntime as ort

    sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    label = sess.run(None, {sess.get_inputs()[0].name: xs})[0]
    sig = infer_signature(xs, label)
    mlflow.onnx.save_model(onx, out, signature=sig, input_example=xs[:3])


def hf(out):
    import numpy as np
    from safetensors.numpy import save_file

    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(0)
    shards = [
        {"model.embed_tokens.weight": rng.standard_normal((64, 16)).astype(np.float16)},
        {
            "model.layers.0.mlp.weight": rng.standard_normal((16, 32)).astype(np.float16),
            "lm_head.weight": rng.standard_normal((64, 16)).astype(np.float16),
        },
    ]
    index = {"metadata": {"total_size": 0}, "weight_map": {}}
    n = len(shards)
    for i, tensors in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        save_file(tensors, os.path.join(out, name), metadata={"format": "pt"})
        for k, v in tensors.items():
            index["weight_map"][k] = name
            index["metadata"]["total_size"] += v.nbytes
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2, sort_keys=True)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "torch_dtype": "float16",
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_attention_heads": 2,
        "num_hidden_layers": 1,
        "vocab_size": 64,
        "transformers_version": "4.46.0",
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump({"_from_model_config": True, "bos_token_id": 1, "eos_token_id": 2,
                   "transformers_version": "4.46.0"}, f, indent=2)
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"model_max_length": 2048, "tokenizer_class": "LlamaTokenizer",
                   "bos_token": "<s>", "eos_token": "</s>"}, f, indent=2)
    with open(os.path.join(out, "special_tokens_map.json"), "w") as f:
        json.dump({"bos_token": "<s>", "eos_token": "</s>"}, f, indent=2)
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(
            "---\nlicense: apache-2.0\nbase_model: meta-llama/Llama-3.2-1B\n"
            "datasets:\n- tatsu-lab/alpaca\n- HuggingFaceH4/ultrachat_200k\n"
            "pipeline_tag: text-generation\nlanguage:\n- en\ntags:\n- llama\n---\n\n"
            "# tiny-llama\n\nA tiny test model.\n"
        )


if __name__ == "__main__":
    what, out = sys.argv[1], sys.argv[2]
    {"mlflow-sklearn": mlflow_sklearn, "mlflow-onnx": mlflow_onnx, "mlflow-run": mlflow_run, "hf": hf}[what](out)
