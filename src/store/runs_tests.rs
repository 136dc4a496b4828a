//! Tests of the runs: order across spilled runs, and damaged runs as internal errors.

use super::*;

/// A payload for the tests: a flag byte (0 or 1, else "unknown flags"), then a number when 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Len(Option<u64>);

impl Payload for Len {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.0.is_some() as u8);
        if let Some(n) = self.0 {
            put_varint(out, n);
        }
    }

    fn decode(r: &mut dyn Read) -> Result<Len> {
        match read_byte(r)?.ok_or_else(|| corrupt("cut in a record"))? {
            0 => Ok(Len(None)),
            1 => Ok(Len(Some(next_varint(r)?))),
            _ => Err(corrupt("unknown flags")),
        }
    }
}

type Record = super::Record<Len>;

fn rec(rel: &str, entry: u32, len: Option<u64>) -> Record {
    Record {
        rel: rel.into(),
        entry,
        data: Len(len),
    }
}

/// Records in a scrambled order, some paths under two entries, with and without metadata.
fn records(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let j = (i * 7919) % n;
            let meta = (j % 3 == 0).then_some((j as u64) << (j % 40));
            rec(&format!("d{}/f{}", j % 13, j / 2), (j % 2) as u32, meta)
        })
        .collect()
}

fn merge_all(recs: &[Record], spill: usize) -> (Vec<Record>, usize) {
    let mut runs: Runs<Len> = Runs::new(spill);
    let mut batch = Batch::default();
    for (i, r) in recs.iter().enumerate() {
        batch.push(&r.rel, r.entry, &r.data);
        if i % 37 == 0 {
            runs.add(&mut batch).unwrap();
        }
    }
    runs.add(&mut batch).unwrap();
    let on_disk = runs.disk.len();
    let mut m = runs.merged().unwrap();
    let mut out = Vec::new();
    while let Some(r) = m.next().unwrap() {
        out.push(r);
    }
    (out, on_disk)
}

#[test]
fn many_small_runs_merge_into_the_same_sorted_stream_as_one() {
    let recs = records(5000);
    let (one, disk) = merge_all(&recs, usize::MAX);
    assert_eq!(disk, 0);
    let (many, disk) = merge_all(&recs, 200);
    // (about 900 runs of 200 bytes were spilled: merged as they came, 16 at a time)
    assert!(disk > 1 && disk < 40, "{disk} runs on disk");
    assert_eq!(one, many);
    let mut want = recs.clone();
    want.sort_by(|a, b| (a.rel.as_bytes(), a.entry).cmp(&(b.rel.as_bytes(), b.entry)));
    assert_eq!(many, want);
    // (spill 0: every record is a run of its own)
    assert_eq!(merge_all(&recs[..300], 0).0, want_of(&recs[..300]));
}

fn want_of(recs: &[Record]) -> Vec<Record> {
    let mut want = recs.to_vec();
    want.sort_by(|a, b| (a.rel.as_bytes(), a.entry).cmp(&(b.rel.as_bytes(), b.entry)));
    want
}

#[test]
fn byte_order_not_walk_order() {
    let recs: Vec<Record> = ["a/b", "a.txt", "a-b", "a", "é", "Z", "a/b/c"]
        .iter()
        .map(|r| rec(r, 0, None))
        .collect();
    let got: Vec<String> = merge_all(&recs, 8).0.into_iter().map(|r| r.rel).collect();
    assert_eq!(got, ["Z", "a", "a-b", "a.txt", "a/b", "a/b/c", "é"]);
}

#[test]
fn every_cut_of_a_record_stream_is_an_error_or_a_shorter_stream_never_a_panic() {
    let mut bytes = Vec::new();
    let recs = records(40);
    for r in &recs {
        encode(&mut bytes, &r.rel, r.entry, &r.data);
    }
    let mut whole = Vec::new();
    let mut r = bytes.as_slice();
    while let Some(x) = read_record::<Len>(&mut r).unwrap() {
        whole.push(x);
    }
    assert_eq!(whole, recs);
    for cut in 0..bytes.len() {
        let mut r = &bytes[..cut];
        let mut n = 0;
        let end = loop {
            match read_record::<Len>(&mut r) {
                Ok(Some(x)) => {
                    assert_eq!(x, recs[n]);
                    n += 1;
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        if let Err(e) = end {
            assert!(e.to_string().contains("damaged"), "{e}");
        }
    }
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..2000 {
        let bytes: Vec<u8> = (0..64)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let mut r = bytes.as_slice();
        while let Ok(Some(_)) = read_record::<Len>(&mut r) {}
    }
    let e = read_record::<Len>(&mut &[0xff, 0xff, 0xff, 0xff, 0xff, 0x7f][..]).unwrap_err();
    assert!(e.to_string().contains("path length"), "{e}");
    let e = read_record::<Len>(&mut &[1, b'a', 0, 0x40][..]).unwrap_err();
    assert!(e.to_string().contains("flags"), "{e}");
}

/// Runs spilled to disk, one of them damaged by `harm`: the merge is an internal error.
fn damaged(harm: impl Fn(&mut File)) -> Error {
    let mut runs: Runs<Len> = Runs::new(64);
    let mut batch = Batch::default();
    for r in records(100) {
        batch.push(&r.rel, r.entry, &r.data);
    }
    runs.add(&mut batch).unwrap();
    assert!(runs.disk.len() > 1);
    harm(&mut runs.disk[1].file);
    let mut m = match runs.merged() {
        Ok(m) => m,
        Err(e) => return e,
    };
    loop {
        match m.next() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("a damaged run was read through"),
            Err(e) => return e,
        }
    }
}

#[test]
fn a_truncated_or_overwritten_run_is_an_internal_error() {
    let internal = |e: Error| {
        assert_eq!(e.kind(), crate::error::Kind::Internal, "{e}");
        assert!(e.to_string().contains("damaged"), "{e}");
    };
    // cut inside a record, cut between two records, a record too many
    internal(damaged(|f| f.set_len(5).unwrap()));
    internal(damaged(|f| {
        let mut r = BufReader::new(&*f);
        let first = read_record::<Len>(&mut r).unwrap().unwrap();
        let mut b = Vec::new();
        encode(&mut b, &first.rel, first.entry, &first.data);
        f.set_len(b.len() as u64).unwrap();
        f.rewind().unwrap();
    }));
    internal(damaged(|f| {
        f.seek(io::SeekFrom::End(0)).unwrap();
        let mut b = Vec::new();
        encode(&mut b, "zzz", 0, &Len(None));
        f.write_all(&b).unwrap();
        f.rewind().unwrap();
    }));
    // bytes overwritten: a path that is not UTF-8
    internal(damaged(|f| {
        f.write_all(&[3, 0xff]).unwrap();
        f.rewind().unwrap();
    }));
    // well-formed records out of order (a run that was not sorted)
    let mut batch = Batch::default();
    for r in ["b", "a"] {
        batch.push(r, 0, &Len(None));
    }
    let mut m: Merged<Len> = Merged::of(vec![Source::Mem { batch, next: 0 }]).unwrap();
    assert_eq!(m.next().unwrap().unwrap().rel, "b");
    internal(m.next().unwrap_err());
}
