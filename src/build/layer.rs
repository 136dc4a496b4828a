//! Building layers: files stream through tar -> compressor -> hasher -> sink in one pass;
//! each file is hashed as it is read, so every input byte is read exactly once.

use super::source::{close_source, open_source, open_source_with, Direct};
use crate::build::collect::SourceFile;
use crate::build::filelist::FileList;
use crate::error::{Error, Result};
use crate::format::compression::Compression;
use crate::format::digest::{Digest, HashWriter};
use crate::interrupt::Cancel;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeSet;
use std::io::{self, Write};

/// Files up to this size are captured while they stream (eval/schema/env files are parsed
/// from the captured bytes, never read a second time).
pub const CAPTURE_LIMIT: u64 = 16 << 20;
pub(super) const READ_BUF: usize = 1 << 20;

/// Pinned compression settings: changing them changes every digest.
/// A tar layer's files are read from their list this many at a time (about 1 MiB of
/// `SourceFile`s): the small files of a segment are read ahead (`crate::build::ahead`) while
/// it is written, and the readers start again with the next. (Tests cross segments with
/// their few thousand files.)
const SEGMENT: usize = if cfg!(test) { 1000 } else { 8192 };

const GZIP_LEVEL: u32 = 6;
const ZSTD_LEVEL: i32 = 3;

