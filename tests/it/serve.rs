//! `mlart serve` with real clients: tritonclient.http (PyPI) against the served iris bundle
//! gives what onnxruntime in Python gives; bad and hostile requests get 4xx with a message
//! and the server keeps serving; concurrent requests joined into batches each get their own
//! rows; SIGTERM during a request still answers it; `--key` refuses what does not verify.

use crate::support::fixtures::bundle_iris;
use crate::support::registry::{Env, Registry};
use crate::support::*;
use crate::validate::ort_lib;
use serde_json::{json, Value};
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `mlart --json serve … --port 0`: its startup line and port.
pub(crate) struct Server {
    child: Child,
    pub(crate) started: Value,
    pub(crate) port: u16,
    /// The rest of stdout, after the startup line.
    out: BufReader<std::process::ChildStdout>,
}

impl Server {
    /// Start `c` (an mlart command with the serve arguments); None when it exits first (its
    /// exit code and stderr in the Err).
    pub(crate) fn start(mut c: Command) -> Result<Server, (i32, String)> {
        let mut child = c
            .arg("--port")
            .arg("0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mlart serve");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let started: Option<Value> = serde_json::from_str(&line).ok();
        let Some(started) = started.filter(|v| v["port"].is_u64()) else {
            // Not started: the error (JSON on stdout with --json, text on stderr).
            let mut rest = String::new();
            out.read_to_string(&mut rest).unwrap();
            let status = child.wait().unwrap();
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return Err((status.code().unwrap_or(-1), format!("{line}{rest}{err}")));
        };
        let port = started["port"].as_u64().unwrap() as u16;
        Ok(Server {
            child,
            started,
            port,
            out,
        })
    }

    /// The gRPC port of a server started with `--grpc-port 0`.
    fn grpc_port(&self) -> u16 {
        self.started["grpc_port"].as_u64().expect("grpc_port") as u16
    }

    fn url(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGTERM, and the exit code.
    pub(crate) fn stop(mut self) -> i32 {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let code = self.child.wait().unwrap().code().unwrap_or(-1);
        std::mem::forget(self);
        code
    }
}

impl Server {
    /// SIGTERM: the exit code and what was printed after the startup line (stdout, stderr).
    fn stop_output(mut self) -> (i32, String) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let mut text = String::new();
        self.out.read_to_string(&mut text).unwrap();
        let code = self.child.wait().unwrap().code().unwrap_or(-1);
        if let Some(mut e) = self.child.stderr.take() {
            e.read_to_string(&mut text).unwrap();
        }
        (code, text)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `mlart --json serve SRC ARGS…` with the test venv's ONNX Runtime.
pub(crate) fn serve_cmd(lib: &Path, src: &Path, args: &[&str]) -> Command {
    let mut c = crate::validate::mlart_ort(lib);
    c.arg("--json").arg("serve").arg(src).args(args);
    c
}

/// `serve_cmd` started: the running server.
fn serve(lib: &Path, src: &Path, args: &[&str]) -> Server {
    Server::start(serve_cmd(lib, src, args)).unwrap()
}

/// `py SCRIPT` with `code` written to `<env>/NAME` as the script (arguments follow).
fn python_script(py: &Path, env: &Env, name: &str, code: &str) -> Command {
    let script = env.path(name);
    std::fs::write(&script, code).unwrap();
    let mut c = Command::new(py);
    c.arg(script);
    c
}

/// Run the client script `code` (saved as NAME) against the server at `url` with the
/// example's model (to compare with onnxruntime): it prints `"ok": true` when all its checks pass.
fn client_passes(py: &Path, env: &Env, name: &str, code: &str, url: &str) {
    let out = ok(python_script(py, env, name, code)
        .arg(url)
        .arg(example().join("model/iris.onnx")));
    assert!(String::from_utf8_lossy(&out).contains("\"ok\": true"));
}

/// One HTTP/1.1 request (Connection: close): status, headers, body.
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // A server that answers early (413) may close before the whole body is sent.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response");
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let status = head[9..12].parse().unwrap();
    (status, head, out[split + 4..].to_vec())
}

fn post_json(port: u16, path: &str, v: &Value) -> (u16, Value) {
    let (s, _, b) = http(port, "POST", path, &[], &serde_json::to_vec(v).unwrap());
    (
        s,
        serde_json::from_slice(&b).unwrap_or_else(|_| json!({"raw": String::from_utf8_lossy(&b)})),
    )
}

/// `POST /v2/models/iris/infer` of `rows`: status and JSON answer.
pub(crate) fn infer(port: u16, rows: &[[f32; 4]]) -> (u16, Value) {
    post_json(port, "/v2/models/iris/infer", &iris_request(rows))
}

/// An infer request in the binary-tensor form: `header_length` says how much of `body` is
/// the JSON header. Status, headers, body.
fn infer_binary(port: u16, header_length: String, body: &[u8]) -> (u16, String, Vec<u8>) {
    let header = [("Inference-Header-Content-Length", header_length)];
    http(port, "POST", "/v2/models/iris/infer", &header, body)
}

/// The Prometheus text of `GET /metrics`.
fn metrics(port: u16) -> String {
    let (_, _, b) = http(port, "GET", "/metrics", &[], b"");
    String::from_utf8_lossy(&b).into_owned()
}

fn iris_request(rows: &[[f32; 4]]) -> Value {
    json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [rows.len(), 4],
        "data": rows.iter().flatten().collect::<Vec<_>>()}]})
}

fn iris_layout(env: &Env, args: &[&OsStr]) -> std::path::PathBuf {
    let out = env.path("iris.oci");
    bundle_iris(&mut env.cmd(), &out, args);
    out
}

