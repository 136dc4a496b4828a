//! Human output of names that a bundle chooses (escaped), and the smaller output fixes:
//! `tags` in version order, `diff` of two models, the `convert` hint, empty model files.

use crate::support::registry::{Env, Registry};
use crate::support::*;
use std::fs;
use std::path::Path;

/// A file name that repaints a terminal: colours, then a carriage return and a new text.
const HOSTILE: &str = "data/\x1b[31mred\x1b[0m\rOK.txt";
const ESCAPED: &str = "data/\\x1b[31mred\\x1b[0m\\rOK.txt";

/// stdout and stderr of `c` (expected to exit `code`), as text.
fn output(c: &mut std::process::Command, code: i32) -> String {
    let o = run(c);
    assert_exit(&o, code);
    format!(
        "{}{}",
        String::from_utf8(o.stdout).unwrap(),
        String::from_utf8(o.stderr).unwrap()
    )
}

fn assert_escaped(out: &str, what: &str) {
    assert!(
        !out.contains('\x1b') && !out.contains('\r') && !out.contains('\u{202e}'),
        "{what}: raw control characters reach the terminal: {out:?}"
    );
    assert!(out.contains(ESCAPED), "{what}: {out}");
}

fn write_project(dir: &Path, name: &str, extra: &[(&str, &str)]) {
    fs::create_dir_all(dir.join("data")).unwrap();
    fs::write(dir.join("m.onnx"), "model").unwrap();
    for (p, text) in extra {
        fs::write(dir.join(p), text).unwrap();
    }
    fs::write(
        dir.join("mlart.yaml"),
        format!("name: {name}\nversion: 1.0.0\ndescription: \"wipe\\e[2J\\u202Eit\"\nmodel: [m.onnx]\ndata: [data/]\n"),
    )
    .unwrap();
}

#[test]
fn names_from_a_bundle_are_escaped_in_human_output_and_exact_in_json() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("p");
    write_project(&p, "esc", &[(HOSTILE, "x")]);
    let (key, public) = keygen(t.path(), "k");
    let layout = t.path().join("esc.oci");
    let bundle = || {
        let mut c = mlart();
        c.arg("bundle")
            .arg("-f")
            .arg(p.join("mlart.yaml"))
            .arg("-o")
            .arg(&layout)
            .arg("--sign")
            .arg(&key);
        c
    };
    assert_escaped(&output(&mut bundle(), 0), "bundle");
    fs::remove_dir_all(&layout).unwrap();
    let b = json_ok(&mut bundle());
    assert_eq!(b["name"], "esc", "{b}");

    // inspect: the file, and the description the spec gave
    let out = output(mlart().arg("inspect").arg(&layout), 0);
    assert_escaped(&out, "inspect");
    assert!(out.contains("esc 1.0.0 - wipe\\x1b[2J\\u{202e}it"), "{out}");
    let j = json_ok(mlart().arg("inspect").arg(&layout));
    assert!(
        j["metadata"]["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["path"] == HOSTILE),
        "{j}"
    );
    assert_eq!(j["metadata"]["description"], "wipe\x1b[2J\u{202e}it");

    // pull: the list of files written
    let out = output(
        mlart()
            .arg("pull")
            .arg(&layout)
            .arg("-o")
            .arg(t.path().join("pulled")),
        0,
    );
    assert_escaped(&out, "pull");
    let j = pull_to(&layout, &t.path().join("pulled2"));
    assert!(
        j["files"].as_array().unwrap().iter().any(|f| f == HOSTILE),
        "{j}"
    );

    // verify of a pulled folder whose file was changed: the problem names it, escaped
    fs::write(t.path().join("pulled").join(HOSTILE), "changed").unwrap();
    let o = run(mlart()
        .arg("verify")
        .arg(t.path().join("pulled"))
        .arg("--key")
        .arg(&public));
    assert!(!o.status.success());
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_escaped(&out, "verify");
    let j = run(mlart()
        .arg("--json")
        .arg("verify")
        .arg(t.path().join("pulled"))
        .arg("--key")
        .arg(&public));
    let v: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    assert!(
        v.to_string().contains("\\u001b[31mred\\u001b[0m\\rOK.txt"),
        "{v}"
    );

    // diff against another model (the names differ: both shown) without that file
    let q = t.path().join("q");
    write_project(&q, "odd", &[("data/a.txt", "a")]);
    let other = t.path().join("odd.oci");
    json_ok(
        mlart()
            .arg("bundle")
            .arg("-f")
            .arg(q.join("mlart.yaml"))
            .arg("-o")
            .arg(&other),
    );
    let out = output(mlart().arg("diff").arg(&layout).arg(&other), 0);
    assert_escaped(&out, "diff");
    let first = out.lines().next().unwrap();
    assert!(
        first.starts_with("esc 1.0.0 (") && first.contains(") -> odd 1.0.0 ("),
        "{out}"
    );
    let j = json_ok(mlart().arg("diff").arg(&layout).arg(&other));
    assert!(j.to_string().contains("\\u001b[31mred"), "{j}");
    // the same name: the version only, as before
    let out = output(mlart().arg("diff").arg(&layout).arg(&layout), 0);
    let first = out.lines().next().unwrap();
    assert!(
        first.starts_with("esc 1.0.0 (") && first.contains(") -> 1.0.0 ("),
        "{out}"
    );
}

