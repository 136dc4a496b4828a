//! Tests of `build::layer` (a file of their own: layer.rs stays under the size rule).
use super::*;
use crate::format::compression::decoder;
use crate::format::metadata::Kind;
use crate::interrupt::Cancel;

#[test]
fn sized_headers_are_tars_own() {
    let mut sizes = vec![
        0,
        1,
        7,
        8,
        511,
        512,
        4096,
        (1 << 33) - 1,
        1 << 33,
        u64::MAX >> 1,
    ];
    let mut x = 0x9e3779b97f4a7c15u64;
    for _ in 0..2000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        sizes.push(x >> (x % 40));
    }
    for mode in [0o644, 0o755] {
        let template = header(tar::EntryType::Regular, 0, mode, 1_700_000_000);
        for &size in &sizes {
            let ours = sized(&template, size);
            let tars = header(tar::EntryType::Regular, size, mode, 1_700_000_000);
            assert_eq!(ours.as_bytes(), tars.as_bytes(), "size {size}");
        }
    }
}

/// `write_tar_each`, the files' digests collected: each `at` is the file's place in `files`
/// (which may be in any order: the layer's list is in path order).
#[allow(clippy::too_many_arguments)]
fn write_tar<W: Write + Send>(
    out: W,
    files: &[&SourceFile],
    prefix: &str,
    compression: Compression,
    mtime: u64,
    capture: &(dyn Fn(&SourceFile) -> bool + Sync),
    progress: &(dyn Fn(u64) + Sync),
    cancel: &Cancel,
) -> Result<(W, LayerDigests, Vec<FileDigest>)> {
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by(|&a, &b| files[a].rel.cmp(&files[b].rel));
    let mut list = crate::build::filelist::ListWriter::new(usize::MAX);
    for &i in &order {
        list.push(i, files[i])?;
    }
    let list = list.finish()?;
    let mut all = Vec::new();
    let (out, ld) = write_tar_each(
        out,
        &list,
        prefix,
        compression,
        mtime,
        capture,
        progress,
        cancel,
        &mut |_, fd| {
            all.push(fd);
            Ok(())
        },
    )?;
    Ok((out, ld, all))
}

/// `write_tar` into memory under `models/`, mtime 0, capturing every file or none.
fn tar_of(
    files: &[&SourceFile],
    c: Compression,
    capture: bool,
) -> Result<(Vec<u8>, LayerDigests, Vec<FileDigest>)> {
    write_tar(
        Vec::new(),
        files,
        "models/",
        c,
        0,
        &|_| capture,
        &|_| {},
        &Cancel::default(),
    )
}
use std::io::Read;

#[test]
fn decoder_reads_every_gzip_member() {
    let member = |b: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    };
    let mut two = member(b"first member, ");
    two.extend(member(b"second member"));
    let mut out = String::new();
    decoder(&two[..], Compression::Gzip)
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(out, "first member, second member");
    // garbage after a member is an error, not silently dropped
    let mut bad = member(b"x");
    bad.extend(b"not gzip");
    let mut v = Vec::new();
    assert!(decoder(&bad[..], Compression::Gzip)
        .unwrap()
        .read_to_end(&mut v)
        .is_err());
}

fn src(dir: &std::path::Path, rel: &str, data: &[u8]) -> SourceFile {
    let abs = dir.join(rel);
    std::fs::create_dir_all(abs.parent().unwrap()).unwrap();
    std::fs::write(&abs, data).unwrap();
    SourceFile {
        rel: rel.into(),
        root: dir.into(),
        kind: Kind::Eval,
        size: data.len() as u64,
        executable: false,
        model: None,
        metrics: true,
    }
}

/// The uncompressed fast path (header alone, then the file read straight into the layer
/// writer's chunks on a second thread) gives the bytes tar's own `append_data` gives, for
/// big and small files, odd sizes and long names; digests and sizes match the bytes.
#[test]
fn direct_path_gives_tars_own_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..(crate::offload::OFFLOAD_MIN as usize + 12_345))
        .map(|i| (i * 7 % 253) as u8)
        .collect();
    let long = format!("{}/weights.bin", "deep".repeat(40));
    let files = [
        src(dir.path(), "a/big.bin", &big),
        src(dir.path(), &long, &big[..1_000_001]),
        src(dir.path(), "b/empty", b""),
        src(dir.path(), "b/small.txt", b"hello"),
    ];
    let refs: Vec<&SourceFile> = files.iter().collect();
    let (out, ld, fds) = tar_of(&refs, Compression::None, false).unwrap();

    // The same layer through tar's own copy.
    let expected = tars_own(&refs, "models/");
    assert_eq!(out.len(), expected.len());
    assert!(out == expected, "the fast path changed the tar bytes");
    assert_eq!(ld.digest, Digest::of(&expected));
    assert_eq!(ld.diff_id, ld.digest);
    assert_eq!(ld.size, expected.len() as u64);
    for fd in &fds {
        let f = refs[fd.at];
        assert_eq!(fd.digest(), Digest::of(&std::fs::read(f.abs()).unwrap()));
    }
}

