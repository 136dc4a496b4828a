//! A summary of the environment specs (requirements.txt, environment.yml, pyproject.toml):
//! the packages and their version constraints, for `inspect` and `diff`.

use crate::format::metadata::EnvSummary;
use serde_json::Value;

/// Add what one env file says; `Err` is a file that could not be read as its kind.
pub fn add(summary: &mut EnvSummary, rel: &str, bytes: &[u8]) -> Result<bool, String> {
    let base = rel.rsplit('/').next().unwrap_or(rel).to_ascii_lowercase();
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let known = if base.starts_with("requirements") && base.ends_with(".txt") {
        for line in text.lines() {
            requirement(summary, line);
        }
        true
    } else if base == "environment.yml"
        || base == "environment.yaml"
        || base == "conda.yaml"
        || base == "conda.yml"
    {
        let v: Value = serde_saphyr::from_str(text).map_err(|e| {
            format!(
                "invalid YAML: {}",
                e.to_string().lines().next().unwrap_or_default()
            )
        })?;
        for dep in v
            .get("dependencies")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match dep {
                Value::String(s) => {
                    let (name, ver) = split_conda(s);
                    // (`conda-forge::numpy`: the package is numpy, from that channel)
                    let bare = name.rsplit("::").next().unwrap_or(name);
                    if bare.eq_ignore_ascii_case("python") {
                        summary.python = Some(ver.to_string());
                    } else if !bare.eq_ignore_ascii_case("pip") && !bare.is_empty() {
                        summary
                            .conda
                            .insert(name.to_ascii_lowercase(), ver.to_string());
                    }
                }
                Value::Object(m) => {
                    for p in m.get("pip").and_then(Value::as_array).into_iter().flatten() {
                        if let Some(s) = p.as_str() {
                            requirement(summary, s);
                        }
                    }
                }
                _ => {}
            }
        }
        true
    } else if base == "pyproject.toml" {
        let v: toml::Value =
            toml::from_str(text).map_err(|e| format!("invalid TOML: {}", e.message()))?;
        let project = v.get("project");
        for d in project
            .and_then(|p| p.get("dependencies"))
            .and_then(|d| d.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(s) = d.as_str() {
                requirement(summary, s);
            }
        }
        if let Some(p) = project
            .and_then(|p| p.get("requires-python"))
            .and_then(|p| p.as_str())
        {
            summary.python = Some(p.to_string());
        }
        true
    } else {
        false
    };
    if known {
        summary.files.push(rel.to_string());
    }
    Ok(known)
}

/// One PEP 508 line: `name[extras] (op version)* ; markers  # comment`.
fn requirement(summary: &mut EnvSummary, line: &str) {
    let line = line.split('#').next().unwrap_or("").trim();
    if line.is_empty() || line.starts_with('-') {
        return;
    }
    let line = line.split(';').next().unwrap_or("").trim();
    let end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .unwrap_or(line.len());
    let name = &line[..end];
    if name.is_empty() {
        return;
    }
    let rest = line[end..].trim();
    let rest = match rest.strip_prefix('[') {
        Some(r) => r.split_once(']').map(|(_, r)| r.trim()).unwrap_or(""),
        None => rest,
    };
    let name = name.to_ascii_lowercase().replace('_', "-");
    summary.packages.insert(name, rest.replace(' ', ""));
}

fn split_conda(s: &str) -> (&str, &str) {
    let s = s.trim();
    match s.find(['=', '<', '>', '!', ' ']) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_conda_pyproject() {
        let mut s = EnvSummary::default();
        add(&mut s, "requirements.txt", b"numpy==2.4.6  # pinned\nscikit_learn>=1.5\n-r other.txt\ntorch[cpu] == 2.0 ; python_version>'3'\n").unwrap();
        assert_eq!(s.packages["numpy"], "==2.4.6");
        assert_eq!(s.packages["scikit-learn"], ">=1.5");
        assert_eq!(s.packages["torch"], "==2.0");
        add(
            &mut s,
            "env/environment.yml",
            b"dependencies:\n  - python=3.11\n  - pandas=2.2\n  - pip:\n    - onnx==1.17\n",
        )
        .unwrap();
        assert_eq!(s.python.as_deref(), Some("=3.11"));
        assert_eq!(s.packages["onnx"], "==1.17");
        assert_eq!(s.conda["pandas"], "=2.2");
        assert!(!s.packages.contains_key("pandas"), "conda's are apart");
        // a channel, conda's `==`, a build string, the same name as a pip package, a channel's
        // python
        add(
            &mut s,
            "conda.yaml",
            b"dependencies:\n  - conda-forge::Pandas==2.2.1\n  - numpy=1.26.4\n  - libblas=3.9.0=20_linux64_openblas\n  - conda-forge::python=3.12\n",
        )
        .unwrap();
        assert_eq!(s.conda["conda-forge::pandas"], "==2.2.1");
        assert_eq!(s.conda["numpy"], "=1.26.4");
        assert_eq!(
            s.packages["numpy"], "==2.4.6",
            "pip's numpy is another package"
        );
        assert_eq!(s.conda["libblas"], "=3.9.0=20_linux64_openblas");
        assert_eq!(s.python.as_deref(), Some("=3.12"));
        assert!(!s.conda.keys().any(|k| k.contains("python")));
        add(
            &mut s,
            "pyproject.toml",
            b"[project]\nname='x'\ndependencies=['rich>=13']\n",
        )
        .unwrap();
        assert_eq!(s.packages["rich"], ">=13");
        assert!(add(&mut s, "pyproject.toml", b"[project").is_err());
        assert!(!add(&mut s, "Dockerfile", b"FROM x").unwrap());
    }
}
