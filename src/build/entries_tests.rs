use super::*;
use crate::format::metadata::FileEntry;
use crate::store::entries::SPILL;
use std::sync::Arc;

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

#[test]
fn a_streamed_file_list_serializes_as_the_list_does() {
    let layers: Vec<Arc<str>> = vec!["sha256:aa".into(), "sha256:bb".into()];
    let want: Vec<FileEntry> = (0..50)
        .map(|i| crate::store::entries::tests::entry(i, &layers[i % 2]))
        .collect();
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
