//! `mlart cache ls|prune`: what the pull cache holds, and cutting it down.

use mlart::format::display::{escape, escape_path};
use mlart::format::units;
use mlart::store::cache::{self, Rule};
use mlart::{Error, Result};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
    /// The cache folder (default: $XDG_CACHE_HOME/mlart, else ~/.cache/mlart).
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
enum Action {
    /// List the cached blobs, least recently used first, with their total size.
    Ls,
    /// Remove cached blobs: those unused for longer than --older-than, then the least
    /// recently used until the cache is at most --max-size. (`MLART_CACHE_MAX_SIZE` applies
    /// the same cap after every pull.)
    Prune {
        /// Keep at most this much, e.g. 20G, 500M (0: empty the cache).
        #[arg(long, value_name = "SIZE", value_parser = size)]
        max_size: Option<u64>,
        /// Remove blobs no pull has used for this long, e.g. 30d, 12h, 2w.
        #[arg(long, value_name = "AGE", value_parser = units::parse_age)]
        older_than: Option<std::time::Duration>,
        /// Remove every blob.
        #[arg(long, conflicts_with_all = ["max_size", "older_than"])]
        all: bool,
        /// Say what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

fn size(s: &str) -> std::result::Result<u64, String> {
    units::parse_size(s)
}

pub fn run(a: Args, json: bool) -> Result<ExitCode> {
    let root = match a.cache_dir.or_else(mlart::extract::pull::default_cache) {
        Some(r) => r,
        None => {
            return Err(Error::input(
                "no cache folder: neither XDG_CACHE_HOME nor HOME is set; give --cache-dir DIR",
            ))
        }
    };
    match a.action {
        Action::Ls => {
            let l = cache::list(&root)?;
            if json {
                super::print_json(&l);
                return Ok(ExitCode::SUCCESS);
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let rows: Vec<Vec<String>> = l
                .blobs
                .iter()
                .map(|e| {
                    vec![
                        e.digest.clone(),
                        super::human_size(e.size),
                        ago(now.saturating_sub(e.last_used)),
                    ]
                })
                .collect();
            if !rows.is_empty() {
                super::table(&["DIGEST", "SIZE", "LAST USED"], &rows);
            }
            outln!(
                "{} blob(s), {} in {}",
                l.blobs.len(),
                super::human_size(l.bytes),
                escape_path(&l.dir)
            );
            if l.upload_sessions > 0 {
                outln!(
                    "{} upload session(s) of interrupted pushes (the next push continues them; `prune` removes those older than a week)",
                    l.upload_sessions
                );
            }
            if !l.interrupted_downloads.is_empty() {
                outln!(
                    "{} interrupted download(s) (the next pull of the blob continues it; `prune` removes those unused for a day)",
                    l.interrupted_downloads.len()
                );
            }
            if !l.other_files.is_empty() {
                outln!(
                    "{} other file(s) (not mlart's; `prune` leaves them): {}{}",
                    l.other_files.len(),
                    escape(&l.other_files[..l.other_files.len().min(5)].join(", ")),
                    if l.other_files.len() > 5 { ", …" } else { "" }
                );
            }
        }
        Action::Prune {
            max_size,
            older_than,
            all,
            dry_run,
        } => {
            if !all && max_size.is_none() && older_than.is_none() {
                return Err(Error::of(
                    mlart::error::Kind::Usage,
                    "cache prune needs what to remove: --max-size SIZE, --older-than AGE, or --all",
                ));
            }
            let rule = Rule {
                max_size: if all { Some(0) } else { max_size },
                older_than,
            };
            let p = cache::prune(&root, rule, std::time::SystemTime::now(), dry_run)?;
            if json {
                super::print_json(&p);
            } else {
                outln!(
                    "{} {} blob(s), {}; kept {} blob(s), {}",
                    if dry_run { "would remove" } else { "removed" },
                    p.removed.len(),
                    super::human_size(p.freed),
                    p.kept,
                    super::human_size(p.kept_bytes)
                );
                if p.stale_upload_sessions > 0 {
                    outln!(
                        "{} {} stale upload session file(s)",
                        if dry_run { "would remove" } else { "removed" },
                        p.stale_upload_sessions
                    );
                }
                if p.stale_layer_records > 0 {
                    outln!(
                        "{} {} stale layer record(s) of bundle --push",
                        if dry_run { "would remove" } else { "removed" },
                        p.stale_layer_records
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn ago(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s ago"),
        s if s < 7200 => format!("{} min ago", s / 60),
        s if s < 2 * 86_400 => format!("{} h ago", s / 3600),
        s => format!("{} days ago", s / 86_400),
    }
}