/// A compressor (or none) in front of `W`.
pub enum Encoder<W: Write> {
    Plain(W),
    Gzip(crate::build::pgzip::ParGzEncoder<W>),
    Zstd(zstd::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    pub fn new(w: W, c: Compression) -> io::Result<Self> {
        Ok(match c {
            Compression::None => Encoder::Plain(w),
            // mtime 0 and a fixed OS byte (255, "unknown"): the header never depends on the
            // machine; fixed blocks: the bytes never depend on the thread count (crate::build::pgzip).
            Compression::Gzip => Encoder::Gzip(crate::build::pgzip::ParGzEncoder::new(
                w,
                GZIP_LEVEL,
                crate::build::pgzip::default_threads(),
            )),
            Compression::Zstd => {
                let mut e = zstd::Encoder::new(w, ZSTD_LEVEL)?;
                e.include_checksum(false)?;
                Encoder::Zstd(e)
            }
        })
    }

    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Plain(w) => Ok(w),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Plain(w) => w.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Plain(w) => w.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

/// A hasher that can be switched off (the uncompressed stream of an uncompressed layer is the
/// layer itself: hashing it twice would be wasted work).
struct MaybeHash<W> {
    inner: W,
    hasher: StreamHash,
}

/// The hash of a tar stream taken on its way to the compressor (or the blob).
enum StreamHash {
    /// Taken further down (an uncompressed stream's hash is its blob's).
    None,
    /// Of a compressed layer's stream: its diff_id.
    Sha(Sha256),
    /// Of an uncompressed stream whose blob is not hashed further down: its files' bytes are
    /// hashed together with the files' own hashes (`dual`).
    Own(crate::build::dual::Stream),
}

impl<W: Write> Write for MaybeHash<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        match &mut self.hasher {
            StreamHash::None => {}
            StreamHash::Sha(h) => h.update(&buf[..n]),
            StreamHash::Own(h) => h.update(&buf[..n]),
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Digests of a sealed layer.
#[derive(Clone, Debug)]
pub struct LayerDigests {
    /// Digest of the blob as stored (compressed).
    pub digest: Digest,
    pub size: u64,
    /// Digest of the uncompressed stream (the image config's `rootfs.diff_ids`).
    pub diff_id: Digest,
}

impl LayerDigests {
    /// The blob's digest and size, and the hash of the uncompressed stream when the layer is
    /// compressed (else the diff_id is the blob's digest).
    fn sealed(digest: Digest, size: u64, uncompressed: Option<Sha256>) -> Self {
        let diff_id = uncompressed
            .map(Digest::from_hasher)
            .unwrap_or_else(|| digest.clone());
        LayerDigests {
            digest,
            size,
            diff_id,
        }
    }
}

/// What reading one file produced: a few bytes, no path (ten thousand files' worth are held
/// until the metadata is written).
#[derive(Clone, Debug)]
pub struct FileDigest {
    /// The file's place in the bundle's list (`FileList`'s; 0 where there is no list).
    pub at: usize,
    /// Its sha256 (`digest()` for the `sha256:` form).
    pub sha256: [u8; 32],
    pub size: u64,
    /// The file's bytes, when it was asked for and is at most `CAPTURE_LIMIT`.
    pub captured: Option<Vec<u8>>,
}

impl FileDigest {
    pub fn digest(&self) -> Digest {
        Digest::from_sha256(self.sha256)
    }
}

/// A copy of `template` (a `header`) with `size`: the same bytes as `header` with that size,
/// without its five number formattings (tar writes each through `format!`), for sizes below
/// 8 GiB (eleven octal digits; tar's own encoding above).
fn sized(template: &tar::Header, size: u64) -> tar::Header {
    let mut h = template.clone();
    if size >= 1 << 33 {
        h.set_size(size);
        return h;
    }
    let field = &mut h.as_old_mut().size;
    let mut v = size;
    for slot in field[..11].iter_mut().rev() {
        *slot = b'0' + (v & 7) as u8;
        v >>= 3;
    }
    h
}

/// Fixed tar header fields: uid/gid 0, no user/group names, given mtime.
fn header(kind: tar::EntryType, size: u64, mode: u32, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    // new_gnu leaves these empty already; set them so the intent is explicit.
    let _ = h.set_username("");
    let _ = h.set_groupname("");
    h
}

/// Write a tar layer of `files` (in path order, under `prefix`) through `compression` into
/// `out`. `capture(f)` says which files to keep in memory for parsing. Each file's digest goes
/// to `done` as the file is written (in path order), none of them kept, and the files are
/// read from their list `SEGMENT` at a time: a layer of a million files holds neither.
#[allow(clippy::too_many_arguments)] // the layer's settings, its progress and its cancel token
pub fn write_tar_each<W: Write + Send>(
    out: W,
    files: &FileList,
    prefix: &str,
    compression: Compression,
    mtime: u64,
    capture: &(dyn Fn(&SourceFile) -> bool + Sync),
    progress: &(dyn Fn(u64) + Sync),
    cancel: &Cancel,
    done: &mut dyn FnMut(&SourceFile, FileDigest) -> Result<()>,
) -> Result<(W, LayerDigests)> {
    // A big layer's own hash and its writes run on a second thread (crate::offload), beside
    // this one's reading and the files' hashes.
    let expected = files.total_size();
    // Small files, uncompressed, written behind on another thread: the layer's hash is taken
    // here, each file's bytes hashed once for the layer and for the file together (`dual`);
    // the other thread only writes.
    let dual = compression == Compression::None
        // (the rule of `HashOffload::spawn`: a writer of its own for this many bytes)
        && expected >= crate::offload::OFFLOAD_MIN
        && crate::offload::cores() >= 2
        && crate::build::dual::available()
        && crate::build::ahead::all_ahead(files.len(), files.largest());
    let tar = |blob: &mut crate::offload::HashOffload<'_, W>| {
        tar_into(
            blob,
            files,
            prefix,
            compression,
            mtime,
            capture,
            progress,
            cancel,
            dual,
            &mut *done,
        )
    };
    if dual {
        let (hash, out, size) =
            crate::offload::write_behind(out, expected, crate::offload::NoKick, tar, |e| {
                io_err("writing the layer", e)
            })?;
        let StreamHash::Own(h) = hash else {
            unreachable!("a dual tar stream is hashed on its way")
        };
        let digest = Digest::from_sha256(h.finish());
        return Ok((out, LayerDigests::sealed(digest, size, None)));
    }
    let (hash, out, digest, size) =
        crate::offload::hash_write(out, expected, crate::offload::NoKick, tar, |e| {
            io_err("writing the layer", e)
        })?;
    let diff_hash = match hash {
        StreamHash::Sha(h) => Some(h),
        _ => None,
    };
    Ok((out, LayerDigests::sealed(digest, size, diff_hash)))
}

/// The tar stream of `files` through `compression` into `blob`, each file's digest to `done`.
/// Returns the hash of the uncompressed stream (when compressed).
#[allow(clippy::too_many_arguments)]
fn tar_into<W: Write + Send>(
    blob: &mut crate::offload::HashOffload<'_, W>,
    files: &FileList,
    prefix: &str,
    compression: Compression,
    mtime: u64,
    capture: &(dyn Fn(&SourceFile) -> bool + Sync),
    progress: &(dyn Fn(u64) + Sync),
    cancel: &Cancel,
    dual: bool,
    done: &mut dyn FnMut(&SourceFile, FileDigest) -> Result<()>,
) -> Result<StreamHash> {
    // Small files read ahead go straight to the worker's chunks, past the buffer below.
    let straight = dual || (compression == Compression::None && blob.is_threaded());
    let enc = Encoder::new(blob, compression).map_err(|e| io_err("starting the compressor", e))?;
    let tar_stream = MaybeHash {
        inner: enc,
        hasher: if dual {
            StreamHash::Own(Default::default())
        } else if compression != Compression::None {
            StreamHash::Sha(Sha256::new())
        } else {
            StreamHash::None
        },
    };
    // A buffered writer on top: tar copies each file with `io::copy`, which then reads straight
    // into this 1 MiB buffer instead of 8 KiB at a time (far fewer calls down the hash chain).
    let mut b = tar::Builder::new(io::BufWriter::with_capacity(READ_BUF, tar_stream));
    // Parent directories first, each once, so extraction gives sane modes.
    let mut dirs = BTreeSet::new();
    let plain = header(tar::EntryType::Regular, 0, 0o644, mtime);
    let exec = header(tar::EntryType::Regular, 0, 0o755, mtime);
    let mut list = files.iter();
    let mut segment = Vec::with_capacity(SEGMENT.min(files.len()));
    loop {
        list.batch(SEGMENT, &mut segment)?;
        if segment.is_empty() {
            break;
        }
        let files: Vec<&SourceFile> = segment.iter().map(|(_, f)| f).collect();
        // Small files are read ahead on a thread of their own (`crate::build::ahead`).
        std::thread::scope(|s| -> Result<()> {
            let mut ahead = crate::build::ahead::start(
                s,
                &files,
                crate::build::pgzip::default_threads().min(2),
                // (a layer written with `dual` has every file read ahead)
                dual,
                progress,
                cancel,
            );
            for (&f, &(at, _)) in files.iter().zip(&segment) {
                let full = format!("{prefix}{}", f.rel);
                parent_dirs(&mut b, &mut dirs, &full, mtime)
                    .map_err(|e| io_err("writing the layer", e))?;
                let mut h = sized(if f.executable { &exec } else { &plain }, f.size);
                let read = ahead.next(f)?;
                if dual && read.is_none() {
                    // (its bytes would miss the layer's hash, taken with the files' here)
                    return Err(Error::of(
                        crate::error::Kind::Internal,
                        format!("writing the layer: {} was not read ahead", f.rel),
                    ));
                }
                if let Some(data) = read {
                    // The header (and a long name's), then the bytes written on (not through tar's
                    // `io::copy`, which copies them twice on the way), then the padding.
                    b.append_data(&mut h, &full, io::empty())
                        .map_err(|e| io_err("writing the layer", e))?;
                    // Straight into the layer writer's chunks: the buffer above it is emptied
                    // first (a threaded writer's flush is nothing: it keeps its chunks).
                    if straight {
                        b.get_mut()
                            .flush()
                            .map_err(|e| io_err("writing the layer", e))?;
                    }
                    let sha256 = match &mut b.get_mut().get_mut().hasher {
                        StreamHash::Own(layer) => {
                            // (the layer's stream is at a block boundary: a tar header's end)
                            let mut own = crate::build::dual::Stream::default();
                            crate::build::dual::update_both(layer, &mut own, data);
                            b.get_mut()
                                .get_mut()
                                .inner
                                .write_all(data)
                                .map_err(|e| io_err("writing the layer", e))?;
                            own.finish()
                        }
                        _ => {
                            if straight {
                                b.get_mut().get_mut().write_all(data)
                            } else {
                                b.get_mut().write_all(data)
                            }
                            .map_err(|e| io_err("writing the layer", e))?;
                            Sha256::digest(data).into()
                        }
                    };
                    let pad = ((512 - f.size % 512) % 512) as usize;
                    b.get_mut()
                        .write_all(&[0u8; 512][..pad])
                        .map_err(|e| io_err("writing the layer", e))?;
                    done(
                        f,
                        FileDigest {
                            at,
                            sha256,
                            size: f.size,
                            captured: (capture(f) && f.size <= CAPTURE_LIMIT)
                                .then(|| data.to_vec()),
                        },
                    )?;
                } else if compression == Compression::None {
                    // Uncompressed: the header (tar writes only that with no data; its size field is
                    // already set), then the file read straight into the layer writer's chunks and
                    // hashed on this thread while the bytes are hot; the layer's hash and the write
                    // happen on the writer's thread. The same bytes as `append_data` with the file.
                    b.append_data(&mut h, &full, io::empty())
                        .map_err(|e| io_err("writing the layer", e))?;
                    b.get_mut()
                        .flush()
                        .map_err(|e| io_err("writing the layer", e))?;
                    let mut r =
                        open_source_with(f, capture(f), progress, cancel, Direct::HashHere)?;
                    let Encoder::Plain(w) = &mut b.get_mut().get_mut().inner else {
                        unreachable!("an uncompressed layer has a plain encoder")
                    };
                    w.copy_from(&mut r, f.size, &mut |_| Ok(()))
                        .map_err(|e| io_err_file(f, e))?;
                    let pad = ((512 - f.size % 512) % 512) as usize;
                    b.get_mut()
                        .write_all(&[0u8; 512][..pad])
                        .map_err(|e| io_err("writing the layer", e))?;
                    done(f, close_source(f, at, r)?)?;
                } else {
                    let mut r = open_source(f, capture(f), progress, cancel)?;
                    b.append_data(&mut h, &full, &mut r)
                        .map_err(|e| io_err_file(f, e))?;
                    done(f, close_source(f, at, r)?)?;
                }
            }
            Ok(())
        })?;
    }
    b.finish().map_err(|e| io_err("writing the layer", e))?;
    let tar_stream = b
        .into_inner()
        .map_err(|e| io_err("writing the layer", e))?
        .into_inner()
        .map_err(|e| io_err("writing the layer", e.into_error()))?;
    let diff_hash = tar_stream.hasher;
    tar_stream
        .inner
        .finish()
        .map_err(|e| io_err("finishing the compressor", e))?;
    Ok(diff_hash)
}

/// Write one file as a raw (untarred, uncompressed) blob: its digest is the file's sha256.
/// The file is read straight into the blob writer's chunks and hashed here while the bytes
/// are hot; the writer's thread (big files) only writes them.
pub fn write_raw<W: Write + Send>(
    out: W,
    f: &SourceFile,
    capture: bool,
    progress: &dyn Fn(u64),
    cancel: &Cancel,
) -> Result<(W, LayerDigests, FileDigest)> {
    let mut r = open_source_with(f, capture, progress, cancel, Direct::HashHere)?;
    let ((), out, _) = crate::offload::write_behind(
        out,
        f.size,
        crate::offload::NoKick,
        |w| {
            w.copy_from(&mut r, f.size, &mut |_| Ok(()))
                .map_err(|e| io_err_file(f, e))
        },
        |e| io_err("writing the layer", e),
    )?;
    let fd = close_source(f, 0, r)?;
    let d = LayerDigests {
        digest: fd.digest(),
        size: f.size,
        diff_id: fd.digest(),
    };
    Ok((out, d, fd))
}

/// Read and hash one file (a raw layer whose blob the kernel puts in place): the bytes go
/// nowhere else.
pub fn hash_file(
    f: &SourceFile,
    capture: bool,
    progress: &dyn Fn(u64),
    cancel: &Cancel,
) -> Result<FileDigest> {
    let mut r = open_source_with(f, capture, progress, cancel, Direct::HashHere)?;
    // (read into memory half a page off alignment: see `crate::offload::region`)
    let mut v = vec![0u8; READ_BUF + 4096];
    let at = crate::offload::region(&v);
    let buf = &mut v[at..at + READ_BUF];
    loop {
        match io::Read::read(&mut r, buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err_file(f, e)),
        }
    }
    close_source(f, 0, r)
}

/// A tar layer holding the files mlart writes (the metadata document, the signature): each
/// entry's path, size and bytes (exactly that many).
pub fn write_tar_entries<W: Write>(
    out: W,
    entries: &mut [(&str, u64, &mut dyn io::Read)],
    compression: Compression,
    mtime: u64,
) -> Result<(W, LayerDigests)> {
    let blob = HashWriter::new(out);
    let enc = Encoder::new(blob, compression).map_err(|e| io_err("starting the compressor", e))?;
    let mut b = tar::Builder::new(MaybeHash {
        inner: enc,
        hasher: if compression != Compression::None {
            StreamHash::Sha(Sha256::new())
        } else {
            StreamHash::None
        },
    });
    let mut dirs = BTreeSet::new();
    for (path, size, data) in entries.iter_mut() {
        parent_dirs(&mut b, &mut dirs, path, mtime).map_err(|e| io_err("writing the layer", e))?;
        let mut h = header(tar::EntryType::Regular, *size, 0o644, mtime);
        b.append_data(&mut h, &**path, data)
            .map_err(|e| io_err("writing the layer", e))?;
    }
    b.finish().map_err(|e| io_err("writing the layer", e))?;
    let s = b.into_inner().map_err(|e| io_err("writing the layer", e))?;
    let diff_hash = match s.hasher {
        StreamHash::Sha(h) => Some(h),
        _ => None,
    };
    let blob = s
        .inner
        .finish()
        .map_err(|e| io_err("finishing the compressor", e))?;
    let (out, digest, size) = blob.finish();
    Ok((out, LayerDigests::sealed(digest, size, diff_hash)))
}

fn io_err(what: &str, e: io::Error) -> Error {
    if crate::error::kind_of_io(&e) == Some(crate::error::Kind::Interrupted) {
        return Error::Interrupted;
    }
    Error::Io {
        context: what.to_string(),
        source: e,
    }
}

pub(super) fn io_err_file(f: &SourceFile, e: io::Error) -> Error {
    if crate::error::kind_of_io(&e) == Some(crate::error::Kind::Interrupted) {
        return Error::Interrupted;
    }
    Error::Io {
        context: format!("reading {} ({})", f.rel, f.abs().display()),
        source: e,
    }
}

/// The directory entries above `path` (`a/`, `a/b/` for `a/b/c`) not in `dirs` yet, each once,
/// parents first, so extraction gives sane modes.
fn parent_dirs<W: Write>(
    b: &mut tar::Builder<W>,
    dirs: &mut BTreeSet<String>,
    path: &str,
    mtime: u64,
) -> io::Result<()> {
    // Its folder written already (the files come in order): so are the folders above it.
    match path.rfind('/') {
        Some(i) if dirs.contains(&path[..=i]) => return Ok(()),
        None => return Ok(()),
        Some(_) => {}
    }
    let mut acc = String::new();
    let parts: Vec<&str> = path.split('/').collect();
    for part in &parts[..parts.len() - 1] {
        acc.push_str(part);
        acc.push('/');
        if dirs.insert(acc.clone()) {
            let mut h = header(tar::EntryType::Directory, 0, 0o755, mtime);
            b.append_data(&mut h, &acc, io::empty())?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "layer_tests.rs"]
mod tests;
