//! The validate worker: `mlart validate` runs each ONNX model in a child process (this
//! executable with [`WORKER_ARG`]), so a crash of the runtime on a hostile model fails that
//! model instead of ending mlart. The request goes in as JSON on the child's stdin, the
//! response comes back as JSON on its stdout.

#[cfg(feature = "validate")]
use super::types::Check;
use super::types::{ModelReport, RuntimeInfo};
#[cfg(feature = "validate")]
use super::ModelInput;
use super::{Options, SampleSet, SamplesFile};
use crate::error::Error;
#[cfg(feature = "validate")]
use crate::error::Result;
use crate::format::feature_schema::FeatureSchema;
#[cfg(feature = "validate")]
use std::path::Path;
use std::path::PathBuf;

/// The argument that makes the mlart binary serve [`worker`].
pub const WORKER_ARG: &str = "__validate-worker";

/// What a worker process is asked (JSON on its stdin).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct WorkerRequest {
    pub path: String,
    pub file: PathBuf,
    pub format: Option<String>,
    pub samples: Option<SamplesFile>,
    #[serde(default)]
    pub test_data: Vec<SampleSet>,
    pub schema: Option<FeatureSchema>,
    pub opts: Options,
}

/// What a worker answers (JSON on its stdout).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerResponse {
    Report {
        report: Box<ModelReport>,
        runtime: RuntimeInfo,
    },
    Error {
        message: String,
        exit_code: u8,
    },
}

impl WorkerResponse {
    fn error(e: &Error) -> WorkerResponse {
        WorkerResponse::Error {
            message: e.to_string(),
            exit_code: e.exit_code(),
        }
    }

    /// The answer when the request could not be read from stdin.
    pub fn unreadable(e: &std::io::Error) -> WorkerResponse {
        WorkerResponse::Error {
            message: format!("reading the request: {e}"),
            exit_code: crate::error::Kind::Input.exit_code(),
        }
    }
}

/// The worker's whole job: a request as read from stdin, the response to write to stdout.
pub fn serve(body: &[u8]) -> WorkerResponse {
    match serde_json::from_slice::<WorkerRequest>(body) {
        Err(e) => WorkerResponse::Error {
            message: format!(
                "{WORKER_ARG}: not a worker request ({e}); it is run by `mlart validate`"
            ),
            exit_code: crate::error::Kind::Usage.exit_code(),
        },
        Ok(req) => answer(req),
    }
}

#[cfg(feature = "validate")]
fn answer(req: WorkerRequest) -> WorkerResponse {
    worker(req)
}

#[cfg(not(feature = "validate"))]
fn answer(_req: WorkerRequest) -> WorkerResponse {
    WorkerResponse::error(&super::unavailable())
}

/// Serve one request in this (child) process.
#[cfg(feature = "validate")]
pub fn worker(req: WorkerRequest) -> WorkerResponse {
    let rt = match super::runtime::Runtime::get(req.opts.ort_lib.as_deref()) {
        Ok(rt) => rt,
        Err(e) => return WorkerResponse::error(&e),
    };
    let m = ModelInput {
        path: req.path,
        file: req.file,
        format: req.format,
        samples: req.samples.map(std::sync::Arc::new),
        test_data: req.test_data,
    };
    WorkerResponse::Report {
        report: Box::new(rt.validate_model(&m, req.schema.as_ref(), &req.opts)),
        runtime: rt.info(true),
    }
}