/// `tags` lists a repository's tags in version order (`sort -V`), human and JSON.
#[test]
fn tags_are_listed_in_version_order() {
    let Some(reg) = Registry::start("tags_are_listed_in_version_order") else {
        return;
    };
    let env = Env::new();
    let t = tempfile::tempdir().unwrap();
    write_project(t.path(), "sorted", &[("data/a.txt", "a")]);
    let layout = t.path().join("s.oci");
    json_ok(
        mlart()
            .arg("bundle")
            .arg("-f")
            .arg(t.path().join("mlart.yaml"))
            .arg("-o")
            .arg(&layout),
    );
    for tag in ["1.9.0", "1.10.0", "1.2.0", "v10", "v1", "v100"] {
        env.push(&layout, reg.reference(&format!("ml/sorted:{tag}")));
    }
    let want = ["1.2.0", "1.9.0", "1.10.0", "v1", "v10", "v100"];
    let repo = reg.reference("ml/sorted");
    let j = json_ok(env.cmd().args(["tags", &repo]));
    assert_eq!(j["tags"], serde_json::json!(want), "{j}");
    let out = String::from_utf8(ok(env.cmd().args(["tags", &repo]))).unwrap();
    assert_eq!(out.lines().collect::<Vec<_>>(), want, "{out}");
}

/// `mlart convert` is not a verb: it says what converts (`copy --format`), exit 2, and stays
/// out of `--help`.
#[test]
fn convert_points_to_copy_format() {
    let err = fails(
        mlart().args(["convert", "a.oci", "b.oci", "--format", "modelpack"]),
        2,
    );
    assert!(
        err.contains(
            "converting between forms is `mlart copy SRC DST --format modelpack|image|artifact`"
        ),
        "{err}"
    );
    // (with --json before the verb: everything after `convert` is its ignored words)
    let o = run(mlart().args(["--json", "convert", "x"]));
    assert_eq!(o.status.code(), Some(2));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["error"]["kind"], "usage", "{j}");
    let help = String::from_utf8(ok(mlart().arg("--help"))).unwrap();
    assert!(!help.contains("convert"), "{help}");
}

/// A model file of 0 bytes is bundled with a warning that names it and its spec entry.
#[test]
fn an_empty_model_file_is_warned_about() {
    let t = tempfile::tempdir().unwrap();
    fs::create_dir_all(t.path().join("models")).unwrap();
    fs::write(t.path().join("models/empty.safetensors"), "").unwrap();
    fs::write(t.path().join("ok.onnx"), "x").unwrap();
    fs::write(
        t.path().join("mlart.yaml"),
        "name: e\nversion: '1'\nmodel: [ok.onnx, models/]\n",
    )
    .unwrap();
    let o = run(mlart()
        .current_dir(t.path())
        .args(["bundle", "-o", "a.oci"]));
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("warning: models/empty.safetensors is empty (0 bytes), from the `model:` entry `models/` (mlart.yaml:3)"),
        "{err}"
    );
    assert!(!err.contains("ok.onnx"), "{err}");
    let j = json_ok(
        mlart()
            .current_dir(t.path())
            .args(["bundle", "-o", "b.oci"]),
    );
    let w = j["warnings"].as_array().unwrap();
    assert_eq!(w.len(), 1, "{j}");
    assert!(
        w[0].as_str()
            .unwrap()
            .starts_with("models/empty.safetensors is empty (0 bytes)"),
        "{j}"
    );
}
