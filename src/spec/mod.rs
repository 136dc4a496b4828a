//! `mlart.yaml`: the spec of a bundle. Parsing keeps YAML positions so every error names the
//! file, line and column, and says how to fix it.

pub mod lineage;
pub mod policy;

use crate::error::{Error, IoContext, Result};
use crate::format::metadata::{Kind, MODEL_FORMATS};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The default spec file name.
pub const SPEC_FILE: &str = "mlart.yaml";
/// Spec files larger than this are refused (a spec is a short document).
const MAX_SPEC_BYTES: u64 = 1 << 20;

/// A position in the spec file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

/// One entry of a section: a file, a directory or a glob, with optional model details.
#[derive(Clone, Debug)]
pub struct Entry {
    pub path: String,
    pub format: Option<String>,
    pub framework: Option<String>,
    /// For eval reports: `metrics: false` keeps the file but does not parse metrics from it.
    pub metrics: bool,
    /// For model entries: a samples file (inputs and expected outputs) for `mlart validate`.
    pub samples: Option<String>,
    pub pos: Pos,
}

#[derive(Clone, Debug, Default)]
pub struct Spec {
    /// The spec file, as given.
    pub file: PathBuf,
    /// The folder every path is relative to (the spec's folder).
    pub root: PathBuf,
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    pub license: Option<String>,
    pub authors: Vec<String>,
    pub source: Option<String>,
    pub revision: Option<String>,
    pub sections: Vec<(Kind, Vec<Entry>)>,
    /// The release-gate policy (`gates:`), for `mlart gate`.
    pub gates: Option<policy::Policy>,
    /// Runtime settings of the image form's config (`image:`).
    pub image: Option<ImageSettings>,
    /// `form: image|artifact|modelpack`: the form `mlart bundle` writes without `--format`.
    pub form: Option<crate::format::metadata::Form>,
    /// `datasets`, `base_model`, `training` (spec/lineage.rs).
    pub lineage: crate::format::lineage::Lineage,
    /// `attest: true`: `bundle --sign` also makes the attestations.
    pub attest: bool,
    /// Not from the file: paths never collected (the layout `bundle -o oci:DIR:TAG` adds to).
    pub exclude: Vec<PathBuf>,
}

/// `image:` in the spec: what the image form's config says to a container runtime. Unset
/// fields keep the base image's values (or stay empty without a base).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageSettings {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    /// Added to (or replacing in) the config's `Env`, in key order.
    pub env: BTreeMap<String, String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
}

impl Spec {
    /// `samples:` on model entry `e`, which names no single model file (a folder, a glob):
    /// what `bundle` and `validate` of the project both say.
    pub fn samples_need_one_model(&self, e: &Entry) -> Error {
        self.error_at(
            e.pos,
            format!(
                "`samples` applies to one model file, and {:?} is not one",
                e.path
            ),
            "give `samples:` on an entry whose `path` names a single model file",
        )
    }

    pub fn error_at(&self, pos: Pos, message: impl Into<String>, hint: impl Into<String>) -> Error {
        let hint: String = hint.into();
        let mut c = hint.chars();
        let hint: String = c
            .next()
            .map(|f| f.to_uppercase().chain(c).collect())
            .unwrap_or_default();
        Error::Spec {
            file: self.file.clone(),
            line: pos.line,
            column: pos.column,
            message: message.into(),
            hint: (!hint.is_empty()).then_some(hint),
        }
    }
}

