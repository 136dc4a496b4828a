//! The REST endpoints: Open Inference Protocol (KServe v2) health, metadata, readiness and
//! inference with the binary-tensor extension; the repository index; Prometheus `/metrics`;
//! MLflow's `/invocations` and `/ping`. Every error is `{"error": "..."}` with its status.

use super::request;
use super::{ServeError, Served, State};
use axum::body::Body;
use axum::extract::{Path, State as St};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The binary-tensor extension's header: the length of the JSON part of the body.
pub const HEADER_LEN: &str = "inference-header-content-length";

pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2", get(server_metadata))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/versions/{v}", get(model_metadata_v))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route("/v2/models/{name}/versions/{v}/ready", get(model_ready_v))
        .route("/v2/models/{name}/infer", post(infer))
        .route("/v2/models/{name}/versions/{v}/infer", post(infer_v))
        .route("/v2/repository/index", post(index).get(index))
        .route("/metrics", get(metrics))
        .route("/ping", get(ready))
        .route("/invocations", post(super::mlflow::invocations))
        .fallback(not_found)
        .with_state(state)
}

impl IntoResponse for ServeError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(json!({"error": self.message()}))).into_response()
    }
}

async fn not_found(uri: axum::http::Uri) -> ServeError {
    ServeError::NotFound(format!(
        "no endpoint {}: the server speaks the Open Inference Protocol under /v2 (e.g. POST /v2/models/NAME/infer), /v2/repository/index, /metrics and MLflow's POST /invocations",
        uri.path()
    ))
}

async fn live() -> Response {
    axum::Json(json!({"live": true})).into_response()
}

async fn ready(St(s): St<Arc<State>>) -> Response {
    let r = s.is_ready();
    let code = if r {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(json!({"ready": r}))).into_response()
}

async fn server_metadata() -> Response {
    axum::Json(json!({
        "name": "mlart",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data", "model_repository", "statistics_prometheus"],
    }))
    .into_response()
}

fn metadata_of(m: &Served) -> Response {
    let io = |v: &[super::model::IoSpec]| {
        v.iter()
            .map(|s| json!({"name": s.name, "datatype": s.datatype, "shape": s.shape}))
            .collect::<Vec<_>>()
    };
    axum::Json(json!({
        "name": m.model.name,
        "versions": [m.model.version],
        "platform": "onnxruntime_onnx",
        "inputs": io(&m.model.inputs),
        "outputs": io(&m.model.outputs),
    }))
    .into_response()
}

async fn model_metadata(St(s): St<Arc<State>>, Path(name): Path<String>) -> Response {
    match s.find(&name, None) {
        Ok(m) => metadata_of(m),
        Err(e) => e.into_response(),
    }
}

async fn model_metadata_v(
    St(s): St<Arc<State>>,
    Path((name, v)): Path<(String, String)>,
) -> Response {
    match s.find(&name, Some(&v)) {
        Ok(m) => metadata_of(m),
        Err(e) => e.into_response(),
    }
}

async fn model_ready(St(s): St<Arc<State>>, Path(name): Path<String>) -> Response {
    ready_of(&s, &name, None)
}

async fn model_ready_v(St(s): St<Arc<State>>, Path((name, v)): Path<(String, String)>) -> Response {
    ready_of(&s, &name, Some(&v))
}

fn ready_of(s: &State, name: &str, v: Option<&str>) -> Response {
    match s.find(name, v) {
        Ok(m) => {
            let r = s.is_ready();
            let code = if r {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (code, axum::Json(json!({"name": m.model.name, "ready": r}))).into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn index(St(s): St<Arc<State>>) -> Response {
    let v: Vec<_> = s
        .models
        .iter()
        .map(|m| json!({"name": m.model.name, "version": m.model.version, "state": if s.is_ready() {"READY"} else {"UNAVAILABLE"}}))
        .collect();
    axum::Json(v).into_response()
}

async fn metrics(St(s): St<Arc<State>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

async fn infer(
    St(s): St<Arc<State>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    infer_any(s, name, None, headers, body).await
}

async fn infer_v(
    St(s): St<Arc<State>>,
    Path((name, v)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    infer_any(s, name, Some(v), headers, body).await
}

/// How a request body is compressed (`Content-Encoding`).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Encoding {
    Identity,
    Gzip,
    Deflate,
}

fn encoding(headers: &HeaderMap) -> Result<Encoding, ServeError> {
    let mut found = Encoding::Identity;
    for v in headers.get_all(header::CONTENT_ENCODING) {
        let v = String::from_utf8_lossy(v.as_bytes());
        for e in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let this = match e.to_ascii_lowercase().as_str() {
                "identity" => continue,
                "gzip" | "x-gzip" => Encoding::Gzip,
                "deflate" => Encoding::Deflate,
                _ => {
                    return Err(ServeError::Unsupported(format!(
                        "Content-Encoding {e} is not supported: send the body uncompressed or with gzip (or deflate)"
                    )))
                }
            };
            if found != Encoding::Identity {
                return Err(ServeError::Unsupported(format!(
                    "Content-Encoding {v} compresses the body twice: send it uncompressed or compressed once with gzip"
                )));
            }
            found = this;
        }
    }
    Ok(found)
}

/// `body` decompressed, refused (413) as soon as it passes `max` bytes: a small body that
/// inflates to gigabytes costs no more memory than the limit.
fn decompress(body: &[u8], enc: Encoding, max: usize) -> Result<bytes::Bytes, ServeError> {
    use std::io::Read;
    let name = match enc {
        Encoding::Identity => return Ok(bytes::Bytes::copy_from_slice(body)),
        Encoding::Gzip => "gzip",
        Encoding::Deflate => "deflate",
    };
    let reader: Box<dyn Read + '_> = match enc {
        Encoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(body)),
        // HTTP's deflate is zlib (RFC 1950; what tritonclient and zlib.compress send); some
        // clients send raw deflate (RFC 1951): the zlib header tells them apart.
        _ if body.len() >= 2
            && body[0] & 0x0f == 8
            && (u16::from(body[0]) << 8 | u16::from(body[1])) % 31 == 0 =>
        {
            Box::new(flate2::read::ZlibDecoder::new(body))
        }
        _ => Box::new(flate2::read::DeflateDecoder::new(body)),
    };
    let mut out = Vec::new();
    reader
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            ServeError::BadRequest(format!(
                "the request body is not valid {name} (Content-Encoding: {name}): {e}"
            ))
        })?;
    if out.len() > max {
        return Err(ServeError::TooLarge(format!(
            "the request body decompressed ({name}) is larger than the limit of {max} bytes (--max-body)"
        )));
    }
    Ok(out.into())
}

