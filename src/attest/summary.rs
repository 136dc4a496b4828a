//! An attestation's statement read back as it streams: what callers use of it (its type,
//! predicateType and subjects, the provenance `Summary`, the ML-BOM's component counts) is
//! kept; the per-file lists (provenance `resolvedDependencies`, ML-BOM `components`) are read
//! one element at a time and counted, never held. Every element, and the subjects, must fit
//! in a budget of JSON nodes: a hostile statement is an error, not memory.

use super::{mlbom, provenance};
use crate::format::attestation::AttestationKind;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::cell::Cell;
use std::fmt;

/// Nodes one list element (or the subject list, or a small field) may have; a string counts
/// one node per 64 bytes.
const BUDGET: usize = 1 << 16;

/// What a statement says, as its readers use it.
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    pub type_: Option<String>,
    pub predicate_type: Option<String>,
    /// The in-toto subjects (name and digest set each).
    pub subject: Value,
    pub summary: Summary,
}

/// The predicate, summarized.
#[derive(Clone, Debug, PartialEq)]
pub enum Summary {
    Provenance(provenance::Summary),
    Sbom(mlbom::Summary),
}

/// The longest string a statement may hold (serde_json holds each string whole).
const MAX_STRING: usize = 1 << 20;

/// Read a statement of `kind` from `r` as it streams.
pub fn read(kind: AttestationKind, r: impl std::io::Read) -> Result<Statement, String> {
    let mut de = serde_json::Deserializer::from_reader(StringCap {
        r,
        in_str: false,
        esc: false,
        run: 0,
    });
    let st = TopSeed(kind)
        .deserialize(&mut de)
        .map_err(|e| format!("the payload is not a statement: {e}"))?;
    de.end()
        .map_err(|e| format!("the payload is not a statement: {e}"))?;
    Ok(st)
}

/// Passes JSON text through, refusing a string longer than `MAX_STRING` bytes as it streams.
struct StringCap<R> {
    r: R,
    in_str: bool,
    esc: bool,
    run: usize,
}

impl<R: std::io::Read> std::io::Read for StringCap<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.r.read(buf)?;
        for &b in &buf[..n] {
            if !self.in_str {
                if b == b'"' {
                    (self.in_str, self.run) = (true, 0);
                }
                continue;
            }
            self.run += 1;
            if self.run > MAX_STRING {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("a string of the statement is over {MAX_STRING} bytes"),
                ));
            }
            match (self.esc, b) {
                (true, _) => self.esc = false,
                (false, b'\\') => self.esc = true,
                (false, b'"') => self.in_str = false,
                _ => {}
            }
        }
        Ok(n)
    }
}

/// A JSON value built within a budget of nodes.
struct Bounded<'b>(&'b Cell<usize>);

impl Bounded<'_> {
    fn take<E: serde::de::Error>(&self, n: usize) -> Result<(), E> {
        let left = self.0.get();
        if left < n {
            return Err(E::custom(format!(
                "a part of the statement is over {BUDGET} JSON nodes"
            )));
        }
        self.0.set(left - n);
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Bounded<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Bounded<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
        self.take(1)?;
        Ok(v.into())
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        self.take(1)?;
        Ok(v.into())
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        self.take(1)?;
        Ok(v.into())
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        self.take(1)?;
        Ok(v.into())
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        self.take(1 + v.len() / 64)?;
        Ok(v.into())
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        self.take(1)?;
        Ok(Value::Null)
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
        self.take(1)?;
        let mut out = Vec::new();
        while let Some(v) = a.next_element_seed(Bounded(self.0))? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
        self.take(1)?;
        let mut out = Map::new();
        while let Some(k) = a.next_key::<String>()? {
            self.take(1 + k.len() / 64)?;
            let v = a.next_value_seed(Bounded(self.0))?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

/// A value within a fresh budget.
fn bounded<'de, A: MapAccess<'de>>(a: &mut A) -> Result<Value, A::Error> {
    let budget = Cell::new(BUDGET);
    a.next_value_seed(Bounded(&budget))
}

/// A list whose every element goes to `each` (within a budget of its own) and is dropped.
struct Each<F>(F);

impl<'de, F: FnMut(&Value)> DeserializeSeed<'de> for Each<F> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(&Value)> Visitor<'de> for Each<F> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list")
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut a: A) -> Result<(), A::Error> {
        loop {
            let budget = Cell::new(BUDGET);
            match a.next_element_seed(Bounded(&budget))? {
                Some(v) => (self.0)(&v),
                None => return Ok(()),
            }
        }
    }
}

/// An object whose keys `on` reads (it reads each key's value, or skips it with `IgnoredAny`).
struct Object<F>(F);

