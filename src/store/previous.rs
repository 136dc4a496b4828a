//! The bundle a repository already holds, for `bundle --push` on a machine whose cache never
//! recorded its layers (a fresh CI runner, a laptop after `mlart cache prune`, a repository
//! filled by `push`).
//!
//! Each layer streams to the registry as it is made: its digest is known only at its end,
//! too late to ask the registry for it. A layer's record (`store::resumable`) finds it again
//! by its plan, but a plan holds each file's mtime, which a fresh checkout changes. What does
//! not change is in the registry: the metadata document of the bundle at the target tag (else
//! of the repository's newest tag, in version order) lists each file with its size, its
//! sha256 and the digest of the layer that holds it. A layer whose files that bundle lists at
//! the same sizes, all in one layer of it, is made once without sending (`build::resume`):
//! when it comes out as that layer and the registry has it, nothing is sent. Else it is sent
//! as usual (its files read a second time: what the check cost).
//!
//! Nothing here fails a push: a repository that does not exist yet, tags that cannot be
//! listed, a manifest or a document that cannot be read is no previous bundle (debug log).

use crate::format::digest::Digest;
use crate::registry::Remote;
use std::collections::HashMap;

/// More files than this in the previous bundle: not indexed (its index would cost memory;
/// each entry is its path and about 50 bytes).
pub const MAX_PREVIOUS_FILES: usize = 100_000;

/// One file of the previous bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreviousFile {
    pub size: u64,
    pub sha256: [u8; 32],
    /// Into `Previous::layers`.
    layer: u32,
}

/// The files of the bundle a repository holds, by path.
#[derive(Debug, Default)]
pub struct Previous {
    /// The reference it was read from (for the log and the report).
    pub from: String,
    files: HashMap<String, PreviousFile>,
    /// Each layer's digest, and how many files of the document it holds.
    layers: Vec<(Digest, usize)>,
}

impl Previous {
    /// The previous bundle of `remote`'s repository: the target's tag if the repository has
    /// it, else its newest tag in version order (`sha256-…` referrers tags aside). None when
    /// there is none or it cannot be read.
    pub fn load(remote: &Remote) -> Option<Previous> {
        match Self::try_load(remote) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!("no previous bundle to compare layers with: {e}");
                None
            }
        }
    }

    fn try_load(remote: &Remote) -> crate::Result<Option<Previous>> {
        let tags = remote.tags()?;
        let target = remote.reference.tag();
        let tag = match target.filter(|t| tags.iter().any(|x| x == t)) {
            Some(t) => t.to_string(),
            None => match tags
                .iter()
                .filter(|t| !crate::registry::referrers::is_fallback_tag(t))
                .max_by(|a, b| crate::format::display::version_cmp(a, b))
            {
                Some(t) => t.clone(),
                None => return Ok(None),
            },
        };
        let r = &remote.reference;
        let mut at = remote.clone();
        at.reference = crate::format::reference::Reference::with_tag(
            r.registry().to_string(),
            r.repository().to_string(),
            tag,
        );
        let from = at.describe();
        let mut src = crate::store::registry::RegistrySource::new(at);
        let resolved =
            crate::store::resolve::resolve_image(&src, None, "reading the previous bundle")?;
        let m = crate::store::metadata::read_metadata(&mut src, &resolved.manifest)?;
        if m.files.len() > MAX_PREVIOUS_FILES {
            tracing::debug!(
                "{from}: {} files, more than {MAX_PREVIOUS_FILES}: not compared",
                m.files.len()
            );
            return Ok(None);
        }
        let mut p = Previous {
            from,
            ..Default::default()
        };
        let mut at_layer: HashMap<std::sync::Arc<str>, u32> = HashMap::new();
        for f in m.files.iter() {
            let f = f?;
            let Some(sha256) = f.sha256.strip_prefix("sha256:").and_then(hex32) else {
                continue;
            };
            if f.archive {
                continue;
            }
            let Ok(digest) = Digest::parse(&f.layer) else {
                continue;
            };
            let layer = *at_layer.entry(f.layer.clone()).or_insert_with(|| {
                p.layers.push((digest, 0));
                (p.layers.len() - 1) as u32
            });
            p.layers[layer as usize].1 += 1;
            p.files.insert(
                f.path,
                PreviousFile {
                    size: f.size,
                    sha256,
                    layer,
                },
            );
        }
        tracing::debug!(
            "layers not recorded in this cache are compared with {} ({} files)",
            p.from,
            p.files.len()
        );
        Ok(Some(p))
    }

    /// The file at `path`, if the previous bundle has one.
    pub fn file(&self, path: &str) -> Option<&PreviousFile> {
        self.files.get(path)
    }

    /// The layer that holds `f`, and how many files the document lists in it.
    pub fn layer_of(&self, f: &PreviousFile) -> (&Digest, usize) {
        let (d, n) = &self.layers[f.layer as usize];
        (d, *n)
    }

    /// Whether `a` and `b` are in the same layer.
    pub fn same_layer(a: &PreviousFile, b: &PreviousFile) -> bool {
        a.layer == b.layer
    }
}

/// 64 hex digits as bytes.
fn hex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex32_takes_64_hex_digits_only() {
        let h = "00ff".repeat(16);
        let b = hex32(&h).unwrap();
        assert_eq!((b[0], b[1]), (0, 0xff));
        assert!(hex32(&h[..62]).is_none());
        assert!(hex32(&format!("{}zz", &h[..62])).is_none());
        assert!(hex32(&format!("{h}00")).is_none());
    }
}
