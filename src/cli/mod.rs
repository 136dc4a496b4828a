//! One module per verb; shared rendering helpers here.

/// `println!` for a verb's human result on stdout: a reader that closed the pipe (`mlart
/// inspect … | head`) ends the run quietly with exit 0 instead of a panic. SIGPIPE stays
/// ignored (Rust's default) so that a registry connection reset mid-upload is an I/O error that
/// is retried, not a signal that kills the process. Each line is escaped
/// (`format::display::escape_lines`): a control character that a name brought in, and that its
/// print site did not escape, still never reaches the terminal raw. JSON goes out through
/// [`print_json`]/[`rawln!`], byte for byte.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::write_human(format_args!($($arg)*))
    };
}

/// `outln!` for output written as it is: JSON (serve's and validate's JSON lines,
/// [`print_json`]) and the generated completion scripts.
macro_rules! rawln {
    ($($arg:tt)*) => {
        $crate::cli::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub mod args;
pub mod attest;
pub mod bundle;
pub mod bundle_out;
pub mod cache;
pub mod completions;
pub mod convert;
pub mod copy;
pub mod diff;
pub mod gate;
pub mod init;
pub mod inspect;
pub mod keygen;
pub mod login;
pub mod pull;
pub mod push;
#[cfg(feature = "validate")]
pub mod serve;
pub mod sign;
pub mod tags;
pub mod validate;
pub mod validate_bundle;
pub mod verify;

use mlart::format::display::{escape, escape_lines};
use mlart::Error;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

/// Print an error (JSON on stdout with `--json`, else a paragraph on stderr) and pick the exit code.
pub fn report_error(e: &Error, json: bool) -> ExitCode {
    let code = e.exit_code();
    if json {
        let v = serde_json::json!({"error": {"kind": e.kind().as_str(), "message": e.to_string(), "exit_code": code}});
        rawln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        // (a message quotes file names, tags and annotations as they came: escaped here)
        eprintln!("error: {}", escape(&e.to_string()));
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            let text = s.to_string();
            if !e.to_string().contains(&text) {
                eprintln!("  caused by: {}", escape(&text));
            }
            src = s.source();
        }
    }
    ExitCode::from(code)
}

/// The exit code of a verb whose check ran and failed (gate, verify, validate, diff
/// `--exit-code`): the same rule as every error's, by its kind.
pub fn check_failed() -> ExitCode {
    ExitCode::from(mlart::error::Kind::CheckFailed.exit_code())
}

/// Where a `sign`/`verify` TARGET is: a registry reference, or a local layout or archive with
/// its tag (`--tag`, else the one in an `oci:DIR:TAG` / `oci-archive:FILE:TAG` name). A path
/// that exists is local whatever it looks like.
pub enum Target {
    Registry(mlart::format::reference::Reference),
    Local(std::path::PathBuf, Option<String>),
}

pub fn target(path: &std::path::Path, tag: Option<&str>) -> mlart::Result<Target> {
    let local = |p: std::path::PathBuf, t: Option<String>| {
        Ok(Target::Local(p, tag.map(str::to_string).or(t)))
    };
    match path.to_str() {
        Some(t) if !path.exists() => match mlart::format::reference::parse_location(t)? {
            mlart::format::reference::Location::Registry { reference, .. } => {
                Ok(Target::Registry(reference))
            }
            mlart::format::reference::Location::Local { path, tag: t } => local(path, t),
        },
        _ => local(path.to_path_buf(), None),
    }
}

/// How the library opens a location: with the registry settings of the command line.
pub fn opener(
    reg: &args::RegistryArgs,
) -> impl Fn(
    &mlart::format::reference::Location,
) -> mlart::Result<(Box<dyn mlart::store::layout::Source>, Option<String>)>
       + '_ {
    move |loc| mlart::store::registry::open_location(loc, &reg.options())
}

