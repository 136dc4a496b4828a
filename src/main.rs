//! The `mlart` command line: parse flags, call the library, render the result.

mod cli;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "mlart",
    version,
    about = "Turn the artifacts of an ML project into reproducible OCI images and artifacts",
    long_about = None,
    propagate_version = true
)]
struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Machine-readable JSON on stdout (errors too).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write mlart.yaml for a project folder, guessing the kind of each file.
    Init(cli::init::Args),
    /// Pack the files of mlart.yaml into an OCI image layout or archive.
    Bundle(cli::bundle::Args),
    /// Show what a bundle holds: files, metrics, schema, layers.
    Inspect(cli::inspect::Args),
    /// ONNX smoke tests with ONNX Runtime: load, schema, synthetic and sample runs, finite
    /// outputs, latency. Exit 1 when a check fails.
    Validate(cli::validate::Args),
    /// Release gate: metric thresholds, regressions against a baseline, validation,
    /// signature and schema compatibility. Exit 1 when a gate fails.
    Gate(cli::gate::Args),
    /// What changed between two bundles: files, metrics, schema, environment, models.
    Diff(cli::diff::Args),
    /// Make an ECDSA P-256 key pair for signing (PREFIX.key, PREFIX.pub).
    Keygen(cli::keygen::Args),
    /// Add an OCI signature to a bundle in a layout, an archive or a registry.
    Sign(cli::sign::Args),
    /// Add signed attestations to a bundle: SLSA provenance and a CycloneDX ML-BOM.
    Attest(cli::attest::Args),
    /// Check a bundle's signatures and digests, or pulled files against their model.sig.
    Verify(cli::verify::Args),
    /// Push a layout or archive to a registry (blobs first, the manifest last).
    Push(cli::push::Args),
    /// Pull a bundle from a registry into a directory: verified, safe extraction.
    Pull(cli::pull::Args),
    /// Copy a bundle between registries, layouts and archives.
    Copy(cli::copy::Args),
    /// Serve a bundle's ONNX models over the Open Inference Protocol (KServe v2) REST API.
    #[cfg(feature = "validate")]
    Serve(cli::serve::Args),
    /// List the tags of a registry repository.
    Tags(cli::tags::Args),
    /// The local cache of pulled layers: list it, or prune it by size and age.
    Cache(cli::cache::Args),
    /// Store credentials for a registry (like `docker login`).
    Login(cli::login::Args),
    /// Remove the stored credentials of a registry.
    Logout(cli::login::LogoutArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish) on stdout.
    Completions(cli::completions::Args),
    /// Print the man page (roff) on stdout, or write one page per verb with --out DIR.
    Man(cli::completions::ManArgs),
    /// Not a verb (importing is `init --from`): says so, whatever follows it.
    #[command(hide = true, disable_help_flag = true)]
    Import(cli::init::ImportArgs),
    /// Internal: validate one model for `mlart validate` (request on stdin, report on stdout).
    #[command(name = "__validate-worker", hide = true)]
    ValidateWorker,
    /// Not a verb: says that `copy --format` converts (hidden).
    #[command(hide = true)]
    Convert(cli::convert::Hint),
}

/// Keep memory that is freed for the next allocation instead of returning it to the kernel.
///
/// The HTTP client reads a download into a new buffer of ~400 KiB for every chunk it hands
/// over, and glibc trims a thread's heap (`madvise`) as soon as its top is free: every chunk
/// meant fresh pages, faulted and zeroed inside the socket copy (~240 trims and ~5% of a 1 GiB
/// pull's CPU; on a VM that hands freed memory back to its host, more). An 8 MiB trim
/// threshold lets the freed buffers be reused. Setting it freezes glibc's self-adjusting mmap
/// threshold at its start value (128 KiB, which would mmap every such buffer), so the mmap
/// threshold is set too, to the largest value glibc would adjust it to (32 MiB; push's 4 MiB
/// chunks come from the heap either way). Measured: a 1 GiB pull 0.3–0.5 s less system time
/// for 4–8 MiB more resident memory; push unchanged. With `GLIBC_TUNABLES` set, the allocator is
/// left as that configures it.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("GLIBC_TUNABLES").is_none() {
        // SAFETY: mallopt only changes allocator parameters; called before any thread starts.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
        }
    }
}

