//! The attestation gates of a release policy: `provenance: required`, `sbom: required`, and
//! `provenance_checks` (source revision recorded, tree not dirty, dataset digests present),
//! evaluated on the attestations `attest::read` found and verified.

use crate::attest::Found;
use crate::check::gate::Check;
use crate::format::attestation::AttestationKind;
use crate::spec::policy::{Policy, Requirement};

/// One provenance check: Ok(what holds) or Err(why not).
type Rule = Box<dyn Fn(&crate::attest::provenance::Summary) -> Result<String, String>>;

/// Whether the policy asks anything of the attestations.
pub fn wanted(p: &Policy) -> bool {
    p.provenance == Some(Requirement::Required)
        || p.sbom == Some(Requirement::Required)
        || p.provenance_checks.is_some()
}

/// The checks; `found` is None when no trusted key was given (nothing could be verified).
pub fn evaluate(p: &Policy, found: Option<&[Found]>) -> Vec<Check> {
    let mut out = Vec::new();
    let valid = |k: AttestationKind| {
        found
            .into_iter()
            .flatten()
            .find(|f| f.kind == k && f.verified && f.problem.is_none())
    };
    let no_key = "no trusted key was given (--key PUB): the attestations cannot be verified";
    for (kind, req) in [
        (AttestationKind::Provenance, p.provenance),
        (AttestationKind::Sbom, p.sbom),
    ] {
        if req != Some(Requirement::Required) {
            continue;
        }
        let mut c = Check::passing(kind.as_str());
        match (found, valid(kind)) {
            (None, _) => {
                c.passed = false;
                c.reason = format!("{kind}: required, but {no_key}");
            }
            (Some(_), Some(f)) => {
                c.reason = format!("{} signed by {}", f.digest, f.key.as_deref().unwrap_or(""))
            }
            (Some(all), None) => {
                c.passed = false;
                c.reason = crate::attest::referrer::requirement_problems(all, &[kind]).join("; ");
            }
        }
        out.push(c);
    }
    if let Some(pc) = &p.provenance_checks {
        let mut rules: Vec<(&str, Rule)> = Vec::new();
        if pc.source_revision {
            rules.push((
                "provenance:source_revision",
                Box::new(|s| match &s.commit {
                    Some(c) => Ok(format!("built from {c}")),
                    None => Err(
                        "the provenance records no source revision: bundle inside a git work tree"
                            .into(),
                    ),
                }),
            ));
        }
        if pc.clean_tree {
            rules.push((
                "provenance:clean_tree",
                Box::new(|s| match s.dirty {
                    Some(false) => Ok("the work tree was clean".into()),
                    Some(true) => Err("the work tree had uncommitted changes when the bundle was made: commit them and bundle again".into()),
                    None => Err("the provenance records no source tree state".into()),
                }),
            ));
        }
        if pc.dataset_digests {
            rules.push((
                "provenance:dataset_digests",
                Box::new(|s| {
                    if s.datasets.is_empty() {
                        Err("the provenance names no dataset: list them under `datasets:` in mlart.yaml".into())
                    } else if !s.datasets_without_digest.is_empty() {
                        Err(format!(
                            "datasets without a digest: {} (add `digest: sha256:…` in mlart.yaml)",
                            s.datasets_without_digest.join(", ")
                        ))
                    } else {
                        Ok(format!("{} dataset(s), each with a digest", s.datasets.len()))
                    }
                }),
            ));
        }
        // Of the valid provenances (several keys may have attested the bundle), the first
        // that meets every rule, else the first: one statement answers all the checks.
        let valid_all: Vec<&crate::attest::provenance::Summary> = found
            .into_iter()
            .flatten()
            .filter(|f| f.kind == AttestationKind::Provenance && f.verified && f.problem.is_none())
            .filter_map(|f| f.provenance())
            .collect();
        let summary = valid_all
            .iter()
            .find(|s| rules.iter().all(|(_, rule)| rule(s).is_ok()))
            .or(valid_all.first())
            .map(|s| (*s).clone());
        for (name, rule) in rules {
            let mut c = Check::passing(name);
            match (&summary, found) {
                (_, None) => {
                    c.passed = false;
                    c.reason = no_key.into();
                }
                (None, Some(_)) => {
                    c.passed = false;
                    c.reason = "no valid provenance attestation to check".into();
                }
                (Some(s), Some(_)) => match rule(s) {
                    Ok(r) => c.reason = r,
                    Err(r) => {
                        c.passed = false;
                        c.reason = r;
                    }
                },
            }
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::provenance::Summary as Provenance;
    use crate::attest::summary::Summary;
    use crate::spec::policy::ProvenanceChecks;

    fn provenance(digest: &str, commit: Option<&str>, verified: bool) -> Found {
        Found {
            kind: AttestationKind::Provenance,
            digest: digest.into(),
            predicate_type: AttestationKind::Provenance.predicate_type().into(),
            key: verified.then(|| "k.pub".into()),
            verified,
            problem: None,
            summary: Some(Summary::Provenance(Provenance {
                commit: commit.map(str::to_string),
                dirty: commit.map(|_| false),
                ..Default::default()
            })),
            envelope: None,
        }
    }

    fn checks(found: &[Found]) -> Vec<(String, bool, String)> {
        let p = Policy {
            provenance_checks: Some(ProvenanceChecks {
                source_revision: true,
                clean_tree: true,
                ..Default::default()
            }),
            ..Default::default()
        };
        evaluate(&p, Some(found))
            .into_iter()
            .map(|c| (c.name, c.passed, c.reason))
            .collect()
    }

    #[test]
    fn any_valid_provenance_that_meets_every_rule_answers_them() {
        // a bare one first (no git state), then one with the commit: the second answers
        let both = [
            provenance("sha256:aa", None, true),
            provenance("sha256:bb", Some("4bb48553"), true),
        ];
        let got = checks(&both);
        assert!(got.iter().all(|(_, passed, _)| *passed), "{got:?}");
        assert!(got[0].2.contains("4bb48553"), "{got:?}");
        // only the bare one: both rules fail, each saying why
        let got = checks(&both[..1]);
        assert!(got.iter().all(|(_, passed, _)| !*passed), "{got:?}");
        assert!(got[0].2.contains("no source revision"), "{got:?}");
        // the good one not verified (another key): not taken
        let got = checks(&[
            provenance("sha256:aa", None, true),
            provenance("sha256:bb", Some("4bb48553"), false),
        ]);
        assert!(got.iter().all(|(_, passed, _)| !*passed), "{got:?}");
    }
}