// ---- raw, position-keeping form ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    name: Option<Spanned<String>>,
    version: Option<Spanned<String>>,
    description: Option<String>,
    license: Option<String>,
    authors: Option<Authors>,
    source: Option<String>,
    revision: Option<String>,
    model: Option<Vec<Spanned<RawEntry>>>,
    data: Option<Vec<Spanned<RawEntry>>>,
    schema: Option<Vec<Spanned<RawEntry>>>,
    env: Option<Vec<Spanned<RawEntry>>>,
    config: Option<Vec<Spanned<RawEntry>>>,
    docs: Option<Vec<Spanned<RawEntry>>>,
    eval: Option<Vec<Spanned<RawEntry>>>,
    logs: Option<Vec<Spanned<RawEntry>>>,
    gates: Option<Spanned<policy::Policy>>,
    image: Option<Spanned<RawImage>>,
    form: Option<crate::format::metadata::Form>,
    datasets: Option<Vec<Spanned<lineage::RawDataset>>>,
    base_model: Option<Spanned<lineage::RawBaseModel>>,
    training: Option<Spanned<lineage::RawTraining>>,
    attest: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImage {
    entrypoint: Option<Spanned<Vec<String>>>,
    cmd: Option<Spanned<Vec<String>>>,
    env: Option<Spanned<BTreeMap<String, EnvValue>>>,
    workdir: Option<Spanned<String>>,
    user: Option<Spanned<String>>,
}

/// An environment value: a string, or a number or boolean written without quotes.
#[derive(Deserialize)]
#[serde(untagged)]
enum EnvValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl EnvValue {
    fn text(self) -> String {
        match self {
            EnvValue::Bool(b) => b.to_string(),
            EnvValue::Int(i) => i.to_string(),
            EnvValue::Float(f) => f.to_string(),
            EnvValue::Text(s) => s,
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Authors {
    One(String),
    Many(Vec<String>),
}

struct RawEntry {
    path: String,
    format: Option<String>,
    framework: Option<String>,
    metrics: Option<bool>,
    samples: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntryMap {
    path: String,
    format: Option<String>,
    framework: Option<String>,
    metrics: Option<bool>,
    samples: Option<String>,
}

impl<'de> Deserialize<'de> for RawEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawEntry;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a path (file, directory or glob) or a mapping with `path:` (and optional `format:`, `framework:`, `metrics:`, `samples:`)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<RawEntry, E> {
                Ok(RawEntry {
                    path: v.to_string(),
                    format: None,
                    framework: None,
                    metrics: None,
                    samples: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                map: A,
            ) -> std::result::Result<RawEntry, A::Error> {
                let m = RawEntryMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawEntry {
                    path: m.path,
                    format: m.format,
                    framework: m.framework,
                    metrics: m.metrics,
                    samples: m.samples,
                })
            }
        }
        d.deserialize_any(V)
    }
}

fn pos_of<T>(s: &Spanned<T>) -> Pos {
    Pos {
        line: s.referenced.line() as u32,
        column: s.referenced.column() as u32,
    }
}

/// Docker/OCI tag grammar: what a version must be to tag the bundle.
pub fn is_valid_tag(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// OCI repository path component grammar: what a name must be to become a repository.
pub fn is_valid_name(s: &str) -> bool {
    if s.is_empty() || s.len() > 128 {
        return false;
    }
    let mut prev_sep = true;
    for c in s.bytes() {
        match c {
            b'a'..=b'z' | b'0'..=b'9' => prev_sep = false,
            b'.' | b'_' | b'-' => {
                if prev_sep {
                    return false;
                }
                prev_sep = true;
            }
            _ => return false,
        }
    }
    !prev_sep
}

/// Read and check a spec file. Paths are only checked for form here; `collect` checks that
/// they exist and stay inside the project.
pub fn load(file: &Path) -> Result<Spec> {
    let meta = std::fs::metadata(file).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::input(format!(
                "no spec file at {}: run `mlart init` in the project folder to write one, or pass the spec with `-f PATH`",
                file.display()
            ))
        } else {
            Error::Io {
                context: format!("reading {}", file.display()),
                source: e,
            }
        }
    })?;
    if !meta.is_file() {
        return Err(Error::input(format!(
            "{} is not a file: pass the spec file with `-f PATH/mlart.yaml`",
            file.display()
        )));
    }
    if meta.len() > MAX_SPEC_BYTES {
        return Err(Error::input(format!(
            "{} is {} bytes: a spec is at most 1 MiB; list directories or globs instead of every file",
            file.display(),
            meta.len()
        )));
    }
    let bytes = std::fs::read(file).ctx("reading", file)?;
    let text = String::from_utf8(bytes).map_err(|_| {
        Error::input(format!(
            "{} is not UTF-8 text: save the spec as UTF-8",
            file.display()
        ))
    })?;
    parse(file, &text)
}