/// The start of a serve test: the venv's ONNX Runtime, an environment and the iris layout in
/// it; None (skip) without the runtime.
fn iris_to_serve(test: &str) -> Option<(PathBuf, Env, PathBuf)> {
    let lib = ort_lib(test)?;
    let env = Env::new();
    let layout = iris_layout(&env, &[]);
    Some((lib, env, layout))
}

const CLIENT: &str = r#"
import json, sys
import numpy as np
import onnxruntime as ort
import tritonclient.http as httpclient

url, model_file = sys.argv[1], sys.argv[2]
c = httpclient.InferenceServerClient(url=url)
assert c.is_server_live() and c.is_server_ready()
assert c.is_model_ready("iris")
md = c.get_model_metadata("iris")
assert md["inputs"][0]["datatype"] == "FP32", md
idx = c.get_model_repository_index()
assert [m["name"] for m in idx] == ["iris"], idx

x = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]], dtype=np.float32)
sess = ort.InferenceSession(model_file, providers=["CPUExecutionProvider"])
want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"input": x})))

def check(res):
    np.testing.assert_array_equal(res.as_numpy("label"), want["label"])
    np.testing.assert_allclose(res.as_numpy("probabilities"), want["probabilities"], rtol=1e-6, atol=1e-7)

# The default: binary input and binary outputs (the binary-tensor extension).
i = httpclient.InferInput("input", list(x.shape), "FP32")
i.set_data_from_numpy(x)
check(c.infer("iris", [i]))
# JSON input, JSON outputs, one output asked for, a version.
i = httpclient.InferInput("input", list(x.shape), "FP32")
i.set_data_from_numpy(x, binary_data=False)
res = c.infer("iris", [i], model_version="1.0.0",
              outputs=[httpclient.InferRequestedOutput("label", binary_data=False)])
np.testing.assert_array_equal(res.as_numpy("label"), want["label"])
assert res.as_numpy("probabilities") is None
# A compressed request body (request_compression_algorithm), as Triton accepts.
for alg in ("gzip", "deflate"):
    i = httpclient.InferInput("input", list(x.shape), "FP32")
    i.set_data_from_numpy(x)
    check(c.infer("iris", [i], request_compression_algorithm=alg))
    i = httpclient.InferInput("input", list(x.shape), "FP32")
    i.set_data_from_numpy(x, binary_data=False)
    check(c.infer("iris", [i], request_compression_algorithm=alg))
# A bad request: the client raises with the server's message.
i = httpclient.InferInput("input", [3, 4], "FP64")
i.set_data_from_numpy(x.astype(np.float64))
try:
    c.infer("iris", [i])
    raise SystemExit("FP64 was accepted")
except httpclient.InferenceServerException as e:
    assert "FP32" in str(e), str(e)
print(json.dumps({"ok": True}))
"#;

