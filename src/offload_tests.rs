use super::*;

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn same_bytes_and_digest_inline_and_threaded() {
    for size in [0usize, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK + 17] {
        let input = data(size);
        for expected in [0u64, OFFLOAD_MIN] {
            let (_, out, d, n) = hash_write(
                Vec::new(),
                expected,
                NoKick,
                |w| {
                    // odd write sizes, as tar and io::copy give them
                    for part in input.chunks(7919) {
                        w.write_all(part)?;
                    }
                    Ok::<_, io::Error>(())
                },
                |e| e,
            )
            .unwrap();
            assert_eq!(out, input, "size {size} expected {expected}");
            assert_eq!(d, Digest::of(&input));
            assert_eq!(n, size as u64);
        }
    }
}

/// The write-behind writer (the caller hashes with `seen`) writes the same bytes, and
/// `copy_from` refuses an input that ends early.
#[test]
fn write_behind_copies_exactly() {
    for size in [0usize, 5, CHUNK, 3 * CHUNK + 1] {
        let input = data(size);
        for expected in [0u64, OFFLOAD_MIN] {
            let mut h = Sha256::new();
            let ((), out, n) = write_behind(
                Vec::new(),
                expected,
                NoKick,
                |w| {
                    w.write_all(b"head")?;
                    w.copy_from(&mut &input[..], size as u64, &mut |p| {
                        h.update(p);
                        Ok(())
                    })
                },
                |e| e,
            )
            .unwrap();
            assert_eq!(&out[..4], b"head");
            assert_eq!(&out[4..], &input[..], "size {size} expected {expected}");
            assert_eq!(n, size as u64 + 4);
            assert_eq!(Digest::from_hasher(h), Digest::of(&input));
        }
    }
    let e = write_behind(
        Vec::new(),
        OFFLOAD_MIN,
        NoKick,
        |w| w.copy_from(&mut &b"short"[..], 10, &mut |_| Ok(())),
        |e| e,
    )
    .map(|_| ())
    .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
}

/// A writer that fails after `ok` bytes.
struct Failing {
    ok: usize,
}
impl Write for Failing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() > self.ok {
            return Err(io::Error::other("disk full (test)"));
        }
        self.ok -= buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_workers_write_error_is_the_one_reported() {
    let input = data(20 * CHUNK);
    let e = hash_write(
        Failing { ok: 3 * CHUNK },
        OFFLOAD_MIN,
        NoKick,
        |w| w.write_all(&input),
        |e| e,
    )
    .map(|_| ())
    .unwrap_err();
    assert!(e.to_string().contains("disk full (test)"), "{e}");
    // A caller that ignores the first error and writes on gets errors, never a panic.
    let e = hash_write(
        Failing { ok: CHUNK },
        OFFLOAD_MIN,
        NoKick,
        |w| {
            let mut errors = 0;
            for _ in 0..64 {
                if w.write_all(&input[..CHUNK]).is_err() {
                    errors += 1;
                }
            }
            assert!(errors > 0);
            Ok(())
        },
        |e| e,
    )
    .map(|_| ())
    .unwrap_err();
    assert!(e.to_string().contains("disk full (test)"), "{e}");
}

#[test]
fn writeback_kick_keeps_file_contents() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    let f = std::fs::File::create(&p).unwrap();
    let input = data(20 * CHUNK + 3);
    let (_, f, d, _) = hash_write(
        f,
        input.len() as u64,
        Writeback::default(),
        |w| w.write_all(&input),
        |e| e,
    )
    .unwrap();
    f.sync_all().unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), input);
    assert_eq!(d, Digest::of(&input));
}

/// How many of the first `len` bytes' pages of the file at `p` are in the page cache.
#[cfg(target_os = "linux")]
fn resident_pages(p: &std::path::Path, len: usize) -> (usize, usize) {
    use std::os::unix::io::AsRawFd;
    let f = std::fs::File::open(p).unwrap();
    let page = 4096;
    let pages = len.div_ceil(page);
    let mut vec = vec![0u8; pages];
    // SAFETY: a read-only shared mapping of `len` bytes of a file at least that long,
    // only passed to mincore (never read), and unmapped before returning.
    unsafe {
        let addr = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(addr, libc::MAP_FAILED);
        assert_eq!(libc::mincore(addr, len, vec.as_mut_ptr()), 0);
        libc::munmap(addr, len);
    }
    (vec.iter().filter(|&&b| b & 1 != 0).count(), pages)
}

