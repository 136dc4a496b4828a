//! The attestations `pull` carries: the provenance and ML-BOM referrers of the bundle pulled,
//! read from the source and checked (with `--verify-key`, their signatures too), written as
//! the Sigstore bundle files they are stored as into `OUT.attestations/`, beside the pulled
//! directory. Not inside it: model.sig lists every file there, and `mlart verify DIR` and
//! `model_signing verify` refuse a file it does not list.

use super::pull::{move_into, occupied};
use crate::attest::Found;
use crate::error::{Error, IoContext, Result};
use crate::format::attestation::AttestationKind;
use crate::format::digest::Digest;
use crate::sign::PublicKey;
use crate::store::Source;
use serde::Serialize;
use std::fs;
use std::path::{Path, PathBuf};

/// The folder beside a pull's output `OUT` that its attestations go to.
pub const SUFFIX: &str = ".attestations";

/// An attestation `pull` wrote.
#[derive(Clone, Debug, Serialize)]
pub struct Pulled {
    pub kind: AttestationKind,
    /// The referrer manifest's digest.
    pub digest: String,
    /// The file written: the Sigstore bundle (with the DSSE envelope) as it was stored.
    pub file: String,
    /// The `--verify-key` its signature verified with; none: not checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified_by: Option<String>,
}

/// The attestations of one pull, from reading them to placing them beside the files (none by
/// default).
#[derive(Default)]
pub(crate) struct Carry {
    /// Those that hold, in (kind, digest) order.
    found: Vec<Found>,
    /// Those left out, and why.
    pub warnings: Vec<String>,
    /// `OUT.attestations`.
    dest: PathBuf,
    staged: Option<PathBuf>,
    placed: bool,
}

impl Carry {
    /// Read the attestations of `subject` from `src`: those that hold are carried (with
    /// `keys`: only those whose signature verifies with one), the others left out with a
    /// warning each, as is a source whose referrers cannot be listed (the files are pulled all
    /// the same). When there is one to carry, `dest` must not exist or be empty.
    pub(crate) fn read(
        src: &dyn Source,
        subject: &Digest,
        keys: &[PublicKey],
        dest: PathBuf,
    ) -> Result<Carry> {
        let mut carry = Carry {
            found: Vec::new(),
            warnings: Vec::new(),
            dest,
            staged: None,
            placed: false,
        };
        let all = match crate::attest::read(src, subject, keys) {
            Ok(all) => all,
            Err(Error::Interrupted) => return Err(Error::Interrupted),
            Err(e) => {
                carry
                    .warnings
                    .push(format!("its attestations were not carried: {e}"));
                return Ok(carry);
            }
        };
        for f in all {
            match &f.problem {
                None => carry.found.push(f),
                Some(why) => carry.warnings.push(format!(
                    "the {} attestation {} was not carried: {why}",
                    f.kind, f.digest
                )),
            }
        }
        if !carry.found.is_empty() && occupied(&carry.dest)? {
            return Err(Error::input(format!(
                "{} exists and is not an empty directory: mlart pull writes the bundle's attestations there, beside the files, and will not overwrite it. Remove it, or choose another `-o`",
                carry.dest.display()
            )));
        }
        Ok(carry)
    }

    /// Write them into `staging/attestations` (the pull's temp directory): `KIND.sigstore.json`
    /// (`KIND.2.sigstore.json`, … for more of one kind). Returns what the report lists.
    pub(crate) fn stage(&mut self, staging: &Path) -> Result<Vec<Pulled>> {
        if self.found.is_empty() {
            return Ok(Vec::new());
        }
        let dir = staging.join("attestations");
        fs::create_dir(&dir).ctx("creating", &dir)?;
        let mut out = Vec::new();
        for (i, f) in self.found.iter().enumerate() {
            let nth = 1 + self.found[..i].iter().filter(|g| g.kind == f.kind).count();
            let name = match nth {
                1 => format!("{}.sigstore.json", f.kind),
                n => format!("{}.{n}.sigstore.json", f.kind),
            };
            // (streamed from where it was kept: memory, or a temp file for a large bundle's)
            let path = dir.join(&name);
            let mut file = fs::File::create(&path).ctx("writing", &path)?;
            if let Some(e) = &f.envelope {
                std::io::copy(&mut e.open(), &mut file).ctx("writing", &path)?;
            }
            out.push(Pulled {
                kind: f.kind,
                digest: f.digest.clone(),
                file: self.dest.join(&name).display().to_string(),
                verified_by: f.key.clone(),
            });
        }
        self.staged = Some(dir);
        Ok(out)
    }

    /// Where they go, when there are any.
    pub(crate) fn dest(&self) -> Option<String> {
        self.staged
            .as_ref()
            .map(|_| self.dest.display().to_string())
    }

    /// Move the staged folder into place (an empty directory there is replaced).
    pub(crate) fn place(&mut self) -> Result<()> {
        if let Some(staged) = &self.staged {
            move_into(staged, &self.dest)?;
            self.placed = true;
        }
        Ok(())
    }

    /// Take the placed folder away again: the files could not be moved into place.
    pub(crate) fn unplace(&self) {
        if self.placed {
            let _ = fs::remove_dir_all(&self.dest);
        }
    }
}
