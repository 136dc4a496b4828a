//! Messages a new user meets: refused or missing credentials, a missing credential helper, a
//! Docker image manifest, `--large-file` too small, a sample value out of its type's range.

use crate::support::registry::{env_with_iris, have, Registry};
use crate::support::*;
use serde_json::json;
use std::fs;

/// Credentials found and refused name the user, the registry and the config file; none found
/// names the config file read; a `credsStore` whose program is not on PATH names the program
/// and the file. Never the password.
#[test]
fn credential_errors_say_whose_credentials_and_which_config() {
    let test = "credential_errors_say_whose_credentials_and_which_config";
    let Some(reg) = Registry::start_with(test, Some(("alice", "s3cret-pw")), None) else {
        return;
    };
    let (env, layout) = env_with_iris();
    let r = reg.reference("ml/iris:1.0.0");
    let cfg = env.path("docker/config.json");

    // No config file: none found, in $DOCKER_CONFIG/config.json.
    let err = fails(env.cmd().arg("push").arg(&layout).arg(&r), 3);
    assert!(
        err.contains(&format!(
            "none were found for {} in {}",
            reg.addr,
            cfg.display()
        )) && err.contains(&format!("mlart login {}", reg.addr)),
        "{err}"
    );

    // Wrong password: refused, whose and from where.
    let auth = base64_encode(b"alice:wrong-pw");
    fs::write(
        &cfg,
        json!({"auths": {reg.addr.clone(): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let err = fails(env.cmd().arg("push").arg(&layout).arg(&r), 3);
    assert!(
        err.contains(&format!(
            "the registry refused the credentials of alice for {} (from {})",
            reg.addr,
            cfg.display()
        )) && err.contains(&format!("run `mlart login {}` again", reg.addr)),
        "{err}"
    );
    assert!(!err.contains("wrong-pw") && !err.contains(&auth), "{err}");
    let v = json_exit(env.cmd().arg("--json").arg("push").arg(&layout).arg(&r), 3);
    assert_eq!(v["error"]["kind"], "auth", "{v}");

    // A credsStore whose program is missing: named, with the file and the fix (exit 2, as
    // before).
    fs::write(&cfg, json!({"credsStore": "nonexist"}).to_string()).unwrap();
    let err = fails(env.cmd().arg("push").arg(&layout).arg(&r), 2);
    assert!(
        err.contains("docker-credential-nonexist is not on PATH")
            && err.contains(&cfg.display().to_string())
            && err.contains("remove `credsStore`"),
        "{err}"
    );
    assert!(!err.contains("Unable to communicate"), "{err}");

    // The right credentials still work.
    let auth = base64_encode(b"alice:s3cret-pw");
    fs::write(
        &cfg,
        json!({"auths": {reg.addr.clone(): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    env.push(&layout, &r);
}

/// A Docker schema 2 manifest (made by skopeo) is refused with the skopeo command that
/// converts it, and that command works.
#[test]
fn a_docker_manifest_is_refused_with_the_command_that_converts_it() {
    let test = "a_docker_manifest_is_refused_with_the_command_that_converts_it";
    if !have("skopeo", test) {
        return;
    }
    let Some(reg) = Registry::start(test) else {
        return;
    };
    let (env, layout) = env_with_iris();
    let r = reg.reference("ml/iris:docker");
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--format",
        "v2s2",
        &format!("oci:{}:1.0.0", layout.display()),
        &format!("docker://{r}"),
    ]);
    let err = fails(env.cmd().arg("inspect").arg(&r), 2);
    let hint = format!("skopeo copy --format oci docker://{r} docker://{r}");
    assert!(
        err.contains(
            "is a Docker image manifest (application/vnd.docker.distribution.manifest.v2+json), not an OCI image manifest"
        ) && err.contains(&hint),
        "{err}"
    );
    assert!(!err.contains("is a application"), "{err}");
    // The hint, as given (plus the plain-HTTP flags of this test registry), converts it.
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--format",
        "oci",
        &format!("docker://{r}"),
        &format!("docker://{r}"),
    ]);
    let out = run(env.cmd().arg("inspect").arg(&r));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("Docker image manifest"), "{stderr}");
}

/// `--large-file 0` is refused; a tiny `--large-file` that makes many layers says to raise it.
#[test]
fn a_tiny_large_file_is_refused_or_named_as_the_cause_of_many_layers() {
    let t = tempfile::tempdir().unwrap();
    let proj = t.path().join("p");
    fs::create_dir_all(proj.join("data")).unwrap();
    for i in 0..1005 {
        fs::write(proj.join(format!("data/r{i:04}.csv")), format!("{i}\n")).unwrap();
    }
    fs::write(
        proj.join("mlart.yaml"),
        "name: many\nversion: '1'\ndata: [data/]\n",
    )
    .unwrap();
    let err = fails(
        mlart()
            .current_dir(&proj)
            .args(["bundle", "--large-file", "0", "-o"])
            .arg(t.path().join("zero.oci")),
        2,
    );
    assert!(
        err.contains("--large-file") && err.contains("give at least 1"),
        "{err}"
    );
    let v = json_ok(
        mlart()
            .current_dir(&proj)
            .args(["--json", "bundle", "--large-file", "1", "-o"])
            .arg(t.path().join("one.oci")),
    );
    let warnings = v["warnings"].to_string();
    assert!(
        warnings.contains("`--large-file 1` gives each model and data file")
            && warnings.contains("raise `--large-file`"),
        "{v}"
    );
    assert!(
        !warnings.contains("`--format image` puts small files"),
        "{v}"
    );
}

/// A sample value FP32 cannot hold is refused where it is, not turned into inf (which then
/// looked like the model's fault).
#[test]
fn a_sample_out_of_float32_range_is_refused_with_its_place() {
    let test = "a_sample_out_of_float32_range_is_refused_with_its_place";
    let Some(lib) = crate::validate::ort_lib(test) else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let samples = t.path().join("big.json");
    fs::write(
        &samples,
        r#"{"inputs":{"input":[[5.1,3.5,1.4,0.2],[1e39,2,3,4],[6.3,2.8,5.1,1.5]]}}"#,
    )
    .unwrap();
    let out = run(crate::validate::mlart_ort(&lib)
        .args(["--json", "validate", "-f"])
        .arg(example().join("mlart.yaml"))
        .arg("--samples")
        .arg(&samples));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let text = v.to_string();
    assert!(
        text.contains("inputs.input[1][0]: 1e+39 is out of range for float32"),
        "{v}"
    );
    assert!(text.contains("big.json"), "{v}");
    assert!(!text.contains("NaN"), "{v}");
    assert_eq!(out.status.code(), Some(1), "{v}");
}