/// A file that shrinks between the walk and the read is an error on the fast path too.
#[test]
fn direct_path_refuses_a_file_that_shrank() {
    let dir = tempfile::tempdir().unwrap();
    let big = vec![7u8; crate::offload::OFFLOAD_MIN as usize + 1];
    let mut f = src(dir.path(), "m.bin", &big);
    f.size += 4096; // as if it had been bigger when it was listed
    let e = tar_of(&[&f], Compression::None, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("shrank"), "{e}");
}

#[test]
fn tar_is_deterministic_and_round_trips() {
    let d = tempfile::tempdir().unwrap();
    let a = src(d.path(), "b/x.txt", b"hello");
    let b = src(d.path(), "a.txt", &vec![7u8; 70_000]);
    for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let (out1, d1, f1) = tar_of(&[&a, &b], c, true).unwrap();
        let (out2, d2, _) = tar_of(&[&b, &a], c, false).unwrap();
        assert_eq!(out1, out2);
        assert_eq!(d1.digest, d2.digest);
        assert_eq!(d1.digest, Digest::of(&out1));
        assert_eq!(d1.size, out1.len() as u64);
        // in path order, each naming its place in the files given
        assert_eq!((f1[0].at, f1[1].at), (1, 0));
        assert_eq!(f1[0].digest(), Digest::of(&vec![7u8; 70_000]));
        assert_eq!(f1[1].captured.as_deref(), Some(&b"hello"[..]));
        // Decompress and list.
        let raw: Vec<u8> = match c {
            Compression::None => out1.clone(),
            Compression::Gzip => {
                let mut v = Vec::new();
                flate2::read::GzDecoder::new(&out1[..])
                    .read_to_end(&mut v)
                    .unwrap();
                v
            }
            Compression::Zstd => zstd::decode_all(&out1[..]).unwrap(),
        };
        assert_eq!(Digest::of(&raw), d1.diff_id);
        let mut ar = tar::Archive::new(&raw[..]);
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                assert_eq!(e.header().uid().unwrap(), 0);
                assert_eq!(e.header().mtime().unwrap(), 0);
                e.path().unwrap().to_string_lossy().into_owned()
            })
            .collect();
        assert_eq!(
            names,
            vec!["models/", "models/a.txt", "models/b/", "models/b/x.txt"]
        );
    }
}

#[test]
fn long_paths_survive() {
    let d = tempfile::tempdir().unwrap();
    let long = format!("{}/f.bin", "d".repeat(150));
    let f = src(d.path(), &long, b"x");
    let (out, _, _) = tar_of(&[&f], Compression::None, false).unwrap();
    let mut ar = tar::Archive::new(&out[..]);
    let names: Vec<String> = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&format!("models/{long}")), "{names:?}");
}

#[test]
fn a_file_that_changes_size_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let mut f = src(d.path(), "m.bin", b"12345");
    f.size = 10; // claims more than there is: it "shrank"
    let e = plain_tar(&[&f]).unwrap_err();
    assert!(e.to_string().contains("shrank"), "{e}");
    f.size = 2; // "grew"
    let e = write_raw(Vec::new(), &f, false, &|_| {}, &Cancel::default()).unwrap_err();
    assert!(e.to_string().contains("grew"), "{e}");
}

/// An uncompressed layer of `files`, nothing captured, no prefix.
fn plain_tar(files: &[&SourceFile]) -> Result<(Vec<u8>, LayerDigests, Vec<FileDigest>)> {
    write_tar(
        Vec::new(),
        files,
        "",
        Compression::None,
        0,
        &|_| false,
        &|_| {},
        &Cancel::default(),
    )
}

