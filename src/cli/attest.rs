//! `mlart attest TARGET --key KEY`: add the signed provenance and ML-BOM to a bundle already
//! made (a layout directory, an archive or a registry REF); and the attestation sections `inspect` and
//! `verify` print.

use mlart::attest::summary::Summary;
use mlart::attest::{self, Found};
use mlart::format::attestation::AttestationKind;
use mlart::format::digest::Digest;
use mlart::format::display::escape;
use mlart::interrupt::Cancel;
use mlart::store::layout::Source;
use mlart::{Error, Result};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    bundle: super::args::BundleTarget,
    /// The private key (PEM) to sign the attestations with: the same keys as `mlart sign`.
    #[arg(long)]
    key: PathBuf,
    /// The spec the bundle was made from: its digest goes into the provenance, and the git
    /// state (commit, remote, dirty) of the folder it is in.
    #[arg(short = 'f', long = "file")]
    spec: Option<PathBuf>,
    #[command(flatten)]
    registry: super::args::RegistryArgs,
}

pub fn run(mut a: Args, json: bool, cancel: &Cancel) -> Result<ExitCode> {
    a.registry.cancel = cancel.clone();
    let key = mlart::sign::load_private(&a.key)?;
    let (spec, git) = match &a.spec {
        Some(f) => {
            let bytes = std::fs::read(f)
                .map_err(|e| Error::input(format!("cannot read the spec {}: {e}", f.display())))?;
            let dir = match f.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let name = f.file_name().map(|n| n.to_string_lossy().into_owned());
            let spec = attest::SpecFile {
                path: name.unwrap_or_default(),
                sha256: Digest::of(&bytes).hex().to_string(),
            };
            (Some(spec), attest::git::state(&dir))
        }
        None => (None, None),
    };
    let target = a.bundle.resolve()?;
    let (what, mut src, tag): (String, Box<dyn Source>, Option<String>) = match &target {
        super::Target::Registry(r) => {
            let remote = mlart::registry::Remote::new(r.clone(), &a.registry.options())?;
            let src = mlart::store::registry::RegistrySource::new(remote.clone());
            (remote.describe(), Box::new(src), None)
        }
        super::Target::Local(path, tag) => (
            path.display().to_string(),
            mlart::store::layout::open(path)?,
            tag.clone(),
        ),
    };
    let r = mlart::store::layout::resolve_image(src.as_mut(), tag.as_deref(), "attest")?;
    let digest = Digest::of(&r.raw);
    // (its files a list on disk past a few MiB, read one at a time as the documents are
    // written)
    let mut metadata = mlart::store::metadata::read_metadata(src.as_mut(), &r.manifest)?;
    let files = std::mem::replace(
        &mut metadata.files,
        mlart::store::entries::Entries::of(&[])?,
    );
    let metadata = metadata.with_files(std::sync::Arc::new(files));
    let config = Digest::parse(r.manifest.config().digest().as_ref()).map_err(Error::Input)?;
    let inputs = attest::Inputs {
        metadata: &metadata,
        subject: attest::Subject {
            manifest: digest.clone(),
            media_type: r.descriptor.media_type().to_string(),
            size: r.raw.len() as u64,
            config,
        },
        spec,
        git,
    };
    // What this key already attested about this manifest (verified) is kept as it is: a run
    // again, or after `bundle --attest`, adds nothing; a second statement of a kind would
    // leave readers to choose between two.
    let had = attest::referrer::read(src.as_ref(), &digest, &[key.trusted()])?;
    let kept: Vec<&Found> = had
        .iter()
        .filter(|f| f.verified && f.problem.is_none())
        .collect();
    let made: Vec<_> = attest::make(&key, &inputs)?
        .into_iter()
        .filter(|m| !kept.iter().any(|f| f.kind == m.kind))
        .collect();
    let (added, fallback) = match &target {
        _ if made.is_empty() => (0, None),
        super::Target::Registry(r) => {
            let remote = mlart::registry::Remote::new(r.clone(), &a.registry.options())?;
            let sink = mlart::store::registry_sink::RegistrySink::new(remote);
            let tag = attest::referrer::attach(&sink, &digest, &made)?;
            (made.len(), tag)
        }
        super::Target::Local(path, _) => (attest::attach_local(path, &made)?, None),
    };
    if json {
        let list: Vec<_> = made
            .iter()
            .map(|m| {
                serde_json::json!({
                    "kind": m.kind,
                    "digest": m.referrer.digest().as_str(),
                    "predicate_type": m.kind.predicate_type(),
                })
            })
            .collect();
        let kept_list: Vec<_> = kept
            .iter()
            .map(|f| {
                serde_json::json!({
                    "kind": f.kind,
                    "digest": f.digest,
                    "predicate_type": f.predicate_type,
                })
            })
            .collect();
        let mut v = serde_json::json!({
            "target": what, "manifest_digest": digest.as_str(), "attestations": list, "added": added,
            "kept": kept_list,
        });
        if let Some(t) = fallback {
            v["referrers_tag"] = t.into();
        }
        super::print_json(&v);
    } else {
        for m in &made {
            outln!(
                "  {} {} ({})",
                m.kind,
                m.referrer.digest(),
                m.kind.predicate_type()
            );
        }
        for f in &kept {
            outln!(
                "  {} {} kept: this key attested it already",
                f.kind,
                f.digest
            );
        }
        outln!("attested {what} {digest}: {added} attestation(s) added");
    }
    Ok(ExitCode::SUCCESS)
}

