//! Metrics from evaluation reports: JSON (nested objects flattened with `.`), CSV
//! (`name,value` rows, or a header row with one data row) and YAML, into one flat
//! name -> number map. `NaN`/`Infinity` (as Python's json writes them) become `null`.

use crate::format::metadata::Metrics;
use serde_json::Value;

/// Why a report gave no metrics.
#[derive(Debug, PartialEq)]
pub enum NotMetrics {
    /// Not a metrics report (the caller warns and keeps the file).
    Skip(String),
    /// A table whose "names" are numbers (a headerless numeric CSV, say): reading it would
    /// invent metrics, so the bundle fails (the caller names the file and suggests
    /// `metrics: false`).
    NumericNames(Vec<String>),
}

impl From<String> for NotMetrics {
    fn from(s: String) -> Self {
        NotMetrics::Skip(s)
    }
}

/// True for a name that reads as a number (`0.5`, `-3`, `1e-4`): never a metric name.
/// `0.precision` (scikit-learn's per-class keys) is a name.
pub fn is_numeric_name(name: &str) -> bool {
    let t = name.trim();
    t.bytes().any(|b| b.is_ascii_digit()) && t.parse::<f64>().is_ok()
}

/// Parse one report. Floats are read exactly (the value in the file, to the last bit).
pub fn parse(rel: &str, bytes: &[u8]) -> Result<Metrics, NotMetrics> {
    let ext = rel
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    let text = std::str::from_utf8(bytes).map_err(|_| NotMetrics::Skip("not UTF-8 text".into()))?;
    let mut out = Metrics::new();
    match ext.as_str() {
        "json" => {
            let v: Value = serde_json::from_str(&python_json_to_json(text))
                .map_err(|e| NotMetrics::Skip(format!("invalid JSON: {e}")))?;
            flatten("", &v, &mut out);
        }
        "yaml" | "yml" => {
            let v: Value = serde_saphyr::from_str(text).map_err(|e| {
                NotMetrics::Skip(format!(
                    "invalid YAML: {}",
                    e.to_string().lines().next().unwrap_or_default()
                ))
            })?;
            flatten("", &v, &mut out);
        }
        "csv" => out = parse_csv(text)?,
        _ => match mlflow_metric_name(rel) {
            Some(name) => {
                out.insert(name, mlflow_last_value(text)?);
            }
            None => return Err(NotMetrics::Skip("not a JSON, CSV or YAML report".into())),
        },
    }
    let numeric: Vec<String> = out.keys().filter(|k| is_numeric_name(k)).cloned().collect();
    if !numeric.is_empty() {
        return Err(NotMetrics::NumericNames(numeric));
    }
    if out.is_empty() {
        return Err(NotMetrics::Skip("no numeric metric found".into()));
    }
    Ok(out)
}

/// The metric an MLflow metric file stands for: MLflow's file store keeps one file per metric,
/// `<run or model>/metrics/<name>` (no extension; a name with `/` makes folders). None for
/// other paths.
pub fn mlflow_metric_name(rel: &str) -> Option<String> {
    let (_, name) = rel
        .rsplit_once("metrics/")
        .filter(|(before, _)| before.is_empty() || before.ends_with('/'))?;
    let base = name.rsplit('/').next().unwrap_or(name);
    (!name.is_empty() && !base.contains('.')).then(|| name.to_string())
}