#[cfg(target_os = "linux")]
#[test]
fn writeback_drops_what_it_flushed_from_the_page_cache() {
    // on the repository's filesystem: a tmpfs /tmp would keep every page whatever we ask
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(&target).unwrap();
    let dir = tempfile::tempdir_in(&target).unwrap();
    let input = data(64 * CHUNK); // 16 MiB
    let write = |name: &str, drop: bool| {
        let p = dir.path().join(name);
        let f = std::fs::File::create(&p).unwrap();
        let run = |w: &mut HashOffload<'_, std::fs::File>| w.write_all(&input);
        let (_, f, _) = if drop {
            write_behind(
                f,
                input.len() as u64,
                Writeback::every(CHUNK as u64, 8 * CHUNK as u64),
                run,
                |e| e,
            )
        } else {
            write_behind(f, input.len() as u64, NoKick, run, |e| e)
        }
        .unwrap();
        f.sync_all().unwrap();
        p
    };
    // the first half: flushed (and dropped) long before the end, whatever flushes merged
    let half = input.len() / 2;
    let kept = write("plain", false);
    let (cached, pages) = resident_pages(&kept, half);
    assert!(
        cached * 10 >= pages * 9,
        "a plain write keeps its pages cached: {cached}/{pages}"
    );
    let dropped = write("writeback", true);
    let (cached, pages) = resident_pages(&dropped, half);
    assert!(
        cached * 2 < pages,
        "flushed pages are dropped: {cached}/{pages} still cached"
    );
    // (read back only now: reading caches the pages again)
    assert_eq!(std::fs::read(&kept).unwrap(), input);
    assert_eq!(std::fs::read(&dropped).unwrap(), input);
}

#[test]
fn writeback_flushes_as_the_file_grows_and_stops_its_thread() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    let mut f = std::fs::File::create(&p).unwrap();
    let mut wb = Writeback::every(CHUNK as u64, 4 * CHUNK as u64);
    let input = data(CHUNK);
    let mut total = 0;
    for _ in 0..40 {
        f.write_all(&input).unwrap();
        total += input.len() as u64;
        wb.wrote(&mut f, total, input.len()).unwrap();
        if total % (8 * CHUNK as u64) == 0 {
            // let the flusher catch up now and then, so some flushes surely ran
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    let flushes = wb.stop().unwrap();
    // 10 asked; some may merge with one in progress, but never none and never more
    assert!((1..=10).contains(&flushes), "{flushes} flushes");
    assert!(wb.flusher.is_none());
    assert_eq!(std::fs::metadata(&p).unwrap().len(), total);
    // a Writeback that never reached the flush size starts no thread
    let mut small = Writeback::default();
    small.wrote(&mut f, 1 << 20, 1 << 20).unwrap();
    assert!(small.flusher.is_none());
    assert_eq!(small.stop().unwrap(), 0);
}

#[test]
fn a_quiet_writeback_starts_nothing_below_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = std::fs::File::create(dir.path().join("f")).unwrap();
    let (every, flush) = (WRITEBACK_EVERY, FLUSH_EVERY);
    let mut wb = Writeback::starting_at(2 * flush);
    // below the quiet size: no writeback started, no flusher
    for total in [every, flush, 2 * flush - 1] {
        wb.wrote(&mut f, total, 1).unwrap();
        assert_eq!((wb.started, wb.flushed), (0, 0), "at {total}");
        assert!(wb.flusher.is_none());
    }
    // past it: all that was written so far at once, then as a default Writeback does
    wb.wrote(&mut f, 2 * flush, 1).unwrap();
    assert_eq!((wb.started, wb.flushed), (2 * flush, 2 * flush));
    assert!(wb.flusher.is_some());
    wb.wrote(&mut f, 2 * flush + every - 1, 1).unwrap();
    assert_eq!(wb.started, 2 * flush);
    wb.wrote(&mut f, 2 * flush + every, 1).unwrap();
    assert_eq!(wb.started, 2 * flush + every);
    wb.stop().unwrap();
}
