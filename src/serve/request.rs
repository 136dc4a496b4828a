//! Inference requests at the door: the OIP JSON (and binary-tensor) body parsed and checked
//! against the model's inputs (names, datatypes, shapes, batch dimension) with one message
//! naming the input and what was expected; and the response, JSON or binary.

use super::model::{IoSpec, Model};
use super::tensor::{check_nesting, flatten_json, Data, Tensor, MAX_ELEMENTS};
use super::ServeError;
use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Deserialize)]
struct RawRequest {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    inputs: Vec<RawInput>,
    #[serde(default)]
    outputs: Vec<RawOutput>,
}

#[derive(Deserialize)]
struct RawInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Deserialize)]
struct RawOutput {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

/// A checked request.
#[derive(Debug)]
pub struct Request {
    pub id: Option<String>,
    pub inputs: Vec<Tensor>,
    /// The outputs asked for, with "binary" for each; empty: all, as `binary_all`.
    pub outputs: Vec<(String, bool)>,
    pub binary_all: bool,
    /// Rows along the batch dimension (for batchable models).
    pub rows: usize,
}

fn bad(msg: impl Into<String>) -> ServeError {
    ServeError::BadRequest(msg.into())
}

fn flag(p: &Map<String, Value>, key: &str) -> bool {
    p.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn list(specs: &[IoSpec]) -> String {
    specs
        .iter()
        .map(|s| format!("{} ({})", s.name, s.describe()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The checks every protocol makes at the door, one input at a time: the name is an input of
/// the model and given once, the datatype and shape are the model's, every input has the same
/// rows; then that nothing is missing. REST and gRPC share it, so they refuse alike.
pub struct Door<'m> {
    model: &'m Model,
    seen: std::collections::HashSet<String>,
    rows: Option<(usize, String)>,
}

impl<'m> Door<'m> {
    pub fn new(model: &'m Model) -> Door<'m> {
        Door {
            model,
            seen: std::collections::HashSet::new(),
            rows: None,
        }
    }

    /// Check one input's name, datatype and shape: its dims and number of elements.
    pub fn input(
        &mut self,
        name: &str,
        datatype: &str,
        shape: &[i64],
    ) -> Result<(Vec<usize>, usize), ServeError> {
        let model = self.model;
        let m = &model.name;
        let spec = model
            .inputs
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| {
                bad(format!(
                    "input {name:?} is not an input of model {m}: its inputs are {}",
                    list(&model.inputs)
                ))
            })?;
        if !self.seen.insert(name.to_string()) {
            return Err(bad(format!("input {name:?} is given twice")));
        }
        if datatype != spec.datatype {
            return Err(bad(format!(
                "input {name:?} has datatype {datatype}, model {m} expects {}",
                spec.describe()
            )));
        }
        let fits = shape.len() == spec.shape.len()
            && shape.iter().all(|d| *d >= 0)
            && spec
                .shape
                .iter()
                .zip(shape)
                .all(|(want, got)| *want < 0 || want == got);
        if !fits {
            return Err(bad(format!(
                "input {name:?} has shape {shape:?}, model {m} expects {} (-1: any size)",
                spec.describe()
            )));
        }
        let dims: Vec<usize> = shape.iter().map(|d| *d as usize).collect();
        let n = dims
            .iter()
            .try_fold(1usize, |a, d| a.checked_mul(*d))
            .filter(|n| *n <= MAX_ELEMENTS)
            .ok_or_else(|| {
                bad(format!(
                    "input {name:?} of shape {shape:?} has more than {MAX_ELEMENTS} elements"
                ))
            })?;
        if model.batchable {
            match &self.rows {
                Some((r, other)) if *r != dims[0] => {
                    return Err(bad(format!(
                        "input {name:?} has {} rows (first dimension) but input {other:?} has {r}: every input must have the same batch size",
                        dims[0]
                    )))
                }
                None => self.rows = Some((dims[0], name.to_string())),
                _ => {}
            }
        }
        Ok((dims, n))
    }

    /// Check that `name` is an output of the model.
    pub fn output(&self, name: &str) -> Result<(), ServeError> {
        if self.model.outputs.iter().any(|s| s.name == name) {
            return Ok(());
        }
        Err(bad(format!(
            "output {name:?} is not an output of model {}: its outputs are {}",
            self.model.name,
            list(&self.model.outputs)
        )))
    }

    /// After the last input: none is missing. The rows along the batch dimension.
    pub fn finish(self) -> Result<usize, ServeError> {
        let missing: Vec<&IoSpec> = self
            .model
            .inputs
            .iter()
            .filter(|s| !self.seen.contains(&s.name))
            .collect();
        if !missing.is_empty() {
            return Err(bad(format!(
                "missing input(s) of model {}: {}",
                self.model.name,
                missing
                    .iter()
                    .map(|s| format!("{} ({})", s.name, s.describe()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(self.rows.map(|r| r.0).unwrap_or(1))
    }
}

/// Parse and check `body` (its first `json_len` bytes JSON, the rest binary tensor data).
pub fn parse(model: &Model, body: &[u8], json_len: Option<usize>) -> Result<Request, ServeError> {
    let (head, mut binary) = match json_len {
        Some(n) if n > body.len() => {
            return Err(bad(format!(
                "Inference-Header-Content-Length is {n} but the body has {} bytes",
                body.len()
            )))
        }
        Some(n) => body.split_at(n),
        None => (body, &[][..]),
    };
    let raw: RawRequest = serde_json::from_slice(head)
        .map_err(|e| bad(format!("the body is not an inference request: {e}")))?;
    let mut door = Door::new(model);
    let mut inputs = Vec::with_capacity(raw.inputs.len());
    for i in raw.inputs {
        let (shape, n) = door.input(&i.name, &i.datatype, &i.shape)?;
        let data = match i.parameters.get("binary_data_size") {
            Some(size) => {
                let size = size.as_u64().ok_or_else(|| {
                    bad(format!(
                        "input {:?}: parameters.binary_data_size is not a number",
                        i.name
                    ))
                })? as usize;
                if size > binary.len() {
                    return Err(bad(format!(
                        "input {:?}: binary_data_size {size} but only {} bytes of binary data remain",
                        i.name,
                        binary.len()
                    )));
                }
                if i.data.is_some() {
                    return Err(bad(format!(
                        "input {:?} has both `data` and binary_data_size: give one",
                        i.name
                    )));
                }
                let (mine, rest) = binary.split_at(size);
                binary = rest;
                Data::from_binary(&i.datatype, mine, n)
                    .map_err(|e| bad(format!("input {:?}: {e}", i.name)))?
            }
            None => {
                let v = i.data.as_ref().ok_or_else(|| {
                    bad(format!(
                        "input {:?} has no `data` (and no binary_data_size)",
                        i.name
                    ))
                })?;
                check_nesting(v, &shape).map_err(|e| bad(format!("input {:?}: {e}", i.name)))?;
                let flat = flatten_json(v).map_err(|e| bad(format!("input {:?}: {e}", i.name)))?;
                if flat.len() != n {
                    return Err(bad(format!(
                        "input {:?} has {} values, its shape {:?} needs {n}",
                        i.name,
                        flat.len(),
                        i.shape
                    )));
                }
                Data::from_json(&i.datatype, &flat)
                    .map_err(|e| bad(format!("input {:?}: {e}", i.name)))?
            }
        };
        inputs.push(Tensor {
            name: i.name,
            shape,
            data,
        });
    }
    if !binary.is_empty() {
        return Err(bad(format!(
            "{} bytes of binary data are not claimed by any input's binary_data_size",
            binary.len()
        )));
    }
    let mut outputs = Vec::new();
    for o in raw.outputs {
        door.output(&o.name)?;
        outputs.push((o.name, flag(&o.parameters, "binary_data")));
    }
    let rows = door.finish()?;
    Ok(Request {
        id: raw.id,
        inputs,
        outputs,
        binary_all: flag(&raw.parameters, "binary_data_output"),
        rows,
    })
}

/// The response body: the JSON, and the binary tail (empty when every output is JSON).
pub fn respond(model: &Model, req: &Request, outs: Vec<Tensor>) -> (Vec<u8>, Vec<u8>) {
    let wanted: Vec<(Tensor, bool)> = if req.outputs.is_empty() {
        outs.into_iter().map(|t| (t, req.binary_all)).collect()
    } else {
        let mut outs = outs;
        req.outputs
            .iter()
            .filter_map(|(n, b)| {
                let i = outs.iter().position(|t| &t.name == n)?;
                Some((outs.swap_remove(i), *b))
            })
            .collect()
    };
    let mut tail = Vec::new();
    let outputs: Vec<Value> = wanted
        .into_iter()
        .map(|(t, binary)| {
            let mut o = serde_json::json!({
                "name": t.name,
                "datatype": t.data.datatype(),
                "shape": t.shape,
            });
            if binary {
                let start = tail.len();
                t.data.to_binary(&mut tail);
                o["parameters"] = serde_json::json!({"binary_data_size": tail.len() - start});
            } else {
                o["data"] = t.data.to_json();
            }
            o
        })
        .collect();
    let mut v = serde_json::json!({
        "model_name": model.name,
        "model_version": model.version,
        "outputs": outputs,
    });
    if let Some(id) = &req.id {
        v["id"] = Value::String(id.clone());
    }
    (serde_json::to_vec(&v).unwrap_or_default(), tail)
}