/// `bundle` allocates its file list on several threads (the walk, the layers): memory they
/// free stays in their own arenas, resident, while the main thread grows its own. Two arenas
/// instead of glibc's eight per core: 100,000 files peaked at 82 MiB instead of 101 MiB, with
/// no time lost (the hot loops do not allocate per byte).
fn few_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("GLIBC_TUNABLES").is_none() {
        // SAFETY: mallopt only changes allocator parameters; no other thread has started.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

fn main() -> ExitCode {
    // SIGPIPE stays ignored: a closed stdout is handled by `cli::write_stdout` (quiet exit 0);
    // restoring the default would let a registry that resets a connection mid-write (hyper
    // writes with writev, which has no MSG_NOSIGNAL) kill the process instead of a retry.
    keep_freed_memory();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    init_logging(cli.verbose);
    if matches!(cli.command, Command::Bundle(_)) {
        few_arenas();
    }
    // The one cancellation token of this run, passed down to every verb: the first Ctrl-C
    // cancels it (work stops, temp outputs are removed), a second one exits at once.
    let cancel = mlart::interrupt::Cancel::new();
    let on_signal = cancel.clone();
    // SIGTERM (what CI sends on cancel) and SIGHUP too: ctrlc's `termination` feature. A
    // second signal gives the cleanup under way a moment, then exits; whatever a hard stop
    // leaves (`kill -9`) the next run in that folder removes (interrupt::temp_dir_in).
    let _ = ctrlc::set_handler(move || {
        if on_signal.is_cancelled() {
            // (serve stops its drain at once and exits 130 itself)
            on_signal.cancel_again();
            std::thread::sleep(std::time::Duration::from_secs(2));
            std::process::exit(130);
        }
        on_signal.cancel();
    });
    let json = cli.json;
    let result = match cli.command {
        Command::Init(a) => cli::init::run(a, json, &cancel),
        Command::Bundle(a) => cli::bundle::run(a, json, &cancel),
        Command::Inspect(a) => cli::inspect::run(a, json, &cancel),
        Command::Validate(a) => cli::validate::run(a, json, &cancel),
        Command::Gate(a) => cli::gate::run(a, json, &cancel),
        Command::Diff(a) => cli::diff::run(a, json, &cancel),
        Command::Keygen(a) => cli::keygen::run(a, json, &cancel),
        Command::Sign(a) => cli::sign::run(a, json, &cancel),
        Command::Attest(a) => cli::attest::run(a, json, &cancel),
        Command::Verify(a) => cli::verify::run(a, json, &cancel),
        Command::Push(a) => cli::push::run(a, json, &cancel),
        Command::Pull(a) => cli::pull::run(a, json, &cancel),
        Command::Copy(a) => cli::copy::run(a, json, &cancel),
        #[cfg(feature = "validate")]
        Command::Serve(a) => cli::serve::run(a, json, &cancel),
        Command::Tags(a) => cli::tags::run(a, json, &cancel),
        Command::Cache(a) => cli::cache::run(a, json),
        Command::Login(a) => cli::login::run(a, json, &cancel),
        Command::Logout(a) => cli::login::run_logout(a, json, &cancel),
        Command::Completions(a) => {
            cli::completions::run(a, <Cli as clap::CommandFactory>::command())
        }
        Command::Man(a) => {
            cli::completions::run_man(a, json, <Cli as clap::CommandFactory>::command())
        }
        Command::Import(a) => cli::init::import_hint(a),
        Command::ValidateWorker => Ok(cli::validate::run_worker()),
        Command::Convert(a) => cli::convert::hint(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => cli::report_error(&e, json),
    }
}

/// A command line clap refuses. With `--json`, the error is JSON on stdout like any other
/// (exit 2); help, version and everything else as clap prints them.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let json = std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json");
    let informational = matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if !json || informational {
        e.exit();
    }
    if e.kind() == ErrorKind::MissingSubcommand {
        // (clap's own text lists hidden commands too, over several lines)
        let verbs: Vec<String> = <Cli as clap::CommandFactory>::command()
            .get_subcommands()
            .filter(|c| !c.is_hide_set())
            .map(|c| c.get_name().to_string())
            .collect();
        let msg = format!(
            "no command given: mlart needs one of {} (`mlart --help` says what each does)",
            verbs.join(", ")
        );
        return cli::report_error(&mlart::Error::usage(msg), true);
    }
    let text = e.to_string();
    let text = text.trim().strip_prefix("error: ").unwrap_or(text.trim());
    let text = text
        .split("\n\nFor more information")
        .next()
        .unwrap_or(text)
        .trim();
    cli::report_error(&mlart::Error::usage(text), true)
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // colours only on a terminal, and never under NO_COLOR (https://no-color.org)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        .with_target(false)
        .try_init();
}
