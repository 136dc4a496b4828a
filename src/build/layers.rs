//! The file layers of a bundle: which files share a layer (the plan), and building the layers
//! on all cores. Each layer is independent (its own blob, its own hashes), so they are built
//! side by side and put back in plan order: the bytes and the manifest never depend on the
//! number of threads. A raw layer into a layout is a reflink of its file where the filesystem
//! has them, a hard link with `--link`, else a copy made as the file is hashed.

use crate::build::bundle::{CompressionChoice, Options};
use crate::build::collect::SourceFile;
use crate::build::filelist::{FileList, ListWriter};
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
pub(super) struct Plan {
    pub kind: Kind,
    /// Its files (one for a raw layer), each with its place in the bundle's list: a list of
    /// its own, on disk past a few MiB, read in batches when the layer is built.
    pub files: FileList,
    /// The first of them (the title and annotations of a single file's layer come from it).
    pub first: SourceFile,
    pub raw: bool,
    pub compression: Compression,
    /// The path a tar layer of many small files stands for: ModelPack's
    /// `org.cncf.model.filepath` and title (a top directory, or `modelpack::loose_path` for
    /// the top level's files); in the artifact form the directory, in the title
    /// `<kind>-<dir>.tar` (None: `<kind>.tar`).
    pub dir: Option<String>,
}

/// Files of one kind gathered for a layer of their own.
struct Gather {
    files: ListWriter,
    first: Option<SourceFile>,
}

impl Gather {
    fn new(spill: usize) -> Gather {
        Gather {
            files: ListWriter::new(spill),
            first: None,
        }
    }

    fn push(&mut self, at: usize, f: SourceFile) -> Result<()> {
        self.files.push(at, &f)?;
        if self.first.is_none() {
            self.first = Some(f);
        }
        Ok(())
    }

    /// The layer, if it has files.
    fn plan(
        self,
        kind: Kind,
        raw: bool,
        compression: Compression,
        dir: Option<String>,
    ) -> Result<Option<Plan>> {
        let Some(first) = self.first else {
            return Ok(None);
        };
        Ok(Some(Plan {
            kind,
            files: self.files.finish()?,
            first,
            raw,
            compression,
            dir,
        }))
    }
}

/// The single-file layer of `f`.
fn single(
    kind: Kind,
    at: usize,
    f: SourceFile,
    raw: bool,
    compression: Compression,
) -> Result<Plan> {
    let mut g = Gather::new(usize::MAX);
    g.push(at, f)?;
    Ok(g.plan(kind, raw, compression, None)?.expect("a file"))
}

/// ModelPack and the artifact form: the small files (under `--large-file`) of one kind met so
/// far in one top directory, or at the top level (`dir` None: the files with no '/' in their
/// path, "loose" files).
struct DirGroup {
    dir: Option<String>,
    /// Up to `MAX_RAW_FILES_PER_DIR` of them (each a raw layer if no more come), and past
    /// that all of them: one tar layer.
    few: Vec<(usize, SourceFile)>,
    many: Option<Gather>,
}

impl DirGroup {
    fn new(dir: Option<&str>) -> DirGroup {
        DirGroup {
            dir: dir.map(str::to_string),
            few: Vec::new(),
            many: None,
        }
    }

    fn push(&mut self, at: usize, f: SourceFile, spill: usize) -> Result<()> {
        if let Some(g) = &mut self.many {
            return g.push(at, f);
        }
        self.few.push((at, f));
        if self.few.len() > crate::build::modelpack::MAX_RAW_FILES_PER_DIR {
            let mut g = Gather::new(spill);
            for (at, f) in self.few.drain(..) {
                g.push(at, f)?;
            }
            self.many = Some(g);
        }
        Ok(())
    }

    /// Its layers, into `out`. A top directory's tar layer stands for the directory
    /// (`Plan::dir`); the top level's, in ModelPack, for `modelpack::loose_path` (the
    /// artifact form titles a tar layer without `dir` `<kind>.tar`: the same name). `clash`:
    /// a top-level path of the project is that name, so the top level's files stay a layer
    /// each as before they were grouped (a client that writes each layer at its path would
    /// write the one over the other).
    fn plans(
        self,
        kind: Kind,
        compression: Compression,
        form: Form,
        clash: bool,
        out: &mut Vec<Plan>,
    ) -> Result<()> {
        let Some(g) = self.many else {
            for (at, f) in self.few {
                out.push(single(kind, at, f, true, compression)?);
            }
            return Ok(());
        };
        let dir = match self.dir {
            Some(dir) => Some(dir),
            None if clash => {
                for item in g.files.finish()?.iter() {
                    let (at, f) = item?;
                    out.push(single(kind, at, f, true, compression)?);
                }
                return Ok(());
            }
            None if form == Form::Modelpack => {
                Some(crate::build::modelpack::loose_path(kind, compression))
            }
            None => None,
        };
        out.extend(g.plan(kind, false, compression, dir)?);
        Ok(())
    }
}

