#!/usr/bin/env python3
"""scripts/bench serve [--mlart PATH] [--kserve-python PATH] [--seconds 5] [--concurrency 1,16]
[--models iris,mlp] [--kserve-workers 1]

`mlart serve` against a KServe Python model server (`kserve` from PyPI: a small custom
`kserve.Model` running onnxruntime on the same ONNX file), on the same machine in the same run:
requests/s, p50 and p99 of OIP REST inference (one JSON row per request), at each concurrency,
on the iris bundle and on a ~10 MB MLP made here with onnx/numpy. The load generator is
scripts/bench-loadgen.rs (std-only Rust, built with rustc -O): closed loop, one keep-alive
connection per client, the first second not counted. Also a bare in-process onnxruntime loop
on the same input (Python, one intra-op thread), for the per-request overhead of each server.

Runs under the test venv's Python (onnx, onnxruntime, numpy); KServe runs under
--kserve-python (default $KSERVE_PYTHON, else .tools/kserve-venv/bin/python, which
scripts/bench serve makes: kserve==0.21.0, onnxruntime==1.31.1). Not a timed test: numbers for
docs/serving.md."""
import argparse, glob, json, os, platform, shutil, subprocess, sys, tempfile, time, urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--mlart", default="target/release/mlart")
ap.add_argument("--kserve-python", default=os.environ.get("KSERVE_PYTHON", ".tools/kserve-venv/bin/python"))
ap.add_argument("--seconds", type=float, default=5.0)
ap.add_argument("--concurrency", default="1,16")
ap.add_argument("--models", default="iris,mlp")
ap.add_argument("--kserve-workers", type=int, default=1, help="uvicorn workers of the KServe server")
ap.add_argument("--serve-args", default="", help="extra arguments for mlart serve")
a = ap.parse_args()

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
lib = glob.glob(os.path.join(os.path.dirname(ort.__file__), "capi", "libonnxruntime.so.1.*"))[0]
env = dict(os.environ, ORT_DYLIB_PATH=lib)
work = tempfile.mkdtemp(prefix="mlart-bench-serve-")
procs = []

# The load generator.
loadgen = os.path.join(work, "loadgen")
subprocess.run(["rustc", "-O", "--edition", "2021", os.path.join(repo, "scripts/bench-loadgen.rs"),
                "-o", loadgen], check=True)


def mlp_project():
    """A ~10 MB MLP (512 -> 1536 -> 1024 -> 256 -> 10, ReLU, FP32) as an mlart project."""
    d = os.path.join(work, "mlp")
    os.makedirs(os.path.join(d, "model"))
    rng = np.random.default_rng(0)
    dims = [512, 1536, 1024, 256, 10]
    inits, nodes, x = [], [], "input"
    for i, (n_in, n_out) in enumerate(zip(dims, dims[1:])):
        w = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32)
        b = np.zeros(n_out, dtype=np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        y = "output" if i == len(dims) - 2 else f"h{i}"
        g = y if y == "output" else f"g{i}"
        nodes.append(helper.make_node("Gemm", [x, f"w{i}", f"b{i}"], [g]))
        if y != "output":
            nodes.append(helper.make_node("Relu", [g], [y]))
        x = y
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 512])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 10])], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, os.path.join(d, "model/mlp.onnx"))
    with open(os.path.join(d, "mlart.yaml"), "w") as f:
        f.write("name: mlp\nversion: 1.0.0\nmodel:\n  - path: model/mlp.onnx\n    framework: numpy\n")
    return d, os.path.join(d, "model/mlp.onnx"), np.ones((1, 512), dtype=np.float32) * 0.1


MODELS = {
    "iris": (os.path.join(repo, "examples/iris"), os.path.join(repo, "examples/iris/model/iris.onnx"),
             np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)),
}

KSERVE_MODEL = r'''
import sys, uuid
import numpy as np
import onnxruntime as ort
from kserve import Model, ModelServer, InferRequest, InferResponse, InferOutput

OIP = {"tensor(float)": "FP32", "tensor(int64)": "INT64", "tensor(double)": "FP64", "tensor(int32)": "INT32"}

class OnnxModel(Model):
    def __init__(self, name, path):
        super().__init__(name)
        self.path = path
        self.sess = None
        self.load()

    def load(self):
        # The session opens in the serving process: with --kserve-workers > 1 KServe pickles
        # the model into each worker, and a session cannot be pickled.
        self.ready = True
        return True

    def open(self):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        self.sess = ort.InferenceSession(self.path, so, providers=["CPUExecutionProvider"])
        self.outputs = [(o.name, OIP[o.type]) for o in self.sess.get_outputs()]

    def predict(self, payload: InferRequest, headers=None) -> InferResponse:
        if self.sess is None:
            self.open()
        feed = {i.name: i.as_numpy() for i in payload.inputs}
        res = self.sess.run(None, feed)
        outs = []
        for (name, dt), v in zip(self.outputs, res):
            o = InferOutput(name=name, shape=list(v.shape), datatype=dt)
            o.set_data_from_numpy(v, binary_data=False)
            outs.append(o)
        return InferResponse(model_name=self.name, infer_outputs=outs, response_id=payload.id or str(uuid.uuid4()))

if __name__ == "__main__":
    name, path, port, grpc_port, workers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    ModelServer(http_port=port, grpc_port=grpc_port, workers=workers, enable_grpc=False,
                enable_latency_logging=False).start([OnnxModel(name, path)])
'''


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_ready(port, name, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/{name}/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.3)
    raise SystemExit(f"the server on port {port} did not get ready for {name}")


