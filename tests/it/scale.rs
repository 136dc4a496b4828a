//! Scale (#24): layers built on all cores give the bytes a sequential build gives; raw layers
//! reach a layout by the kernel (reflink or copy) or, with `--link`, as hard links.

use crate::support::{fails, json_ok, mlart, noise, pull_to, sha256_file, tree_digests};
use serde_json::Value;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A project with several model shards, a directory of many small files, docs and metrics.
fn project(dir: &Path) {
    fs::create_dir_all(dir.join("model")).unwrap();
    fs::create_dir_all(dir.join("data/tiles")).unwrap();
    fs::create_dir_all(dir.join("docs")).unwrap();
    for i in 0..6 {
        let data = noise((1 << 20) + i * 4099, i as u64 + 1);
        fs::write(dir.join(format!("model/shard-{i}.safetensors")), data).unwrap();
    }
    for i in 0..40 {
        fs::write(
            dir.join(format!("data/tiles/t{i:03}.bin")),
            noise(700 + i * 13, 100 + i as u64),
        )
        .unwrap();
    }
    fs::write(dir.join("docs/README.md"), "# shards\n".repeat(50)).unwrap();
    fs::write(dir.join("metrics.json"), r#"{"accuracy": 0.91}"#).unwrap();
    fs::write(
        dir.join("mlart.yaml"),
        "name: shards\nversion: \"1\"\nmodel: [model]\ndata: [data]\ndocs: [docs]\neval: [metrics.json]\n",
    )
    .unwrap();
}

/// Flip a byte of `file` in place, keeping its inode (an editor that saves by rename would not).
fn edit_in_place(file: &Path) {
    let mut data = fs::read(file).unwrap();
    data[100] ^= 1;
    fs::OpenOptions::new()
        .write(true)
        .open(file)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &data))
        .unwrap();
}

fn bundle(project: &Path, out: &Path, threads: &str, args: &[&str]) -> Value {
    json_ok(
        mlart()
            .env("MLART_THREADS", threads)
            // one thread: every file list on disk (`build::entries`); more: in memory
            .env("MLART_LIST_MEMORY", if threads == "1" { "0" } else { "" })
            .arg("bundle")
            .arg(project)
            .arg("-o")
            .arg(out)
            .args(args),
    )
}

/// (and the file lists kept on disk give the bytes of those kept in memory)
#[test]
fn layers_built_side_by_side_are_the_bytes_of_a_sequential_build() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("p");
    project(&p);
    let (key, _) = crate::support::keygen(t.path(), "k");
    let key = key.to_str().unwrap().to_string();
    for (form, extra) in [
        ("image", vec!["--large-file", "65536"]),
        ("image", vec!["--sign", &key, "--large-file", "65536"]),
        ("modelpack", vec!["--sign", &key]),
        (
            "image",
            vec!["--compression", "zstd", "--large-file", "65536"],
        ),
        ("modelpack", vec![]),
        ("artifact", vec!["--compression", "gzip"]),
    ] {
        let mut args = vec!["--format", form];
        args.extend(extra.iter().copied());
        let one = t.path().join(format!("{form}-1"));
        let four = t.path().join(format!("{form}-4"));
        let a = bundle(&p, &one, "1", &args);
        let b = bundle(&p, &four, "4", &args);
        assert_eq!(a["manifest_digest"], b["manifest_digest"], "{args:?}");
        assert_eq!(tree_digests(&one), tree_digests(&four), "{args:?}");
        assert_eq!(a["layers"], b["layers"]);
        let layers = a["layers"].as_array().unwrap();
        assert!(layers.len() >= 6, "{args:?}: {layers:?}");
        // how the blobs were stored: raw layers cloned or copied, tar layers written
        let raw = layers
            .iter()
            .filter(|l| l["media_type"].as_str().unwrap().ends_with(".raw"))
            .count();
        let stored = &b["stored"];
        let by_kernel = stored["cloned"].as_u64().unwrap() + stored["copied"].as_u64().unwrap();
        assert_eq!(stored["linked"], 0);
        if form == "image" {
            assert_eq!(raw, 0);
            assert_eq!(by_kernel, 0);
        } else {
            assert!(raw >= 6, "{form}: {layers:?}");
            // (the metadata document and model.sig, raw layers in these forms, are written)
            let meta = usize::from(form == "modelpack") + usize::from(args.contains(&"--sign"));
            assert_eq!(by_kernel as usize, raw - meta, "{form}: {stored}");
        }
        // nothing but blobs named by their digest
        for e in fs::read_dir(four.join("blobs/sha256")).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            assert_eq!(sha256_file(&e.path()), name);
        }
    }
}