/// The layer of `files` through tar's own copy of each file.
/// The layer tar's own code would write: every folder once, parents first, then the file
/// through `append_data` (written out here, not with `parent_dirs`, `sized` or the read-ahead).
fn tars_own(files: &[&SourceFile], prefix: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut sorted = files.to_vec();
    sorted.sort_by(|a, c| a.rel.cmp(&c.rel));
    let mut dirs = BTreeSet::new();
    for f in &sorted {
        let full = format!("{prefix}{}", f.rel);
        let mut acc = String::new();
        let parts: Vec<&str> = full.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            acc.push_str(part);
            acc.push('/');
            if dirs.insert(acc.clone()) {
                let mut h = header(tar::EntryType::Directory, 0, 0o755, 0);
                b.append_data(&mut h, &acc, io::empty()).unwrap();
            }
        }
        let mode = if f.executable { 0o755 } else { 0o644 };
        let mut h = header(tar::EntryType::Regular, f.size, mode, 0);
        b.append_data(&mut h, &full, std::fs::File::open(f.abs()).unwrap())
            .unwrap();
    }
    b.into_inner().unwrap()
}

/// More than `offload::OFFLOAD_MIN` of small files: the layer writer is a thread and the
/// read-ahead files go straight into its chunks. Long names (GNU long-name entries),
/// executables, empty files, folders left and come back to: tar's own bytes.
#[test]
fn small_files_straight_into_a_threaded_writer_give_tars_own_bytes() {
    let d = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let long = "n".repeat(120);
    // (2001: the last segment of the layer's list, `SEGMENT` in tests, is one file)
    for i in 0..2001usize {
        let len = match i % 50 {
            0 => 0,
            1 => 511,
            2 => 513,
            _ => 4000 + (i * 131) % 2000,
        };
        let data: Vec<u8> = (0..len).map(|j| (j * 11 + i * 3) as u8).collect();
        let rel = match i % 7 {
            0 => format!("a/{long}/f{i:04}"),
            1 => format!("a/b{}/f{i:04}", i % 3),
            2 => format!("z{i:04}"),
            _ => format!("a/c/d{}/f{i:04}", i % 5),
        };
        let mut f = src(d.path(), &rel, &data);
        f.executable = i % 11 == 0;
        files.push(f);
    }
    let refs: Vec<&SourceFile> = files.iter().collect();
    let total: u64 = files.iter().map(|f| f.size).sum();
    assert!(total > crate::offload::OFFLOAD_MIN, "{total}");
    let (out, ld, fds) = write_tar(
        Vec::new(),
        &refs,
        "models/",
        Compression::None,
        0,
        &|f| f.rel.ends_with('3'),
        &|_| {},
        &Cancel::default(),
    )
    .unwrap();
    assert!(out == tars_own(&refs, "models/"), "the tar bytes changed");
    // (where the CPU has the SHA extensions, the layer's digest and the files' are taken in
    // one pass: `crate::build::dual`)
    assert_eq!(ld.digest, Digest::of(&out));
    assert_eq!(ld.diff_id, ld.digest);
    assert_eq!(ld.size, out.len() as u64);
    assert_eq!(fds.len(), files.len());
    for fd in &fds {
        let f = refs[fd.at];
        let data = std::fs::read(f.abs()).unwrap();
        assert_eq!(fd.digest(), Digest::of(&data));
        assert_eq!(fd.size, f.size);
        assert_eq!(
            fd.captured.as_deref(),
            f.rel.ends_with('3').then_some(&data[..])
        );
    }
    // a file that grew after it was listed, deep in the layer: an error naming it
    files[1777].size -= 1;
    let refs: Vec<&SourceFile> = files.iter().collect();
    let e = plain_tar(&refs).unwrap_err().to_string();
    assert!(e.contains("f1777") && e.contains("grew"), "{e}");
}

