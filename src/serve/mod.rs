//! `mlart serve SOURCE`: the models of a verified bundle over the Open Inference Protocol
//! (KServe v2) REST API and, with `--grpc-port`, its gRPC API, with ONNX Runtime (DESIGN.md
//! §11; docs/serving.md).
//!
//! Start: the source is read ([`source`]: a bundle's model files pulled and checked, or a
//! pulled directory; with `--key` the signatures must verify), the `validate` smoke test runs
//! on every model, each model is loaded into a pool of sessions ([`model`]); only then are the
//! ports bound and the startup line reported. Requests (REST in [`http`], gRPC in [`grpc`]) are
//! checked at the same door ([`request`]), joined into batches when the model has a free batch
//! dimension ([`batch`]), counted ([`metrics`]). SIGTERM or SIGINT stop both servers
//! accepting, finish the requests in flight, and [`serve`] returns.

pub mod batch;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod mlflow;
pub mod model;
pub mod request;
pub mod source;
pub mod tensor;

use crate::check::validate::{self, ModelInput, Runtime};
use crate::error::{Error, Result};
use model::{Model, SessionOptions};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What a request did wrong (or what went wrong serving it): status and message.
#[derive(Clone, Debug)]
pub enum ServeError {
    BadRequest(String),
    NotFound(String),
    TooLarge(String),
    /// A body in an encoding the server does not read (415).
    Unsupported(String),
    Timeout(String),
    Unavailable(String),
    Internal(String),
}

impl ServeError {
    pub fn status(&self) -> u16 {
        match self {
            ServeError::BadRequest(_) => 400,
            ServeError::NotFound(_) => 404,
            ServeError::Timeout(_) => 408,
            ServeError::TooLarge(_) => 413,
            ServeError::Unsupported(_) => 415,
            ServeError::Unavailable(_) => 503,
            ServeError::Internal(_) => 500,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            ServeError::BadRequest(m)
            | ServeError::NotFound(m)
            | ServeError::TooLarge(m)
            | ServeError::Unsupported(m)
            | ServeError::Timeout(m)
            | ServeError::Unavailable(m)
            | ServeError::Internal(m) => m,
        }
    }
}

/// How to serve.
#[derive(Clone, Debug)]
pub struct Options {
    pub source: String,
    pub host: String,
    /// 0: any free port (reported in the startup line).
    pub port: u16,
    /// The gRPC port (0: any free port); None: no gRPC server.
    pub grpc_port: Option<u16>,
    /// Trusted public keys: refuse to start unless the bundle's signatures verify.
    pub keys: Vec<PathBuf>,
    /// The ONNX Runtime library (else ORT_DYLIB_PATH, else the Python package).
    pub ort_lib: Option<PathBuf>,
    /// Sessions per model.
    pub workers: usize,
    /// Intra-op threads per session.
    pub threads: usize,
    /// Largest batch (rows) dynamic batching makes; 1 turns it off.
    pub max_batch: usize,
    /// How long the first request of a batch waits for others.
    pub batch_delay: Duration,
    /// Largest request body.
    pub max_body: usize,
    /// Time allowed to send a request's head (then the connection is closed), and its body
    /// (then 408).
    pub timeout: Duration,
    /// Time allowed to finish the requests in flight at shutdown.
    pub drain: Duration,
    /// The blob cache for a registry source.
    pub cache: Option<PathBuf>,
    pub cancel: crate::interrupt::Cancel,
}

