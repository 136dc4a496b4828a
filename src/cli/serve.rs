//! `mlart serve SOURCE`: the bundle's models over the Open Inference Protocol
//! (`mlart::serve`); the startup line, and the exit when the server stops.

use super::args::RegistryArgs;
use mlart::interrupt::Cancel;
use mlart::Result;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// What to serve: a bundle (layout directory, archive, `oci:DIR[:TAG]`,
    /// `oci-archive:FILE[:TAG]`, registry REF) or a directory written by `mlart pull`.
    source: String,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The HTTP port (0: a free one, reported in the startup line).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Also serve the Open Inference Protocol over gRPC on this port (0: a free one, reported
    /// in the startup line as `grpc_port`). Without it, no gRPC server.
    #[arg(long, value_name = "PORT")]
    grpc_port: Option<u16>,
    /// A trusted public key (repeatable): refuse to start unless the bundle's signatures
    /// verify with one and every served file matches its digest.
    #[arg(long = "key", value_name = "PUB")]
    keys: Vec<PathBuf>,
    /// The ONNX Runtime library (default: ORT_DYLIB_PATH, else the `onnxruntime` Python
    /// package).
    #[arg(long, value_name = "PATH")]
    ort_lib: Option<PathBuf>,
    /// The execution provider. Only `cpu` in this build.
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "cuda"])]
    provider: String,
    /// ONNX Runtime sessions per model: requests run in parallel on them (default: the
    /// number of CPUs).
    #[arg(long)]
    workers: Option<usize>,
    /// Intra-op threads per session.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Dynamic batching: the most rows joined into one run (1: off). Only for models whose
    /// inputs and outputs have a free first dimension.
    #[arg(long, default_value_t = 64)]
    max_batch: usize,
    /// Dynamic batching: how long the first request of a batch waits for others, in
    /// milliseconds (fractions allowed).
    #[arg(long, value_name = "MS", default_value_t = 0.0)]
    batch_delay: f64,
    /// The largest request body, in bytes (larger: 413).
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    max_body: usize,
    /// Seconds a client may take to send a request's head (slower: the connection is closed;
    /// an idle keep-alive connection too), and again its body (slower: 408).
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    timeout: u64,
    /// Seconds to finish the requests in flight after SIGTERM/SIGINT; any still in flight
    /// then are cut off, and serve exits 1 saying how many. A second signal ends the drain at
    /// once: exit 130.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    drain: u64,
    /// Do not use the local blob cache for a registry source.
    #[arg(long)]
    no_cache: bool,
    #[command(flatten)]
    registry: RegistryArgs,
}

pub fn run(mut a: Args, json: bool, cancel: &Cancel) -> Result<ExitCode> {
    a.registry.cancel = cancel.clone();
    if a.provider == "cuda" {
        return Err(mlart::Error::input(
            "--provider cuda: this build of mlart runs ONNX Runtime's CPU provider only; serve with --provider cpu",
        ));
    }
    if !(a.batch_delay.is_finite() && (0.0..=10_000.0).contains(&a.batch_delay)) {
        return Err(mlart::Error::input(format!(
            "--batch-delay {} is not a delay: use 0 to 10000 milliseconds",
            a.batch_delay
        )));
    }
    let workers = a.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let opts = mlart::serve::Options {
        source: a.source.clone(),
        host: a.host.clone(),
        port: a.port,
        grpc_port: a.grpc_port,
        keys: a.keys.clone(),
        ort_lib: a.ort_lib.clone(),
        workers,
        threads: a.threads,
        max_batch: a.max_batch,
        batch_delay: Duration::from_secs_f64(a.batch_delay / 1000.0),
        max_body: a.max_body,
        timeout: Duration::from_secs(a.timeout.max(1)),
        drain: Duration::from_secs(a.drain),
        cache: if a.no_cache {
            None
        } else {
            mlart::extract::pull::default_cache()
        },
        cancel: cancel.clone(),
    };
    let open = super::opener(&a.registry);
    let stopped = mlart::serve::serve(&opts, &open, &|s| {
        if json {
            // One line, for process managers and tests.
            rawln!("{}", serde_json::to_string(s).unwrap_or_default());
        } else {
            outln!(
                "serving {} on http://{} ({} session(s) x {} thread(s) per model{})",
                s.source,
                s.address,
                s.workers,
                s.threads,
                if s.max_batch > 1 {
                    format!(", batches up to {}", s.max_batch)
                } else {
                    String::new()
                }
            );
            if let Some(p) = s.grpc_port {
                outln!("  gRPC (inference.GRPCInferenceService) on port {p}");
            }
            for k in &s.verified_by {
                outln!("  signature verified: {k}");
            }
            for m in &s.models {
                outln!(
                    "  model {} (version {}, {}): POST /v2/models/{}/infer{}",
                    m.name,
                    m.version,
                    m.path,
                    m.name,
                    if m.batching { ", batched" } else { "" }
                );
            }
        }
    })?;
    if stopped.interrupted {
        // A second Ctrl-C or SIGTERM: exit 130, as everywhere in mlart, after saying what the
        // drain it cut short left unanswered.
        eprintln!(
            "stopped: a second signal ended the drain: {} request(s) cut off",
            stopped.cut_off
        );
        return Err(mlart::Error::Interrupted);
    }
    if stopped.cut_off > 0 {
        // Clients went unanswered: not a clean stop, so not exit 0 (the drain is the check).
        return Err(mlart::Error::Check(format!(
            "stopped: {} request(s) cut off after --drain {} s, their clients got no answer: give them more time with a larger --drain",
            stopped.cut_off,
            stopped.drain.as_secs()
        )));
    }
    if !json {
        eprintln!("stopped: every request in flight was answered");
    }
    Ok(ExitCode::SUCCESS)
}
