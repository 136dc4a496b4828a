//! Tests of `collect` (kept apart: collect.rs is near the 800-line rule).

use super::*;
use crate::spec::parse;

fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (p, c) in files {
        let p = d.path().join(p);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, c).unwrap();
    }
    d
}

fn run(d: &tempfile::TempDir, spec: &str) -> Result<Vec<SourceFile>> {
    let f = d.path().join("mlart.yaml");
    fs::write(&f, spec).unwrap();
    collect(&parse(&f, spec)?, &[])
}

#[test]
fn dirs_globs_and_ignore() {
    let d = project(&[
        ("model/m.onnx", "x"),
        ("eval/a.json", "{}"),
        ("eval/b.csv", "a,1"),
        ("eval/skip.tmp", ""),
        (".mlartignore", "*.tmp\n"),
        ("docs/x.md", "#"),
        ("docs/.git/config", ""),
    ]);
    let files = run(
        &d,
        "name: a\nversion: '1'\nmodel: [model/m.onnx]\neval: [eval/]\ndocs: ['docs/**/*']\n",
    )
    .unwrap();
    let names: Vec<_> = files.iter().map(|f| (f.rel.as_str(), f.kind)).collect();
    assert_eq!(
        names,
        vec![
            ("docs/x.md", Kind::Docs),
            ("eval/a.json", Kind::Eval),
            ("eval/b.csv", Kind::Eval),
            ("model/m.onnx", Kind::Model)
        ]
    );
    assert_eq!(files[3].format(), Some("onnx"));
}

#[test]
fn test_data_sets_in_a_model_folder_are_eval_samples() {
    let d = project(&[
        ("resnet/model.onnx", "x"),
        ("resnet/test_data_set_0/input_0.pb", "\x08\x01"),
        ("resnet/test_data_set_0/output_0.pb", "\x08\x01"),
        ("resnet/saved_model.pb", "x"),
    ]);
    let files = run(&d, "name: a\nversion: '1'\nmodel: [resnet/]\n").unwrap();
    let got: Vec<_> = files
        .iter()
        .map(|f| (f.rel.as_str(), f.kind, f.format(), f.metrics))
        .collect();
    assert_eq!(
        got,
        vec![
            ("resnet/model.onnx", Kind::Model, Some("onnx"), true),
            (
                "resnet/saved_model.pb",
                Kind::Model,
                Some("tensorflow"),
                true
            ),
            ("resnet/test_data_set_0/input_0.pb", Kind::Eval, None, false),
            (
                "resnet/test_data_set_0/output_0.pb",
                Kind::Eval,
                None,
                false
            ),
        ]
    );
    // listed under eval (as init writes them): kept, never read as metrics
    let files = run(
        &d,
        "name: a\nversion: '1'\nmodel: [resnet/model.onnx]\neval: [resnet/test_data_set_0/]\n",
    )
    .unwrap();
    assert!(files[1..]
        .iter()
        .all(|f| f.kind == Kind::Eval && !f.metrics));
}