/// The startup report: where the server listens and what it serves.
#[derive(Clone, Debug, Serialize)]
pub struct Started {
    pub address: String,
    pub port: u16,
    /// The gRPC port, when gRPC is served.
    pub grpc_port: Option<u16>,
    pub source: String,
    pub digest: Option<String>,
    pub verified_by: Vec<String>,
    pub models: Vec<StartedModel>,
    pub workers: usize,
    pub threads: usize,
    pub max_batch: usize,
    pub batch_delay_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct StartedModel {
    pub name: String,
    pub version: String,
    pub path: String,
    pub inputs: Vec<model::IoSpec>,
    pub outputs: Vec<model::IoSpec>,
    pub batching: bool,
    /// The samples its smoke test ran (those the bundle records: the spec's `samples:`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<String>,
}

/// A model with its batcher (when batching is on and the model allows it).
pub struct Served {
    pub model: Arc<Model>,
    batcher: Option<batch::Batcher>,
}

impl Served {
    pub async fn run(
        &self,
        inputs: Vec<tensor::Tensor>,
        rows: usize,
    ) -> std::result::Result<Vec<tensor::Tensor>, ServeError> {
        match &self.batcher {
            Some(b) if rows > 0 => b.run(inputs, rows).await,
            _ => self.model.run(inputs).await,
        }
    }
}

/// What the handlers share.
pub struct State {
    pub models: Vec<Arc<Served>>,
    pub metrics: Arc<metrics::Metrics>,
    pub max_body: usize,
    pub timeout: Duration,
    ready: AtomicBool,
    /// Requests (REST or gRPC) received and not yet answered: what a drain that runs out
    /// cuts off.
    in_flight: AtomicUsize,
}

/// One request in flight, counted in [`State`] until it is answered (or dropped).
struct InFlight(Arc<State>);

impl InFlight {
    fn enter(s: &Arc<State>) -> InFlight {
        s.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(s.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A service (the REST router, the gRPC service) whose requests are counted in flight from
/// the moment their head arrives (a body still coming counts) until the response is ready.
#[derive(Clone)]
pub struct Counted<S> {
    inner: S,
    state: Arc<State>,
}

impl<S> Counted<S> {
    pub fn new(inner: S, state: Arc<State>) -> Counted<S> {
        Counted { inner, state }
    }
}

impl<S, R> tonic::codegen::Service<R> for Counted<S>
where
    S: tonic::codegen::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = std::result::Result<S::Response, S::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::result::Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        let guard = InFlight::enter(&self.state);
        let f = self.inner.call(req);
        Box::pin(async move {
            let r = f.await;
            drop(guard);
            r
        })
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for Counted<S> {
    const NAME: &'static str = S::NAME;
}

/// How the server stopped.
#[derive(Clone, Debug, Default)]
pub struct Stopped {
    /// Requests still in flight when `--drain` ran out: their clients got no answer.
    pub cut_off: usize,
    /// The drain allowed.
    pub drain: Duration,
    /// A second signal cut the drain short (`cut_off` then counts what it cut off): the
    /// binary exits 130, as a second Ctrl-C does everywhere.
    pub interrupted: bool,
}

impl State {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// The model `name` (at `version`, when given): 404 otherwise.
    pub fn find(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> std::result::Result<&Served, ServeError> {
        let m = self
            .models
            .iter()
            .find(|m| m.model.name == name)
            .ok_or_else(|| {
                ServeError::NotFound(format!(
                    "no model {name:?}: this server serves {}",
                    self.models
                        .iter()
                        .map(|m| m.model.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        match version {
            Some(v) if v != m.model.version => Err(ServeError::NotFound(format!(
                "model {name:?} has no version {v:?}: it is served at version {:?}",
                m.model.version
            ))),
            _ => Ok(m),
        }
    }
}

impl Options {
    fn check(&self) -> Result<()> {
        if self.workers == 0 || self.workers > 256 {
            return Err(Error::input(format!(
                "--workers {} is not a number of sessions: use 1 to 256",
                self.workers
            )));
        }
        if self.threads == 0 || self.threads > 256 {
            return Err(Error::input(format!(
                "--threads {} is not a number of threads: use 1 to 256",
                self.threads
            )));
        }
        if self.max_batch == 0 || self.max_batch > validate::MAX_BATCH {
            return Err(Error::input(format!(
                "--max-batch {} is not a batch size: use 1 (no batching) to {}",
                self.max_batch,
                validate::MAX_BATCH
            )));
        }
        if self.max_body < 1024 {
            return Err(Error::input(format!(
                "--max-body {} is too small: use at least 1024 bytes",
                self.max_body
            )));
        }
        Ok(())
    }
}

/// Serve until SIGTERM/SIGINT (or `opts.cancel`). `started` is called once the port is bound
/// and every model passed its smoke test. Errors are for what keeps the server from starting;
/// how it stopped (requests cut off by the drain) is in [`Stopped`].
pub fn serve(
    opts: &Options,
    open: crate::check::inspect::OpenLocation,
    started: &dyn Fn(&Started),
) -> Result<Stopped> {
    opts.check()?;
    let keys = opts
        .keys
        .iter()
        .map(|k| crate::sign::load_public(k))
        .collect::<Result<Vec<_>>>()?;
    // Everything that may block (registry, files, the runtime) happens before the server's
    // own tokio runtime exists.
    let loaded = source::load(
        &opts.source,
        &source::SourceOptions {
            keys: &keys,
            cache: opts.cache.clone(),
            cancel: opts.cancel.clone(),
            open,
        },
    )?;
    let meta = &loaded.metadata;
    if let Some(m) = meta
        .models
        .iter()
        .find(|m| m.format.as_deref() != Some("onnx"))
    {
        return Err(Error::input(format!(
            "{}: model {} is {}, and serve runs ONNX models only: export it to ONNX (e.g. skl2onnx, torch.onnx.export) and bundle again",
            opts.source,
            m.path,
            m.format.as_deref().unwrap_or("of an unknown format")
        )));
    }
    let mut inputs: Vec<ModelInput> = meta
        .models
        .iter()
        .map(|m| ModelInput {
            path: m.path.clone(),
            file: loaded.dir.join(&m.path),
            format: m.format.clone(),
            samples: None,
            test_data: vec![],
        })
        .collect();
    // The samples the bundle records (the spec's `samples:`) run in the smoke test, as in
    // `mlart validate`.
    for (input, m) in inputs.iter_mut().zip(&meta.models) {
        let Some(s) = m.samples.as_deref() else {
            continue;
        };
        if validate::use_recorded_samples(input, &loaded.dir, s, &opts.source)? {
            continue;
        }
        if loaded.digest.is_some() {
            return Err(Error::input(format!(
                "{}: its mlart.json names {s} as the samples of model {} (models[].samples), and the bundle holds no such file or folder: the metadata does not match the files; bundle the project again",
                opts.source, m.path
            )));
        }
        tracing::warn!(
            "{}: the samples of model {} ({s}) are not in it: the smoke test runs without them; pull the whole bundle again to run them",
            opts.source,
            m.path
        );
    }
    // The smoke test of `validate`, before anything is reported ready.
    let vopts = validate::Options {
        ort_lib: opts.ort_lib.clone(),
        runs: 0,
        timings: false,
        cancel: opts.cancel.clone(),
        ..Default::default()
    };
    let report = validate::validate(&inputs, meta.schema.as_ref(), &vopts, &|_| {})?;
    if !report.passed {
        let fails: Vec<String> = report
            .models
            .iter()
            .flat_map(|m| {
                m.failures()
                    .into_iter()
                    .map(move |f| format!("{}: {f}", m.path))
            })
            .collect();
        return Err(Error::Check(format!(
            "{}: the smoke test failed, so the models are not served: {}. Run `mlart validate {}` for the full report",
            opts.source,
            fails.join("; "),
            opts.source
        )));
    }
    let rt = Runtime::get(opts.ort_lib.as_deref())?;
    let names = source::model_names(
        &meta
            .models
            .iter()
            .map(|m| m.path.clone())
            .collect::<Vec<_>>(),
    );
    let sopts = SessionOptions {
        workers: opts.workers,
        threads: opts.threads,
    };
    let mut models = Vec::new();
    for (m, name) in meta.models.iter().zip(&names) {
        if opts.cancel.is_cancelled() {
            return Err(Error::Interrupted);
        }
        models.push(Arc::new(Model::load(
            rt,
            name,
            &meta.version,
            &m.path,
            &loaded.dir.join(&m.path),
            meta.schema.as_ref(),
            &sopts,
        )?));
    }
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("mlart-serve")
        .build()
        .map_err(|e| Error::Io {
            context: "starting the server's runtime".into(),
            source: e,
        })?;
    let stopped = tokio_rt.block_on(async {
        let metrics = Arc::new(metrics::Metrics::default());
        let served: Vec<Arc<Served>> = models
            .into_iter()
            .map(|m| {
                let batcher = (opts.max_batch > 1 && m.batchable).then(|| {
                    batch::Batcher::start(m.clone(), opts.max_batch, opts.batch_delay, metrics.clone())
                });
                Arc::new(Served { model: m, batcher })
            })
            .collect();
        let state = Arc::new(State {
            models: served,
            metrics,
            max_body: opts.max_body,
            timeout: opts.timeout,
            ready: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
        });
        let addr = format!("{}:{}", opts.host, opts.port);
        let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|e| {
            Error::input(format!(
                "cannot listen on {addr}: {e}. Choose another --port (0 picks a free one) or --host"
            ))
        })?;
        let local = listener.local_addr().map_err(|e| Error::Io {
            context: "reading the listening address".into(),
            source: e,
        })?;
        let grpc_listener = match opts.grpc_port {
            None => None,
            Some(p) => {
                let addr = format!("{}:{p}", opts.host);
                Some(tokio::net::TcpListener::bind(&addr).await.map_err(|e| {
                    Error::input(format!(
                        "cannot listen on {addr} for gRPC: {e}. Choose another --grpc-port (0 picks a free one)"
                    ))
                })?)
            }
        };
        let grpc_port = match &grpc_listener {
            None => None,
            Some(l) => Some(
                l.local_addr()
                    .map_err(|e| Error::Io {
                        context: "reading the gRPC listening address".into(),
                        source: e,
                    })?
                    .port(),
            ),
        };
        // SIGTERM is handled from here on: before anyone is told the server is up.
        let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        state.ready.store(true, Ordering::SeqCst);
        started(&Started {
            address: local.to_string(),
            port: local.port(),
            grpc_port,
            source: opts.source.clone(),
            digest: loaded.digest.clone(),
            verified_by: loaded.verified_by.clone(),
            models: state
                .models
                .iter()
                .zip(&inputs)
                .map(|(s, i)| StartedModel {
                    name: s.model.name.clone(),
                    version: s.model.version.clone(),
                    path: s.model.path.clone(),
                    inputs: s.model.inputs.clone(),
                    outputs: s.model.outputs.clone(),
                    batching: s.batcher.is_some(),
                    samples: i
                        .samples
                        .iter()
                        .map(|f| f.file.clone())
                        .chain(i.test_data.iter().map(|t| t.name.clone()))
                        .collect(),
                })
                .collect(),
            workers: opts.workers,
            threads: opts.threads,
            max_batch: opts.max_batch,
            batch_delay_ms: opts.batch_delay.as_secs_f64() * 1000.0,
        });
        let app = Counted::new(http::router(state.clone()), state.clone());
        // One stop for both servers: the signal flips it, each stops accepting and finishes
        // what it has in flight.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let rest = http::serve(listener, app, opts.timeout, stopped(stop_rx.clone()));
        let rest = async move {
            rest.await;
            Ok::<(), Error>(())
        };
        let grpc_state = state.clone();
        let grpc = async move {
            let Some(l) = grpc_listener else {
                return Ok(());
            };
            let incoming = tonic::transport::server::TcpIncoming::from(l).with_nodelay(Some(true));
            tonic::transport::Server::builder()
                .add_service(Counted::new(grpc::service(grpc_state.clone()), grpc_state))
                .serve_with_incoming_shutdown(incoming, stopped(stop_rx))
                .await
                .map_err(|e| Error::Io {
                    context: "serving gRPC".into(),
                    source: std::io::Error::other(e),
                })
        };
        let servers = async { tokio::try_join!(rest, grpc) };
        let stop_state = state.clone();
        let cancel = opts.cancel.clone();
        let drain = opts.drain;
        let signal_then_drain = async move {
            shutdown_signal(term, &cancel).await;
            tracing::info!("shutting down: finishing the requests in flight");
            stop_state.ready.store(false, Ordering::SeqCst);
            let _ = stop_tx.send(true);
            // The drain is bounded: after the signal, at most `drain` for the requests in
            // flight, and a second signal ends it at once. (Told by the binary's handler,
            // which sees SIGTERM too; not by `term`, which may still hold the first SIGTERM
            // when the handler's `cancel` ended the wait above.)
            let again = async {
                while !cancel.is_cancelled_again() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(drain) => false,
                _ = again => true,
            }
        };
        tokio::select! {
            r = servers => r.map(|_| Stopped { cut_off: 0, drain, interrupted: false }),
            interrupted = signal_then_drain => {
                let cut_off = state.in_flight.load(Ordering::SeqCst);
                match interrupted {
                    true => tracing::warn!(
                        "a second signal during the drain: stopping now, {cut_off} request(s) in flight"
                    ),
                    false => tracing::warn!(
                        "{cut_off} request(s) still in flight after --drain {} s: stopping anyway",
                        drain.as_secs()
                    ),
                }
                Ok(Stopped { cut_off, drain, interrupted })
            }
        }
    })?;
    // Sessions and the temp directory go with `loaded` and the runtime.
    tokio_rt.shutdown_timeout(Duration::from_secs(1));
    drop(loaded);
    Ok(stopped)
}

/// SIGTERM, or SIGINT (which the binary's handler turns into `cancel`).
async fn shutdown_signal(
    mut term: Option<tokio::signal::unix::Signal>,
    cancel: &crate::interrupt::Cancel,
) {
    let term = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    let int = async {
        while !cancel.is_cancelled() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        _ = term => {},
        _ = int => {},
    }
}
