//! The layer plan of each form (`layers::plan`): which files share a layer, in which order.

use super::*;

fn file(rel: &str, kind: Kind, size: u64) -> SourceFile {
    SourceFile {
        rel: rel.into(),
        root: std::path::Path::new("/p").into(),
        kind,
        size,
        executable: false,
        model: None,
        metrics: false,
    }
}

/// A plan as (kind, raw, dir, [(place, path)]).
type Planned = (Kind, bool, Option<String>, Vec<(usize, String)>);

fn plans_of(files: &[SourceFile], opts: &Options) -> Vec<Planned> {
    let mut list = ListWriter::new(opts.spill);
    for f in files {
        list.push_next(f).unwrap();
    }
    let list = list.finish().unwrap();
    plan(&list, opts, &|_| Ok(()))
        .unwrap()
        .into_iter()
        .map(|p| {
            let files: Vec<(usize, String)> = p
                .files
                .iter()
                .map(|r| r.map(|(at, f)| (at, f.rel)).unwrap())
                .collect();
            assert_eq!(p.first.rel, files[0].1);
            (p.kind, p.raw, p.dir, files)
        })
        .collect()
}

fn project() -> Vec<SourceFile> {
    let big = 1 << 30;
    let mut files = vec![
        file("README.md", Kind::Docs, 10),
        file("a.onnx", Kind::Model, big),
        file("data/big.parquet", Kind::Data, big),
        file("model.bin", Kind::Model, 5),
        file("w/big.bin", Kind::Model, big),
    ];
    // 17 small files in `many/` (one tar layer in ModelPack), 16 in `few/` (raw each),
    // interleaved in path order with files of other kinds
    for i in 0..17 {
        files.push(file(&format!("many/f{i:02}"), Kind::Data, 3));
        files.push(file(&format!("many/g{i:02}.md"), Kind::Docs, 3));
    }
    for i in 0..16 {
        files.push(file(&format!("few/f{i:02}"), Kind::Data, 3));
    }
    files.push(file("w/small.bin", Kind::Model, 7));
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    files
}

#[test]
fn the_plan_of_each_form_in_one_pass_in_memory_or_on_disk() {
    let files = project();
    let at = |rel: &str| files.iter().position(|f| f.rel == rel).unwrap();
    let one = |rel: &str| vec![(at(rel), rel.to_string())];
    for spill in [usize::MAX, 0] {
        // image: per kind, the large bulk files each, then the rest in one tar layer
        let opts = Options {
            spill,
            ..Options::default()
        };
        let got = plans_of(&files, &opts);
        let kinds: Vec<(Kind, usize)> = got.iter().map(|p| (p.0, p.3.len())).collect();
        assert_eq!(
            kinds,
            [
                (Kind::Model, 1),
                (Kind::Model, 1),
                (Kind::Model, 2),
                (Kind::Data, 1),
                (Kind::Data, 33),
                (Kind::Docs, 18)
            ]
        );
        assert_eq!(got[0].3, one("a.onnx"));
        assert_eq!(got[1].3, one("w/big.bin"));
        assert_eq!(got[2].3, [one("model.bin"), one("w/small.bin")].concat());
        assert!(got.iter().all(|p| !p.1 && p.2.is_none()));
        assert!(got[4]
            .3
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1));
        // artifact: model and data files as ModelPack's, the other kinds a tar layer each
        let opts = Options {
            spill,
            form: Form::Artifact,
            ..Options::default()
        };
        let got = plans_of(&files, &opts);
        assert_eq!(got.iter().filter(|p| p.1).count(), 4 + 1 + 16);
        let tars: Vec<(Kind, Option<&str>, usize)> = got
            .iter()
            .filter(|p| !p.1)
            .map(|p| (p.0, p.2.as_deref(), p.3.len()))
            .collect();
        assert_eq!(
            tars,
            [(Kind::Data, Some("many"), 17), (Kind::Docs, None, 18)]
        );
        // ModelPack: raw files but a top directory's many small ones of one kind
        let opts = Options {
            spill,
            form: Form::Modelpack,
            ..Options::default()
        };
        let got = plans_of(&files, &opts);
        let model: Vec<&str> = got
            .iter()
            .filter(|p| p.0 == Kind::Model)
            .map(|p| p.3[0].1.as_str())
            .collect();
        assert_eq!(model, ["a.onnx", "model.bin", "w/big.bin", "w/small.bin"]);
        let data: Vec<(bool, Option<&str>, usize, &str)> = got
            .iter()
            .filter(|p| p.0 == Kind::Data)
            .map(|p| (p.1, p.2.as_deref(), p.3.len(), p.3[0].1.as_str()))
            .collect();
        let mut want = vec![(true, None, 1, "data/big.parquet")];
        let few: Vec<String> = (0..16).map(|i| format!("few/f{i:02}")).collect();
        want.extend(few.iter().map(|f| (true, None, 1, f.as_str())));
        want.push((false, Some("many"), 17, "many/f00"));
        assert_eq!(data, want);
        let docs: Vec<(bool, Option<&str>, usize)> = got
            .iter()
            .filter(|p| p.0 == Kind::Docs)
            .map(|p| (p.1, p.2.as_deref(), p.3.len()))
            .collect();
        assert_eq!(docs, [(true, None, 1), (false, Some("many"), 17)]);
    }
}

#[test]
fn a_file_the_check_refuses_stops_the_plan() {
    let files = project();
    let list = crate::build::filelist::FileList::of(files).unwrap();
    let e = plan(&list, &Options::default(), &|f| {
        if f.rel == "model.bin" {
            Err(Error::input("model.bin clashes"))
        } else {
            Ok(())
        }
    })
    .err()
    .unwrap();
    assert_eq!(e.to_string(), "model.bin clashes");
}
