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

/// (kind, raw, dir, number of files, first path) of each plan.
fn shape(got: &[Planned]) -> Vec<(Kind, bool, Option<&str>, usize, &str)> {
    got.iter()
        .map(|p| (p.0, p.1, p.2.as_deref(), p.3.len(), p.3[0].1.as_str()))
        .collect()
}

#[test]
fn many_small_top_level_files_of_a_kind_share_a_tar_layer() {
    let big = 1 << 30;
    let mut files: Vec<SourceFile> = (0..40)
        .map(|i| file(&format!("m{i:02}.bin"), Kind::Model, 9))
        .collect();
    for name in ["a.onnx", "n.onnx", "z.onnx"] {
        files.push(file(name, Kind::Model, big));
    }
    files.push(file("README.md", Kind::Docs, 3));
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    for spill in [usize::MAX, 0] {
        for form in [Form::Modelpack, Form::Artifact] {
            let opts = Options {
                spill,
                form,
                ..Options::default()
            };
            let got = plans_of(&files, &opts);
            // ModelPack: the layer stands for `model.tar`; the artifact form titles a
            // tar layer without a directory `model.tar` (bundle.rs)
            let name = (form == Form::Modelpack).then_some("model.tar");
            let mut want = vec![
                (Kind::Model, true, None, 1, "a.onnx"),
                (Kind::Model, false, name, 40, "m00.bin"),
                (Kind::Model, true, None, 1, "n.onnx"),
                (Kind::Model, true, None, 1, "z.onnx"),
            ];
            want.push(match form {
                Form::Modelpack => (Kind::Docs, true, None, 1, "README.md"),
                _ => (Kind::Docs, false, None, 1, "README.md"),
            });
            assert_eq!(shape(&got), want, "{form:?}");
            // the tar layer's files in path order, each at its place in the list
            let tar = &got[1].3;
            assert!(tar.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1));
            assert!(tar.iter().all(|(at, rel)| files[*at].rel == *rel));
        }
    }
}

#[test]
fn up_to_sixteen_top_level_files_stay_a_layer_each() {
    let files: Vec<SourceFile> = (0..16)
        .map(|i| file(&format!("m{i:02}.bin"), Kind::Model, 9))
        .collect();
    for form in [Form::Modelpack, Form::Artifact] {
        let opts = Options {
            form,
            ..Options::default()
        };
        let got = plans_of(&files, &opts);
        assert_eq!(got.len(), 16);
        assert!(got.iter().all(|p| p.1 && p.2.is_none() && p.3.len() == 1));
    }
}

#[test]
fn top_level_files_between_directories_are_one_group() {
    // path order: top-level files before, between and after two directories of the
    // same kind; one of them a tar layer of its own (17 files), the other raw (2)
    let mut files = Vec::new();
    for i in 0..10 {
        files.push(file(&format!("a{i}.csv"), Kind::Data, 4));
    }
    for i in 0..17 {
        files.push(file(&format!("b/x{i:02}.csv"), Kind::Data, 4));
    }
    for i in 0..5 {
        files.push(file(&format!("c{i}.csv"), Kind::Data, 4));
    }
    files.push(file("d/y0.csv", Kind::Data, 4));
    files.push(file("d/y1.csv", Kind::Data, 4));
    for i in 0..3 {
        files.push(file(&format!("e{i}.csv"), Kind::Data, 4));
    }
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    for spill in [usize::MAX, 0] {
        let opts = Options {
            spill,
            form: Form::Modelpack,
            ..Options::default()
        };
        let got = plans_of(&files, &opts);
        assert_eq!(
            shape(&got),
            [
                (Kind::Data, false, Some("data.tar"), 18, "a0.csv"),
                (Kind::Data, false, Some("b"), 17, "b/x00.csv"),
                (Kind::Data, true, None, 1, "d/y0.csv"),
                (Kind::Data, true, None, 1, "d/y1.csv"),
            ]
        );
        let loose: Vec<&str> = got[0].3.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(loose[9..12], ["a9.csv", "c0.csv", "c1.csv"]);
        assert_eq!(loose[17], "e2.csv");
    }
}

#[test]
fn a_project_path_named_as_the_tar_layer_keeps_the_top_level_files_raw() {
    for clash in ["data.tar", "data.tar/readme.txt"] {
        let mut files: Vec<SourceFile> = (0..20)
            .map(|i| file(&format!("p{i:02}.csv"), Kind::Data, 4))
            .collect();
        files.push(file(clash, Kind::Docs, 4));
        // another kind's name is not a clash
        files.push(file("model.tar", Kind::Docs, 4));
        files.sort_by(|a, b| a.rel.cmp(&b.rel));
        let opts = Options {
            form: Form::Modelpack,
            ..Options::default()
        };
        let got = plans_of(&files, &opts);
        let data: Vec<_> = got.iter().filter(|p| p.0 == Kind::Data).collect();
        assert_eq!(data.len(), 20, "{clash}");
        assert!(data.iter().all(|p| p.1 && p.3.len() == 1));
    }
    let mut files: Vec<SourceFile> = (0..20)
        .map(|i| file(&format!("p{i:02}.bin"), Kind::Model, 4))
        .collect();
    files.push(file("data.tar", Kind::Docs, 4));
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    let got = plans_of(
        &files,
        &Options {
            form: Form::Modelpack,
            ..Options::default()
        },
    );
    assert_eq!(
        shape(&got)[0],
        (Kind::Model, false, Some("model.tar"), 20, "p00.bin")
    );
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