/// Validate one model in a child process; a crash fails the model, not mlart.
#[cfg(feature = "validate")]
pub(super) fn isolated(
    exe: &Path,
    m: &ModelInput,
    schema: Option<&FeatureSchema>,
    opts: &Options,
) -> Result<(ModelReport, Option<RuntimeInfo>)> {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let req = WorkerRequest {
        path: m.path.clone(),
        file: m.file.clone(),
        format: m.format.clone(),
        samples: m.samples.as_deref().cloned(),
        test_data: m.test_data.clone(),
        schema: schema.cloned(),
        opts: opts.clone(),
    };
    let body = serde_json::to_vec(&req).map_err(|e| Error::input(format!("{e}")))?;
    let mut child = Command::new(exe)
        .arg(WORKER_ARG)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("RUST_LOG")
        .spawn()
        .map_err(|e| Error::Io {
            context: format!("starting {}", exe.display()),
            source: e,
        })?;
    // Feed the request and drain the answers on threads, so a worker that hangs can be
    // stopped at the deadline (or on Ctrl-C).
    let stdin = child.stdin.take();
    let writer = std::thread::spawn(move || stdin.map(|mut w| w.write_all(&body)));
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut r) = r {
                let _ = (&mut r).take(64 << 20).read_to_end(&mut v);
                let _ = std::io::copy(&mut r, &mut std::io::sink());
            }
            v
        })
    };
    let out_reader = drain(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn std::io::Read + Send>),
    );
    let err_reader = drain(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn std::io::Read + Send>),
    );
    let deadline = (opts.timeout > 0)
        .then(|| std::time::Instant::now() + std::time::Duration::from_secs(opts.timeout));
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) => {}
            Err(e) => {
                let _ = child.kill();
                return Err(Error::Io {
                    context: format!("running {}", exe.display()),
                    source: e,
                });
            }
        }
        if opts.cancel.is_cancelled() || deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    let written = writer.join().ok().flatten();
    if opts.cancel.is_cancelled() {
        return Err(Error::Interrupted);
    }
    let mut failed = ModelReport::not_validated(&m.path, m.format.as_deref());
    failed.validated = true;
    failed.reason = None;
    failed.passed = Some(false);
    if let Ok(h) = super::onnx_header::scan_file(&m.file) {
        failed.ir_version = h.ir_version;
        failed.opset = h.opset;
    }
    let Some(status) = status else {
        failed.checks.push(Check::fail(
            "timeout",
            format!(
                "ONNX Runtime did not finish {} within {} s (--timeout); its worker was stopped",
                m.file.display(),
                opts.timeout
            ),
        ));
        return Ok((failed, None));
    };
    let out = std::process::Output {
        status,
        stdout,
        stderr,
    };
    if out.status.success() {
        if let Ok(resp) = serde_json::from_slice::<WorkerResponse>(&out.stdout) {
            return match resp {
                WorkerResponse::Report { report, runtime } => Ok((*report, Some(runtime))),
                WorkerResponse::Error { message, exit_code } => Err(if exit_code == 1 {
                    Error::Check(message)
                } else {
                    Error::Input(message)
                }),
            };
        }
    }
    // The worker died: a signal, an abort, or garbage on stdout.
    let how = describe_exit(&out.status);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: String = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| {
            format!(
                " (its last words: {})",
                l.chars().take(300).collect::<String>()
            )
        })
        .unwrap_or_default();
    if let Some(Err(e)) = written {
        tracing::debug!("writing to the worker: {e}");
    }
    let mut r = failed;
    r.checks.push(Check::fail(
        "crash",
        format!(
            "ONNX Runtime crashed on {} ({how}){tail}; mlart ran it in a separate process and carried on",
            m.file.display()
        ),
    ));
    Ok((r, None))
}

#[cfg(feature = "validate")]
fn describe_exit(s: &std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = s.signal() {
            let name = match sig {
                libc::SIGSEGV => "SIGSEGV",
                libc::SIGBUS => "SIGBUS",
                libc::SIGABRT => "SIGABRT",
                libc::SIGILL => "SIGILL",
                libc::SIGFPE => "SIGFPE",
                libc::SIGKILL => "SIGKILL, out of memory?",
                _ => "a signal",
            };
            return format!("killed by signal {sig}, {name}");
        }
    }
    match s.code() {
        Some(c) => format!("exit code {c}"),
        None => "no exit code".into(),
    }
}

#[cfg(all(test, feature = "validate", unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\ncat >/dev/null\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn model() -> ModelInput {
        ModelInput {
            path: "model/iris.onnx".into(),
            file: Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/iris/model/iris.onnx"),
            format: Some("onnx".into()),
            samples: None,
            test_data: vec![],
        }
    }

    #[test]
    fn a_worker_that_crashes_fails_the_model_not_mlart() {
        let d = tempfile::tempdir().unwrap();
        let segv = script(
            d.path(),
            "segv",
            "echo 'Segmentation fault in onnxruntime' >&2\nkill -SEGV $$",
        );
        let (r, info) = isolated(&segv, &model(), None, &Options::default()).unwrap();
        assert!(info.is_none());
        assert_eq!((r.validated, r.passed), (true, Some(false)));
        let c = &r.checks[0];
        assert_eq!(c.name, "crash");
        assert!(
            c.message.contains("signal 11, SIGSEGV")
                && c.message.contains("Segmentation fault in onnxruntime"),
            "{}",
            c.message
        );
        // the header is still read by the parent
        assert_eq!(r.ir_version, Some(8));
        let abort = script(d.path(), "abort", "kill -ABRT $$");
        let (r, _) = isolated(&abort, &model(), None, &Options::default()).unwrap();
        assert!(r.checks[0].message.contains("SIGABRT"), "{:?}", r.checks);
        let garbage = script(d.path(), "garbage", "echo not json");
        let (r, _) = isolated(&garbage, &model(), None, &Options::default()).unwrap();
        assert!(
            r.checks[0].message.contains("exit code 0"),
            "{:?}",
            r.checks
        );
        // a worker that cannot load the runtime: the error, as from the parent
        let err = script(
            d.path(),
            "err",
            "echo '{\"error\": {\"message\": \"no runtime here\", \"exit_code\": 2}}'",
        );
        let e = isolated(&err, &model(), None, &Options::default()).unwrap_err();
        // a worker that hangs is stopped at the deadline
        let hang = script(d.path(), "hang", "exec sleep 30");
        let opts = Options {
            timeout: 1,
            ..Default::default()
        };
        let started = std::time::Instant::now();
        let (r, _) = isolated(&hang, &model(), None, &opts).unwrap();
        assert!(started.elapsed().as_secs() < 10);
        assert_eq!(r.checks[0].name, "timeout", "{:?}", r.checks);
        assert_eq!(r.passed, Some(false));
        assert_eq!(
            (e.exit_code(), e.to_string()),
            (2, "no runtime here".to_string())
        );
    }
}