pub fn print_json<T: serde::Serialize>(v: &T) {
    rawln!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// A warning on stderr, escaped as [`outln!`] escapes (a warning names files of the bundle).
pub fn warn(w: &str) {
    eprintln!("warning: {}", escape(w));
}

/// `print_json` for a document too big to hold as one string (a bundle's million files):
/// written to stdout as it is serialized. A value that fails as it is read (its file list on
/// disk) is an error after what was written.
pub fn stream_json<T: serde::Serialize>(v: &T) -> mlart::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(64 << 10, std::io::stdout().lock());
    let written = serde_json::to_writer_pretty(&mut out, v)
        .map_err(std::io::Error::from)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    match written {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(mlart::Error::from_io(
            &e,
            format!("writing the result to stdout: {e}"),
        )),
    }
}

pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// A progress bar on stderr when it is a terminal and output is for people; hidden otherwise.
/// The first column of a check table: `pass`, `FAIL` or `skip`.
pub fn status_word(passed: bool, skipped: bool) -> &'static str {
    if skipped {
        "skip"
    } else if passed {
        "pass"
    } else {
        "FAIL"
    }
}

/// A progress bar on stderr (hidden for `--json` and when stderr is not a terminal). It is
/// drawn only once there is work: with a total of 0 it stays hidden until [`set_total`] gives
/// one, so empty work never shows `0 B/0 B eta 8h`.
pub fn progress_bar(total: u64, json: bool) -> indicatif::ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::hidden(),
    );
    if total > 0 {
        pb.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    }
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb
}

/// The total of a bar from [`progress_bar`], once the work is known: drawn from now on when
/// there is something to transfer; nothing to transfer shows no bar.
pub fn set_total(pb: &indicatif::ProgressBar, total: u64, json: bool) {
    pb.set_length(total);
    if total > 0 && !json && std::io::stderr().is_terminal() {
        pb.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    }
}

/// A progress bar the library drives (`build::pipeline::Progress`): drawn from `start` on,
/// as [`progress_bar`] draws it.
pub struct Bar {
    json: bool,
    bar: std::sync::OnceLock<indicatif::ProgressBar>,
}

impl Bar {
    pub fn new(json: bool) -> Bar {
        Bar {
            json,
            bar: std::sync::OnceLock::new(),
        }
    }
}

impl mlart::build::pipeline::Progress for Bar {
    fn start(&self, total: u64, message: String) {
        let pb = self.bar.get_or_init(|| progress_bar(total, self.json));
        pb.set_message(message);
    }
    fn advance(&self, bytes: u64) {
        if let Some(pb) = self.bar.get() {
            pb.inc(bytes);
        }
    }
    fn finish(&self) {
        if let Some(pb) = self.bar.get() {
            pb.finish_and_clear();
        }
    }
}

/// Print rows as aligned columns.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < w.len() {
                w[i] = w[i].max(escape(c).chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let n = cells.len();
        let mut s = String::from("  ");
        for (i, c) in cells.into_iter().enumerate() {
            if i + 1 == n {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<width$}  ", width = w[i]));
            }
        }
        outln!("{}", s.trim_end());
    };
    line(header.to_vec());
    for r in rows {
        // (a cell holds a name of the bundle: a line break in it must not break the table)
        let cells: Vec<_> = r.iter().map(|c| escape(c)).collect();
        line(cells.iter().map(|c| c.as_ref()).collect());
    }
}

/// One line of human output: escaped line by line ([`outln!`]), then written.
pub fn write_human(args: std::fmt::Arguments) {
    let text = std::fmt::format(args);
    write_stdout(format_args!("{}\n", escape_lines(&text)));
}

/// Writes to stdout; a closed pipe ends the process quietly (exit 0), any other failure to write
/// the result is reported on stderr with exit 70.
pub fn write_stdout(args: std::fmt::Arguments) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|_| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write the result to stdout: {e}");
        std::process::exit(70);
    }
}
