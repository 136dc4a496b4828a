use super::{human_size, table};
use mlart::format::display::escape;
use mlart::interrupt::Cancel;
use mlart::{check::inspect, Result};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// An OCI layout directory or archive (`oci:DIR[:TAG]` and `oci-archive:FILE[:TAG]` also work),
    /// or a registry REF (host[:port]/repository[:tag|@digest]).
    target: String,
    /// Which tag of the layout (default: its only manifest).
    #[arg(long)]
    tag: Option<String>,
    /// Also list the attestations (provenance, ML-BOM) attached to the bundle, unverified
    /// (`mlart verify --key PUB --require provenance,sbom` checks them).
    #[arg(long)]
    attestations: bool,
    #[command(flatten)]
    registry: super::args::RegistryArgs,
    #[command(flatten)]
    platform: super::args::PlatformArg,
}

pub fn run(mut a: Args, json: bool, cancel: &Cancel) -> Result<ExitCode> {
    a.registry.cancel = cancel.clone();
    mlart::check::inspect::refuse_spec(&a.target)?;
    let platform = a.platform.parse()?;
    let (r, src): (_, Box<dyn mlart::store::layout::Source>) =
        match super::target(std::path::Path::new(&a.target), a.tag.as_deref())? {
            super::Target::Registry(reference) => {
                let remote = mlart::registry::Remote::new(reference, &a.registry.options())?;
                let mut src = mlart::store::registry::RegistrySource::new(remote);
                let r = inspect::inspect_platform(&mut src, None, platform.as_ref())?;
                (r, Box::new(src))
            }
            super::Target::Local(path, tag) => {
                let mut src = mlart::store::layout::open(&path)?;
                let r = inspect::inspect_platform(src.as_mut(), tag.as_deref(), platform.as_ref())?;
                (r, src)
            }
        };
    let attestations = match a.attestations {
        true => {
            let d = mlart::format::digest::Digest::parse(&r.manifest_digest.to_string())
                .map_err(mlart::Error::Input)?;
            Some(mlart::attest::read(src.as_ref(), &d, &[])?)
        }
        false => None,
    };
    if json {
        #[derive(serde::Serialize)]
        struct WithAttestations<'a> {
            #[serde(flatten)]
            report: &'a inspect::Report,
            #[serde(skip_serializing_if = "Option::is_none")]
            attestations: Option<serde_json::Value>,
        }
        super::stream_json(&WithAttestations {
            report: &r,
            attestations: attestations.as_deref().map(super::attest::to_json),
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(found) = &attestations {
        outln!("ATTESTATIONS");
        super::attest::print(found, false);
        outln!("");
    }
    let m = &r.metadata;
    outln!(
        "{} {}{}",
        escape(&m.name),
        escape(&m.version),
        m.description
            .as_ref()
            .map(|d| format!(" - {}", escape(d)))
            .unwrap_or_default()
    );
    outln!(
        "  from      {}{}",
        escape(&r.source),
        r.tag
            .as_ref()
            .map(|t| format!(" (tag {})", escape(t)))
            .unwrap_or_default()
    );
    outln!(
        "  manifest  {} ({} form, {} bytes)",
        r.manifest_digest,
        serde_json::to_value(m.form)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        r.manifest_size
    );
    for (k, v) in [
        ("license", &m.license),
        ("created", &m.created),
        ("source", &m.source),
        ("revision", &m.revision),
    ] {
        if let Some(v) = v {
            outln!("  {k:<9} {}", escape(v));
        }
    }
    if !m.authors.is_empty() {
        outln!("  authors   {}", escape(&m.authors.join(", ")));
    }
    // Two passes over the list (on disk past a few MiB): the widths, then the rows.
    let (mut total, mut kind_w, mut size_w) = (0u64, "KIND".len(), "SIZE".len());
    for f in m.files.iter() {
        let f = f?;
        total += f.size;
        kind_w = kind_w.max(f.kind.to_string().len());
        size_w = size_w.max(human_size(f.size).len());
    }
    outln!("\nFILES ({}, {})", m.files.len(), human_size(total));
    let sha_w = if m.files.is_empty() {
        "SHA256".len()
    } else {
        12
    };
    outln!(
        "  {:<kind_w$}  {:<size_w$}  {:<sha_w$}  PATH",
        "KIND",
        "SIZE",
        "SHA256"
    );
    for f in m.files.iter() {
        let f = f?;
        outln!(
            "  {:<kind_w$}  {:<size_w$}  {:<sha_w$}  {}",
            f.kind.to_string(),
            human_size(f.size),
            f.sha256.get(7..19).unwrap_or(""),
            escape(&f.path)
        );
    }
    if !m.models.is_empty() {
        outln!("\nMODELS");
        let rows: Vec<Vec<String>> = m
            .models
            .iter()
            .map(|x| {
                vec![
                    x.format.clone().unwrap_or_else(|| "unknown".into()),
                    x.framework.clone().unwrap_or_else(|| "-".into()),
                    x.path.clone(),
                ]
            })
            .collect();
        table(&["FORMAT", "FRAMEWORK", "PATH"], &rows);
    }
    if !m.metrics.is_empty() {
        outln!("\nMETRICS");
        let rows: Vec<Vec<String>> = m
            .metrics
            .iter()
            .map(|(k, v)| {
                vec![
                    k.clone(),
                    v.map(|v| format!("{v}")).unwrap_or_else(|| "NaN".into()),
                    m.metric_sources.get(k).cloned().unwrap_or_default(),
                ]
            })
            .collect();
        table(&["NAME", "VALUE", "FROM"], &rows);
    }
    if let Some(s) = &m.schema {
        outln!(
            "\nSCHEMA {} ({}): {} features, {} outputs",
            escape(&s.file),
            escape(&s.source),
            s.features.len(),
            s.outputs.len()
        );
        let rows: Vec<Vec<String>> = s
            .features
            .iter()
            .map(|f| ("in", f))
            .chain(s.outputs.iter().map(|f| ("out", f)))
            .map(|(io, f)| {
                let shape = f
                    .shape
                    .as_ref()
                    .map(|s| format!("{s:?}"))
                    .unwrap_or_else(|| "-".into());
                let domain = match (&f.range, &f.categories) {
                    (Some(r), _) => format!(
                        "[{}, {}]",
                        r.min.map(|v| v.to_string()).unwrap_or_default(),
                        r.max.map(|v| v.to_string()).unwrap_or_default()
                    ),
                    (None, Some(c)) => c
                        .iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join(" "),
                    _ => "-".into(),
                };
                vec![
                    io.into(),
                    f.name.clone(),
                    f.dtype.clone(),
                    shape,
                    if f.nullable { "yes" } else { "no" }.into(),
                    domain,
                ]
            })
            .collect();
        table(
            &["", "NAME", "DTYPE", "SHAPE", "NULLABLE", "RANGE/CATEGORIES"],
            &rows,
        );
    }
    if let Some(env) = &m.env {
        outln!(
            "\nENV ({}){}",
            escape(&env.files.join(", ")),
            env.python
                .as_ref()
                .map(|p| format!(" python {}", escape(p)))
                .unwrap_or_default()
        );
        let any = |v: &String| {
            if v.is_empty() {
                "(any)".to_string()
            } else {
                v.clone()
            }
        };
        let rows: Vec<Vec<String>> = env
            .packages
            .iter()
            .map(|(k, v)| vec![k.clone(), any(v)])
            .chain(
                env.conda
                    .iter()
                    .map(|(k, v)| vec![format!("{k} (conda)"), any(v)]),
            )
            .collect();
        table(&["PACKAGE", "VERSION"], &rows);
    }
    outln!("\nLAYERS");
    let rows: Vec<Vec<String>> = r
        .layers
        .iter()
        .map(|l| {
            vec![
                l.digest.get(7..19).unwrap_or("").to_string(),
                human_size(l.size),
                l.kind.clone().unwrap_or_default(),
                l.media_type.clone(),
                l.title.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(&["DIGEST", "SIZE", "KIND", "MEDIA TYPE", "TITLE"], &rows);
    Ok(ExitCode::SUCCESS)
}