#[test]
fn link_hard_links_raw_layers_and_a_later_edit_is_caught() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("p");
    project(&p);
    let copied = t.path().join("copied");
    let linked = t.path().join("linked");
    let a = bundle(&p, &copied, "2", &["--format", "modelpack"]);
    let b = bundle(&p, &linked, "2", &["--format", "modelpack", "--link"]);
    assert_eq!(a["manifest_digest"], b["manifest_digest"]);
    assert_eq!(tree_digests(&copied), tree_digests(&linked));
    let shard = p.join("model/shard-3.safetensors");
    let blob = linked.join("blobs/sha256").join(sha256_file(&shard));
    assert_eq!(
        fs::metadata(&shard).unwrap().ino(),
        fs::metadata(&blob).unwrap().ino()
    );
    let raw = b["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["media_type"].as_str().unwrap().ends_with(".raw"))
        .count();
    assert_eq!(b["stored"]["linked"].as_u64().unwrap() as usize, raw - 1); // (mlart.json is written)
                                                                           // the copied layout does not share the file
    let copy_blob = copied.join("blobs/sha256").join(blob.file_name().unwrap());
    assert_ne!(
        fs::metadata(&shard).unwrap().ino(),
        fs::metadata(&copy_blob).unwrap().ino()
    );
    // the documented risk: an edit in place changes the linked blob; reading it says so
    edit_in_place(&shard);
    let err = fails(
        mlart()
            .arg("pull")
            .arg(&linked)
            .arg("-o")
            .arg(t.path().join("pulled")),
        4,
    );
    assert!(err.contains("does not match its digest"), "{err}");
    // the copied layout is untouched
    let v = pull_to(&copied, &t.path().join("pulled2"));
    assert!(v["files"].as_array().unwrap().len() > 40, "{v}");
}

#[test]
fn link_is_refused_with_push_and_a_no_op_warning_in_the_image_form() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("p");
    project(&p);
    let err = fails(
        mlart()
            .arg("bundle")
            .arg(&p)
            .args(["--link", "--push", "localhost:1/x:1"]),
        2,
    );
    assert!(err.contains("--link") && err.contains("--push"), "{err}");
    let v = bundle(&p, &t.path().join("img"), "2", &["--link"]);
    let w = v["warnings"].to_string();
    assert!(w.contains("--link") && w.contains("modelpack"), "{w}");
    assert_eq!(v["stored"]["linked"], 0);
}

