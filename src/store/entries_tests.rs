use super::*;
use std::os::unix::fs::FileExt;

pub(crate) fn entry(i: usize, layer: &Arc<str>) -> FileEntry {
    FileEntry {
        archive: false,
        kind: Kind::ALL[i % Kind::ALL.len()],
        layer: layer.clone(),
        path: format!("data/d{:03}/f{i:07}.bin", i / 1000),
        sha256: crate::format::digest::Digest::of(&i.to_le_bytes()).into_string(),
        size: i as u64 * 4096,
    }
}

#[test]
fn entries_come_back_as_written_whether_kept_in_memory_or_spilled() {
    let layers: Vec<Arc<str>> = vec!["sha256:aa".into(), "sha256:bb".into()];
    for (n, spill) in [(0usize, SPILL), (3, SPILL), (20_000, 4096)] {
        let want: Vec<FileEntry> = (0..n).map(|i| entry(i, &layers[i % 2])).collect();
        let mut w = Writer::new(layers.clone(), spill);
        for (i, e) in want.iter().enumerate() {
            let mut sha = [0u8; 32];
            hex::decode_to_slice(&e.sha256[7..], &mut sha).unwrap();
            w.push(&e.path, e.kind, e.size, &sha, (i % 2) as u32)
                .unwrap();
        }
        let got = w.finish().unwrap();
        assert_eq!(got.spool.on_disk(), n > 3, "{n}");
        assert_eq!(got.len(), n);
        // read twice, and two readers at once
        let mut a = got.iter();
        let mut b = got.iter();
        for e in &want {
            assert_eq!(&a.next().unwrap().unwrap(), e);
            assert_eq!(&b.next().unwrap().unwrap(), e);
        }
        assert!(a.next().is_none() && b.next().is_none());
        assert_eq!(got.to_vec().unwrap(), want);
        assert_eq!(Entries::of(&want).unwrap().to_vec().unwrap(), want);
    }
}

#[test]
fn entries_out_of_order_or_in_no_layer_are_refused() {
    let mut w = Writer::new(vec!["sha256:aa".into()], SPILL);
    w.push("b", Kind::Data, 1, &[0; 32], 0).unwrap();
    assert!(w.push("a", Kind::Data, 1, &[0; 32], 0).is_err());
    assert!(w.push("b", Kind::Data, 1, &[0; 32], 0).is_err());
    assert!(w.push("c", Kind::Data, 1, &[0; 32], 1).is_err());
    w.push("c", Kind::Data, 1, &[0; 32], 0).unwrap();
    assert_eq!(w.finish().unwrap().len(), 2);
}

#[test]
fn a_damaged_spill_is_an_error_not_a_panic() {
    let layers: Vec<Arc<str>> = vec!["sha256:aa".into()];
    let mut w = Writer::new(layers, 64);
    for i in 0..10 {
        w.push(&format!("f{i}"), Kind::Data, 1, &[1; 32], 0)
            .unwrap();
    }
    let mut e = w.finish().unwrap();
    // cut short: the last records are missing
    let (f, len) = e.spool.disk.take().unwrap();
    f.set_len(len - 30).unwrap();
    e.spool.disk = Some((f, len - 30));
    let got: Vec<_> = e.iter().collect();
    assert!(got[..9].iter().all(|r| r.is_ok()));
    assert!(got[9]
        .as_ref()
        .err()
        .unwrap()
        .to_string()
        .contains("ends early"));
    assert_eq!(got.len(), 10);
    // a kind and a layer that are none, and a path that is not UTF-8
    for (at, byte) in [(4 + 2, 200u8), (4 + 2 + 1 + 8 + 32, 9), (4, 0xff)] {
        let (f, _) = e.spool.disk.as_ref().unwrap();
        f.write_all_at(&[byte], at as u64).unwrap();
        let first = e.iter().next().unwrap();
        assert!(first.is_err(), "{at}");
        f.set_len(0).unwrap();
        let mut w = Writer::new(vec!["sha256:aa".into()], 0);
        for i in 0..10 {
            w.push(&format!("f{i}"), Kind::Data, 1, &[1; 32], 0)
                .unwrap();
        }
        e = w.finish().unwrap();
    }
}
