//! The file layers of a bundle: which files share a layer (the plan), and building the layers
//! on all cores. Each layer is independent (its own blob, its own hashes), so they are built
//! side by side and put back in plan order: the bytes and the manifest never depend on the
//! number of threads. A raw layer into a layout is a reflink of its file where the filesystem
//! has them, a hard link with `--link`, else a copy made as the file is hashed.

use crate::build::bundle::{CompressionChoice, Options};
use crate::build::collect::SourceFile;
use crate::build::layer::{self, FileDigest, LayerDigests};
use crate::error::{Error, Result};
use crate::format::compression::Compression;
use crate::format::metadata::{Form, Kind};
use crate::interrupt::Cancel;
use crate::store::layout::BlobSink;
use crate::store::place::{Method, Placer, Stamp};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// One planned layer.
pub(super) struct Plan<'a> {
    pub kind: Kind,
    pub files: Vec<&'a SourceFile>,
    pub raw: bool,
    pub compression: Compression,
    /// ModelPack form: the directory a tar layer of many small files stands for.
    pub dir: Option<String>,
}

pub(super) fn plan<'a>(files: &'a [SourceFile], opts: &Options) -> Vec<Plan<'a>> {
    let mut out = Vec::new();
    for kind in Kind::ALL {
        let compression = match opts.compression {
            CompressionChoice::All(c) => c,
            CompressionChoice::Auto if kind.is_bulk() => Compression::None,
            CompressionChoice::Auto => Compression::Gzip,
        };
        if opts.form == Form::Modelpack {
            let of_kind = files.iter().filter(|f| f.kind == kind).collect();
            for (files, dir) in crate::build::modelpack::groups(of_kind, opts.large_file) {
                out.push(Plan {
                    kind,
                    raw: dir.is_none(),
                    files,
                    compression,
                    dir,
                });
            }
            continue;
        }
        let mut rest = Vec::new();
        for f in files.iter().filter(|f| f.kind == kind) {
            let own = kind.is_bulk() && (opts.form == Form::Artifact || f.size >= opts.large_file);
            if own {
                out.push(Plan {
                    kind,
                    files: vec![f],
                    raw: opts.form == Form::Artifact,
                    compression,
                    dir: None,
                });
            } else {
                rest.push(f);
            }
        }
        if !rest.is_empty() {
            out.push(Plan {
                kind,
                files: rest,
                raw: false,
                compression,
                dir: None,
            });
        }
    }
    out
}

/// A built layer: its digests and how its blob was stored (its files' digests went to
/// `Context::done` as they were read).
pub(super) struct Built {
    pub digests: LayerDigests,
    pub method: Method,
}

/// Takes each file's digest as its layer reads it: (the layer's place in the plan, the file,
/// what reading it gave). Called from the threads building the layers.
pub(super) type Done<'a> = dyn Fn(usize, &SourceFile, FileDigest) -> Result<()> + Sync + 'a;

/// What building a layer needs besides its plan.
pub(super) struct Context<'a> {
    pub prefix: &'a str,
    pub mtime: u64,
    pub capture: &'a (dyn Fn(&SourceFile) -> bool + Sync),
    pub progress: &'a (dyn Fn(u64) + Sync),
    pub cancel: &'a Cancel,
    /// Raw layers may be cloned or linked into place (a layout sink).
    pub placer: Option<&'a Placer>,
    /// `--link`: raw layers are hard links to their files.
    pub link: bool,
    pub done: &'a Done<'a>,
}

/// How many layers are built at once: one per core (`MLART_THREADS`), at most 4 (each layer
/// keeps its own few MiB of buffers in flight: the memory bound stays fixed on big machines).
pub fn jobs() -> usize {
    crate::build::pgzip::default_threads().min(4)
}