/// The value MLflow itself gives for an MLflow metric file (`get_run(...).data.metrics`): of
/// its lines, one per `log_metric` call, `timestamp value step` (MLflow 2 and runs) or
/// `timestamp value step run_id` (MLflow 3's logged models), the one with the highest step,
/// then the latest timestamp, then the largest value (mlflow/store/tracking/file_store.py,
/// `_get_metric_from_file`). Not the last line: MLflow 3 appends a step-0 value again when
/// `log_model` links the model to its run, and asynchronous logging writes out of order.
pub fn mlflow_last_value(text: &str) -> Result<Option<f64>, NotMetrics> {
    // (step, timestamp, value): a non-finite value (None) ranks below any finite one
    let mut best: Option<(i64, i64, Option<f64>)> = None;
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        let parsed = matches!(f.len(), 3 | 4)
            .then(|| Some((f[2].parse::<i64>().ok()?, f[0].parse::<i64>().ok()?)))
            .flatten()
            .and_then(|(step, ts)| parse_float(f[1]).map(|v| (step, ts, v)));
        let line = parsed.ok_or_else(|| {
            NotMetrics::Skip(format!(
                "line {} is not an MLflow metric line (`timestamp value step`)",
                i + 1
            ))
        })?;
        let rank = |x: &(i64, i64, Option<f64>)| (x.0, x.1);
        best = match best {
            Some(b) if rank(&b) > rank(&line) => Some(b),
            Some(b)
                if rank(&b) == rank(&line)
                    && (line.2.is_none() || b.2.is_some_and(|bv| bv >= line.2.unwrap_or(bv))) =>
            {
                Some(b)
            }
            _ => Some(line),
        };
    }
    best.map(|b| b.2)
        .ok_or_else(|| NotMetrics::Skip("an empty MLflow metric file".into()))
}

/// A float as MLflow writes it (Python's repr: `0.9`, `nan`, `inf`, `-inf`): None for a
/// non-finite value (metrics hold null for those), Err-free: None inside Some.
fn parse_float(s: &str) -> Option<Option<f64>> {
    match s.to_ascii_lowercase().as_str() {
        "nan" | "inf" | "-inf" | "infinity" | "-infinity" => Some(None),
        _ => s.parse::<f64>().ok().filter(|v| v.is_finite()).map(Some),
    }
}

fn flatten(prefix: &str, v: &Value, out: &mut Metrics) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        Value::Number(n) if !prefix.is_empty() => {
            out.insert(prefix.to_string(), n.as_f64().filter(|f| f.is_finite()));
        }
        // `null` here only comes from NaN/Infinity (see python_json_to_json) or a real null.
        Value::Null if !prefix.is_empty() => {
            out.insert(prefix.to_string(), None);
        }
        _ => {} // strings, bools and arrays (e.g. confusion matrices) are not metrics
    }
}

/// Python's `json.dump` writes `NaN`, `Infinity` and `-Infinity`, which JSON does not allow;
/// turn them (outside strings) into `null`.
fn python_json_to_json(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let (mut in_str, mut esc) = (false, false);
    while let Some(ch) = rest.chars().next() {
        if !in_str {
            if let Some(tok) = ["-Infinity", "Infinity", "NaN"]
                .iter()
                .find(|t| rest.starts_with(**t))
            {
                out.push_str("null");
                rest = &rest[tok.len()..];
                continue;
            }
        }
        if in_str {
            if esc {
                esc = false;
            } else if ch == '\\' {
                esc = true;
            } else if ch == '"' {
                in_str = false;
            }
        } else if ch == '"' {
            in_str = true;
        }
        out.push(ch);
        rest = &rest[ch.len_utf8()..];
    }
    out
}

fn parse_number(s: &str) -> Option<Option<f64>> {
    let t = s.trim();
    match t.to_ascii_lowercase().as_str() {
        "nan" | "inf" | "-inf" | "infinity" | "-infinity" => return Some(None),
        _ => {}
    }
    t.parse::<f64>().ok().map(|f| f.is_finite().then_some(f))
}