/// Many small files are read ahead on another thread (`crate::build::ahead`), in batches,
/// with large ones between them read here: the same bytes as tar's own, the captured
/// files kept, and a bad file in the middle an error naming it (no hang, no panic).
#[test]
fn files_read_ahead_give_tars_own_bytes_and_their_errors() {
    let d = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for i in 0..300usize {
        // mostly small; a few above the read-ahead limit and a batch's worth
        let len = match i % 97 {
            5 => 300 << 10,
            50 => (1 << 20) + 3,
            _ => (i * 37) % 9000,
        };
        let data: Vec<u8> = (0..len).map(|j| (j * 7 + i) as u8).collect();
        files.push(src(d.path(), &format!("d{}/f{i:03}", i / 40), &data));
    }
    let refs: Vec<&SourceFile> = files.iter().collect();
    for c in [Compression::None, Compression::Gzip] {
        let (out, _, fds) = write_tar(
            Vec::new(),
            &refs,
            "p/",
            c,
            0,
            &|f| f.rel.ends_with('7'),
            &|_| {},
            &Cancel::default(),
        )
        .unwrap();
        let tar_bytes = match c {
            Compression::None => out,
            _ => {
                let mut v = Vec::new();
                io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&out[..]), &mut v)
                    .unwrap();
                v
            }
        };
        assert!(
            tar_bytes == tars_own(&refs, "p/"),
            "{c:?}: the tar bytes changed"
        );
        assert_eq!(fds.len(), 300);
        for (i, (fd, f)) in fds.iter().zip(&refs).enumerate() {
            assert_eq!(fd.at, i);
            assert_eq!(fd.digest(), Digest::of(&std::fs::read(f.abs()).unwrap()));
            assert_eq!(fd.captured.is_some(), f.rel.ends_with('7'), "{}", f.rel);
        }
    }
    // a file in the middle that is shorter than listed
    files[150].size += 10;
    let refs: Vec<&SourceFile> = files.iter().collect();
    let e = plain_tar(&refs).unwrap_err();
    assert!(
        e.to_string().contains("f150") && e.to_string().contains("shrank"),
        "{e}"
    );
}

#[test]
fn raw_layer_digest_is_file_digest() {
    let d = tempfile::tempdir().unwrap();
    let f = src(d.path(), "m.bin", b"weights");
    let (out, l, fd) = write_raw(Vec::new(), &f, false, &|_| {}, &Cancel::default()).unwrap();
    assert_eq!(out, b"weights");
    assert_eq!(l.digest, Digest::of(b"weights"));
    assert_eq!(fd.digest(), l.digest);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Whatever the files, the tar reads back to the same paths and bytes, every
        /// streamed digest equals the digest of the bytes, and the order of the input
        /// does not matter.
        #[test]
        fn tar_round_trip(files in proptest::collection::btree_map("[a-z]{1,8}(/[a-z0-9_][a-z0-9_.]{0,11}){0,3}", proptest::collection::vec(any::<u8>(), 0..5000), 1..6), gz in any::<bool>()) {
            // a path may not be both a file and a directory
            let names: Vec<&String> = files.keys().collect();
            prop_assume!(!names.iter().any(|a| names.iter().any(|b| b.starts_with(&format!("{a}/")))));
            let d = tempfile::tempdir().unwrap();
            let srcs: Vec<SourceFile> = files.iter().map(|(p, c)| src(d.path(), p, c)).collect();
            let refs: Vec<&SourceFile> = srcs.iter().collect();
            let mut rev = refs.clone();
            rev.reverse();
            let c = if gz { Compression::Gzip } else { Compression::None };
            let (out, ld, fds) = tar_of(&refs, c, false).unwrap();
            let (out2, _, _) = tar_of(&rev, c, false).unwrap();
            prop_assert_eq!(&out, &out2);
            prop_assert_eq!(ld.digest.clone(), Digest::of(&out));
            for (i, fd) in fds.iter().enumerate() {
                // in path order (`files` is a sorted map), each naming its place in `refs`
                prop_assert_eq!(fd.at, i);
                prop_assert_eq!(fd.digest(), Digest::of(&files[&refs[fd.at].rel]));
            }
            let raw = if gz {
                let mut v = Vec::new();
                flate2::read::GzDecoder::new(&out[..]).read_to_end(&mut v).unwrap();
                v
            } else {
                out.clone()
            };
            prop_assert_eq!(ld.diff_id, Digest::of(&raw));
            let mut ar = tar::Archive::new(&raw[..]);
            let mut back = std::collections::BTreeMap::new();
            for e in ar.entries().unwrap() {
                let mut e = e.unwrap();
                if e.header().entry_type().is_file() {
                    let p = e.path().unwrap().to_string_lossy().trim_start_matches("models/").to_string();
                    let mut v = Vec::new();
                    e.read_to_end(&mut v).unwrap();
                    back.insert(p, v);
                }
            }
            prop_assert_eq!(back, files);
        }
    }
}
