//! Duplicate-key detection in JSON bodies: `serde_json::Value` silently keeps the last of two
//! equal keys, while upstream's strict decoding reports them (`duplicate field "spec.replicas"`).
//! [`decode_with_duplicates`] does both in one pass: every write request decodes its body, so
//! walking it twice showed in profiles.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

/// Paths of duplicated keys in a JSON document (empty for invalid JSON: decoding reports that).
pub fn duplicate_fields(json: &[u8]) -> Vec<String> {
    decode_with_duplicates(json)
        .map(|(_, dups)| dups)
        .unwrap_or_default()
}

/// Decode a JSON document as `serde_json::from_slice::<Value>` does (the last of equal keys
/// wins, in the first one's position) and report the paths of duplicated keys, in document
/// order.
pub fn decode_with_duplicates(json: &[u8]) -> serde_json::Result<(Value, Vec<String>)> {
    let mut out = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(json);
    let value = Decode {
        path: None,
        out: &mut out,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok((value, out))
}

/// Where a value sits: a chain of parent links on the stack, rendered only for a duplicate.
#[derive(Clone, Copy)]
struct Path<'p> {
    parent: Option<&'p Path<'p>>,
    seg: Seg<'p>,
}

#[derive(Clone, Copy)]
enum Seg<'p> {
    Key(&'p str),
    Index(usize),
}

fn render(path: Option<&Path<'_>>, out: &mut String) {
    let Some(p) = path else { return };
    render(p.parent, out);
    match p.seg {
        Seg::Key(k) => {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(k);
        }
        Seg::Index(i) => {
            out.push('[');
            out.push_str(&i.to_string());
            out.push(']');
        }
    }
}

struct Decode<'p, 'o> {
    path: Option<&'p Path<'p>>,
    out: &'o mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for Decode<'_, '_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Decode<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut obj = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            // One lookup a key: the entry both tells a duplicate and takes the value.
            match obj.entry(key) {
                Entry::Vacant(slot) => {
                    let here = Path {
                        parent: self.path,
                        seg: Seg::Key(slot.key()),
                    };
                    let value = map.next_value_seed(Decode {
                        path: Some(&here),
                        out: &mut *self.out,
                    })?;
                    slot.insert(value);
                }
                Entry::Occupied(mut slot) => {
                    let here = Path {
                        parent: self.path,
                        seg: Seg::Key(slot.key()),
                    };
                    let mut rendered = String::new();
                    render(Some(&here), &mut rendered);
                    self.out.push(rendered);
                    let value = map.next_value_seed(Decode {
                        path: Some(&here),
                        out: &mut *self.out,
                    })?;
                    slot.insert(value);
                }
            }
        }
        Ok(Value::Object(obj))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        loop {
            let here = Path {
                parent: self.path,
                seg: Seg::Index(items.len()),
            };
            match seq.next_element_seed(Decode {
                path: Some(&here),
                out: &mut *self.out,
            })? {
                Some(v) => items.push(v),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_duplicates() {
        let body = br#"{"a":1,"spec":{"replicas":1,"replicas":2,"list":[{"x":1,"x":2}]},"a":3}"#;
        assert_eq!(
            duplicate_fields(body),
            vec!["spec.replicas", "spec.list[0].x", "a"]
        );
        assert!(duplicate_fields(br#"{"a":1}"#).is_empty());
        assert!(duplicate_fields(b"{nope").is_empty());
    }

    #[test]
    fn decodes_like_serde_json() {
        for body in [
            &br#"{"a":1,"b":[1,-2,3.5,"x",null,true,{"c":{}}],"a":{"z":[]},"e":1e300}"#[..],
            br#"{"u":18446744073709551615,"i":-9223372036854775808,"s":"\u00e9\n"}"#,
            br#"[]"#,
            br#""str""#,
        ] {
            let (v, _) = decode_with_duplicates(body).expect("test");
            let expect: serde_json::Value = serde_json::from_slice(body).expect("test");
            assert_eq!(v, expect);
            assert_eq!(
                serde_json::to_string(&v).expect("test"),
                serde_json::to_string(&expect).expect("test")
            );
        }
        assert!(decode_with_duplicates(br#"{"a":1} x"#).is_err());
        assert!(decode_with_duplicates(br#"{"a":"#).is_err());
        assert!(decode_with_duplicates(br#"{"e":1e400}"#).is_err());
    }
}