/// The layers of `files`, in one pass over them (`check` looks at each file first). Image form:
/// per kind (in `Kind::ALL` order) the large model and data files, a layer each, in path
/// order, then one tar layer of the rest. ModelPack: per kind, a raw layer per file except
/// the small files of a top directory, or of the top level, when there are more than
/// `modelpack::MAX_RAW_FILES_PER_DIR` of them: one tar layer; the kind's layers in the order
/// of their first paths. Artifact form: model and data files as ModelPack's, the other kinds
/// a tar layer each.
/// More file layers than this get a warning: each costs a descriptor in the manifest (and a
/// few KiB of memory while it is built).
pub(super) const MANY_LAYERS: usize = 1000;

/// The warning for a bundle of `count` layers, if more than [`MANY_LAYERS`], with the way out
/// that fits what made them: a `--large-file` below the default, the image form's large
/// files, or the other forms' small files.
pub(super) fn many_layers(plans: &[Plan], count: usize, opts: &Options) -> Option<String> {
    if count <= MANY_LAYERS {
        return None;
    }
    let default = crate::build::bundle::DEFAULT_LARGE_FILE;
    let cost = "a manifest this long is slow to build and pull and many registries refuse it (Docker Hub and ECR cap manifests at 4 MiB)";
    // (files with a layer of their own only because `--large-file` is below the default)
    let lowered = plans
        .iter()
        .filter(|p| p.files.len() == 1 && p.first.size >= opts.large_file && p.first.size < default)
        .count();
    if opts.large_file < default && lowered > 0 && count - lowered <= MANY_LAYERS {
        return Some(format!(
            "{count} layers: `--large-file {}` gives each model and data file of at least {} byte(s) a layer of its own, and {lowered} of them are under the default 16 MiB: {cost}; raise `--large-file` (default 16M, i.e. {default} bytes) or leave it out",
            opts.large_file, opts.large_file
        ));
    }
    Some(match opts.form {
        Form::Image => format!(
            "{count} layers (the image form gives each model and data file of at least `--large-file` {} bytes a layer of its own, and the other files one tar layer per kind): {cost}; raise `--large-file` (default 16M) or join files into fewer, larger ones",
            opts.large_file
        ),
        _ => format!(
            "{count} layers (`--format {}` gives files layers of their own, except the small ones of a kind in a top folder, or at the top level, with more than 16 of them): {cost}; `--format image` puts small files in one tar layer per kind, or gather small files into fewer folders",
            opts.form.as_str()
        ),
    })
}

