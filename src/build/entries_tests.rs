use super::*;

fn read(layer: u32, size: u64, b: u8) -> Read {
    Read {
        layer,
        size,
        sha256: [b; 32],
    }
}

#[test]
fn a_table_gives_back_each_record_in_order_in_memory_and_on_disk() {
    for (n, spill) in [(0usize, SPILL), (5, SPILL), (5_000, 1024)] {
        let t = Table::new(n, spill).unwrap();
        assert_eq!(t.on_disk(), n * RECORD > spill, "{n}");
        // put from several threads, in no order
        std::thread::scope(|s| {
            for part in 0..3 {
                let t = &t;
                s.spawn(move || {
                    for i in (part..n).step_by(3).rev() {
                        t.put(i, &read(i as u32 % 7, i as u64 * 3, i as u8))
                            .unwrap();
                    }
                });
            }
        });
        let mut seen = 0;
        t.read_all(&mut |i, r| {
            assert_eq!(i, seen);
            assert_eq!(r, read(i as u32 % 7, i as u64 * 3, i as u8));
            seen += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, n);
    }
}

#[test]
fn runs_of_many_layers_at_once_are_written_whole() {
    // 12 layers (more than the runs kept) of 3,000 consecutive files each (runs longer than
    // one write), built two at a time, interleaved file by file
    let n = 36_000;
    let t = Table::new(n, 0).unwrap();
    assert!(t.on_disk());
    for pair in 0..6 {
        let (a, b) = (pair * 2, pair * 2 + 1);
        for k in 0..3_000 {
            for l in [a, b] {
                let i = l * 3_000 + k;
                t.put(i, &read(l as u32, i as u64, (i % 251) as u8))
                    .unwrap();
            }
        }
    }
    let mut seen = 0;
    t.read_all(&mut |i, r| {
        assert_eq!(
            r,
            read((i / 3_000) as u32, i as u64, (i % 251) as u8),
            "{i}"
        );
        seen += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, n);
}

#[test]
fn a_file_put_twice_or_never_or_past_the_end_is_an_error() {
    for spill in [SPILL, 0] {
        let t = Table::new(3, spill).unwrap();
        t.put(0, &read(0, 1, 1)).unwrap();
        let e = t.put(0, &read(1, 1, 1)).err().unwrap();
        assert!(e.to_string().contains("in two layers"), "{e}");
        assert!(t.put(3, &read(0, 1, 1)).is_err());
        t.put(2, &read(0, 1, 1)).unwrap();
        let e = t.read_all(&mut |_, _| Ok(())).err().unwrap();
        assert!(e.to_string().contains("file 1 is in no layer"), "{e}");
    }
}

fn entry(i: usize, layer: &Arc<str>) -> FileEntry {
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

#[test]
fn a_streamed_file_list_serializes_as_the_list_does() {
    let layers: Vec<Arc<str>> = vec!["sha256:aa".into(), "sha256:bb".into()];
    let want: Vec<FileEntry> = (0..50).map(|i| entry(i, &layers[i % 2])).collect();
    let e = Entries::of(&want).unwrap();
    let s = Streamed {
        entries: &e,
        failed: Default::default(),
    };
    assert_eq!(
        crate::format::json::to_canonical_pretty(&s),
        crate::format::json::to_canonical_pretty(&want)
    );
}
