//! Referrers: the referrers API, and the `sha256-<hex>` tag-schema fallback index.

use super::*;
use crate::error::{Error, Result};
use crate::format::digest::Digest;
use crate::format::reference::Reference;

impl Remote {
    /// The same repository at another tag or digest.
    pub fn at(&self, reference: Reference) -> Remote {
        Remote {
            reference,
            client: self.client.clone(),
            auth: self.auth.clone(),
            credentials: self.credentials.clone(),
            cancel: self.cancel.clone(),
            upload: self.upload.clone(),
        }
    }

    pub fn at_digest(&self, d: &Digest) -> Remote {
        self.at(Reference::with_digest(
            self.reference.registry().to_string(),
            self.reference.repository().to_string(),
            d.to_string(),
        ))
    }

    /// The manifest stored under digest `d` in this repository (raw bytes, verified).
    pub fn manifest_by_digest(&self, d: &Digest) -> Result<Vec<u8>> {
        let (raw, got, _) = self.at_digest(d).manifest()?;
        if &got != d {
            return Err(Error::input(format!(
                "{}: manifest {d} hashes to {got}",
                self.describe()
            )));
        }
        Ok(raw)
    }

    /// The referrers of `subject` (the referrers API; where the registry has none, the index
    /// at the fallback tag `sha256-<hex>`), optionally only those of `artifact_type`.
    pub fn referrers(
        &self,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<oci_spec::image::Descriptor>> {
        let what = self.describe();
        let at = self.at_digest(subject);
        let index = block_on(async {
            self.prime().await;
            retry(&self.cancel, &what, || async {
                self.client
                    .pull_referrers(&at.reference, artifact_type)
                    .await
            })
            .await
        })
        .map_err(|e| self.map_err(&what, &format!("listing the referrers of {subject}"), e))?;
        index
            .manifests
            .iter()
            .map(|m| {
                serde_json::to_value(m)
                    .and_then(serde_json::from_value::<oci_spec::image::Descriptor>)
                    .map_err(|e| {
                        Error::input(format!(
                            "{what}: a referrer of {subject} is not a valid descriptor: {e}"
                        ))
                    })
            })
            .collect()
    }
}

/// Whether `tag` is the distribution spec's referrers fallback tag: `sha256-` and 64
/// lowercase hex digits (it holds signatures and attestations, not a release).
pub fn is_fallback_tag(tag: &str) -> bool {
    tag.strip_prefix("sha256-").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}