/// Build every planned layer into `sink`, `jobs` at a time, in plan order.
pub(super) fn build_all<S: BlobSink + Send>(
    plans: &[Plan<'_>],
    sink: &mut S,
    cx: &Context<'_>,
    jobs: usize,
) -> Result<Vec<Built>> {
    let sink = Mutex::new(sink);
    map_ordered(plans.len(), jobs, |i| build_one(i, &plans[i], &sink, cx))
}

fn build_one<S: BlobSink>(
    i: usize,
    p: &Plan<'_>,
    sink: &Mutex<&mut S>,
    cx: &Context<'_>,
) -> Result<Built> {
    let lock = || sink.lock().unwrap_or_else(|e| e.into_inner());
    if p.raw {
        let f = p.files[0];
        if let Some(placer) = cx.placer {
            if let Some((built, fd)) = place_raw(f, placer, cx)? {
                (cx.done)(i, f, fd)?;
                return Ok(built);
            }
        }
        // copied into the sink as it is hashed: one read of the file
        let w = lock().begin()?;
        let (w, ld, fd) = layer::write_raw(w, f, (cx.capture)(f), cx.progress, cx.cancel)?;
        lock().commit(w, &ld.digest, ld.size)?;
        (cx.done)(i, f, fd)?;
        return Ok(Built {
            digests: ld,
            method: if cx.placer.is_some() {
                Method::Copied
            } else {
                Method::Written
            },
        });
    }
    let w = lock().begin()?;
    let (w, ld) = layer::write_tar_each(
        w,
        &p.files,
        cx.prefix,
        p.compression,
        cx.mtime,
        &|f| (cx.capture)(f),
        cx.progress,
        cx.cancel,
        &mut |fd| (cx.done)(i, p.files[fd.at], fd),
    )?;
    lock().commit(w, &ld.digest, ld.size)?;
    Ok(Built {
        digests: ld,
        method: Method::Written,
    })
}

/// A raw layer into a layout without copying its bytes: hashed, then hard-linked (`--link`),
/// or reflinked and then hashed. None where the filesystem can do neither (the caller copies
/// the file as it hashes it). The file must look the same after the hash as before (size,
/// mtime): the link or clone and the hash are two looks at it.
fn place_raw(
    f: &SourceFile,
    placer: &Placer,
    cx: &Context<'_>,
) -> Result<Option<(Built, FileDigest)>> {
    let stamp = Stamp::of(&f.abs())?;
    let capture = (cx.capture)(f);
    let (fd, method) = if cx.link {
        let fd = layer::hash_file(f, capture, cx.progress, cx.cancel)?;
        stamp.check(&f.abs())?;
        if !placer.link(&f.abs(), &fd.digest())? {
            return Ok(None);
        }
        (fd, Method::Linked)
    } else {
        let Some(placed) = placer.clone_file(&f.abs())? else {
            return Ok(None);
        };
        let fd = layer::hash_file(f, capture, cx.progress, cx.cancel)?;
        stamp.check(&f.abs())?;
        (fd.clone(), placer.commit(placed, &fd.digest())?)
    };
    Ok(Some((
        Built {
            digests: LayerDigests {
                digest: fd.digest(),
                size: f.size,
                diff_id: fd.digest(),
            },
            method,
        },
        fd,
    )))
}

/// `f(0..n)` on up to `jobs` threads; the results in index order. After a failure no new
/// index starts, and the error of the lowest failed index is returned (the others' temp
/// blobs are dropped with them).
pub(super) fn map_ordered<T: Send>(
    n: usize,
    jobs: usize,
    f: impl Fn(usize) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let jobs = jobs.clamp(1, n.max(1));
    if jobs == 1 {
        return (0..n).map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<T>>>> = Mutex::new((0..n).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                if failed.load(Ordering::Relaxed) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let r = f(i);
                if r.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut out = Vec::with_capacity(n);
    for r in results {
        match r {
            Some(r) => out.push(r?),
            // not started because an earlier-started layer failed: that error comes first
            // unless it is at a higher index, so keep looking
            None => continue,
        }
    }
    if out.len() != n {
        // every error was returned above; a gap without one cannot happen
        return Err(Error::of(
            crate::error::Kind::Internal,
            "building the layers: a layer was not built",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_order_whatever_the_thread_count() {
        for jobs in [1, 2, 3, 8] {
            let out = map_ordered(20, jobs, |i| {
                std::thread::sleep(std::time::Duration::from_millis((20 - i as u64) % 3));
                Ok(i * 10)
            })
            .unwrap();
            assert_eq!(out, (0..20).map(|i| i * 10).collect::<Vec<_>>());
        }
    }

    #[test]
    fn the_lowest_failed_index_wins_and_later_work_stops() {
        let started = AtomicUsize::new(0);
        let e = map_ordered(100, 2, |i| {
            started.fetch_add(1, Ordering::Relaxed);
            if i == 3 || i == 5 {
                Err(Error::input(format!("layer {i}")))
            } else {
                Ok(i)
            }
        })
        .err()
        .unwrap();
        assert_eq!(e.to_string(), "layer 3");
        assert!(started.load(Ordering::Relaxed) < 100);
    }

    #[test]
    fn nothing_to_do() {
        assert!(map_ordered(0, 4, Ok).unwrap().is_empty());
    }
}
