//! One served model: its inputs and outputs in OIP terms, a pool of ONNX Runtime sessions
//! (loaded once at start), and the run of a request on one of them.
//!
//! Concurrency: `workers` sessions of the same model, each run by one request (or one merged
//! batch) at a time on the blocking thread pool, each with `threads` intra-op threads. A
//! request waits for a free session (a semaphore), so at most `workers` runs are in flight and
//! memory stays bounded.

use super::tensor::{self, Tensor};
use super::ServeError;
use crate::check::validate::{kind_of, Dim, Runtime, ValueKind};
use crate::error::{Error, Result};
use crate::format::feature_schema::FeatureSchema;
use ort::session::{Session, SessionInputValue};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// An input or output: name, OIP datatype, dims (-1: dynamic).
#[derive(Clone, Debug, serde::Serialize)]
pub struct IoSpec {
    pub name: String,
    pub datatype: &'static str,
    pub shape: Vec<i64>,
    /// The feature names of its columns (from the bundle's feature schema), for messages.
    #[serde(skip)]
    pub features: Vec<String>,
}

impl IoSpec {
    pub fn describe(&self) -> String {
        let mut s = format!("{} {:?}", self.datatype, self.shape);
        if !self.features.is_empty() {
            s.push_str(&format!(" (columns {})", self.features.join(", ")));
        }
        s
    }
}

/// How sessions are made.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// Sessions per model (parallel runs).
    pub workers: usize,
    /// Intra-op threads per session.
    pub threads: usize,
}

pub struct Model {
    pub name: String,
    pub version: String,
    /// The model's path in the bundle.
    pub path: String,
    pub inputs: Vec<IoSpec>,
    pub outputs: Vec<IoSpec>,
    /// Every input and output has a dynamic first dimension and fixed others: requests can be
    /// joined along it.
    pub batchable: bool,
    pool: Arc<Pool>,
}

struct Pool {
    sessions: Mutex<Vec<Session>>,
    free: Arc<tokio::sync::Semaphore>,
}

/// A free session, reserved.
pub type Permit = tokio::sync::OwnedSemaphorePermit;

fn io_spec(name: &str, kind: &ValueKind, what: &str, model: &str) -> Result<IoSpec> {
    let ValueKind::Tensor { dtype, dims } = kind else {
        return Err(Error::input(format!(
            "model {model}: {what} {name:?} is {}, which the Open Inference Protocol cannot carry: serve needs tensor inputs and outputs (for scikit-learn classifiers, export with `options={{'zipmap': False}}`)",
            kind.describe()
        )));
    };
    let datatype = tensor::oip_datatype(dtype).ok_or_else(|| {
        Error::input(format!(
            "model {model}: {what} {name:?} has element type {dtype}, which serve does not handle (it serves {})",
            tensor::DATATYPES.join(", ")
        ))
    })?;
    Ok(IoSpec {
        name: name.to_string(),
        datatype,
        shape: dims
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) if *n >= 0 => *n,
                _ => -1,
            })
            .collect(),
        features: Vec::new(),
    })
}

impl Model {
    /// Load `file` into `opts.workers` sessions and read its signature.
    pub fn load(
        rt: &Runtime,
        name: &str,
        version: &str,
        path: &str,
        file: &Path,
        schema: Option<&FeatureSchema>,
        opts: &SessionOptions,
    ) -> Result<Model> {
        let mut sessions = Vec::new();
        for _ in 0..opts.workers.max(1) {
            let s = (|| -> ort::Result<Session> {
                Session::builder(rt.env())?
                    .with_intra_threads(opts.threads.max(1))?
                    .with_inter_threads(1)?
                    .commit_from_file(file)
            })()
            .map_err(|e| {
                Error::input(format!(
                    "model {name}: ONNX Runtime cannot load {path} ({}): {e}",
                    file.display()
                ))
            })?;
            sessions.push(s);
        }
        let first = &sessions[0];
        let inputs = first
            .inputs()
            .iter()
            .map(|o| io_spec(o.name(), &kind_of(o.dtype()), "input", name))
            .collect::<Result<Vec<_>>>()?;
        let outputs = first
            .outputs()
            .iter()
            .map(|o| io_spec(o.name(), &kind_of(o.dtype()), "output", name))
            .collect::<Result<Vec<_>>>()?;
        let mut inputs = inputs;
        if let Some(s) = schema {
            // One [N, k] input whose k columns are the schema's k features: name them.
            if inputs.len() == 1
                && inputs[0].shape.len() == 2
                && inputs[0].shape[1] == s.features.len() as i64
            {
                inputs[0].features = s.features.iter().map(|f| f.name.clone()).collect();
            }
        }
        let dyn_first = |v: &[IoSpec]| {
            v.iter()
                .all(|s| s.shape.first() == Some(&-1) && s.shape[1..].iter().all(|d| *d >= 0))
        };
        let batchable = dyn_first(&inputs) && dyn_first(&outputs);
        let n = sessions.len();
        Ok(Model {
            name: name.to_string(),
            version: version.to_string(),
            path: path.to_string(),
            inputs,
            outputs,
            batchable,
            pool: Arc::new(Pool {
                sessions: Mutex::new(sessions),
                free: Arc::new(tokio::sync::Semaphore::new(n)),
            }),
        })
    }

    /// Wait for a free session.
    pub async fn permit(&self) -> std::result::Result<Permit, ServeError> {
        self.pool
            .free
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ServeError::Unavailable("the server is shutting down".into()))
    }

    /// Run checked inputs on a free session: every output.
    pub async fn run(&self, inputs: Vec<Tensor>) -> std::result::Result<Vec<Tensor>, ServeError> {
        let permit = self.permit().await?;
        self.run_on(permit, inputs).await
    }

    /// Run on the session `_permit` reserved.
    pub async fn run_on(
        &self,
        _permit: Permit,
        inputs: Vec<Tensor>,
    ) -> std::result::Result<Vec<Tensor>, ServeError> {
        let pool = self.pool.clone();
        let name = self.name.clone();
        tokio::task::spawn_blocking(move || {
            let mut session = pool
                .sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop()
                .ok_or_else(|| ServeError::Internal("no free session".into()))?;
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run_session(&mut session, &inputs)
            }));
            pool.sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(session);
            match r {
                Ok(r) => r.map_err(|e| ServeError::Internal(format!("model {name}: {e}"))),
                Err(_) => Err(ServeError::Internal(format!(
                    "model {name}: the ONNX Runtime binding failed on this request"
                ))),
            }
        })
        .await
        .map_err(|e| ServeError::Internal(format!("the run did not finish: {e}")))?
    }
}

fn run_session(s: &mut Session, inputs: &[Tensor]) -> std::result::Result<Vec<Tensor>, String> {
    let values = inputs
        .iter()
        .map(|t| tensor::to_ort(t).map(|v| (t.name.clone(), v)))
        .collect::<std::result::Result<Vec<_>, String>>()?;
    let feeds: Vec<(&str, SessionInputValue)> =
        values.iter().map(|(n, v)| (n.as_str(), v.into())).collect();
    let outs = s.run(feeds).map_err(|e| e.to_string())?;
    outs.iter()
        .map(|(name, v)| tensor::from_ort(name, &v))
        .collect()
}