#[test]
fn duplicates_missing_and_escapes_are_errors() {
    let d = project(&[("m.onnx", "x"), ("e/a.json", "{}")]);
    let e = run(
        &d,
        "name: a\nversion: '1'\nmodel: [m.onnx]\ndocs: ['*.onnx']\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("under both `model` (line 3) and `docs`"), "{e}");
    let e = run(&d, "name: a\nversion: '1'\nmodel: [m.onnx, ./m.onnx]\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("listed twice"), "{e}");
    let e = run(&d, "name: a\nversion: '1'\nmodel: [nope.onnx]\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains(":3:9:") && e.contains("does not exist"), "{e}");
    let e = run(&d, "name: a\nversion: '1'\nmodel: ['*.pt']\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("matches no file"), "{e}");
}

#[cfg(unix)]
#[test]
fn symlinks_leaving_the_project_are_refused() {
    let outside = project(&[("secret", "s")]);
    let d = project(&[("m.onnx", "x")]);
    std::os::unix::fs::symlink(outside.path().join("secret"), d.path().join("link")).unwrap();
    fs::create_dir_all(d.path().join("dir")).unwrap();
    let e = run(&d, "name: a\nversion: '1'\nmodel: [link]\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("points outside the project"), "{e}");
    std::os::unix::fs::symlink(outside.path(), d.path().join("dir/out")).unwrap();
    let e = run(&d, "name: a\nversion: '1'\nmodel: [m.onnx]\ndocs: [dir]\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("points outside the project"), "{e}");
    // A link that stays inside is followed.
    std::os::unix::fs::symlink(d.path().join("m.onnx"), d.path().join("alias.onnx")).unwrap();
    let files = run(&d, "name: a\nversion: '1'\nmodel: [alias.onnx]\n").unwrap();
    assert_eq!(files[0].rel, "alias.onnx");
}

#[cfg(unix)]
#[test]
fn symlinked_folders_inside_are_walked_and_loops_refused() {
    let d = project(&[
        ("m.onnx", "x"),
        ("real/a.txt", "aa"),
        ("real/sub/b.txt", "bbb"),
    ]);
    std::os::unix::fs::symlink(d.path().join("real"), d.path().join("docs")).unwrap();
    std::os::unix::fs::symlink(d.path().join("real/a.txt"), d.path().join("real/c.txt")).unwrap();
    let files = run(&d, "name: a\nversion: '1'\nmodel: [m.onnx]\ndocs: [docs]\n").unwrap();
    let got: Vec<(&str, u64)> = files.iter().map(|f| (f.rel.as_str(), f.size)).collect();
    assert_eq!(
        got,
        [
            ("docs/a.txt", 2),
            ("docs/c.txt", 2),
            ("docs/sub/b.txt", 3),
            ("m.onnx", 1)
        ]
    );
    // The same files through a glob, from the project's top.
    let files = run(&d, "name: a\nversion: '1'\ndocs: ['real/**/*.txt']\n").unwrap();
    let got: Vec<&str> = files.iter().map(|f| f.rel.as_str()).collect();
    assert_eq!(got, ["real/a.txt", "real/c.txt", "real/sub/b.txt"]);
    // A link back up: refused, naming it.
    std::os::unix::fs::symlink(d.path().join("real"), d.path().join("real/sub/up")).unwrap();
    let e = run(&d, "name: a\nversion: '1'\ndocs: [real]\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("symlink loop") && e.contains("up"), "{e}");
    // A link to the folder itself, right below it (a folder walked on its own thread).
    std::fs::remove_file(d.path().join("real/sub/up")).unwrap();
    std::os::unix::fs::symlink(d.path().join("real"), d.path().join("real/self")).unwrap();
    let e = run(&d, "name: a\nversion: '1'\ndocs: [real]\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("symlink loop") && e.contains("self"), "{e}");
}

#[test]
fn a_bad_gitignore_is_an_error_naming_it_and_ignored_folders_are_left_out() {
    let d = project(&[
        ("m.onnx", "x"),
        ("docs/a.md", "a"),
        ("docs/gen/x.md", "x"),
        ("docs/.gitignore", "gen/\n"),
        ("docs/.env", "SECRET=1"),
    ]);
    let files = run(&d, "name: a\nversion: '1'\nmodel: [m.onnx]\ndocs: [docs]\n").unwrap();
    let got: Vec<&str> = files.iter().map(|f| f.rel.as_str()).collect();
    assert_eq!(got, ["docs/.gitignore", "docs/a.md", "m.onnx"]);
    fs::write(d.path().join("docs/.gitignore"), "gen/{a,b\n").unwrap();
    let e = run(&d, "name: a\nversion: '1'\nmodel: [m.onnx]\ndocs: [docs]\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(".gitignore") && e.contains("gitignore syntax"),
        "{e}"
    );
}

#[cfg(unix)]
#[test]
fn a_broken_symlink_is_an_error_unless_excluded() {
    let d = project(&[("m.onnx", "x"), ("docs/a.md", "a")]);
    std::os::unix::fs::symlink(d.path().join("gone"), d.path().join("docs/old.md")).unwrap();
    let spec = "name: a\nversion: '1'\nmodel: [m.onnx]\ndocs: [docs]\n";
    let e = run(&d, spec).unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    let e = e.to_string();
    assert!(
        e.contains("docs/old.md") && e.contains("exclude it in .mlartignore"),
        "{e}"
    );
    fs::write(d.path().join(IGNORE_FILE), "docs/old.md\n").unwrap();
    let files = run(&d, spec).unwrap();
    assert_eq!(files.len(), 2);
}

fn run_each(d: &tempfile::TempDir, spec: &str, spill: usize) -> Result<Vec<SourceFile>> {
    let f = d.path().join("mlart.yaml");
    fs::write(&f, spec).unwrap();
    let mut out = Vec::new();
    collect_each(&parse(&f, spec)?, &[], spill, &mut |f| {
        out.push(f);
        Ok(())
    })?;
    Ok(out)
}

/// A few thousand files in nested folders, with names whose byte order is not the walk's.
fn many() -> tempfile::TempDir {
    let mut files: Vec<(String, String)> = (0..3000)
        .map(|i| {
            (
                format!("data/{}/{}/f{i}.txt", i % 9, (i / 9) % 5),
                "x".repeat(i % 7),
            )
        })
        .collect();
    for p in [
        "a.txt", "a/b", "a-b/c", "a0", "a/b.txt", "a/c/d", "é/x", "Z/y",
    ] {
        files.push((format!("data/{p}"), p.to_string()));
    }
    for i in 0..50 {
        files.push((format!("docs/{}/n{i}.md", i % 4), String::new()));
    }
    let refs: Vec<(&str, &str)> = files.iter().map(|(p, c)| (&**p, &**c)).collect();
    project(&refs)
}

#[test]
fn many_runs_on_disk_give_the_list_of_one_run_in_memory_strictly_sorted() {
    let d = many();
    let spec = "name: a\nversion: '1'\ndata: [data]\ndocs: ['docs/**/*.md']\n";
    let of = |files: Vec<SourceFile>| -> Vec<(String, Kind, u64)> {
        files.into_iter().map(|f| (f.rel, f.kind, f.size)).collect()
    };
    // (256 bytes: a run of about ten paths, hundreds of runs, merged as they come)
    let small = of(run_each(&d, spec, 256).unwrap());
    let huge = of(run_each(&d, spec, usize::MAX).unwrap());
    assert_eq!(small, huge);
    assert_eq!(small, of(run(&d, spec).unwrap()));
    assert_eq!(small.len(), 3000 + 8 + 50);
    assert!(small.windows(2).all(|w| w[0].0 < w[1].0), "strictly sorted");
    let at = |p: &str| small.iter().position(|f| f.0 == p).unwrap();
    assert!(at("data/a-b/c") < at("data/a.txt") && at("data/a.txt") < at("data/a/b"));
    assert!(at("data/a/b") < at("data/a/b.txt") && at("data/a/b.txt") < at("data/a/c/d"));
    assert_eq!(small[at("data/a0")].2, 2);
    assert_eq!(small[at("docs/3/n7.md")].1, Kind::Docs);
}

#[test]
fn a_path_listed_again_is_found_across_runs() {
    let d = many();
    // (the listed path's record is added after the walk's: with 256 bytes a run, in another
    // run than the walk's record of the same path)
    for spill in [256, usize::MAX] {
        let e = run_each(
            &d,
            "name: a\nversion: '1'\ndata: [data]\ndocs:\n  - data/4/0/f1264.txt\n",
            spill,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains(
                "mlart.yaml:5:5: \"data/4/0/f1264.txt\" is listed under both `data` (line 3) and `docs`"
            ),
            "{e}"
        );
        let e = run_each(
            &d,
            "name: a\nversion: '1'\ndata:\n  - data\n  - 'data/**/f2*.txt'\n",
            spill,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains(
                "mlart.yaml:5:5: \"data/0/0/f2025.txt\" is listed twice in `data` (also at line 4)"
            ),
            "{e}"
        );
    }
}

#[test]
fn a_walked_file_filtered_out_and_listed_is_bundled_once_as_listed() {
    let d = project(&[
        ("docs/a.md", "a"),
        ("docs/.env", "SECRET=1"),
        ("docs/gen/x.md", "x"),
        ("docs/.gitignore", "gen/\n"),
    ]);
    let spec = "name: a\nversion: '1'\ndocs: [docs]\ndata: [docs/.env, docs/gen/x.md]\n";
    for spill in [0, 256, usize::MAX] {
        let got: Vec<(String, Kind)> = run_each(&d, spec, spill)
            .unwrap()
            .into_iter()
            .map(|f| (f.rel, f.kind))
            .collect();
        assert_eq!(
            got,
            [
                ("docs/.env".into(), Kind::Data),
                ("docs/.gitignore".into(), Kind::Docs),
                ("docs/a.md".into(), Kind::Docs),
                ("docs/gen/x.md".into(), Kind::Data),
            ]
        );
    }
}

#[test]
fn a_glob_or_directory_with_only_filtered_files_is_an_error() {
    let d = project(&[("m.onnx", "x"), ("keys/a.pem", "k"), ("keys/.env", "")]);
    let e = run(
        &d,
        "name: a\nversion: '1'\nmodel: [m.onnx]\ndocs: ['**/*.pem']\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(":4:8: the glob \"**/*.pem\" in `docs` matches no file"),
        "{e}"
    );
    let e = run(&d, "name: a\nversion: '1'\nmodel: [m.onnx]\ndocs: [keys]\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(":4:8: the directory \"keys\" in `docs` holds no file to bundle"),
        "{e}"
    );
}

#[test]
fn the_junk_warning_names_twenty_and_counts_the_rest() {
    let mut j = Junk::default();
    for i in 0..30 {
        // (a junk folder's files name it each time, one after the other)
        for _ in 0..3 {
            j.note(&mut vec![format!("d{i:02}/__pycache__/")]);
        }
    }
    let names = j.names().unwrap();
    assert!(
        names.starts_with("d00/__pycache__/, d01/__pycache__/"),
        "{names}"
    );
    assert!(names.ends_with("d19/__pycache__/ and 10 more"), "{names}");
    assert_eq!(Junk::default().names(), None);
}