/// Parse spec text; `file` names it in errors and its folder is the project root.
pub fn parse(file: &Path, text: &str) -> Result<Spec> {
    let raw: RawSpec = serde_saphyr::from_str(text).map_err(|e| yaml_error(file, &e))?;
    let root = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut spec = Spec {
        file: file.to_path_buf(),
        root,
        name: String::new(),
        version: String::new(),
        description: raw.description,
        license: raw.license,
        authors: match raw.authors {
            None => vec![],
            Some(Authors::One(a)) => vec![a],
            Some(Authors::Many(a)) => a,
        },
        source: raw.source,
        revision: raw.revision,
        form: raw.form,
        attest: raw.attest.unwrap_or(false),
        ..Spec::default()
    };
    let top = Pos { line: 1, column: 1 };
    let name = raw.name.ok_or_else(|| {
        spec.error_at(
            top,
            "the spec has no `name`",
            "add `name: my-model` (lowercase letters, digits, and . _ - between them)",
        )
    })?;
    if !is_valid_name(&name.value) {
        return Err(spec.error_at(
            pos_of(&name),
            format!("name {:?} cannot name an OCI repository", name.value),
            "use lowercase letters and digits, with single `.`, `_` or `-` between them, e.g. `iris-classifier`",
        ));
    }
    spec.name = name.value;
    let version = raw.version.ok_or_else(|| {
        spec.error_at(
            top,
            "the spec has no `version`",
            "add `version: 1.0.0` (it becomes the bundle's tag)",
        )
    })?;
    if !is_valid_tag(&version.value) {
        return Err(spec.error_at(
            pos_of(&version),
            format!("version {:?} cannot be an OCI tag", version.value),
            "use letters, digits, `.`, `_` and `-` (at most 128, not starting with `.` or `-`), e.g. `1.0.0` or `1.0.0-rc1`",
        ));
    }
    spec.version = version.value;

    let sections = [
        (Kind::Model, raw.model),
        (Kind::Data, raw.data),
        (Kind::Schema, raw.schema),
        (Kind::Env, raw.env),
        (Kind::Config, raw.config),
        (Kind::Docs, raw.docs),
        (Kind::Eval, raw.eval),
        (Kind::Logs, raw.logs),
    ];
    for (kind, entries) in sections {
        let mut out = Vec::new();
        for e in entries.unwrap_or_default() {
            let pos = pos_of(&e);
            let RawEntry {
                path,
                format,
                framework,
                metrics,
                samples,
            } = e.value;
            check_entry_path(&spec, kind, &path, pos)?;
            if let Some(f) = &format {
                if !matches!(kind, Kind::Model) {
                    return Err(spec.error_at(
                        pos,
                        format!("`format` is only for model entries, not in `{kind}`"),
                        "remove `format:` or move the entry to `model:`",
                    ));
                }
                if !MODEL_FORMATS.contains(&f.as_str()) {
                    return Err(spec.error_at(
                        pos,
                        format!("unknown model format {f:?}"),
                        format!("use one of {}", MODEL_FORMATS.join(", ")),
                    ));
                }
            }
            if framework.is_some() && !matches!(kind, Kind::Model) {
                return Err(spec.error_at(
                    pos,
                    format!("`framework` is only for model entries, not in `{kind}`"),
                    "remove `framework:` or move the entry to `model:`",
                ));
            }
            if metrics.is_some() && !matches!(kind, Kind::Eval) {
                return Err(spec.error_at(
                    pos,
                    format!("`metrics` is only for eval entries, not in `{kind}`"),
                    "remove `metrics:`",
                ));
            }
            if let Some(sp) = &samples {
                if !matches!(kind, Kind::Model) {
                    return Err(spec.error_at(
                        pos,
                        format!("`samples` is only for model entries, not in `{kind}`"),
                        "remove `samples:` or move it to the model's entry in `model:`",
                    ));
                }
                check_entry_path(&spec, kind, sp, pos).map_err(|e| match e {
                    Error::Spec {
                        file,
                        line,
                        column,
                        message,
                        hint,
                    } => Error::Spec {
                        file,
                        line,
                        column,
                        message: format!("samples: {message}"),
                        hint,
                    },
                    other => other,
                })?;
            }
            out.push(Entry {
                path,
                format,
                framework,
                metrics: metrics.unwrap_or(true),
                samples,
                pos,
            });
        }
        if !out.is_empty() {
            spec.sections.push((kind, out));
        }
    }
    if let Some(g) = raw.gates {
        let pos = pos_of(&g);
        policy::check_policy(&g.value).map_err(|m| {
            spec.error_at(pos, format!("gates: {m}"), "see README, \"Release gates\"")
        })?;
        spec.gates = Some(g.value);
    }
    if let Some(i) = raw.image {
        spec.image = Some(check_image(&spec, i)?);
    }
    let raw_lineage = lineage::RawLineage {
        datasets: raw.datasets,
        base_model: raw.base_model,
        training: raw.training,
    };
    spec.lineage = lineage::check(&spec, raw_lineage)?;
    if spec.sections.is_empty() {
        return Err(spec.error_at(
            top,
            "the spec lists no files: the bundle would be empty",
            "add at least a `model:` section, e.g. `model: [model/model.onnx]`",
        ));
    }
    Ok(spec)
}

