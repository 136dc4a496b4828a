//! How users get and drive the tool: shell completions and man pages generated from the clap
//! definitions, and the CI recipes (action.yml, the GitLab template) whose release chain
//! (scripts/release-flow) runs here against a real registry. (The pip wheel is checked by
//! scripts/test-wheel: it needs maturin and a venv.)

use crate::support::registry::{Env, Registry};
use crate::support::{example_copy, find_on_path, mlart, ok, repo};
use std::process::Command;

/// Run bash's completion function of `mlart completions bash` on a command line (the words
/// typed so far, the last one being completed): the candidates it offers.
fn bash_complete(words: &[&str]) -> Vec<String> {
    let d = tempfile::tempdir().unwrap();
    let script = d.path().join("mlart.bash");
    std::fs::write(&script, ok(mlart().args(["completions", "bash"]))).unwrap();
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let cword = words.len() - 1;
    let prev = if cword > 0 { words[cword - 1] } else { "" };
    let line = words.join(" ");
    let probe = format!(
        "source '{}'\nCOMP_WORDS=({})\nCOMP_CWORD={cword}\nCOMP_LINE='{line}'\nCOMP_POINT={}\n\
         _mlart mlart '{}' '{prev}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.display(),
        quoted.join(" "),
        line.len(),
        words[cword],
    );
    let out = ok(Command::new("bash").arg("-c").arg(probe));
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn bash_completes_verbs_and_flags() {
    if find_on_path("bash").is_none() {
        eprintln!("SKIP: no bash");
        return;
    }
    let verbs = bash_complete(&["mlart", "bu"]);
    assert_eq!(verbs, ["bundle"], "completing `mlart bu`");
    let all = bash_complete(&["mlart", ""]);
    for v in ["bundle", "push", "pull", "validate", "completions", "man"] {
        assert!(all.iter().any(|c| c == v), "{v} missing from {all:?}");
    }
    assert!(
        !all.iter().any(|c| c.starts_with("__")),
        "a hidden verb offered: {all:?}"
    );
    let flags = bash_complete(&["mlart", "bundle", "--fo"]);
    assert!(flags.iter().any(|c| c == "--format"), "{flags:?}");
    let values = bash_complete(&["mlart", "bundle", "--format", ""]);
    assert!(
        values.iter().any(|c| c == "image") && values.iter().any(|c| c == "artifact"),
        "{values:?}"
    );
}

#[test]
fn every_shell_gets_a_script() {
    for (shell, marker) in [
        ("bash", "complete -F _mlart"),
        ("zsh", "#compdef mlart"),
        ("fish", "complete -c mlart"),
        ("powershell", "Register-ArgumentCompleter"),
        ("elvish", "edit:completion:arg-completer[mlart]"),
    ] {
        let out = String::from_utf8(ok(mlart().args(["completions", shell]))).unwrap();
        assert!(out.contains(marker), "{shell}: no {marker:?}");
        assert!(out.contains("bundle"), "{shell}: no bundle verb");
    }
    let e = mlart().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(
        e.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

/// The roff page renders without a warning where groff is installed; else its header and
/// sections are checked as text.
fn check_roff(page: &[u8], title: &str) {
    let text = String::from_utf8(page.to_vec()).unwrap();
    let th = format!(".TH {title} 1 ");
    assert!(text.lines().any(|l| l.starts_with(&th)), "{title}: {text}");
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS"] {
        assert!(text.contains(section), "{title}: no {section}");
    }
    if find_on_path("groff").is_none() {
        eprintln!("SKIP: groff not installed, man page checked as text only");
        return;
    }
    let mut child = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(page).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "groff failed on {title}");
    assert!(
        out.stderr.is_empty(),
        "groff warns on {title}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn man_pages_render() {
    let page = ok(mlart().arg("man"));
    check_roff(&page, "mlart");
    let text = String::from_utf8_lossy(&page);
    assert!(text.contains("bundle") && text.contains("completions"));
    assert!(
        !text.contains("__validate-worker"),
        "a hidden verb documented"
    );

    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("man1");
    let v: serde_json::Value =
        serde_json::from_slice(&ok(mlart().arg("man").arg("--out").arg(&out).arg("--json")))
            .unwrap();
    let pages: Vec<&str> = v["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(pages.len() > 10, "{pages:?}");
    let bundle = out.join("mlart-bundle.1");
    assert!(pages.contains(&bundle.to_str().unwrap()), "{pages:?}");
    let bundle_page = std::fs::read(&bundle).unwrap();
    check_roff(&bundle_page, "mlart-bundle");
    assert!(String::from_utf8_lossy(&bundle_page).contains("format"));
    assert!(!out.join("mlart-__validate-worker.1").exists());
    assert!(!out.join("mlart-help.1").exists());
}

/// The command lines of scripts/release-flow's release chain (between its markers).
fn release_chain() -> Vec<String> {
    let script = std::fs::read_to_string(repo().join("scripts/release-flow")).unwrap();
    let body = script
        .split_once("# --- the release chain")
        .and_then(|(_, rest)| rest.split_once('\n'))
        .and_then(|(_, rest)| rest.split_once("# --- end ---"))
        .expect("the markers of scripts/release-flow")
        .0;
    body.lines().map(str::to_string).collect()
}

/// The CI recipes run the chain our CI runs: action.yml runs scripts/release-flow, and the
/// GitLab template's `script:` is its command lines verbatim. Then the chain itself, against a
/// real registry, twice (the first release, then one gated against it): bundle (--validate
/// where ONNX Runtime is) → gate → sign → push, and the pushed bundle verifies with the key.
#[test]
fn ci_recipes_run_the_release_flow() {
    let chain = release_chain();
    assert_eq!(chain.len(), 4, "{chain:?}");
    let gitlab = std::fs::read_to_string(repo().join("ci-templates/gitlab-ci.yml")).unwrap();
    let script: Vec<String> = gitlab
        .lines()
        .skip_while(|l| l.trim_end() != "  script:")
        .skip(1)
        .map_while(|l| l.strip_prefix("    - "))
        .map(str::to_string)
        .collect();
    assert_eq!(
        script, chain,
        "ci-templates/gitlab-ci.yml and scripts/release-flow differ"
    );
    let action = std::fs::read_to_string(repo().join("action.yml")).unwrap();
    assert!(
        action.contains(r#"sh "$GITHUB_ACTION_PATH/scripts/release-flow""#),
        "action.yml does not run scripts/release-flow"
    );

    let test = "ci_recipes_run_the_release_flow";
    let Some(reg) = Registry::start(test) else {
        return;
    };
    let env = Env::new();
    let project = example_copy();
    let (key, public) = env.keygen("release");
    let policy = env.path("gates.yaml");
    std::fs::write(
        &policy,
        "gates:\n  metrics: [{metric: accuracy, min: 0.9}]\n",
    )
    .unwrap();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_mlart"))
        .parent()
        .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let ort = crate::validate::ort_lib(test);
    for (tag, baseline) in [
        ("1.0.0", None),
        ("1.0.1", Some(reg.reference("ml/iris:1.0.0"))),
    ] {
        let to = reg.reference(&format!("ml/iris:{tag}"));
        let mut flow = Command::new("sh");
        env.apply(&mut flow)
            .arg(repo().join("scripts/release-flow"))
            .current_dir(project.path())
            .env("PATH", &path)
            .env("MLART_OUT", env.path(tag))
            .env("MLART_POLICY", &policy)
            .env("MLART_BASELINE", baseline.unwrap_or_default())
            .env("MLART_KEY", &key)
            .env("MLART_PUSH", &to);
        if let Some(lib) = &ort {
            flow.env("MLART_VALIDATE", "1").env("ORT_DYLIB_PATH", lib);
        }
        ok(&mut flow);
        let report = std::fs::read_to_string(env.path(&format!("{tag}.gate.md"))).unwrap();
        assert!(report.contains("accuracy"), "{report}");
        ok(env.cmd().args(["verify", &to, "--key"]).arg(&public));
    }
}
