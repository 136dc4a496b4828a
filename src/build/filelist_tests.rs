use super::*;
use std::os::unix::fs::FileExt;

fn file(i: usize, root: &Arc<Path>) -> SourceFile {
    SourceFile {
        rel: format!("d{:03}/f{i:06}.bin", i % 7),
        root: root.clone(),
        kind: Kind::ALL[i % Kind::ALL.len()],
        size: (i * 37) as u64,
        executable: i % 3 == 0,
        model: (i % 5 == 0).then(|| {
            Box::new(ModelInfo {
                format: Some("onnx".into()),
                framework: (i % 10 == 0).then(|| "sklearn".into()),
                samples: (i % 15 == 0).then(|| format!("s/{i}.json")),
            })
        }),
        metrics: i % 4 == 0,
    }
}

fn same(a: &SourceFile, b: &SourceFile) -> bool {
    a.rel == b.rel
        && a.root == b.root
        && a.kind == b.kind
        && a.size == b.size
        && a.executable == b.executable
        && a.model == b.model
        && a.metrics == b.metrics
}

#[test]
fn files_come_back_as_written_in_memory_and_on_disk() {
    let (r1, r2): (Arc<Path>, Arc<Path>) = (Path::new("/p").into(), Path::new("/tmp/v").into());
    for (n, spill) in [(0usize, usize::MAX), (5, 1 << 20), (20_000, 4096), (300, 0)] {
        let mut want: Vec<SourceFile> = (0..n)
            .map(|i| file(i, if i % 9 == 0 { &r2 } else { &r1 }))
            .collect();
        want.sort_by(|a, b| a.rel.cmp(&b.rel));
        let mut w = ListWriter::new(spill);
        for (i, f) in want.iter().enumerate() {
            w.push(i * 2, f).unwrap();
        }
        let l = w.finish().unwrap();
        assert_eq!(
            l.on_disk(),
            spill < usize::MAX && n > 0 && n * 40 > spill,
            "{n}"
        );
        assert_eq!(l.len(), n);
        assert_eq!(l.total_size(), want.iter().map(|f| f.size).sum::<u64>());
        assert_eq!(l.largest(), want.iter().map(|f| f.size).max().unwrap_or(0));
        // two readers at once, each in order, each file at its place
        let (mut a, mut b) = (l.iter(), l.iter());
        for (i, f) in want.iter().enumerate() {
            let (at, got) = a.next().unwrap().unwrap();
            assert_eq!(at, i * 2);
            assert!(same(&got, f), "{got:?} {f:?}");
            assert!(same(&b.next().unwrap().unwrap().1, f));
        }
        assert!(a.next().is_none() && b.next().is_none());
        // in batches
        let mut it = l.iter();
        let mut batch = Vec::new();
        let mut seen = 0;
        loop {
            it.batch(777, &mut batch).unwrap();
            if batch.is_empty() {
                break;
            }
            assert!(batch.len() <= 777);
            for (at, f) in &batch {
                assert_eq!(*at, seen * 2);
                assert!(same(f, &want[seen]));
                seen += 1;
            }
        }
        assert_eq!(seen, n);
        let of = FileList::of(want.iter().rev().cloned().collect()).unwrap();
        let back = of.to_vec().unwrap();
        assert!(back.iter().zip(&want).all(|(a, b)| same(a, b)) && back.len() == n);
        assert_eq!(
            of.first().unwrap().map(|f| f.rel),
            want.first().map(|f| f.rel.clone())
        );
    }
}

#[test]
fn files_out_of_order_or_twice_are_refused() {
    let r: Arc<Path> = Path::new("/p").into();
    let mut w = ListWriter::new(usize::MAX);
    let mut f = file(1, &r);
    f.rel = "b".into();
    w.push_next(&f).unwrap();
    for bad in ["a", "b"] {
        f.rel = bad.into();
        let e = w.push_next(&f).unwrap_err().to_string();
        assert!(e.contains("not in path order"), "{e}");
    }
    f.rel = "c".into();
    w.push_next(&f).unwrap();
    assert_eq!(w.finish().unwrap().len(), 2);
    // (`of` sorts; a path twice is refused there too)
    let twice = vec![file(1, &r), file(1, &r)];
    assert!(FileList::of(twice).is_err());
}

#[test]
fn a_damaged_spill_is_an_error_not_a_panic() {
    let r: Arc<Path> = Path::new("/p").into();
    let make = || {
        let mut w = ListWriter::new(0);
        for i in 0..10 {
            let mut f = file(i, &r);
            f.rel = format!("f{i}");
            f.model = None;
            w.push_next(&f).unwrap();
        }
        w.finish().unwrap()
    };
    // cut short: the last record is missing its end
    let mut l = make();
    let (f, len) = l.spool.disk.take().unwrap();
    f.set_len(len - 1).unwrap();
    l.spool.disk = Some((f, len - 1));
    let got: Vec<_> = l.iter().collect();
    assert_eq!(got.len(), 10);
    assert!(got[..9].iter().all(|r| r.is_ok()));
    let e = got[9].as_ref().err().unwrap().to_string();
    assert!(e.contains("ends early"), "{e}");
    // a kind, a folder and a path that are none or not UTF-8
    for (at, byte) in [(18u64, 200u8), (16, 9), (24, 0xff)] {
        let l = make();
        let (f, _) = l.spool.disk.as_ref().unwrap();
        f.write_all_at(&[byte], at).unwrap();
        let first = l.iter().next().unwrap();
        assert!(first.is_err(), "{at}");
    }
}