/// Check `image:`; each error points at the field.
fn check_image(spec: &Spec, raw: Spanned<RawImage>) -> Result<ImageSettings> {
    let RawImage {
        entrypoint,
        cmd,
        env,
        workdir,
        user,
    } = raw.value;
    let no_nul = |v: &Spanned<Vec<String>>, field: &str| -> Result<Vec<String>> {
        if v.value.iter().any(|a| a.contains('\0')) {
            return Err(spec.error_at(
                pos_of(v),
                format!("image.{field}: an argument holds a NUL character"),
                "remove it",
            ));
        }
        Ok(v.value.clone())
    };
    let mut out = ImageSettings::default();
    if let Some(e) = &entrypoint {
        if e.value.is_empty() {
            return Err(spec.error_at(
                pos_of(e),
                "image.entrypoint is an empty list",
                "give the program and its arguments, e.g. `entrypoint: [/bin/sh, -c]`, or remove the key to keep the base image's",
            ));
        }
        out.entrypoint = Some(no_nul(e, "entrypoint")?);
    }
    if let Some(c) = &cmd {
        out.cmd = Some(no_nul(c, "cmd")?);
    }
    if let Some(env) = env {
        let pos = pos_of(&env);
        for (k, v) in env.value {
            let bad_key = k.is_empty()
                || k.contains('=')
                || k.contains('\0')
                || k.chars().any(char::is_whitespace);
            if bad_key {
                return Err(spec.error_at(
                    pos,
                    format!("image.env: {k:?} is not a variable name"),
                    "use a name without `=`, spaces or NUL, e.g. `LOG_LEVEL: info`",
                ));
            }
            if k == "MODEL_DIR" {
                return Err(spec.error_at(
                    pos,
                    "image.env: MODEL_DIR is set by mlart (to /models, where the files are)",
                    "remove it from `image.env`",
                ));
            }
            let v = v.text();
            if v.contains('\0') {
                return Err(spec.error_at(
                    pos,
                    format!("image.env: the value of {k} holds a NUL character"),
                    "remove it",
                ));
            }
            out.env.insert(k, v);
        }
    }
    if let Some(w) = workdir {
        if !w.value.starts_with('/') || w.value.contains('\0') {
            return Err(spec.error_at(
                pos_of(&w),
                format!("image.workdir {:?} is not an absolute path", w.value),
                "write it from the image's root, e.g. `workdir: /models`",
            ));
        }
        out.workdir = Some(w.value);
    }
    if let Some(u) = user {
        if u.value.is_empty() || u.value.contains('\0') || u.value.chars().any(char::is_whitespace)
        {
            return Err(spec.error_at(
                pos_of(&u),
                format!("image.user {:?} is not a user", u.value),
                "give a name or uid, optionally with a group: `user: \"1000:1000\"`",
            ));
        }
        out.user = Some(u.value);
    }
    Ok(out)
}

