//! The ONNX Model Zoo convention for sample data: beside `model.onnx`, folders
//! `test_data_set_<N>/` holding `input_<I>.pb` and `output_<I>.pb`, each a serialized ONNX
//! `TensorProto` (the layout of the onnx/models repository and of ONNX's backend tests).
//! `init` and `bundle` keep such files with the model (kind `eval`), and `validate` runs them
//! as samples, from a project or from a bundle: the paths alone say which model they belong to.

/// One `test_data_set_<N>/` folder: its path and its input and output files, in index order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestDataSet {
    /// `dir/test_data_set_0`, relative like the files.
    pub dir: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
}

/// `prefix<digits>suffix` -> the number.
fn numbered(s: &str, prefix: &str, suffix: &str) -> Option<u64> {
    let n = s.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if n.is_empty() || n.len() > 9 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// `(folder of the set's parent, set number, is output, index)` of a test data file
/// (`[D/]test_data_set_N/input_I.pb` or `…/output_I.pb`), else None.
fn parts(rel: &str) -> Option<(&str, u64, bool, u64)> {
    let (dir, file) = rel.rsplit_once('/')?;
    let (parent, set) = match dir.rsplit_once('/') {
        Some((p, s)) => (p, s),
        None => ("", dir),
    };
    let n = numbered(set, "test_data_set_", "")?;
    if let Some(i) = numbered(file, "input_", ".pb") {
        return Some((parent, n, false, i));
    }
    numbered(file, "output_", ".pb").map(|i| (parent, n, true, i))
}

/// Is `rel` an input or output file of a test data set?
pub fn is_test_data(rel: &str) -> bool {
    parts(rel).is_some()
}

fn folder(rel: &str) -> &str {
    rel.rsplit_once('/').map(|(d, _)| d).unwrap_or("")
}

/// The test data sets of the ONNX model `model` among `files` (every path of the project or
/// bundle, `/`-separated): the sets in the model's folder ([`sets_in`]). None when the folder
/// holds other ONNX models too: then the files do not say which model the sets are for.
pub fn sets_beside<'a>(model: &str, files: impl IntoIterator<Item = &'a str>) -> Vec<TestDataSet> {
    let dir = folder(model);
    let files: Vec<&str> = files.into_iter().collect();
    let onnx_models = files
        .iter()
        .filter(|f| folder(f) == dir && f.to_ascii_lowercase().ends_with(".onnx"))
        .count();
    if onnx_models > 1 {
        return vec![];
    }
    sets_in(dir, files)
}

/// The test data sets directly in folder `dir` (`""`: the top) among `files`: those with at
/// least one input, in set order, their files in index order.
pub fn sets_in<'a>(dir: &str, files: impl IntoIterator<Item = &'a str>) -> Vec<TestDataSet> {
    type Files<'a> = Vec<(u64, &'a str)>;
    let mut sets: std::collections::BTreeMap<u64, (Files, Files)> = Default::default();
    for f in files {
        if let Some((parent, n, output, i)) = parts(f) {
            if parent == dir {
                let s = sets.entry(n).or_default();
                if output { &mut s.1 } else { &mut s.0 }.push((i, f));
            }
        }
    }
    sets.into_iter()
        .filter(|(_, (inputs, _))| !inputs.is_empty())
        .map(|(n, (mut inputs, mut outputs))| {
            inputs.sort();
            outputs.sort();
            let set = format!("test_data_set_{n}");
            TestDataSet {
                dir: if dir.is_empty() {
                    set
                } else {
                    format!("{dir}/{set}")
                },
                inputs: inputs.into_iter().map(|(_, f)| f.to_string()).collect(),
                outputs: outputs.into_iter().map(|(_, f)| f.to_string()).collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_the_convention() {
        assert!(is_test_data("test_data_set_0/input_0.pb"));
        assert!(is_test_data("m/test_data_set_12/output_3.pb"));
        for no in [
            "input_0.pb",
            "test_data_set_0/input_0.onnx",
            "test_data_set_/input_0.pb",
            "test_data_set_x/input_0.pb",
            "test_data_set_0/input_.pb",
            "test_data_set_0/inputs_0.pb",
            "test_data_set_0/sub/input_0.pb",
        ] {
            assert!(!is_test_data(no), "{no}");
        }
    }

    #[test]
    fn sets_beside_the_model_in_order() {
        let files = [
            "m/model.onnx",
            "m/test_data_set_10/input_0.pb",
            "m/test_data_set_2/output_0.pb",
            "m/test_data_set_2/input_10.pb",
            "m/test_data_set_2/input_2.pb",
            "m/test_data_set_3/output_0.pb", // no input: not a set
            "other/test_data_set_0/input_0.pb",
        ];
        let s = sets_beside("m/model.onnx", files);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].dir, "m/test_data_set_2");
        assert_eq!(
            s[0].inputs,
            [
                "m/test_data_set_2/input_2.pb",
                "m/test_data_set_2/input_10.pb"
            ]
        );
        assert_eq!(s[0].outputs, ["m/test_data_set_2/output_0.pb"]);
        assert_eq!(s[1].dir, "m/test_data_set_10");
        assert!(s[1].outputs.is_empty());
        // at the top level
        let s = sets_beside("model.onnx", ["model.onnx", "test_data_set_0/input_0.pb"]);
        assert_eq!(s[0].dir, "test_data_set_0");
        // two ONNX models in the folder: whose sets they are is not known
        let two = ["a.onnx", "b.onnx", "test_data_set_0/input_0.pb"];
        assert!(sets_beside("a.onnx", two).is_empty());
    }
}