/// Parse `--require provenance,sbom`.
pub fn parse_required(list: &[String]) -> Result<Vec<AttestationKind>> {
    let mut out = Vec::new();
    for item in list.iter().flat_map(|s| s.split(',')) {
        let item = item.trim();
        let k = AttestationKind::parse(item).ok_or_else(|| {
            Error::of(
                mlart::error::Kind::Usage,
                format!("--require {item:?}: the attestations are `provenance` and `sbom` (e.g. --require provenance,sbom)"),
            )
        })?;
        if !out.contains(&k) {
            out.push(k);
        }
    }
    Ok(out)
}

/// The attestations as `--json` lists them: each with its summary.
pub fn to_json(found: &[Found]) -> serde_json::Value {
    found
        .iter()
        .map(|f| {
            let mut v = serde_json::to_value(f).unwrap_or_default();
            if let Some(s) = &f.summary {
                v["summary"] = summary(s);
            }
            v
        })
        .collect()
}

fn summary(s: &Summary) -> serde_json::Value {
    match s {
        Summary::Provenance(p) => serde_json::to_value(p).unwrap_or_default(),
        Summary::Sbom(c) => serde_json::json!({"components": c}),
    }
}

/// The attestations as people read them.
pub fn print(found: &[Found], checked: bool) {
    if found.is_empty() {
        outln!("  attestations: none (`mlart attest` or `bundle --sign KEY --attest` adds them)");
        return;
    }
    for f in found {
        let state = match (&f.problem, &f.key) {
            (Some(p), _) => format!("INVALID ({})", escape(p)),
            (None, Some(k)) => format!("valid ({})", escape(k)),
            (None, None) if checked => "not verified".into(),
            (None, None) => "signature not checked (`mlart verify --key PUB --require ...`)".into(),
        };
        outln!("  {} {}: {state}", f.kind, f.digest);
        match &f.summary {
            Some(Summary::Provenance(s)) => {
                let src = match (&s.commit, s.dirty) {
                    (Some(c), Some(true)) => format!("{c} (dirty tree)"),
                    (Some(c), _) => c.clone(),
                    _ => "no source revision recorded".into(),
                };
                outln!("    source    {}", escape(&src));
                outln!(
                    "    inputs    {} resolved ({} datasets)",
                    s.inputs,
                    s.datasets.len()
                );
            }
            Some(Summary::Sbom(c)) => {
                let parts: Vec<String> = c.iter().map(|(k, n)| format!("{n} {k}")).collect();
                outln!("    components {}", escape(&parts.join(", ")));
            }
            None => {}
        }
    }
}