/// Read a body of at most `s.max_body` bytes, within the request timeout; a gzip or deflate
/// body (`Content-Encoding`) decompressed, to at most `s.max_body` bytes too.
pub async fn read_body(
    s: &State,
    headers: &HeaderMap,
    body: Body,
) -> Result<bytes::Bytes, ServeError> {
    let enc = encoding(headers)?;
    let raw = read_raw_body(s, headers, body).await?;
    if enc == Encoding::Identity {
        return Ok(raw);
    }
    let max = s.max_body;
    tokio::task::spawn_blocking(move || decompress(&raw, enc, max))
        .await
        .map_err(|e| ServeError::Internal(format!("decompressing the request body: {e}")))?
}

/// Read a body of at most `s.max_body` bytes, within the request timeout.
async fn read_raw_body(
    s: &State,
    headers: &HeaderMap,
    body: Body,
) -> Result<bytes::Bytes, ServeError> {
    let too_large = || {
        ServeError::TooLarge(format!(
            "the request body is larger than the limit of {} bytes (--max-body)",
            s.max_body
        ))
    };
    if let Some(n) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if n > s.max_body as u64 {
            return Err(too_large());
        }
    }
    match tokio::time::timeout(s.timeout, axum::body::to_bytes(body, s.max_body)).await {
        Err(_) => Err(ServeError::Timeout(format!(
            "the request body did not arrive within {} s",
            s.timeout.as_secs()
        ))),
        Ok(Err(e)) => {
            // http-body-util's LengthLimitError, inside axum's error.
            let mut src: Option<&dyn std::error::Error> = Some(&e);
            while let Some(x) = src {
                if x.to_string().contains("length limit exceeded") {
                    return Err(too_large());
                }
                src = x.source();
            }
            Err(ServeError::BadRequest(format!(
                "reading the request body: {e}"
            )))
        }
        Ok(Ok(b)) => Ok(b),
    }
}

async fn infer_any(
    s: Arc<State>,
    name: String,
    version: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let start = Instant::now();
    let served = match s.find(&name, version.as_deref()) {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let r = infer_one(&s, served, &headers, body).await;
    s.metrics
        .request(&served.model.name, "rest", start.elapsed(), r.is_ok());
    match r {
        Ok(resp) => resp,
        Err(e) => {
            tracing::info!(model = %served.model.name, status = e.status(), "infer: {}", e.message());
            e.into_response()
        }
    }
}

async fn infer_one(
    s: &State,
    served: &Served,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ServeError> {
    let body = read_body(s, headers, body).await?;
    let json_len = match headers.get(HEADER_LEN) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| {
                    ServeError::BadRequest(
                        "Inference-Header-Content-Length is not a number of bytes".into(),
                    )
                })?,
        ),
    };
    let mut req = request::parse(&served.model, &body, json_len)?;
    drop(body);
    let inputs = std::mem::take(&mut req.inputs);
    let outs = served.run(inputs, req.rows).await?;
    let (json, tail) = request::respond(&served.model, &req, outs);
    if tail.is_empty() {
        return Ok((
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            json,
        )
            .into_response());
    }
    let len = json.len();
    let mut all = json;
    all.extend_from_slice(&tail);
    let mut resp = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        )],
        all,
    )
        .into_response();
    resp.headers_mut()
        .insert(HEADER_LEN, HeaderValue::from(len as u64));
    Ok(resp)
}

/// Serve `app` on `listener` over HTTP/1.1 until `stop` resolves, then finish the requests in
/// flight. Each connection is its own task with hyper's header-read timeout (`axum::serve`
/// sets no timer, so it has none): a client that opens a connection and sends part of a
/// request head, or nothing, gets `header_timeout` to finish it, then the connection is closed.
/// A stalled client holds up no other, and no shutdown for longer than that.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: super::Counted<Router>,
    header_timeout: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let svc = hyper_util::service::TowerToHyperService::new(app.clone());
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(header_timeout);
        let conn = graceful.watch(b.serve_connection(hyper_util::rt::TokioIo::new(stream), svc));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, "connection closed: {e}");
            }
        });
    }
    // Stop accepting; idle connections close now, busy ones after their response.
    drop(listener);
    graceful.shutdown().await;
}