/// On a filesystem with reflinks (XFS or btrfs: `scripts/test` mounts an XFS image on a loop
/// device when it runs as root and names it in MLART_REFLINK_DIR), raw layers are clones of
/// the project's files: counted as cloned, sharing the file's extents (filefrag: `shared`),
/// and, unlike `--link`, untouched by a later edit of the file.
#[test]
fn raw_layers_are_reflinked_on_a_reflink_filesystem() {
    let Some(dir) = std::env::var_os("MLART_REFLINK_DIR") else {
        eprintln!("SKIP: MLART_REFLINK_DIR is not set (scripts/test mounts an XFS image with reflinks when it runs as root)");
        return;
    };
    let t = tempfile::tempdir_in(&dir).unwrap();
    let p = t.path().join("p");
    project(&p);
    let out = t.path().join("out");
    let v = bundle(&p, &out, "2", &["--format", "modelpack"]);
    let raw = v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["media_type"].as_str().unwrap().ends_with(".raw"))
        .count() as u64;
    assert!(raw >= 6, "{v}"); // the six shards at least
    assert_eq!(v["stored"]["cloned"].as_u64(), Some(raw - 1), "{v}"); // (mlart.json is written)
    assert_eq!(v["stored"]["copied"].as_u64(), Some(0), "{v}");
    // the same bytes as a layout written elsewhere (no reflink across filesystems: copied)
    let plain = tempfile::tempdir().unwrap();
    let copied = bundle(
        &p,
        &plain.path().join("out"),
        "2",
        &["--format", "modelpack"],
    );
    assert_eq!(v["manifest_digest"], copied["manifest_digest"]);
    let shard = p.join("model/shard-3.safetensors");
    let digest = sha256_file(&shard);
    let blob = out.join("blobs/sha256").join(&digest);
    assert_eq!(fs::read(&blob).unwrap(), fs::read(&shard).unwrap());
    assert_ne!(
        fs::metadata(&shard).unwrap().ino(),
        fs::metadata(&blob).unwrap().ino()
    );
    if let Some(filefrag) = crate::support::find_on_path("filefrag") {
        let o = std::process::Command::new(filefrag)
            .arg("-v")
            .arg(&blob)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains("shared"),
            "the blob shares no extent:\n{text}"
        );
    }
    // copy-on-write: an edit of the project file leaves the blob as it was
    edit_in_place(&shard);
    assert_eq!(sha256_file(&blob), digest);
    let pulled = pull_to(&out, &t.path().join("pulled"));
    assert!(pulled["files"].as_array().unwrap().len() > 40, "{pulled}");
}

#[test]
fn a_list_memory_that_is_not_a_size_is_refused_and_sizes_give_the_same_bytes() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("p");
    project(&p);
    let out = t.path().join("x");
    let err = fails(
        mlart()
            .env("MLART_LIST_MEMORY", "lots")
            .arg("bundle")
            .arg(&p)
            .arg("-o")
            .arg(&out),
        2,
    );
    assert!(
        err.contains("MLART_LIST_MEMORY") && err.contains("lots"),
        "{err}"
    );
    assert!(!out.exists(), "nothing is written");
    // a size with a unit (1 KiB: both lists of these 48 files go to disk, the finished one
    // once it passes 1 KiB)
    let a = json_ok(
        mlart()
            .env("MLART_LIST_MEMORY", "1K")
            .arg("bundle")
            .arg(&p)
            .arg("-o")
            .arg(t.path().join("a")),
    );
    let b = bundle(&p, &t.path().join("b"), "2", &[]);
    assert_eq!(a["manifest_digest"], b["manifest_digest"]);
}

