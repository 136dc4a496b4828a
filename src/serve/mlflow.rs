//! MLflow's scoring protocol on `POST /invocations` (what `mlflow models serve` answers):
//! `dataframe_split`, `instances` and `inputs`, turned into an OIP request for the model and
//! checked at the same door; the answer is `{"predictions": [...]}`, one record per row.
//!
//! The served model is the only one, or the one named by the `model` query parameter.

use super::{request, ServeError, State};
use axum::body::Body;
use axum::extract::{Query, State as St};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

fn bad(m: impl Into<String>) -> ServeError {
    ServeError::BadRequest(m.into())
}

pub async fn invocations(
    St(s): St<Arc<State>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let served = match q.get("model") {
        Some(name) => s.find(name, None),
        None if s.models.len() == 1 => Ok(&*s.models[0]),
        None => Err(bad(format!(
            "this server serves {} models: name one with ?model=NAME ({})",
            s.models.len(),
            s.models
                .iter()
                .map(|m| m.model.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    };
    let served = match served {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let start = Instant::now();
    let r = async {
        let body = super::http::read_body(&s, &headers, body).await?;
        let v: Value =
            serde_json::from_slice(&body).map_err(|e| bad(format!("the body is not JSON: {e}")))?;
        let oip = to_oip(&served.model, v)?;
        let bytes = serde_json::to_vec(&oip).unwrap_or_default();
        let mut req = request::parse(&served.model, &bytes, None)?;
        let inputs = std::mem::take(&mut req.inputs);
        let outs = served.run(inputs, req.rows).await?;
        Ok::<_, ServeError>(predictions(outs))
    }
    .await;
    s.metrics
        .request(&served.model.name, "mlflow", start.elapsed(), r.is_ok());
    match r {
        Ok(p) => axum::Json(json!({ "predictions": p })).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Nested rows as (shape, values): `[[..], ..]` is [N, k], `[..]` of scalars is [N].
fn rows_shape(rows: &[Value]) -> Vec<i64> {
    match rows.first() {
        Some(Value::Array(r)) => vec![rows.len() as i64, r.len() as i64],
        _ => vec![rows.len() as i64],
    }
}

fn input(name: &str, datatype: &str, data: Value) -> Result<Value, ServeError> {
    let rows = data
        .as_array()
        .ok_or_else(|| bad(format!("the values for input {name:?} are not a list")))?;
    Ok(json!({"name": name, "datatype": datatype, "shape": rows_shape(rows), "data": data}))
}

/// Columns `cols` with row values `rows` as the model's inputs: the one [N, k] input whose
/// features (from the feature schema) are the columns, reordered; else one input per column.
fn columns(
    model: &super::model::Model,
    cols: &[String],
    rows: Vec<Vec<Value>>,
) -> Result<Vec<Value>, ServeError> {
    if model.inputs.len() == 1 && !model.inputs[0].features.is_empty() {
        let spec = &model.inputs[0];
        let idx: Vec<usize> = spec
            .features
            .iter()
            .map(|f| {
                cols.iter().position(|c| c == f).ok_or_else(|| {
                    bad(format!(
                        "column {f:?} is missing: model {} takes the columns {}",
                        model.name,
                        spec.features.join(", ")
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        if let Some(c) = cols.iter().find(|c| !spec.features.contains(c)) {
            return Err(bad(format!(
                "column {c:?} is not a feature of model {}: its columns are {}",
                model.name,
                spec.features.join(", ")
            )));
        }
        let data: Vec<Value> = rows
            .iter()
            .map(|r| {
                if r.len() != cols.len() {
                    return Err(bad(format!(
                        "a row has {} values for {} columns",
                        r.len(),
                        cols.len()
                    )));
                }
                Ok(Value::Array(idx.iter().map(|i| r[*i].clone()).collect()))
            })
            .collect::<Result<_, _>>()?;
        return Ok(vec![input(&spec.name, spec.datatype, Value::Array(data))?]);
    }
    if model.inputs.len() == 1 {
        // One unnamed [N, k] input: the columns in order.
        let spec = &model.inputs[0];
        let data = rows.into_iter().map(Value::Array).collect();
        return Ok(vec![input(&spec.name, spec.datatype, Value::Array(data))?]);
    }
    // One input per column, by name.
    cols.iter()
        .enumerate()
        .map(|(j, c)| {
            let spec = model.inputs.iter().find(|s| &s.name == c).ok_or_else(|| {
                bad(format!(
                    "column {c:?} is not an input of model {}",
                    model.name
                ))
            })?;
            let col: Vec<Value> = rows
                .iter()
                .map(|r| {
                    let v = r.get(j).cloned().unwrap_or(Value::Null);
                    if spec.shape.len() == 2 {
                        json!([v])
                    } else {
                        v
                    }
                })
                .collect();
            input(&spec.name, spec.datatype, Value::Array(col))
        })
        .collect()
}

fn to_oip(model: &super::model::Model, v: Value) -> Result<Value, ServeError> {
    let Value::Object(mut o) = v else {
        return Err(bad("the body is not a JSON object: send {\"dataframe_split\": {...}}, {\"instances\": [...]} or {\"inputs\": ...}"));
    };
    let inputs = if let Some(df) = o.remove("dataframe_split") {
        let cols: Vec<String> =
            serde_json::from_value(df.get("columns").cloned().unwrap_or(Value::Null))
                .map_err(|_| bad("dataframe_split.columns is not a list of column names"))?;
        let rows: Vec<Vec<Value>> =
            serde_json::from_value(df.get("data").cloned().unwrap_or(Value::Null))
                .map_err(|_| bad("dataframe_split.data is not a list of rows"))?;
        columns(model, &cols, rows)?
    } else if let Some(v) = o.remove("instances").or_else(|| o.remove("inputs")) {
        match v {
            Value::Array(items) if items.first().is_some_and(Value::is_object) => {
                // Records: one object per row.
                let recs: Vec<Map<String, Value>> = serde_json::from_value(Value::Array(items))
                    .map_err(|_| bad("instances: every record must be an object"))?;
                let cols: Vec<String> = recs[0].keys().cloned().collect();
                let rows = recs
                    .iter()
                    .map(|r| {
                        cols.iter()
                            .map(|c| r.get(c).cloned().unwrap_or(Value::Null))
                            .collect()
                    })
                    .collect();
                columns(model, &cols, rows)?
            }
            Value::Array(items) => {
                if model.inputs.len() != 1 {
                    return Err(bad(format!(
                        "model {} has {} inputs: send them by name ({{\"inputs\": {{\"NAME\": [...]}}}})",
                        model.name,
                        model.inputs.len()
                    )));
                }
                let s = &model.inputs[0];
                vec![input(&s.name, s.datatype, Value::Array(items))?]
            }
            Value::Object(named) => named
                .into_iter()
                .map(|(n, d)| {
                    let dt = model
                        .inputs
                        .iter()
                        .find(|s| s.name == n)
                        .map(|s| s.datatype)
                        .unwrap_or("FP32");
                    input(&n, dt, d)
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(bad("`instances`/`inputs` is neither a list nor an object")),
        }
    } else {
        return Err(bad("the body has none of `dataframe_split`, `instances` or `inputs` (MLflow's scoring formats)"));
    };
    Ok(json!({ "inputs": inputs }))
}

/// One record per row when every output has the same rows; else the outputs by name.
fn predictions(outs: Vec<super::tensor::Tensor>) -> Value {
    let nested = |t: &super::tensor::Tensor| -> Vec<Value> {
        let flat = match t.data.to_json() {
            Value::Array(a) => a,
            _ => Vec::new(),
        };
        let rows = t.shape.first().copied().unwrap_or(1).max(1);
        let per = flat.len() / rows;
        if t.shape.len() <= 1 {
            flat
        } else {
            flat.chunks(per.max(1))
                .map(|c| Value::Array(c.to_vec()))
                .collect()
        }
    };
    let rows = outs.first().and_then(|t| t.shape.first().copied());
    if outs.len() == 1 {
        return Value::Array(nested(&outs[0]));
    }
    if rows.is_some() && outs.iter().all(|t| t.shape.first().copied() == rows) {
        let cols: Vec<(String, Vec<Value>)> =
            outs.iter().map(|t| (t.name.clone(), nested(t))).collect();
        return Value::Array(
            (0..rows.unwrap_or(0))
                .map(|i| {
                    Value::Object(
                        cols.iter()
                            .map(|(n, v)| (n.clone(), v.get(i).cloned().unwrap_or(Value::Null)))
                            .collect(),
                    )
                })
                .collect(),
        );
    }
    Value::Object(
        outs.iter()
            .map(|t| (t.name.clone(), Value::Array(nested(t))))
            .collect(),
    )
}