def load(port, name, body_file, conc):
    out = subprocess.run([loadgen, f"127.0.0.1:{port}", f"/v2/models/{name}/infer", body_file,
                          str(conc), str(a.seconds), "1"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def stop(p):
    p.terminate()
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


rows, bare = [], {}
kserve_py = os.path.join(work, "kserve_model.py")
with open(kserve_py, "w") as f:
    f.write(KSERVE_MODEL)
have_kserve = os.path.exists(a.kserve_python)
if not have_kserve:
    print(f"scripts/bench serve: no KServe Python at {a.kserve_python}: mlart serve only", file=sys.stderr)
try:
    for name in a.models.split(","):
        if name == "mlp":
            MODELS["mlp"] = mlp_project()
        project, model_file, x = MODELS[name]
        body = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape),
                                       "data": x.ravel().tolist()}]}).encode()
        body_file = os.path.join(work, f"{name}.json")
        with open(body_file, "wb") as f:
            f.write(body)
        # mlart serve on the bundle.
        layout = os.path.join(work, f"{name}.oci")
        subprocess.run([a.mlart, "--json", "bundle", "-f", os.path.join(project, "mlart.yaml"), "-o", layout],
                       check=True, stdout=subprocess.DEVNULL, env=env)
        srv = subprocess.Popen([a.mlart, "--json", "serve", layout, "--port", "0"] + a.serve_args.split(),
                               stdout=subprocess.PIPE, env=env)
        procs.append(srv)
        port = json.loads(srv.stdout.readline())["port"]
        wait_ready(port, name)
        for conc in [int(c) for c in a.concurrency.split(",")]:
            rows.append((name, "mlart serve", conc, load(port, name, body_file, conc)))
        stop(srv)
        # KServe on the same ONNX file.
        if have_kserve:
            port = free_port()
            ks = subprocess.Popen([a.kserve_python, kserve_py, name, model_file, str(port), str(free_port()),
                                   str(a.kserve_workers)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(ks)
            wait_ready(port, name)
            for conc in [int(c) for c in a.concurrency.split(",")]:
                rows.append((name, f"KServe {a.kserve_workers} worker(s)", conc, load(port, name, body_file, conc)))
            stop(ks)
        # The bare loop: one session, one intra-op thread, the same input.
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(model_file, so, providers=["CPUExecutionProvider"])
        for _ in range(50):
            sess.run(None, {"input": x})
        # The median run (the machine is shared: a mean would carry other processes' bursts).
        runs, t0 = [], time.perf_counter()
        while time.perf_counter() - t0 < 2.0:
            t = time.perf_counter()
            sess.run(None, {"input": x})
            runs.append(time.perf_counter() - t)
        bare[name] = sorted(runs)[len(runs) // 2] * 1e3
finally:
    for p in procs:
        if p.poll() is None:
            stop(p)
    # (the models, bundles and load generator it built: nothing is left in the temp folder)
    shutil.rmtree(work, ignore_errors=True)

cpu = "?"
if os.path.exists("/proc/cpuinfo"):
    cpu = open("/proc/cpuinfo").read().split("model name")[1].split(":")[1].splitlines()[0].strip()
print(f"machine: {os.cpu_count()} CPUs ({cpu}), {platform.platform()}, {time.strftime('%Y-%m-%d')}; "
      f"load generator, servers and runtime share them\n")
print("| model | server | concurrency | requests/s | p50 ms | p99 ms | overhead p50 ms |")
print("|---|---|---|---|---|---|---|")
for name, s, c, r in rows:
    err = f" ({r['errors']} errors)" if r["errors"] else ""
    print(f"| {name} | {s} | {c} | {r['rps']:.0f}{err} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
          f"{r['p50_ms'] - bare[name]:.2f} |")
print()
for name in bare:
    print(f"bare onnxruntime ({name}, Python, in process, 1 thread): {bare[name]:.3f} ms per run (median)")
for name in bare:
    for c in [int(c) for c in a.concurrency.split(",")]:
        m = [r for n, s, cc, r in rows if n == name and cc == c and s == "mlart serve"]
        k = [r for n, s, cc, r in rows if n == name and cc == c and s.startswith("KServe")]
        if m and k and k[0]["rps"] > 0 and k[0]["p99_ms"] > 0:
            print(f"{name} at concurrency {c}: mlart/KServe throughput {m[0]['rps'] / k[0]['rps']:.1f}x, "
                  f"p99 {m[0]['p99_ms'] / k[0]['p99_ms']:.2f}x")