fn check_entry_path(spec: &Spec, kind: Kind, path: &str, pos: Pos) -> Result<()> {
    let fail = |msg: String, hint: &str| Err(spec.error_at(pos, msg, hint));
    if path.trim().is_empty() {
        return fail(
            format!("an empty path in `{kind}`"),
            "give a file, directory or glob relative to the spec's folder",
        );
    }
    if path.starts_with('/')
        || path.starts_with('\\')
        || (path.len() > 1 && path.as_bytes()[1] == b':')
    {
        return fail(
            format!("{path:?} in `{kind}` is an absolute path"),
            "paths are relative to the spec's folder; move the file into the project or write it relative",
        );
    }
    if path.split(['/', '\\']).any(|c| c == "..") {
        return fail(
            format!("{path:?} in `{kind}` leaves the project folder (`..`)"),
            "a bundle holds only files under the spec's folder; copy the file into the project",
        );
    }
    Ok(())
}

/// The first line of the YAML library's message, without its own position prefix (the caller
/// gives `file:line:column`) and without advice about its API.
pub(crate) fn yaml_message(e: &serde_saphyr::Error) -> String {
    let msg = e.to_string();
    let mut message = msg
        .lines()
        .next()
        .unwrap_or("invalid YAML")
        .trim()
        .trim_start_matches("error: ")
        .to_string();
    if let Some(rest) = message.strip_prefix("line ") {
        if let Some((_, tail)) = rest.split_once(": ") {
            message = tail.to_string();
        }
    }
    if let Some((head, _)) = message.split_once(", set DuplicateKeyPolicy") {
        message = head.to_string();
    }
    message
}

