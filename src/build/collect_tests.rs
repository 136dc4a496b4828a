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

#[test]
fn a_path_listed_again_is_found_even_when_paths_share_a_hash() {
    // every path hashes alike here: the paths themselves decide
    #[derive(Default)]
    struct Same;
    impl std::hash::Hasher for Same {
        fn finish(&self) -> u64 {
            7
        }
        fn write(&mut self, _: &[u8]) {}
    }
    let entry = crate::spec::Entry {
        path: "data".into(),
        format: None,
        framework: None,
        metrics: false,
        samples: None,
        pos: Default::default(),
    };
    let listed: Vec<(Walked, Kind, &crate::spec::Entry)> = ["a", "b", "a", "b", "c"]
        .iter()
        .map(|r| {
            let w = Walked {
                rel: r.to_string(),
                meta: None,
                walked: true,
            };
            (w, Kind::Data, &entry)
        })
        .collect();
    let mut seen = Seen::<std::hash::BuildHasherDefault<Same>>::default();
    let got: Vec<Option<usize>> = (0..listed.len())
        .map(|i| seen.first(&listed[i].0.rel, i, &listed))
        .collect();
    assert_eq!(got, [None, None, Some(0), Some(1), None]);
    // and with the real hasher
    let mut seen = Seen::<std::hash::RandomState>::default();
    let got: Vec<Option<usize>> = (0..listed.len())
        .map(|i| seen.first(&listed[i].0.rel, i, &listed))
        .collect();
    assert_eq!(got, [None, None, Some(0), Some(1), None]);
}