#[test]
fn serve_iris_tritonclient_http_matches_onnxruntime() {
    let Some((lib, env, layout)) =
        iris_to_serve("serve_iris_tritonclient_http_matches_onnxruntime")
    else {
        return;
    };
    let Some(py) = python() else { return };
    let srv = serve(&lib, &layout, &[]);
    assert_eq!(srv.started["models"][0]["name"], "iris");
    assert_eq!(
        srv.started["models"][0]["inputs"][0]["shape"],
        json!([-1, 4])
    );
    client_passes(&py, &env, "client.py", CLIENT, &srv.url());

    // MLflow's scoring formats give the same labels.
    let want = infer(srv.port, &[[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]).1;
    let labels = want["outputs"][0]["data"].clone();
    for body in [
        json!({"dataframe_split": {"columns": ["petal_width", "sepal_length", "sepal_width", "petal_length"],
            "data": [[0.2, 5.1, 3.5, 1.4], [2.3, 6.7, 3.0, 5.2]]}}),
        json!({"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}),
        json!({"inputs": {"input": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}}),
        json!({"instances": [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
            {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3}]}),
    ] {
        let (s, v) = post_json(srv.port, "/invocations", &body);
        assert_eq!(s, 200, "{body}: {v}");
        let got: Vec<Value> = v["predictions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["label"].clone())
            .collect();
        assert_eq!(Value::Array(got), labels, "{body}");
    }
    let (s, v) = post_json(
        srv.port,
        "/invocations",
        &json!({"dataframe_split": {"columns": ["a"], "data": [[1]]}}),
    );
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().contains("sepal_length"), "{v}");
    assert_eq!(srv.stop(), 0);
}

#[test]
fn serve_refuses_bad_requests_and_keeps_serving() {
    let Some((lib, _env, layout)) = iris_to_serve("serve_refuses_bad_requests_and_keeps_serving")
    else {
        return;
    };
    let srv = serve(&lib, &layout, &["--max-body", "4096"]);
    let p = srv.port;
    let good = iris_request(&[[5.1, 3.5, 1.4, 0.2]]);
    let cases: Vec<(&str, u16, Vec<u8>, &str)> = vec![
        ("/v2/models/iris/infer", 400, br#"{"inputs": [{"name": "input", "datatype": "INT64", "shape": [1, 4], "data": [1, 2, 3, 4]}]}"#.to_vec(), "datatype INT64, model iris expects FP32"),
        ("/v2/models/iris/infer", 400, br#"{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}"#.to_vec(), "shape [1, 3]"),
        ("/v2/models/iris/infer", 400, br#"{"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 4], "data": [1, 2, 3, 4]}]}"#.to_vec(), "has 4 values, its shape [2, 4] needs 8"),
        ("/v2/models/iris/infer", 400, br#"{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, "x"]}]}"#.to_vec(), "\"x\" is not a FP32 value"),
        ("/v2/models/iris/infer", 400, br#"{"inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4], "data": []}]}"#.to_vec(), "shape [-1, 4]"),
        ("/v2/models/iris/infer", 400, br#"{"inputs": []}"#.to_vec(), "missing input(s) of model iris: input (FP32 [-1, 4]"),
        ("/v2/models/iris/infer", 400, br#"{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}"#.to_vec(), "\"x\" is not an input of model iris"),
        ("/v2/models/iris/infer", 400, br#"{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}], "outputs": [{"name": "nope"}]}"#.to_vec(), "\"nope\" is not an output"),
        // Nested data must nest as the shape does; flat data stays allowed.
        ("/v2/models/iris/infer", 400, br#"{"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 4], "data": [[1], [2, 3, 4, 5, 6, 7, 8]]}]}"#.to_vec(), "input \"input\": data[0] has 1 values, shape [2, 4] wants 4"),
        ("/v2/models/iris/infer", 400, br#"{"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 4], "data": [[1, 2, 3, 4], 5, 6, 7, 8]}]}"#.to_vec(), "input \"input\": data has 5 values, shape [2, 4] wants 2"),
        ("/v2/models/iris/infer", 400, br#"{"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 4], "data": [[1, 2, 3, 4], [5, 6, 7, [8]]]}]}"#.to_vec(), "input \"input\": data[1][3] is a list where shape [2, 4] wants a single value"),
        // A number the datatype cannot hold does not become inf.
        ("/v2/models/iris/infer", 400, br#"{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1e300, 2, 3, 4]}]}"#.to_vec(), "input \"input\": 1e+300 is out of range for FP32"),
        ("/v2/models/iris/infer", 400, br#"{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, -3.5e38, 3, 4]}]}"#.to_vec(), "-3.5e+38 is out of range for FP32"),
        ("/v2/models/iris/infer", 400, b"{not json".to_vec(), "not an inference request"),
        ("/v2/models/iris/infer", 400, b"".to_vec(), "not an inference request"),
        ("/v2/models/iris/infer", 413, vec![b' '; 100_000], "larger than the limit of 4096 bytes"),
        ("/v2/models/nope/infer", 404, serde_json::to_vec(&good).unwrap(), "no model \"nope\""),
        ("/v2/models/iris/versions/9/infer", 404, serde_json::to_vec(&good).unwrap(), "no version \"9\""),
        ("/v2/other", 404, b"".to_vec(), "no endpoint /v2/other"),
    ];
    for (path, status, body, msg) in &cases {
        let (s, _, b) = http(p, "POST", path, &[], body);
        let v: Value = serde_json::from_slice(&b)
            .unwrap_or_else(|_| panic!("{path}: not JSON: {}", String::from_utf8_lossy(&b)));
        assert_eq!(
            s,
            *status,
            "{path} {}: {v}",
            String::from_utf8_lossy(&body[..body.len().min(80)])
        );
        assert!(
            v["error"].as_str().unwrap().contains(msg),
            "{v} should say {msg:?}"
        );
        // ... and the server still serves.
        let (s, v) = post_json(p, "/v2/models/iris/infer", &good);
        assert_eq!(s, 200, "{v}");
    }
    // Nested data that matches the shape, and the largest FP32, are served.
    for data in [
        json!([[1, 2, 3, 4], [5, 6, 7, 8]]),
        json!([[1, 2, 3, 4], [5, 6, 7, 3.4028234e38]]),
    ] {
        let req = json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 4], "data": data}]});
        let (s, v) = post_json(p, "/v2/models/iris/infer", &req);
        assert_eq!(s, 200, "{v}");
    }
    // The binary-tensor extension with a header that lies.
    let (s, _, b) = infer_binary(p, "999".into(), b"{}");
    assert_eq!(s, 400, "{}", String::from_utf8_lossy(&b));
    let (s, _, _) = infer_binary(p, "zz".into(), b"{}");
    assert_eq!(s, 400);
    // Binary data too short for its shape.
    let head = br#"{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "parameters": {"binary_data_size": 12}}]}"#;
    let mut body = head.to_vec();
    body.extend_from_slice(&[0u8; 12]);
    let (s, _, b) = infer_binary(p, head.len().to_string(), &body);
    assert_eq!(s, 400);
    assert!(String::from_utf8_lossy(&b).contains("12 bytes where the shape needs 4 x 4 = 16"));
    // Health, metadata, index, metrics.
    assert_eq!(http(p, "GET", "/v2/health/live", &[], b"").0, 200);
    assert_eq!(http(p, "GET", "/v2/health/ready", &[], b"").0, 200);
    assert_eq!(
        http(p, "GET", "/v2/models/iris/versions/1.0.0/ready", &[], b"").0,
        200
    );
    assert_eq!(http(p, "GET", "/v2/models/nope/ready", &[], b"").0, 404);
    let (_, _, b) = http(p, "GET", "/v2", &[], b"");
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["name"], "mlart");
    assert!(v["extensions"]
        .as_array()
        .unwrap()
        .contains(&json!("binary_tensor_data")));
    let (_, _, b) = http(p, "POST", "/v2/repository/index", &[], b"");
    assert_eq!(
        serde_json::from_slice::<Value>(&b).unwrap(),
        json!([{"name": "iris", "version": "1.0.0", "state": "READY"}])
    );
    let m = metrics(p);
    let n = cases
        .iter()
        .filter(|c| c.0.starts_with("/v2/models/iris/infer"))
        .count();
    assert!(
        m.contains(&format!(
            "mlart_inference_errors_total{{model=\"iris\",protocol=\"rest\"}} {}",
            n + 3
        )),
        "{m}"
    );
    assert!(
        m.contains("mlart_inference_latency_seconds_bucket{model=\"iris\""),
        "{m}"
    );
    assert_eq!(srv.stop(), 0);
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn zlib(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

#[test]
fn serve_reads_gzip_and_deflate_bodies_within_the_body_limit() {
    let Some((lib, _env, layout)) =
        iris_to_serve("serve_reads_gzip_and_deflate_bodies_within_the_body_limit")
    else {
        return;
    };
    let srv = serve(&lib, &layout, &["--max-body", "4096"]);
    let p = srv.port;
    let enc = |e: &str| ("Content-Encoding", e.to_string());
    let json = serde_json::to_vec(&iris_request(&[[5.1, 3.5, 1.4, 0.2]])).unwrap();
    // JSON, gzip and deflate (zlib, as tritonclient and zlib.compress send it).
    for (e, body) in [
        ("gzip", gzip(&json)),
        ("deflate", zlib(&json)),
        ("identity", json.clone()),
    ] {
        let (s, _, b) = http(p, "POST", "/v2/models/iris/infer", &[enc(e)], &body);
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(
            (s, &v["outputs"][0]["data"]),
            (200, &json!([0])),
            "{e}: {v}"
        );
    }
    // The binary-tensor extension: the header length counts the decompressed JSON.
    let head = br#"{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "parameters": {"binary_data_size": 16}}], "outputs": [{"name": "label", "parameters": {"binary_data": false}}]}"#;
    let mut plain = head.to_vec();
    for x in [5.1f32, 3.5, 1.4, 0.2] {
        plain.extend_from_slice(&x.to_le_bytes());
    }
    let headers = [
        enc("gzip"),
        ("Inference-Header-Content-Length", head.len().to_string()),
    ];
    let (s, _, b) = http(p, "POST", "/v2/models/iris/infer", &headers, &gzip(&plain));
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["outputs"][0]["data"], json!([0]), "{v}");
    // A bomb: 3 KB of gzip (within --max-body) that inflates to 3 MB gets 413 at the limit,
    // not the memory.
    let bomb = gzip(&vec![b' '; 3 << 20]);
    assert!(bomb.len() < 4096, "{}", bomb.len());
    let (s, _, b) = http(p, "POST", "/v2/models/iris/infer", &[enc("gzip")], &bomb);
    assert_eq!(s, 413, "{}", String::from_utf8_lossy(&b));
    assert!(
        String::from_utf8_lossy(&b).contains("larger than the limit of 4096 bytes"),
        "{}",
        String::from_utf8_lossy(&b)
    );
    // Other encodings: 415 naming it; a body that is not what it says: 400.
    let (s, _, b) = http(p, "POST", "/v2/models/iris/infer", &[enc("br")], &json);
    assert_eq!(s, 415, "{}", String::from_utf8_lossy(&b));
    let v: Value = serde_json::from_slice(&b).unwrap();
    let m = v["error"].as_str().unwrap();
    assert!(
        m.contains("Content-Encoding br") && m.contains("uncompressed or with gzip"),
        "{m}"
    );
    let (s, _, b) = http(p, "POST", "/v2/models/iris/infer", &[enc("gzip")], &json);
    assert_eq!(s, 400, "{}", String::from_utf8_lossy(&b));
    assert!(String::from_utf8_lossy(&b).contains("not valid gzip"));
    // ... and the server still serves.
    assert_eq!(infer(p, &[[5.1, 3.5, 1.4, 0.2]]).0, 200);
    assert_eq!(srv.stop(), 0);
}

#[test]
fn serve_batches_concurrent_requests_each_gets_its_rows() {
    let Some((lib, _env, layout)) =
        iris_to_serve("serve_batches_concurrent_requests_each_gets_its_rows")
    else {
        return;
    };
    // Alone: the reference answers.
    let rows: Vec<[f32; 4]> = (0..24)
        .map(|i| {
            let f = i as f32 / 24.0;
            [
                4.3 + 3.6 * f,
                2.0 + 2.4 * (1.0 - f),
                1.1 + 5.8 * f,
                0.1 + 2.4 * ((i * 7 % 24) as f32 / 24.0),
            ]
        })
        .collect();
    let solo = serve(&lib, &layout, &["--max-batch", "1", "--workers", "1"]);
    let want: Vec<Value> = rows
        .iter()
        .map(|r| infer(solo.port, &[*r]).1["outputs"].clone())
        .collect();
    assert_eq!(solo.stop(), 0);
    let srv = serve(
        &lib,
        &layout,
        &["--max-batch", "16", "--batch-delay", "50", "--workers", "1"],
    );
    assert_eq!(srv.started["models"][0]["batching"], true);
    let port = srv.port;
    let got: Vec<(usize, Value)> = std::thread::scope(|s| {
        let hs: Vec<_> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let r = *r;
                // Requests of 1 and 2 rows: the second row repeats the first.
                let req = if i % 2 == 0 { vec![r] } else { vec![r, r] };
                s.spawn(move || (i, infer(port, &req).1))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, v) in got {
        let w = &want[i];
        let rep = if i % 2 == 0 { 1 } else { 2 };
        let label = &v["outputs"][0];
        assert_eq!(label["shape"], json!([rep]), "{v}");
        for k in 0..rep {
            assert_eq!(label["data"][k], w[0]["data"][0], "request {i}: {v}");
            for j in 0..3 {
                let a = v["outputs"][1]["data"][k * 3 + j].as_f64().unwrap();
                let b = w[1]["data"][j].as_f64().unwrap();
                assert!((a - b).abs() < 1e-6, "request {i}: {a} vs {b}");
            }
        }
    }
    let m = metrics(port);
    // Fewer runs than requests: some were joined.
    let runs: u64 = m
        .lines()
        .find(|l| l.starts_with("mlart_batch_size_count{model=\"iris\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{m}"));
    assert!(runs < 24, "no request was batched: {runs} runs\n{m}");
    assert_eq!(srv.stop(), 0);
}

#[test]
fn serve_sigterm_answers_the_request_in_flight() {
    let Some((lib, _env, layout)) = iris_to_serve("serve_sigterm_answers_the_request_in_flight")
    else {
        return;
    };
    // A batch waits 1.5 s for company: the request is in flight when SIGTERM comes.
    let srv = serve(&lib, &layout, &["--batch-delay", "1500"]);
    let port = srv.port;
    let h = std::thread::spawn(move || infer(port, &[[5.1, 3.5, 1.4, 0.2]]));
    std::thread::sleep(Duration::from_millis(500));
    let started = std::time::Instant::now();
    assert_eq!(srv.stop(), 0);
    let (s, v) = h.join().unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["outputs"][0]["data"], json!([0]));
    assert!(started.elapsed() < Duration::from_secs(20));
    // And nothing listens any more.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn serve_key_refuses_unverified_and_serves_registry_and_pulled_dir() {
    let Some(lib) = ort_lib("serve_key_refuses_unverified_and_serves_registry_and_pulled_dir")
    else {
        return;
    };
    let env = Env::new();
    let (key, public) = env.keygen("release");
    let (_, other) = env.keygen("other");
    let layout = iris_layout(&env, &[OsStr::new("--sign"), key.as_os_str()]);
    let pubs = public.to_str().unwrap();
    let srv = serve(&lib, &layout, &["--key", pubs]);
    // The OCI signature and model.sig, both by the trusted key.
    let by = srv.started["verified_by"].as_array().unwrap();
    assert_eq!(by.len(), 2, "{}", srv.started);
    assert!(
        by.iter()
            .all(|k| k.as_str().unwrap().contains("release.pub")),
        "{by:?}"
    );
    assert_eq!(srv.stop(), 0);
    // Signed by another key: no server, exit non-zero, a message naming the problem.
    let (code, err) = Server::start(serve_cmd(
        &lib,
        &layout,
        &["--key", other.to_str().unwrap()],
    ))
    .err()
    .unwrap();
    assert_ne!(code, 0);
    // said as serve's refusal (not pull's), naming the key that did sign
    let hint = mlart::sign::load_public(&public).unwrap().hint;
    assert!(
        err.contains("not served: no OCI signature verifies with the keys given")
            && err.contains(&format!("signed by another key (hint {hint})"))
            && !err.contains("not pulled"),
        "{err}"
    );
    // Unsigned bundle with --key: refused too.
    let env2 = Env::new();
    let unsigned = iris_layout(&env2, &[]);
    assert!(Server::start(serve_cmd(&lib, &unsigned, &["--key", pubs])).is_err());

    // A pulled directory: served; changed after the pull: refused.
    let pulled = env.path("pulled");
    json_ok(env.cmd().arg("pull").arg(&layout).arg("-o").arg(&pulled));
    let srv = serve(&lib, &pulled, &["--key", pubs]);
    let (s, _) = infer(srv.port, &[[5.1, 3.5, 1.4, 0.2]]);
    assert_eq!(s, 200);
    assert_eq!(srv.stop(), 0);
    let model = pulled.join("model/iris.onnx");
    let mut bytes = std::fs::read(&model).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&model, bytes).unwrap();
    let (code, err) = Server::start(serve_cmd(&lib, &pulled, &[])).err().unwrap();
    assert_eq!(
        code, 4,
        "a changed file is an integrity failure, as for pull: {err}"
    );
    assert!(err.contains("does not match its sha256"), "{err}");
    let (code, _) = Server::start(serve_cmd(&lib, &pulled, &["--key", pubs]))
        .err()
        .unwrap();
    assert_ne!(code, 0);
    // Its mlart.json (read as it streams) damaged, absent, or naming a model outside the
    // folder: refused with a message naming it, never served.
    let meta = pulled.join("mlart.json");
    let good = std::fs::read_to_string(&meta).unwrap();
    // (the models' list comes after the files')
    let name = "\"model/iris.onnx\"";
    let at = good.rfind(name).unwrap();
    let escaping = format!(
        "{}\"../iris.onnx\"{}",
        &good[..at],
        &good[at + name.len()..]
    );
    for (what, text, want) in [
        ("truncated", &good[..good.len() / 2], "mlart.json"),
        ("not json", "{\"schema_version\": [", "mlart.json"),
        ("escaping", escaping.as_str(), "../iris.onnx"),
    ] {
        std::fs::write(&meta, text).unwrap();
        let (code, err) = Server::start(serve_cmd(&lib, &pulled, &[])).err().unwrap();
        assert_ne!(code, 0, "{what}");
        assert!(
            err.contains(want) && !err.contains("panicked"),
            "{what}: {err}"
        );
    }
    std::fs::remove_file(&meta).unwrap();
    let (code, err) = Server::start(serve_cmd(&lib, &pulled, &[])).err().unwrap();
    assert_ne!(code, 0);
    assert!(err.contains("without mlart.json"), "{err}");

    // A registry REF: pulled through the blob cache, verified.
    let Some(reg) = Registry::start("serve_key_registry") else {
        return;
    };
    let r = reg.reference("ml/iris:1.0.0");
    env.push(&layout, &r);
    let mut c = serve_cmd(&lib, Path::new(&r), &["--key", pubs]);
    c.env("DOCKER_CONFIG", env.path("docker"))
        .env("XDG_CACHE_HOME", env.path("cache"))
        .env("HOME", env.path(""));
    let srv = Server::start(c).unwrap();
    assert!(srv.started["digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    let (s, _) = infer(srv.port, &[[5.1, 3.5, 1.4, 0.2]]);
    assert_eq!(s, 200);
    assert_eq!(srv.stop(), 0);
}

const GRPC_CLIENT: &str = r#"
import json, sys
import grpc
import numpy as np
import onnxruntime as ort
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

url, model_file = sys.argv[1], sys.argv[2]
c = grpcclient.InferenceServerClient(url=url)
assert c.is_server_live() and c.is_server_ready()
assert c.is_model_ready("iris") and c.is_model_ready("iris", "1.0.0")
assert c.get_server_metadata().name == "mlart"
md = c.get_model_metadata("iris")
assert md.inputs[0].datatype == "FP32" and list(md.inputs[0].shape) == [-1, 4], md
assert [m.name for m in c.get_model_repository_index().models] == ["iris"]

x = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]], dtype=np.float32)
sess = ort.InferenceSession(model_file, providers=["CPUExecutionProvider"])
want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"input": x})))

def inp(a, dt="FP32", shape=None):
    i = grpcclient.InferInput("input", list(shape or a.shape), dt)
    i.set_data_from_numpy(a)
    return i

# raw_input_contents in, raw_output_contents out (what tritonclient.grpc sends and reads).
res = c.infer("iris", [inp(x)], request_id="r1")
assert res.get_response().id == "r1"
np.testing.assert_array_equal(res.as_numpy("label"), want["label"])
np.testing.assert_allclose(res.as_numpy("probabilities"), want["probabilities"], rtol=1e-6, atol=1e-7)
# One output asked for, at a version.
res = c.infer("iris", [inp(x)], model_version="1.0.0",
              outputs=[grpcclient.InferRequestedOutput("probabilities")])
assert res.as_numpy("label") is None
np.testing.assert_allclose(res.as_numpy("probabilities"), want["probabilities"], rtol=1e-6, atol=1e-7)

# Typed `contents` in, typed contents out (the stub, as clients other than Triton's send it).
stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(url))
req = service_pb2.ModelInferRequest(model_name="iris")
t = req.inputs.add(name="input", datatype="FP32", shape=[3, 4])
t.contents.fp32_contents.extend(x.flatten().tolist())
r = stub.ModelInfer(req)
assert len(r.raw_output_contents) == 0, r
out = {o.name: o for o in r.outputs}
assert list(out["label"].contents.int64_contents) == want["label"].tolist(), out["label"]
np.testing.assert_allclose(np.array(out["probabilities"].contents.fp32_contents).reshape(3, 3),
                           want["probabilities"], rtol=1e-6, atol=1e-7)

def refused(code, msg, f):
    try:
        f()
    except InferenceServerException as e:
        assert e.status() == "StatusCode." + code, (e.status(), str(e))
        assert msg in e.message(), (msg, e.message())
    except grpc.RpcError as e:
        assert e.code().name == code, (e.code(), e.details())
        assert msg in e.details(), (msg, e.details())
    else:
        raise SystemExit(f"accepted, expected {code}: {msg}")
    # ... and the server keeps serving.
    res = c.infer("iris", [inp(x)])
    np.testing.assert_array_equal(res.as_numpy("label"), want["label"])

def stub_infer(**kw):
    def f():
        req = service_pb2.ModelInferRequest(model_name="iris", **kw.get("req", {}))
        for i in kw.get("inputs", []):
            t = req.inputs.add(name=i[0], datatype=i[1], shape=i[2])
            if len(i) > 3:
                getattr(t.contents, i[3]).extend(i[4])
        req.raw_input_contents.extend(kw.get("raw", []))
        stub.ModelInfer(req)
    return f

refused("INVALID_ARGUMENT", "input \"input\" has datatype FP64, model iris expects FP32",
        lambda: c.infer("iris", [inp(x.astype(np.float64), "FP64")]))
refused("INVALID_ARGUMENT", "input \"input\" has shape [3, 3], model iris expects FP32 [-1, 4]",
        lambda: c.infer("iris", [inp(x[:, :3])]))
refused("INVALID_ARGUMENT", "12 bytes where the shape needs 4 x 4 = 16",
        stub_infer(inputs=[("input", "FP32", [1, 4])], raw=[b"\0" * 12]))
refused("INVALID_ARGUMENT", "missing input(s) of model iris: input (FP32 [-1, 4]", stub_infer())
refused("INVALID_ARGUMENT", "\"x\" is not an input of model iris",
        stub_infer(inputs=[("x", "FP32", [1], "fp32_contents", [1.0])]))
refused("INVALID_ARGUMENT", "input \"input\" has 4 values, its shape [2, 4] needs 8",
        stub_infer(inputs=[("input", "FP32", [2, 4], "fp32_contents", [1.0] * 4)]))
refused("INVALID_ARGUMENT", "its values go in contents.fp32_contents",
        stub_infer(inputs=[("input", "FP32", [1, 4], "int64_contents", [1] * 4)]))
refused("INVALID_ARGUMENT", "raw_input_contents has 2 entries for 1 input(s)",
        stub_infer(inputs=[("input", "FP32", [1, 4])], raw=[b"\0" * 16, b"\0" * 16]))
refused("INVALID_ARGUMENT", "\"nope\" is not an output of model iris",
        lambda: c.infer("iris", [inp(x)], outputs=[grpcclient.InferRequestedOutput("nope")]))
refused("NOT_FOUND", "no model \"nope\": this server serves iris",
        lambda: c.infer("nope", [inp(x)]))
refused("NOT_FOUND", "model \"iris\" has no version \"9\"",
        lambda: c.infer("iris", [inp(x)], model_version="9"))
refused("NOT_FOUND", "no model \"nope\"", lambda: c.get_model_metadata("nope"))
refused("NOT_FOUND", "no model \"nope\"", lambda: c.is_model_ready("nope"))
# Larger than --max-body: refused by the gRPC layer, and the server keeps serving.
big = np.zeros((8192, 4), dtype=np.float32)
refused("OUT_OF_RANGE", "message length too large", lambda: c.infer("iris", [inp(big)]))
print(json.dumps({"ok": True}))
"#;

#[test]
fn serve_iris_tritonclient_grpc_matches_onnxruntime() {
    let Some((lib, env, layout)) =
        iris_to_serve("serve_iris_tritonclient_grpc_matches_onnxruntime")
    else {
        return;
    };
    let Some(py) = python() else { return };
    let srv = serve(&lib, &layout, &["--grpc-port", "0", "--max-body", "65536"]);
    let grpc = srv.grpc_port();
    assert_ne!(grpc, srv.port);
    client_passes(
        &py,
        &env,
        "grpc_client.py",
        GRPC_CLIENT,
        &format!("127.0.0.1:{grpc}"),
    );
    // Counted under protocol="grpc": 3 good infers + 1 after each of the 14 refusals, and the
    // 9 refusals the door made (unknown models and versions are not counted per model; too
    // large never reaches the service).
    let m = metrics(srv.port);
    assert!(
        m.contains("mlart_inference_requests_total{model=\"iris\",protocol=\"grpc\"} 26"),
        "{m}"
    );
    assert!(
        m.contains("mlart_inference_errors_total{model=\"iris\",protocol=\"grpc\"} 9"),
        "{m}"
    );
    // Without --grpc-port: no gRPC server, `grpc_port` null.
    assert_eq!(srv.stop(), 0);
    let srv = serve(&lib, &layout, &[]);
    assert!(srv.started["grpc_port"].is_null(), "{}", srv.started);
    assert_eq!(srv.stop(), 0);
}

const GRPC_SLOW: &str = r#"
import sys
import numpy as np
import tritonclient.grpc as grpcclient
c = grpcclient.InferenceServerClient(url=sys.argv[1])
assert c.is_server_ready()
i = grpcclient.InferInput("input", [1, 4], "FP32")
i.set_data_from_numpy(np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32))
print("go", flush=True)
print("label", int(c.infer("iris", [i]).as_numpy("label")[0]), flush=True)
"#;

#[test]
fn serve_sigterm_answers_the_grpc_request_in_flight() {
    let Some((lib, env, layout)) =
        iris_to_serve("serve_sigterm_answers_the_grpc_request_in_flight")
    else {
        return;
    };
    let Some(py) = python() else { return };
    // A batch waits 1.5 s for company: the request is in flight when SIGTERM comes.
    let srv = serve(
        &lib,
        &layout,
        &["--grpc-port", "0", "--batch-delay", "1500"],
    );
    let grpc = srv.grpc_port();
    let port = srv.port;
    let mut client = python_script(&py, &env, "slow.py", GRPC_SLOW)
        .arg(format!("127.0.0.1:{grpc}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(client.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "go");
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(srv.stop(), 0);
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let status = client.wait().unwrap();
    let mut err = String::new();
    client
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{rest}{err}");
    assert_eq!(rest.trim(), "label 0");
    // Neither server listens any more.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(std::net::TcpStream::connect(("127.0.0.1", grpc)).is_err());
}

#[test]
fn serve_drain_that_runs_out_says_how_many_requests_it_cut_off() {
    let Some((lib, _env, layout)) =
        iris_to_serve("serve_drain_that_runs_out_says_how_many_requests_it_cut_off")
    else {
        return;
    };
    // A client that sends the head and part of its body, then stalls (--timeout 30 would
    // give it 408 long after the drain of 2 s).
    let srv = serve(&lib, &layout, &["--drain", "2"]);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    s.write_all(
        b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"inputs\"",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let t = std::time::Instant::now();
    let (code, out) = srv.stop_output();
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("1 request(s) cut off after --drain 2 s"),
        "{out}"
    );
    assert!(
        !out.contains("every request in flight was answered"),
        "{out}"
    );
    assert!(cut_off(&mut s));
    // A drain that is not cut short still exits 0.
    let srv = serve(&lib, &layout, &["--drain", "2"]);
    assert_eq!(infer(srv.port, &[[5.1, 3.5, 1.4, 0.2]]).0, 200);
    let (code, out) = srv.stop_output();
    assert_eq!(code, 0, "{out}");
}

/// A second signal during the drain ends it at once with exit 130 (as a second Ctrl-C does in
/// every verb), even when the drain would have run out first (exit 1) a moment later.
#[test]
fn serve_second_signal_during_the_drain_exits_130_at_once() {
    let Some((lib, _env, layout)) =
        iris_to_serve("serve_second_signal_during_the_drain_exits_130_at_once")
    else {
        return;
    };
    for (first, second) in [(libc::SIGINT, libc::SIGINT), (libc::SIGTERM, libc::SIGTERM)] {
        let mut srv = serve(&lib, &layout, &["--drain", "3"]);
        let mut s = std::net::TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
        s.write_all(
            b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"inputs\"",
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let pid = srv.child.id() as i32;
        unsafe { libc::kill(pid, first) };
        std::thread::sleep(Duration::from_millis(1500));
        let t = std::time::Instant::now();
        unsafe { libc::kill(pid, second) };
        let mut text = String::new();
        srv.out.read_to_string(&mut text).unwrap();
        let code = srv.child.wait().unwrap().code().unwrap_or(-1);
        if let Some(mut e) = srv.child.stderr.take() {
            e.read_to_string(&mut text).unwrap();
        }
        // (the signal handler's own fallback exits 130 after 2 s; the drain ran out at 3 s)
        assert!(
            t.elapsed() < Duration::from_millis(1200),
            "{:?}: {text}",
            t.elapsed()
        );
        assert_eq!(code, 130, "{text}");
        assert!(
            text.contains("a second signal ended the drain: 1 request(s) cut off")
                && text.contains("\"interrupted\""),
            "{text}"
        );
        assert!(cut_off(&mut s));
    }
}

/// What a stalled connection sees once the server gives up on it: the close (EOF or a reset),
/// or hyper's 408.
fn cut_off(s: &mut std::net::TcpStream) -> bool {
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(n) => String::from_utf8_lossy(&b[..n]).starts_with("HTTP/1.1 408"),
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
        ),
    }
}

#[test]
fn serve_stalled_clients_are_cut_off_and_hold_up_no_one() {
    let Some((lib, _env, layout)) =
        iris_to_serve("serve_stalled_clients_are_cut_off_and_hold_up_no_one")
    else {
        return;
    };
    let srv = serve(&lib, &layout, &["--timeout", "2"]);
    let p = srv.port;
    let good = iris_request(&[[5.1, 3.5, 1.4, 0.2]]);
    // Clients that send half a request line, or nothing, and stall.
    let mut stalled: Vec<std::net::TcpStream> = (0..20)
        .map(|i| {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", p)).unwrap();
            if i % 2 == 0 {
                s.write_all(b"POST /v2/models/ir").unwrap();
            }
            s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
            s
        })
        .collect();
    let t = std::time::Instant::now();
    // Meanwhile another client is served at once.
    for _ in 0..5 {
        let (s, v) = post_json(p, "/v2/models/iris/infer", &good);
        assert_eq!(s, 200, "{v}");
    }
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // Past the header timeout the stalled ones are closed.
    for s in &mut stalled {
        assert!(cut_off(s));
    }
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    // A stalled client does not hold up the shutdown for --drain (30 s) either.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", p)).unwrap();
    s.write_all(b"GET /v2/hea").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let t = std::time::Instant::now();
    assert_eq!(srv.stop(), 0);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

/// The samples a bundle records (the spec's `samples:`) run in serve's smoke test, from a
/// layout, a registry REF and a pulled folder: wrong expected outputs keep it from starting
/// (exit 1, as `validate`), right ones are named in its startup line. A pulled folder whose
/// samples are gone starts without them.
#[test]
fn serve_runs_the_bundled_samples_in_its_smoke_test() {
    use crate::support::fixtures::{bundle_spec, iris_with_samples};
    let Some(lib) = ort_lib("serve_runs_the_bundled_samples_in_its_smoke_test") else {
        return;
    };
    let env = Env::new();
    let bad = iris_with_samples(&env.path("bad"), true);
    let bad_layout = env.path("bad.oci");
    bundle_spec(&mut env.cmd(), &bad, &bad_layout, &[]);
    let (code, err) = Server::start(serve_cmd(&lib, &bad_layout, &[]))
        .err()
        .expect("served a bundle whose samples fail");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("smoke test failed") && err.contains("samples/samples.json"),
        "{err}"
    );

    let good = iris_with_samples(&env.path("good"), false);
    let layout = env.path("good.oci");
    bundle_spec(&mut env.cmd(), &good, &layout, &[]);
    // the samples the started server ran (its startup line), then a clean stop
    let ran = |srv: Server, want: Value| {
        assert_eq!(srv.started["models"][0]["samples"], want, "{}", srv.started);
        assert_eq!(srv.stop(), 0);
    };
    let srv = serve(&lib, &layout, &[]);
    ran(srv, json!(["samples/samples.json"]));
    // A whole pull: the samples are in the folder and run; removed from it, it starts
    // without them (and says so).
    let pulled = env.path("pulled");
    json_ok(env.cmd().arg("pull").arg(&layout).arg("-o").arg(&pulled));
    let srv = serve(&lib, &pulled, &[]);
    ran(srv, json!(["samples/samples.json"]));
    std::fs::remove_file(pulled.join("samples/samples.json")).unwrap();
    let srv = serve(&lib, &pulled, &[]);
    ran(srv, Value::Null);

    // A registry REF: the model and its samples pulled through the cache.
    let Some(reg) = Registry::start("serve_runs_the_bundled_samples_in_its_smoke_test") else {
        return;
    };
    let registry_serve = |r: &str| {
        let mut c = serve_cmd(&lib, Path::new(r), &[]);
        env.apply(&mut c);
        Server::start(c)
    };
    let r = reg.reference("ml/iris:good-samples");
    env.push(&layout, &r);
    let srv = registry_serve(&r).unwrap();
    ran(srv, json!(["samples/samples.json"]));
    let r = reg.reference("ml/iris:bad-samples");
    env.push(&bad_layout, &r);
    let (code, err) = registry_serve(&r).err().unwrap();
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("smoke test failed"), "{err}");
}
