#!/usr/bin/env python3
"""scripts/bench serve [--mlart PATH] [--seconds 5] [--concurrency 1,16] [--rows 1]:
requests/s and latency p50/p99 of `mlart serve` on the iris bundle, by a closed-loop load
generator (one keep-alive HTTP/1.1 connection per client thread, OIP JSON requests), and the
per-request overhead over a bare in-process onnxruntime loop on the same model.
Needs the test venv (onnxruntime). Not a timed test: numbers for docs/serving.md."""
import argparse, glob, http.client, json, os, subprocess, sys, tempfile, threading, time

ap = argparse.ArgumentParser()
ap.add_argument("--mlart", default="target/release/mlart")
ap.add_argument("--seconds", type=float, default=5.0)
ap.add_argument("--concurrency", default="1,16")
ap.add_argument("--rows", type=int, default=1)
ap.add_argument("--serve-args", default="", help="extra arguments for mlart serve")
a = ap.parse_args()

import numpy as np
import onnxruntime as ort

lib = glob.glob(os.path.join(os.path.dirname(ort.__file__), "capi", "libonnxruntime.so.1.*"))[0]
env = dict(os.environ, ORT_DYLIB_PATH=lib)
work = tempfile.mkdtemp(prefix="mlart-bench-serve-")
layout = os.path.join(work, "iris.oci")
subprocess.run([a.mlart, "--json", "bundle", "-f", "examples/iris/mlart.yaml", "-o", layout],
               check=True, stdout=subprocess.DEVNULL, env=env)
srv = subprocess.Popen([a.mlart, "--json", "serve", layout, "--port", "0"] + a.serve_args.split(),
                       stdout=subprocess.PIPE, env=env)
port = json.loads(srv.stdout.readline())["port"]
x = np.random.default_rng(0).uniform(1, 7, size=(a.rows, 4)).astype(np.float32)
body = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape),
                               "data": x.ravel().tolist()}]}).encode()

def client(stop, lat):
    c = http.client.HTTPConnection("127.0.0.1", port)
    while not stop.is_set():
        t = time.perf_counter()
        c.request("POST", "/v2/models/iris/infer", body, {"Content-Type": "application/json"})
        r = c.getresponse(); r.read()
        assert r.status == 200
        lat.append(time.perf_counter() - t)

rows = []
try:
    for conc in [int(c) for c in a.concurrency.split(",")]:
        stop, lats = threading.Event(), [[] for _ in range(conc)]
        ts = [threading.Thread(target=client, args=(stop, lats[i])) for i in range(conc)]
        t0 = time.perf_counter()
        for t in ts: t.start()
        time.sleep(a.seconds); stop.set()
        for t in ts: t.join()
        el = time.perf_counter() - t0
        al = sorted(l for ls in lats for l in ls)
        rows.append(("mlart serve", conc, len(al) / el, al[len(al) // 2] * 1e3, al[int(len(al) * 0.99)] * 1e3))
finally:
    srv.terminate(); srv.wait()
sess = ort.InferenceSession("examples/iris/model/iris.onnx", providers=["CPUExecutionProvider"])
n, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < a.seconds / 2:
    sess.run(None, {"input": x}); n += 1
bare = (time.perf_counter() - t0) / n
print(f"| server | concurrency | requests/s | p50 ms | p99 ms |")
print(f"|---|---|---|---|---|")
for s, c, rps, p50, p99 in rows:
    print(f"| {s} | {c} | {rps:.0f} | {p50:.2f} | {p99:.2f} |")
print(f"\nbare onnxruntime (Python, in process): {bare*1e3:.3f} ms per run; "
      f"per-request overhead at concurrency 1: {rows[0][3] - bare*1e3:.2f} ms (p50, client included)")
print(f"machine: {os.cpu_count()} CPUs, {open('/proc/cpuinfo').read().split('model name')[1].split(':')[1].splitlines()[0].strip() if os.path.exists('/proc/cpuinfo') else '?'}")