pub(super) fn plan(
    files: &FileList,
    opts: &Options,
    check: &dyn Fn(&SourceFile) -> Result<()>,
) -> Result<Vec<Plan>> {
    let n = Kind::ALL.len();
    let index = |k: Kind| Kind::ALL.iter().position(|&x| x == k).expect("a kind");
    let compression = |kind: Kind| match opts.compression {
        CompressionChoice::All(c) => c,
        CompressionChoice::Auto if kind.is_bulk() => Compression::None,
        CompressionChoice::Auto => Compression::Gzip,
    };
    // (the artifact form's model and data files are raw layers as ModelPack's files are,
    // grouped by the same rule: a folder of ten thousand small files is not ten thousand
    // layers, nor is a project of ten thousand top-level ones)
    let grouped = |kind: Kind| {
        opts.form == Form::Modelpack || (opts.form == Form::Artifact && kind.is_bulk())
    };
    // (the lists of the layers being gathered share the memory of the bundle's list)
    let spill = opts.spill / 4;
    let mut own: Vec<Vec<Plan>> = (0..n).map(|_| Vec::new()).collect();
    let mut rest: Vec<Gather> = (0..n).map(|_| Gather::new(spill)).collect();
    let mut groups: Vec<Option<DirGroup>> = (0..n).map(|_| None).collect();
    // The top level's small files, per kind: a group of their own beside the directory's
    // being gathered (in path order top-level files come between directories: "a.txt",
    // "b/x", "c.txt"; a directory's group ending does not end it). The name its tar layer
    // would have, and whether a top-level file or directory of the project has that name.
    let mut loose: Vec<DirGroup> = (0..n).map(|_| DirGroup::new(None)).collect();
    let names: Vec<String> = Kind::ALL
        .iter()
        .map(|&k| crate::build::modelpack::loose_path(k, compression(k)))
        .collect();
    let mut clash = vec![false; n];
    for item in files.iter() {
        let (at, f) = item?;
        check(&f)?;
        let (kind, k) = (f.kind, index(f.kind));
        if opts.form != Form::Image {
            let top = f.rel.split('/').next().unwrap_or(&f.rel);
            if top.contains(".tar") {
                for (c, name) in clash.iter_mut().zip(&names) {
                    *c |= top == name;
                }
            }
        }
        if grouped(kind) {
            if f.size >= opts.large_file {
                own[k].push(single(kind, at, f, true, compression(kind))?);
                continue;
            }
            // (a top directory's files are next to each other in path order)
            let Some((dir, _)) = f.rel.split_once('/') else {
                loose[k].push(at, f, spill)?;
                continue;
            };
            if groups[k]
                .as_ref()
                .is_some_and(|g| g.dir.as_deref() != Some(dir))
            {
                let g = groups[k].take().expect("a group");
                g.plans(kind, compression(kind), opts.form, false, &mut own[k])?;
            }
            let g = groups[k].get_or_insert_with(|| DirGroup::new(Some(dir)));
            g.push(at, f, spill)?;
            continue;
        }
        if kind.is_bulk() && f.size >= opts.large_file {
            own[k].push(single(kind, at, f, false, compression(kind))?);
        } else {
            rest[k].push(at, f)?;
        }
    }
    let mut out = Vec::new();
    let per_kind = own.into_iter().zip(rest).zip(groups).zip(loose).zip(clash);
    for (kind, ((((mut own, rest), group), loose), clash)) in Kind::ALL.into_iter().zip(per_kind) {
        let c = compression(kind);
        if let Some(g) = group {
            g.plans(kind, c, opts.form, false, &mut own)?;
        }
        loose.plans(kind, c, opts.form, clash, &mut own)?;
        // (ModelPack and the artifact form: a kind's layers in the order of their first
        // paths, the top level's tar layer among its directories' layers)
        if opts.form != Form::Image {
            own.sort_by(|a, b| a.first.rel.cmp(&b.first.rel));
        }
        out.extend(own);
        out.extend(rest.plan(kind, false, c, None)?);
    }
    Ok(out)
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
    /// A registry sink's: each layer streamed in a session recorded under its plan (continued
    /// by a run after an interruption), recorded once committed, and skipped when a run
    /// again finds it recorded and in the registry (`build::resume`).
    pub resume: Option<&'a crate::store::resumable::Resumable>,
}

/// How many layers are built at once: one per core (`MLART_THREADS`), at most 4 (each layer
/// keeps its own few MiB of buffers in flight: the memory bound stays fixed on big machines).
pub fn jobs() -> usize {
    crate::build::pgzip::default_threads().min(4)
}

/// Build every planned layer into `sink`, `jobs` at a time, in plan order.
pub(super) fn build_all<S: BlobSink + Send>(
    plans: &[Plan],
    sink: &mut S,
    cx: &Context<'_>,
    jobs: usize,
) -> Result<Vec<Built>> {
    let sink = Mutex::new(sink);
    map_ordered(plans.len(), jobs, |i| build_one(i, &plans[i], &sink, cx))
}

fn build_one<S: BlobSink>(
    i: usize,
    p: &Plan,
    sink: &Mutex<&mut S>,
    cx: &Context<'_>,
) -> Result<Built> {
    let lock = || sink.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = cx.resume {
        return crate::build::resume::build(r, i, p, cx);
    }
    if p.raw {
        let f = &p.first;
        let at = p.files.iter().next().transpose()?.map_or(0, |(at, _)| at);
        if let Some(placer) = cx.placer {
            if let Some((built, mut fd)) = place_raw(f, placer, cx)? {
                fd.at = at;
                (cx.done)(i, f, fd)?;
                return Ok(built);
            }
        }
        // copied into the sink as it is hashed: one read of the file
        let w = lock().begin()?;
        let (w, ld, mut fd) = layer::write_raw(w, f, (cx.capture)(f), cx.progress, cx.cancel)?;
        lock().commit(w, &ld.digest, ld.size)?;
        fd.at = at;
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
        &mut |f, fd| (cx.done)(i, f, fd),
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

#[cfg(test)]
#[path = "layers_plan_tests.rs"]
mod plan_tests;
