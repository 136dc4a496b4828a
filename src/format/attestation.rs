//! The attestation documents' identifiers: in-toto predicate types, and the artifactType of
//! the OCI referrers that hold them (a Sigstore bundle v0.3 with a DSSE envelope, as layer).

/// SLSA Provenance v1 (in an in-toto Statement v1).
pub const SLSA_PREDICATE: &str = "https://slsa.dev/provenance/v1";
/// A CycloneDX BOM as in-toto predicate (the in-toto attestation predicate registry's name).
pub const CYCLONEDX_PREDICATE: &str = "https://cyclonedx.org/bom";

/// The referrer's artifactType: names the predicate it carries.
pub const PROVENANCE_ARTIFACT_TYPE: &str =
    "application/vnd.mlart.attestation.slsa-provenance.v1+json";
pub const SBOM_ARTIFACT_TYPE: &str = "application/vnd.mlart.attestation.cyclonedx-bom.v1.6+json";

/// The annotation naming the predicate (as cosign v3 does on its bundles).
pub const PREDICATE_ANNOTATION: &str = "dev.sigstore.bundle.predicateType";

/// The two attestations mlart makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttestationKind {
    Provenance,
    Sbom,
}

impl AttestationKind {
    pub const ALL: [AttestationKind; 2] = [AttestationKind::Provenance, AttestationKind::Sbom];

    pub fn as_str(self) -> &'static str {
        match self {
            AttestationKind::Provenance => "provenance",
            AttestationKind::Sbom => "sbom",
        }
    }

    pub fn parse(s: &str) -> Option<AttestationKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn predicate_type(self) -> &'static str {
        match self {
            AttestationKind::Provenance => SLSA_PREDICATE,
            AttestationKind::Sbom => CYCLONEDX_PREDICATE,
        }
    }

    pub fn artifact_type(self) -> &'static str {
        match self {
            AttestationKind::Provenance => PROVENANCE_ARTIFACT_TYPE,
            AttestationKind::Sbom => SBOM_ARTIFACT_TYPE,
        }
    }

    /// The kind a referrer's artifactType names.
    pub fn of_artifact_type(at: &str) -> Option<AttestationKind> {
        Self::ALL.into_iter().find(|k| k.artifact_type() == at)
    }
}

impl std::fmt::Display for AttestationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