fn yaml_error(file: &Path, e: &serde_saphyr::Error) -> Error {
    let (line, column) = e
        .location()
        .map(|l| (l.line() as u32, l.column() as u32))
        .unwrap_or((1, 1));
    let message = yaml_message(e);
    let hint = if message.contains("unknown field") {
        "Fix the spelling, or remove the key (README: \"The spec\")"
    } else if message.contains("duplicate mapping key") {
        "Give each key once"
    } else if message.contains("expected sequence") {
        "A section is a list: write `model: [model/a.onnx]` or one `- path` per line"
    } else {
        "See the spec reference in README (\"The spec\")"
    };
    Error::Spec {
        file: file.to_path_buf(),
        line,
        column,
        message,
        hint: Some(hint.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Spec> {
        parse(Path::new("proj/mlart.yaml"), text)
    }

    #[test]
    fn parses_a_full_spec() {
        let s = p("name: iris\nversion: 1.0.0\nauthors: A\nmodel:\n  - model/a.onnx\n  - {path: m.bin, format: pickle}\neval: [e/]\n").unwrap();
        assert_eq!(s.name, "iris");
        assert_eq!(s.authors, vec!["A"]);
        assert_eq!(s.root, PathBuf::from("proj"));
        assert_eq!(s.sections[0].0, Kind::Model);
        assert_eq!(s.sections[0].1[1].format.as_deref(), Some("pickle"));
        assert_eq!(s.sections[0].1[1].pos.line, 6);
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = p("name: iris\nversion: 1.0.0\nmodle: [a]\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("proj/mlart.yaml:3:"), "{e}");
        assert!(e.contains("modle"), "{e}");
        let e = p("name: iris\nversion: 1.0.0\nmodel:\n  - ../x.onnx\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("proj/mlart.yaml:4:5:"), "{e}");
        assert!(e.contains("leaves the project"), "{e}");
        let e = p("name: iris\nversion: [1]\nmodel: [a]\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("proj/mlart.yaml:2:"), "{e}");
    }

    #[test]
    fn rejects_bad_names_versions_and_empty() {
        assert!(p("name: Iris\nversion: 1\nmodel: [a]\n")
            .unwrap_err()
            .to_string()
            .contains("OCI repository"));
        assert!(p("name: iris\nversion: 1+2\nmodel: [a]\n")
            .unwrap_err()
            .to_string()
            .contains("OCI tag"));
        assert!(p("name: iris\nversion: '1'\n")
            .unwrap_err()
            .to_string()
            .contains("empty"));
        assert!(p("name: iris\nmodel: [a]\n")
            .unwrap_err()
            .to_string()
            .contains("no `version`"));
        assert!(p("name: iris\nversion: '1'\nmodel: [/etc/passwd]\n")
            .unwrap_err()
            .to_string()
            .contains("absolute"));
        assert!(
            p("name: iris\nversion: '1'\nmodel: [{path: a, colour: red}]\n")
                .unwrap_err()
                .to_string()
                .contains("colour")
        );
        assert!(
            p("name: iris\nversion: '1'\ndocs: [{path: a, format: onnx}]\n")
                .unwrap_err()
                .to_string()
                .contains("only for model")
        );
        assert!(
            p("name: iris\nversion: '1'\ndocs: [{path: a, samples: s.json}]\n")
                .unwrap_err()
                .to_string()
                .contains("`samples` is only for model")
        );
        let e = p("name: iris\nversion: '1'\nmodel:\n  - {path: a, samples: ../s.json}\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("proj/mlart.yaml:4:") && e.contains("samples:") && e.contains("leaves"),
            "{e}"
        );
        assert_eq!(
            p("name: iris\nversion: '1'\nmodel: [{path: a.onnx, samples: s/x.json}]\n")
                .unwrap()
                .sections[0]
                .1[0]
                .samples
                .as_deref(),
            Some("s/x.json")
        );
        assert!(
            p("name: iris\nversion: '1'\nmodel: [{path: a, format: tflite2}]\n")
                .unwrap_err()
                .to_string()
                .contains("unknown model format")
        );
        assert!(p(":\n- [").is_err());
    }

    #[test]
    fn image_settings() {
        let s = p("name: iris\nversion: '1'\nmodel: [a]\nimage:\n  entrypoint: [python, -m, serve]\n  cmd: [--port, '8080']\n  env: {B: 2, A: x, ON: true, R: 0.5}\n  workdir: /models\n  user: '1000'\n").unwrap();
        let i = s.image.unwrap();
        assert_eq!(i.entrypoint.unwrap(), ["python", "-m", "serve"]);
        assert_eq!(i.cmd.unwrap(), ["--port", "8080"]);
        let env: Vec<(&str, &str)> = i
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(env, [("A", "x"), ("B", "2"), ("ON", "true"), ("R", "0.5")]);
        assert_eq!(i.workdir.as_deref(), Some("/models"));
        assert_eq!(i.user.as_deref(), Some("1000"));
        assert!(p("name: iris\nversion: '1'\nmodel: [a]\n")
            .unwrap()
            .image
            .is_none());
        for (text, want) in [
            (
                "image:\n  workdir: rel\n",
                "proj/mlart.yaml:5:12: image.workdir",
            ),
            (
                "image:\n  env: {MODEL_DIR: /x}\n",
                "proj/mlart.yaml:5:8: image.env: MODEL_DIR",
            ),
            ("image:\n  env: {'A B': x}\n", "not a variable name"),
            (
                "image:\n  entrypoint: []\n",
                "proj/mlart.yaml:5:15: image.entrypoint is an empty list",
            ),
            ("image:\n  user: ''\n", "image.user"),
            ("image:\n  user: 'a b'\n", "image.user"),
            ("image:\n  labels: {a: b}\n", "unknown field `labels`"),
            ("image: [a]\n", "proj/mlart.yaml:4:"),
        ] {
            let e = p(&format!("name: iris\nversion: '1'\nmodel: [a]\n{text}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn name_grammar() {
        assert!(is_valid_name("iris"));
        assert!(is_valid_name("iris-v2.x_y"));
        assert!(!is_valid_name("-iris"));
        assert!(!is_valid_name("iris--"));
        assert!(!is_valid_name("a..b"));
        assert!(!is_valid_tag(".x"));
        assert!(is_valid_tag("1.0.0-rc1"));
    }
}
