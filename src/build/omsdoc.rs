//! model.sig (`--sign`) written from the bundle's file list without holding it: the OMS
//! statement lists every file, so a bundle of 200,000 files has a 30 MB signature, and built
//! as a JSON tree (then its bytes, its DSSE encoding and its base64, each a copy) it took
//! 400 MiB. Here the files are put in model_signing's order (by path components) through
//! `collect`'s external sort (`runs`), the statement's canonical bytes are written as they
//! come into a spool, hashed for the signature, then copied once more as base64 into the
//! document. The same bytes as `sign::sign_statement(key, &sign::oms_statement(..))`, which a
//! test holds it to.

use crate::build::metadoc::MetaDoc;
use crate::error::{Error, Result};
use crate::format::digest::HashInto;
use crate::format::json::to_canonical_bytes;
use crate::format::signature::{INTOTO_STATEMENT, OMS_IGNORE, OMS_PREDICATE};
use crate::sign::PrivateKey;
use crate::store::entries::Entries;
use crate::store::runs::{Batch, Runs};
use sha2::{Digest as _, Sha256};
use std::io;

fn io_err(e: io::Error) -> Error {
    Error::Io {
        context: "writing model.sig (into memory, or into a temp file in $TMPDIR when it is big)"
            .into(),
        source: e,
    }
}

fn internal(what: String) -> Error {
    Error::of(
        crate::error::Kind::Internal,
        format!("writing model.sig: {what}"),
    )
}

/// A path's sort key: model_signing sorts by path components, which is byte order once `/`
/// is the smallest byte (`\0`: no name holds it).
fn sort_key(path: &str) -> String {
    path.replace('/', "\0")
}

/// A file's sha256.
fn digest_of(path: &str, sha256: &str) -> Result<[u8; 32]> {
    let mut raw = [0u8; 32];
    let hex = sha256.trim_start_matches("sha256:");
    hex::decode_to_slice(hex, &mut raw)
        .map_err(|_| internal(format!("{path}: the digest {hex:?} is not hex")))?;
    Ok(raw)
}

/// The signed OMS statement named `name` over `entries` and `extra` (mlart.json: path and
/// sha256 hex), as model.sig's bytes. `spill`: the sort's memory.
pub(super) fn signed(
    key: &PrivateKey,
    name: &str,
    entries: &Entries,
    extra: Option<(&str, &str)>,
    spill: usize,
) -> Result<MetaDoc> {
    // The files in model_signing's order.
    let mut runs: Runs<[u8; 32]> = Runs::new(spill.max(64 << 10));
    let mut batch = Batch::default();
    for e in entries.iter() {
        let e = e?;
        batch.push(&sort_key(&e.path), 0, &digest_of(&e.path, &e.sha256)?);
        if batch.size() > 64 << 10 {
            runs.add(&mut batch)?;
        }
    }
    if let Some((path, hex)) = extra {
        batch.push(&sort_key(path), 0, &digest_of(path, hex)?);
    }
    runs.add(&mut batch)?;
    let mut sorted = runs.merged()?;

    // The statement's canonical compact bytes (keys in order: `_type`, `predicate`
    // {`resources`, `serialization`}, `predicateType`, `subject`), the root digest taken on
    // the way.
    let mut payload = MetaDoc::write_with(|w| {
        let mut root = Sha256::new();
        let mut put = |b: &[u8]| w.write_all(b).map_err(io_err);
        put(b"{\"_type\":")?;
        put(&to_canonical_bytes(&INTOTO_STATEMENT))?;
        put(b",\"predicate\":{\"resources\":[")?;
        let mut first = true;
        while let Some(r) = sorted.next()? {
            root.update(r.data);
            put(if first { b"" } else { b"," })?;
            first = false;
            put(b"{\"algorithm\":\"sha256\",\"digest\":\"")?;
            put(hex::encode(r.data).as_bytes())?;
            put(b"\",\"name\":")?;
            put(&to_canonical_bytes(&r.rel.replace('\0', "/")))?;
            put(b"}")?;
        }
        put(b"],\"serialization\":")?;
        put(&to_canonical_bytes(
            &serde_json::json!({"method": "files", "hash_type": "sha256", "allow_symlinks": false, "ignore_paths": OMS_IGNORE}),
        ))?;
        put(b"},\"predicateType\":")?;
        put(&to_canonical_bytes(&OMS_PREDICATE))?;
        put(b",\"subject\":[{\"digest\":{\"sha256\":\"")?;
        put(hex::encode(root.finalize()).as_bytes())?;
        put(b"\"},\"name\":")?;
        put(&to_canonical_bytes(&name))?;
        put(b"}]}")
    })?;

    // Signed over its pre-authentication encoding, hashed as it is read back.
    let mut pae = Sha256::new();
    pae.update(crate::sign::pae_header(payload.len).as_bytes());
    io::copy(payload.reader()?, &mut HashInto(&mut pae)).map_err(io_err)?;
    let (before, after) =
        crate::sign::sign_streamed(key, &pae.finalize().into()).map_err(internal)?;

    // The document: the bundle around the payload's base64.
    MetaDoc::write_with(|w| {
        w.write_all(&before).map_err(io_err)?;
        let mut b64 =
            base64::write::EncoderWriter::new(&mut *w, &base64::engine::general_purpose::STANDARD);
        io::copy(payload.reader()?, &mut b64).map_err(io_err)?;
        b64.finish().map_err(io_err)?;
        drop(b64);
        w.write_all(&after).map_err(io_err)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::metadata::{FileEntry, Kind};
    use std::io::Read as _;
    use std::sync::Arc;

    #[test]
    fn the_streamed_signature_is_sign_statements_bytes() {
        let key = crate::sign::PrivateKey {
            key: p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap(),
            path: "k.key".into(),
        };
        // component order is not byte order: `data-v2/x` < `data/x` as bytes, after it by
        // components; names JSON must escape
        let mut paths: Vec<String> = vec![
            "data-v2/x".into(),
            "data/x".into(),
            "data.txt".into(),
            "a b/\"q\"\\.txt".into(),
            "é/ü.bin".into(),
            "m".into(),
        ];
        paths.extend((0..3000).map(|i| format!("d{}/f{i:05}", i % 7)));
        paths.sort();
        let layer: Arc<str> = "sha256:aa".into();
        let files: Vec<FileEntry> = paths
            .iter()
            .enumerate()
            .map(|(i, p)| FileEntry {
                archive: false,
                kind: Kind::Data,
                layer: layer.clone(),
                path: p.clone(),
                sha256: format!("sha256:{}", hex::encode(Sha256::digest(i.to_le_bytes()))),
                size: i as u64,
            })
            .collect();
        let entries = Entries::of(&files).unwrap();
        let meta = hex::encode([9u8; 32]);
        let mut want: Vec<(String, String)> = files
            .iter()
            .map(|f| (f.path.clone(), f.sha256[7..].to_string()))
            .collect();
        want.push(("mlart.json".into(), meta.clone()));
        let want =
            crate::sign::sign_statement(&key, &crate::sign::oms_statement("my \"model\"", &want));
        for spill in [0, 1 << 30] {
            let mut got = signed(
                &key,
                "my \"model\"",
                &entries,
                Some(("mlart.json", &meta)),
                spill,
            )
            .unwrap();
            let mut bytes = Vec::new();
            got.reader().unwrap().read_to_end(&mut bytes).unwrap();
            assert_eq!(got.len, bytes.len() as u64);
            assert!(bytes == want, "{spill}: the bytes differ");
        }
    }
}