/// Many files through every list on disk: 9,000 files (past a tar layer's 8,192-file segment
/// and past many sorted runs of the walk), with names whose byte order is not the walk's
/// (`a.txt` < `a/…`) nor model_signing's (`d-v2/…` < `d/…`), bundled signed in each form with
/// every list on disk and one thread, and in memory with two: the same bytes; pulled back with
/// the key, every file as it was.
#[test]
fn many_files_through_lists_on_disk_give_the_bytes_of_lists_in_memory() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("p");
    for d in ["data/a", "data/a-v2", "data/a/b", "docs"] {
        fs::create_dir_all(p.join(d)).unwrap();
    }
    for i in 0..9000u32 {
        let dir = ["data/a", "data/a-v2", "data/a/b"][(i % 3) as usize];
        fs::write(p.join(format!("{dir}/f{i:05}")), i.to_le_bytes()).unwrap();
    }
    fs::write(p.join("data/a.txt"), "a").unwrap();
    fs::write(p.join("docs/d.md"), "# d\n").unwrap();
    fs::write(
        p.join("mlart.yaml"),
        "name: many\nversion: \"1\"\ndata: [data]\ndocs: [docs]\n",
    )
    .unwrap();
    let (key, public) = crate::support::keygen(t.path(), "k");
    let key = key.to_str().unwrap().to_string();
    let want = tree_digests(&p);
    for form in ["image", "modelpack", "artifact"] {
        let args = ["--format", form, "--sign", &key];
        let (disk, mem) = (
            t.path().join(format!("{form}-d")),
            t.path().join(format!("{form}-m")),
        );
        let a = bundle(&p, &disk, "1", &args);
        let b = bundle(&p, &mem, "2", &args);
        assert_eq!(a["manifest_digest"], b["manifest_digest"], "{form}");
        assert_eq!(tree_digests(&disk), tree_digests(&mem), "{form}");
        assert_eq!(a["files"], 9002, "{form}: {a}");
        // (a folder's many small files are one layer in every form)
        let layers = a["layers"].as_array().unwrap().len();
        assert!(layers < 10, "{form}: {layers} layers");
        let out = t.path().join(format!("{form}-out"));
        json_ok(&mut crate::support::pull_verified(&disk, &out, &[&public]));
        let mut got = tree_digests(&out);
        got.retain(|k, _| !k.ends_with("mlart.json") && !k.ends_with("model.sig"));
        let mut want = want.clone();
        want.retain(|k, _| !k.ends_with("mlart.yaml"));
        assert_eq!(got, want, "{form}");
        // model.sig lists 9,002 files (1.4 MiB): verify and a partial pull read it whole
        // (MLART_LIST_MEMORY=0: the metadata's list and what the layers hold, on disk)
        let v = json_ok(
            mlart()
                .env("MLART_LIST_MEMORY", "0")
                .arg("verify")
                .arg(&disk)
                .arg("--key")
                .arg(&public),
        );
        assert_eq!(v["files_verified"], 9002, "{form}: {v}");
        assert_eq!(v["ok"], true, "{form}: {v}");
        let part = t.path().join(format!("{form}-docs"));
        let v = json_ok(
            crate::support::pull_verified(&disk, &part, &[&public]).args(["--kind", "docs"]),
        );
        assert_eq!(v["files"].as_array().map(Vec::len), Some(1), "{form}: {v}");
    }
}

/// The artifact and ModelPack forms give a model or data file a layer of its own unless its
/// top folder (or the top level) has more than 16 small ones of its kind: 1,001 files in 63
/// folders of at most 16 are 1,001 layers, past 1,000 `bundle` says what that costs and what
/// to do, and the bundle is still made. The same 1,001 files at the top level are one tar
/// layer: no warning.
#[test]
fn more_than_a_thousand_layers_is_a_warning() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("p");
    for i in 0..1001u32 {
        let dir = p.join(format!("d{:02}", i / 16));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("f{i:04}.bin")), i.to_le_bytes()).unwrap();
    }
    fs::write(
        p.join("mlart.yaml"),
        "name: folders\nversion: \"1\"\ndata: [\"d*/*.bin\"]\n",
    )
    .unwrap();
    for (form, warns) in [("artifact", true), ("modelpack", true), ("image", false)] {
        let v = bundle(&p, &t.path().join(form), "2", &["--format", form]);
        let w = v["warnings"].to_string();
        assert_eq!(w.contains("1001 layers"), warns, "{form}: {w}");
        assert_eq!(v["files"], 1001);
    }
    let q = t.path().join("q");
    fs::create_dir_all(&q).unwrap();
    for i in 0..1001u32 {
        fs::write(q.join(format!("f{i:04}.bin")), i.to_le_bytes()).unwrap();
    }
    fs::write(
        q.join("mlart.yaml"),
        "name: loose\nversion: \"1\"\ndata: [\"*.bin\"]\n",
    )
    .unwrap();
    for form in ["artifact", "modelpack"] {
        let out = t.path().join(format!("loose-{form}"));
        let v = bundle(&q, &out, "2", &["--format", form]);
        assert!(
            !v["warnings"].to_string().contains(" layers ("),
            "{form}: {v}"
        );
        assert_eq!(v["files"], 1001);
        // the tar layer (and ModelPack's mlart.json)
        let layers = v["layers"].as_array().map(Vec::len);
        assert_eq!(layers, Some(if form == "artifact" { 1 } else { 2 }), "{v}");
    }
}