impl<'de, F> DeserializeSeed<'de> for Object<F>
where
    F: FnMut(&str, &mut dyn FnMut(Field) -> Result<(), String>) -> Result<(), String>,
{
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

/// How `Object`'s caller reads one key's value.
enum Field<'a> {
    /// Within a budget, into this place.
    Value(&'a mut Value),
    /// A list, element by element.
    Each(&'a mut dyn FnMut(&Value)),
    /// An object, key by key.
    Object(&'a mut OnKey<'a>),
}

/// What `Object` calls with each key, and the way to read its value.
type OnKey<'a> =
    dyn FnMut(&str, &mut dyn FnMut(Field) -> Result<(), String>) -> Result<(), String> + 'a;

impl<'de, F> Visitor<'de> for Object<F>
where
    F: FnMut(&str, &mut dyn FnMut(Field) -> Result<(), String>) -> Result<(), String>,
{
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut a: A) -> Result<(), A::Error> {
        use serde::de::Error as _;
        while let Some(k) = a.next_key::<String>()? {
            let mut read = false;
            let mut err: Option<A::Error> = None;
            let mut field = |f: Field| {
                read = true;
                let r = match f {
                    Field::Value(to) => bounded(&mut a).map(|v| *to = v),
                    Field::Each(each) => a.next_value_seed(Each(each)),
                    Field::Object(on) => a.next_value_seed(Object(on)),
                };
                r.map_err(|e| {
                    let s = e.to_string();
                    err = Some(e);
                    s
                })
            };
            let r = (self.0)(&k, &mut field);
            if let Err(e) = r {
                return Err(err.take().unwrap_or_else(|| A::Error::custom(e)));
            }
            if !read {
                a.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

struct TopSeed(AttestationKind);

impl<'de> DeserializeSeed<'de> for TopSeed {
    type Value = Statement;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Statement, D::Error> {
        use serde::de::Error as _;
        let mut type_ = Value::Null;
        let mut predicate_type = Value::Null;
        let mut subject = Value::Null;
        let mut prov = provenance::Summary::default();
        let mut sbom = mlbom::Summary::new();
        let mut builder = Value::Null;
        let mut build_type = Value::Null;
        let kind = self.0;
        Object(
            |k: &str, read: &mut dyn FnMut(Field) -> Result<(), String>| match k {
                "_type" => read(Field::Value(&mut type_)),
                "predicateType" => read(Field::Value(&mut predicate_type)),
                "subject" => read(Field::Value(&mut subject)),
                "predicate" => match kind {
                    AttestationKind::Provenance => read(Field::Object(&mut |k, read| match k {
                        "buildDefinition" => read(Field::Object(&mut |k, read| match k {
                            "buildType" => read(Field::Value(&mut build_type)),
                            "resolvedDependencies" => {
                                read(Field::Each(&mut |d| prov.add_dependency(d)))
                            }
                            _ => Ok(()),
                        })),
                        "runDetails" => read(Field::Object(&mut |k, read| match k {
                            "builder" => read(Field::Value(&mut builder)),
                            _ => Ok(()),
                        })),
                        _ => Ok(()),
                    })),
                    AttestationKind::Sbom => read(Field::Object(&mut |k, read| match k {
                        "components" => {
                            read(Field::Each(&mut |c| mlbom::add_component(&mut sbom, c)))
                        }
                        _ => Ok(()),
                    })),
                },
                _ => Ok(()),
            },
        )
        .deserialize(d)
        .map_err(D::Error::custom)?;
        let summary = match kind {
            AttestationKind::Provenance => {
                prov.builder = builder["id"].as_str().map(String::from);
                prov.build_type = build_type.as_str().map(String::from);
                Summary::Provenance(prov)
            }
            AttestationKind::Sbom => Summary::Sbom(sbom),
        };
        Ok(Statement {
            type_: type_.as_str().map(String::from),
            predicate_type: predicate_type.as_str().map(String::from),
            subject,
            summary,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::testdata;

    #[test]
    fn streamed_summaries_are_the_trees() {
        let m = testdata::metadata();
        let i = testdata::inputs(&m);
        for kind in AttestationKind::ALL {
            let tree = crate::attest::statement(kind, &i);
            let bytes = crate::format::json::to_canonical_bytes(&tree);
            let st = read(kind, &bytes[..]).unwrap();
            assert_eq!(st.type_.as_deref(), tree["_type"].as_str());
            assert_eq!(st.predicate_type.as_deref(), tree["predicateType"].as_str());
            assert_eq!(st.subject, tree["subject"]);
            match st.summary {
                Summary::Provenance(s) => assert_eq!(s, provenance::summarize(&tree)),
                Summary::Sbom(s) => assert_eq!(s, mlbom::summarize(&tree)),
            }
        }
    }

    #[test]
    fn hostile_statements_are_errors() {
        let deep = format!("{{\"subject\":{}}}", "[".repeat(200));
        let wide = format!(
            "{{\"predicate\":{{\"components\":[[{}0]]}}}}",
            "0,".repeat(BUDGET + 1)
        );
        let long = format!("{{\"_type\": \"{}\"}}", "\\\"".repeat(MAX_STRING));
        for bad in [
            &long,
            "",
            "{",
            "[]",
            "{\"_type\": 3} x",
            "{\"predicate\": {\"components\": 3}}",
            &deep,
            &wide,
        ] {
            assert!(
                read(AttestationKind::Sbom, bad.as_bytes()).is_err(),
                "{bad:.40}"
            );
        }
        // escapes are followed: a string of MAX_STRING bytes with quotes in it reads
        let fits = format!("{{\"_type\": \"{}\"}}", "\\\"".repeat(MAX_STRING / 2 - 1));
        let st = read(AttestationKind::Sbom, fits.as_bytes()).unwrap();
        assert_eq!(st.type_.unwrap().len(), MAX_STRING / 2 - 1);
        // a wrong `_type` reads, and is for the caller to refuse
        let st = read(AttestationKind::Provenance, &b"{\"_type\": 3}"[..]).unwrap();
        assert_eq!(st.type_, None);
    }
}