fn parse_csv(text: &str) -> Result<Metrics, String> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let rows: Vec<Vec<String>> = rdr
        .records()
        .map(|r| r.map(|r| r.iter().map(|s| s.trim().to_string()).collect()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("invalid CSV: {e}"))?;
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .filter(|r| !(r.len() == 1 && r[0].is_empty()))
        .collect();
    if rows.is_empty() {
        return Err("empty CSV".into());
    }
    let mut out = Metrics::new();
    // name,value rows (an optional header row whose second cell is not a number)
    if rows.iter().all(|r| r.len() == 2) {
        let body = if parse_number(&rows[0][1]).is_none() {
            &rows[1..]
        } else {
            &rows[..]
        };
        if !body.is_empty()
            && body
                .iter()
                .all(|r| parse_number(&r[1]).is_some() && parse_number(&r[0]).is_none())
        {
            for r in body {
                out.insert(r[0].clone(), parse_number(&r[1]).unwrap());
            }
            return Ok(out);
        }
    }
    // a header row and exactly one data row
    if rows.len() == 2 && rows[0].len() == rows[1].len() {
        for (h, v) in rows[0].iter().zip(&rows[1]) {
            if let Some(n) = parse_number(v) {
                out.insert(h.clone(), n);
            }
        }
        if !out.is_empty() {
            return Ok(out);
        }
    }
    Err("CSV is neither `name,value` rows nor a header row with one data row".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As MLflow's file store writes them (mlflow 3.18: a run's `metrics/accuracy` after three
    /// `log_metric` calls, a logged model's with the run id).
    #[test]
    fn mlflow_metric_files_give_their_last_value() {
        let run = b"1796547537237 0.5 0\n1796547537238 0.75 1\n1796547537239 0.9 2\n";
        let m = parse("metrics/accuracy", run).unwrap();
        assert_eq!(m["accuracy"], Some(0.9));
        let model = b"1796547552524 0.8 0 3ce0f7efa3ef4b7bb996e422a4f81418\n";
        let m = parse("mlruns/0/models/m-1/metrics/val/f1", model).unwrap();
        assert_eq!(m["val/f1"], Some(0.8));
        assert_eq!(parse("metrics/loss", b"1 nan 0\n").unwrap()["loss"], None);
        // MLflow's own answer, not the last line: MLflow 3 appends step 0 again when
        // log_model links the model to the run (mlflow 3.x, as a new user's run wrote it)
        let relinked = b"1796653513184 0.5 0\n1796653513187 0.8 1\n1796653513190 0.95 2\n1796653513184 0.5 0\n";
        assert_eq!(
            parse("metrics/accuracy", relinked).unwrap()["accuracy"],
            Some(0.95)
        );
        // out of order (async logging): the highest step; a tie, the latest timestamp, then
        // the largest value
        let async_ = b"30 0.7 3\n10 0.2 1\n20 0.6 3\n5 0.9 2\n";
        assert_eq!(parse("metrics/a", async_).unwrap()["a"], Some(0.7));
        let tie = b"10 0.3 1\n10 0.4 1\n10 nan 1\n";
        assert_eq!(parse("metrics/a", tie).unwrap()["a"], Some(0.4));
        for (bad, why) in [
            (&b""[..], "empty"),
            (b"1 x 0\n", "line 1"),
            (b"0.9\n", "line 1"),
        ] {
            match parse("metrics/a", bad) {
                Err(NotMetrics::Skip(m)) => assert!(m.contains(why), "{m}"),
                other => panic!("{other:?}"),
            }
        }
        // only files in a `metrics/` folder, without an extension
        assert_eq!(mlflow_metric_name("eval/notes"), None);
        assert_eq!(mlflow_metric_name("mymetrics/a"), None);
        assert!(parse("metrics/a.txt", run).is_err());
    }

    #[test]
    fn sklearn_classification_report_flattens() {
        let j = br#"{"0": {"precision": 1.0, "recall": 0.5}, "accuracy": 0.9, "macro avg": {"f1-score": 0.8}}"#;
        let m = parse("eval/m.json", j).unwrap();
        assert_eq!(m["0.precision"], Some(1.0));
        assert_eq!(m["accuracy"], Some(0.9));
        assert_eq!(m["macro avg.f1-score"], Some(0.8));
    }

    #[test]
    fn python_nan_is_null() {
        let m = parse(
            "m.json",
            br#"{"a": NaN, "b": -Infinity, "c": "NaN", "d": 1}"#,
        )
        .unwrap();
        assert_eq!(m["a"], None);
        assert_eq!(m["b"], None);
        assert!(!m.contains_key("c"));
        assert_eq!(m["d"], Some(1.0));
    }

    #[test]
    fn csv_layouts() {
        let m = parse("m.csv", b"metric,value\naccuracy,0.9\nloss,0.1\n").unwrap();
        assert_eq!(m.len(), 2);
        let m = parse("m.csv", b"accuracy,0.9\nloss,nan\n").unwrap();
        assert_eq!(m["loss"], None);
        let m = parse("m.csv", b"accuracy,f1,model\n0.9,0.8,lr\n").unwrap();
        assert_eq!(m["f1"], Some(0.8));
        assert!(parse("cm.csv", b",a,b\na,1,2\nb,3,4\n").is_err());
        assert!(
            parse("m.csv", b"\"unterminated\n").is_err()
                || parse("m.csv", b"\"unterminated\n").unwrap().is_empty()
        );
    }

    #[test]
    fn yaml_and_garbage() {
        let m = parse("m.yaml", b"eval:\n  auc: 0.75\n").unwrap();
        assert_eq!(m["eval.auc"], Some(0.75));
        assert!(parse("m.json", b"{not json").is_err());
        assert!(parse("m.json", b"[1,2]").is_err());
        assert!(parse("m.json", &[0xff, 0xfe]).is_err());
        assert!(parse("m.txt", b"a").is_err());
    }

    #[test]
    fn numeric_names_are_refused() {
        // a headerless numeric table: "0.5" and "0.6" are not metric names
        let e = parse("eval/scores.csv", b"0.5,0.7\n0.6,0.8\n").unwrap_err();
        assert!(
            matches!(&e, NotMetrics::NumericNames(n) if !n.is_empty()),
            "{e:?}"
        );
        let e = parse("eval/scores.csv", b"1,2,3\n4,5,6\n").unwrap_err();
        assert!(matches!(e, NotMetrics::NumericNames(_)));
        let e = parse("m.json", br#"{"0.5": 1, "accuracy": 0.9}"#).unwrap_err();
        assert_eq!(e, NotMetrics::NumericNames(vec!["0.5".into()]));
        let e = parse("m.yaml", b"1e-3: 2\n").unwrap_err();
        assert!(matches!(e, NotMetrics::NumericNames(_)));
        // scikit-learn's per-class keys, and words like nan, are names
        let m = parse(
            "m.json",
            br#"{"0": {"precision": 0.5}, "1": {"recall": 0.25}}"#,
        )
        .unwrap();
        assert_eq!(m["0.precision"], Some(0.5));
        assert!(!is_numeric_name("0.precision") && !is_numeric_name("nan"));
        assert!(is_numeric_name(" -2.5 ") && is_numeric_name("1e9"));
    }

    #[test]
    fn floats_are_read_exactly() {
        // each of these read 1 ulp off with serde_json's default (fast, inexact) float parser
        for s in [
            "0.9646561376073733",
            "0.19953482806632242",
            "0.9795676243161755",
            "0.10357556214727419",
        ] {
            let exact: f64 = s.parse().unwrap();
            let json = format!("{{\"accuracy\": {s}}}");
            let m = parse("m.json", json.as_bytes()).unwrap();
            assert_eq!(m["accuracy"], Some(exact), "JSON {s}");
            let m = parse("m.yaml", format!("accuracy: {s}\n").as_bytes()).unwrap();
            assert_eq!(m["accuracy"], Some(exact), "YAML {s}");
            let m = parse("m.csv", format!("accuracy,{s}\n").as_bytes()).unwrap();
            assert_eq!(m["accuracy"], Some(exact), "CSV {s}");
            // and printed back as written (what mlart.json and `inspect --json` show)
            assert_eq!(
                serde_json::to_string(&m).unwrap(),
                format!("{{\"accuracy\":{s}}}")
            );
            let back: Metrics = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
            assert_eq!(back["accuracy"], Some(exact), "round trip {s}");
        }
    }
}
