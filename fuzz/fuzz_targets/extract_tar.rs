//! Safe extraction of a tar stream: whatever the layer holds, nothing is written outside the
//! target directory and nothing panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("out");
    std::fs::create_dir(&root).unwrap();
    for strip in [None, Some("models/")] {
        let mut x = mlart::extract::Extractor::new(&root);
        let mut r: &[u8] = data;
        let _ = x.tar("fuzz", &mut r, strip, &mut mlart::extract::All);
        // the target's parent holds the target and nothing else
        let names: Vec<_> = std::fs::read_dir(base.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["out"], "written beside the target");
        inside(&root, &root);
        // the second pass extracts into a fresh target
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::create_dir(&root).unwrap();
    }
});

/// Every symlink under `dir` resolves (lexically) inside `root`.
fn inside(root: &Path, dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let ft = e.file_type().unwrap();
        let p = e.path();
        if ft.is_symlink() {
            let target = std::fs::read_link(&p).unwrap();
            assert!(target.is_relative(), "absolute link {p:?} -> {target:?}");
            let mut depth: i64 = p
                .parent()
                .unwrap()
                .strip_prefix(root)
                .unwrap()
                .components()
                .count() as i64;
            for c in target.components() {
                match c {
                    std::path::Component::ParentDir => depth -= 1,
                    std::path::Component::Normal(_) => depth += 1,
                    _ => {}
                }
                assert!(depth >= 0, "link {p:?} -> {target:?} leaves the target");
            }
        } else if ft.is_dir() {
            inside(root, &p);
        } else {
            assert!(ft.is_file(), "not a file, dir or link: {p:?}");
        }
    }
}
