//! A table-driven protobuf wire decoder that renders messages as Kubernetes JSON.
//!
//! The field tables (schema.rs) say, per message, which tag carries which JSON field and of what
//! type; this module walks the wire bytes with them. It never panics: every length and varint is
//! bounds-checked and nesting is limited, so garbage input gives an error.

use base64::Engine;
use serde_json::{Map, Number, Value};

use super::DecodeError;

/// The value type of a field.
// The generator may emit any protobuf scalar; today's kinds happen not to use all of them.
#[allow(dead_code)]
#[derive(Clone, Copy, Debug)]
pub(super) enum T {
    Str,
    I32,
    I64,
    U32,
    U64,
    Bool,
    F32,
    F64,
    /// Base64 in JSON, as Go encodes `[]byte`.
    Bytes,
    /// A nested message, by index into `MESSAGES`.
    Msg(usize),
    /// `intstr.IntOrString`: a JSON number or string.
    IntOrString,
    /// `resource.Quantity`: its string form.
    Quantity,
    /// `metav1.Time`: RFC 3339 in seconds.
    Time,
    /// `metav1.MicroTime`: RFC 3339 with microseconds.
    MicroTime,
    /// `metav1.Duration`: Go's duration string.
    Duration,
    /// `runtime.RawExtension` / `metav1.FieldsV1`: raw JSON bytes.
    RawJson,
}

/// How often a field occurs.
#[derive(Clone, Copy, Debug)]
pub(super) enum Card {
    Single,
    Repeated,
    /// `map<string, T>`: repeated entries `{1: key, 2: value}`.
    Map,
    /// A Go struct embedded with `json:",inline"`: its fields land in the parent object.
    Inline,
}

/// `(tag, JSON name, type, cardinality)`.
#[derive(Debug)]
pub(super) struct Field(pub u32, pub &'static str, pub T, pub Card);

/// One message's fields.
#[derive(Debug)]
pub(super) struct Message {
    pub name: &'static str,
    pub fields: &'static [Field],
}

/// Deeper nesting than any real object needs; bounds recursion on hostile input.
const MAX_DEPTH: usize = 64;

/// Pointer fields upstream where an explicit zero, `false` or `""` differs from unset. Go's
/// protobuf encoder writes every non-pointer scalar even when zero, so zero scalars are dropped
/// (as `omitempty` JSON would) except for these names outside `*Status` messages (status fields
/// of these names, like `DeploymentStatus.replicas`, are plain values).
const KEEP_ZERO: &[&str] = &[
    "activeDeadlineSeconds",
    "allocateLoadBalancerNodePorts",
    "allowPrivilegeEscalation",
    "automountServiceAccountToken",
    "backoffLimit",
    "backoffLimitPerIndex",
    "completions",
    "defaultMode",
    "enableServiceLinks",
    "expirationSeconds",
    "failedJobsHistoryLimit",
    "fsGroup",
    "gracePeriodSeconds",
    "holderIdentity",
    "hostUsers",
    "immutable",
    "leaseDurationSeconds",
    "leaseTransitions",
    "manualSelector",
    "maxFailedIndexes",
    "mode",
    "optional",
    "orphanDependents",
    "parallelism",
    "priority",
    "privileged",
    "progressDeadlineSeconds",
    "readOnlyRootFilesystem",
    "ready",
    "replicas",
    "revisionHistoryLimit",
    "runAsGroup",
    "runAsNonRoot",
    "runAsUser",
    "serving",
    "setHostnameAsFQDN",
    "shareProcessNamespace",
    "startingDeadlineSeconds",
    "storageClassName",
    "successfulJobsHistoryLimit",
    "suspend",
    "terminating",
    "terminationGracePeriodSeconds",
    "ttlSecondsAfterFinished",
];

/// A cursor over protobuf wire bytes.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(super) fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(super) fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let byte = *self.buf.get(self.pos).ok_or(DecodeError::Truncated)?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::Malformed("varint longer than 10 bytes".into()))
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let end = self.pos.checked_add(N).ok_or(DecodeError::Truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub(super) fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = usize::try_from(self.varint()?).map_err(|_| DecodeError::Truncated)?;
        let end = self.pos.checked_add(len).ok_or(DecodeError::Truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    /// The next field's `(tag, wire type)`.
    pub(super) fn key(&mut self) -> Result<(u32, u8), DecodeError> {
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3)
            .map_err(|_| DecodeError::Malformed("field tag too large".into()))?;
        if tag == 0 {
            return Err(DecodeError::Malformed("field tag 0".into()));
        }
        Ok((tag, (key & 7) as u8))
    }

    /// Skip a value of an unknown field.
    pub(super) fn skip(&mut self, wire: u8) -> Result<(), DecodeError> {
        match wire {
            0 => self.varint().map(drop),
            1 => self.fixed::<8>().map(drop),
            2 => self.bytes().map(drop),
            5 => self.fixed::<4>().map(drop),
            other => Err(DecodeError::Malformed(format!(
                "unsupported wire type {other}"
            ))),
        }
    }
}

fn expect_wire(field: &Field, wire: u8, want: u8) -> Result<(), DecodeError> {
    if wire == want {
        Ok(())
    } else {
        Err(DecodeError::Malformed(format!(
            "field {} has wire type {wire}, expected {want}",
            field.1
        )))
    }
}

fn utf8(bytes: &[u8], field: &str) -> Result<String, DecodeError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| DecodeError::Malformed(format!("field {field} is not valid utf-8")))
}

/// Decode one message into a JSON object.
pub(super) fn decode_message(
    messages: &[Message],
    index: usize,
    bytes: &[u8],
    depth: usize,
) -> Result<Map<String, Value>, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::Malformed("message nested too deeply".into()));
    }
    let message = messages
        .get(index)
        .ok_or_else(|| DecodeError::Malformed("unknown message".into()))?;
    let mut out = Map::new();
    let mut r = Reader::new(bytes);
    while !r.done() {
        let (tag, wire) = r.key()?;
        let Some(field) = message.fields.iter().find(|f| f.0 == tag) else {
            r.skip(wire)?;
            continue;
        };
        match field.3 {
            Card::Single => {
                if let Some(v) = single(messages, field, wire, &mut r, depth)? {
                    if keep(message, field, &v) {
                        out.insert(field.1.to_string(), v);
                    }
                }
            }
            Card::Repeated => {
                let mut items = Vec::new();
                if wire == 2 && is_packable(field.2) {
                    // Packed encoding: one length-delimited run of scalars.
                    let mut packed = Reader::new(r.bytes()?);
                    while !packed.done() {
                        items.push(scalar(field, scalar_wire(field.2), &mut packed)?);
                    }
                } else if let Some(v) = single(messages, field, wire, &mut r, depth)? {
                    items.push(v);
                }
                let entry = out
                    .entry(field.1.to_string())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(list) = entry {
                    list.extend(items);
                }
            }
            Card::Map => {
                expect_wire(field, wire, 2)?;
                let (key, value) = map_entry(messages, field, r.bytes()?, depth)?;
                let entry = out
                    .entry(field.1.to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(map) = entry {
                    map.insert(key, value);
                }
            }
            Card::Inline => {
                expect_wire(field, wire, 2)?;
                let T::Msg(inner) = field.2 else {
                    return Err(DecodeError::Malformed(format!(
                        "inline field {} is not a message",
                        field.1
                    )));
                };
                out.extend(decode_message(messages, inner, r.bytes()?, depth + 1)?);
            }
        }
    }
    Ok(out)
}

/// Whether a decoded single value belongs in the JSON (see [`KEEP_ZERO`]).
fn keep(message: &Message, field: &Field, value: &Value) -> bool {
    let zero = match value {
        Value::Null => return false,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    };
    if !zero {
        return true;
    }
    match field.2 {
        // A zero IntOrString is an unset non-pointer field (targetPort) unless it is a pointer
        // (maxUnavailable: 0), which Go only writes when set.
        T::IntOrString => field.1 != "targetPort",
        T::Quantity => true,
        _ => KEEP_ZERO.contains(&field.1) && !message.name.ends_with("Status"),
    }
}

fn is_packable(t: T) -> bool {
    matches!(
        t,
        T::I32 | T::I64 | T::U32 | T::U64 | T::Bool | T::F32 | T::F64
    )
}

fn scalar_wire(t: T) -> u8 {
    match t {
        T::F64 => 1,
        T::F32 => 5,
        T::I32 | T::I64 | T::U32 | T::U64 | T::Bool => 0,
        _ => 2,
    }
}

/// A scalar (non-message) value.
fn scalar(field: &Field, wire: u8, r: &mut Reader<'_>) -> Result<Value, DecodeError> {
    expect_wire(field, wire, scalar_wire(field.2))?;
    Ok(match field.2 {
        // Go's int32 travels as a sign-extended varint; truncation restores it.
        T::I32 => Value::from(r.varint()? as i32),
        T::I64 => Value::from(r.varint()? as i64),
        T::U32 => Value::from(r.varint()? as u32),
        T::U64 => Value::from(r.varint()?),
        T::Bool => Value::Bool(r.varint()? != 0),
        T::F64 => {
            Number::from_f64(f64::from_le_bytes(r.fixed::<8>()?)).map_or(Value::Null, Value::Number)
        }
        T::F32 => Number::from_f64(f64::from(f32::from_le_bytes(r.fixed::<4>()?)))
            .map_or(Value::Null, Value::Number),
        T::Str => Value::String(utf8(r.bytes()?, field.1)?),
        T::Bytes => Value::String(base64::engine::general_purpose::STANDARD.encode(r.bytes()?)),
        _ => {
            return Err(DecodeError::Malformed(format!(
                "field {} is not a scalar",
                field.1
            )))
        }
    })
}

/// One occurrence of a field; None when it renders as absent (a zero Time).
fn single(
    messages: &[Message],
    field: &Field,
    wire: u8,
    r: &mut Reader<'_>,
    depth: usize,
) -> Result<Option<Value>, DecodeError> {
    let value = match field.2 {
        T::Msg(index) => {
            expect_wire(field, wire, 2)?;
            Value::Object(decode_message(messages, index, r.bytes()?, depth + 1)?)
        }
        T::IntOrString | T::Quantity | T::Time | T::MicroTime | T::Duration | T::RawJson => {
            expect_wire(field, wire, 2)?;
            return special(field, r.bytes()?);
        }
        _ => scalar(field, wire, r)?,
    };
    Ok(Some(value))
}

/// Integer fields `1` and `2` of a small well-known message (Time, IntOrString, ...).
struct Small {
    ints: [i64; 3],
    text: [Option<Vec<u8>>; 3],
}

fn small(bytes: &[u8]) -> Result<Small, DecodeError> {
    let mut s = Small {
        ints: [0; 3],
        text: [None, None, None],
    };
    let mut r = Reader::new(bytes);
    while !r.done() {
        let (tag, wire) = r.key()?;
        let slot = usize::try_from(tag)
            .ok()
            .filter(|t| (1..=3).contains(t))
            .map(|t| t - 1);
        match (slot, wire) {
            (Some(i), 0) => s.ints[i] = r.varint()? as i64,
            (Some(i), 2) => s.text[i] = Some(r.bytes()?.to_vec()),
            _ => r.skip(wire)?,
        }
    }
    Ok(s)
}

fn special(field: &Field, bytes: &[u8]) -> Result<Option<Value>, DecodeError> {
    let s = small(bytes)?;
    let text = |i: usize| -> Result<String, DecodeError> {
        s.text[i]
            .as_deref()
            .map_or(Ok(String::new()), |b| utf8(b, field.1))
    };
    Ok(Some(match field.2 {
        T::IntOrString => {
            if s.ints[0] == 1 {
                Value::String(text(2)?)
            } else {
                Value::from(s.ints[1] as i32)
            }
        }
        T::Quantity => Value::String(text(0)?),
        T::Time | T::MicroTime => {
            let (secs, nanos) = (s.ints[0], s.ints[1] as i32);
            if secs == 0 && nanos == 0 {
                // Go's zero time, which its JSON renders as null.
                return Ok(None);
            }
            let nanos = u32::try_from(nanos)
                .map_err(|_| DecodeError::Malformed("negative nanos".into()))?;
            let t = chrono::DateTime::from_timestamp(secs, nanos).ok_or_else(|| {
                DecodeError::Malformed(format!("field {} is out of range", field.1))
            })?;
            let format = if matches!(field.2, T::Time) {
                "%Y-%m-%dT%H:%M:%SZ"
            } else {
                "%Y-%m-%dT%H:%M:%S%.6fZ"
            };
            Value::String(t.format(format).to_string())
        }
        T::Duration => Value::String(go_duration(s.ints[0])),
        T::RawJson => match s.text[0].as_deref() {
            None | Some([]) => return Ok(None),
            Some(raw) => serde_json::from_slice(raw).map_err(|e| {
                DecodeError::Malformed(format!("field {} is not json: {e}", field.1))
            })?,
        },
        _ => {
            return Err(DecodeError::Malformed(format!(
                "field {} is not special",
                field.1
            )))
        }
    }))
}

fn map_entry(
    messages: &[Message],
    field: &Field,
    bytes: &[u8],
    depth: usize,
) -> Result<(String, Value), DecodeError> {
    let mut key = String::new();
    let mut value = None;
    let mut r = Reader::new(bytes);
    while !r.done() {
        match r.key()? {
            (1, 2) => key = utf8(r.bytes()?, field.1)?,
            (2, wire) => value = single(messages, field, wire, &mut r, depth)?,
            (_, wire) => r.skip(wire)?,
        }
    }
    // An absent value is the type's zero value.
    let value = value.unwrap_or_else(|| match field.2 {
        T::Msg(_) => Value::Object(Map::new()),
        T::Str | T::Bytes | T::Quantity => Value::String(String::new()),
        T::Bool => Value::Bool(false),
        T::RawJson | T::Time | T::MicroTime => Value::Null,
        _ => Value::from(0),
    });
    Ok((key, value))
}

/// Go's `time.Duration.String()` for a count of nanoseconds.
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    if n < 1_000 {
        return format!("{sign}{n}ns");
    }
    if n < 1_000_000 {
        return format!("{sign}{}µs", trim_fraction(n, 1_000));
    }
    if n < 1_000_000_000 {
        return format!("{sign}{}ms", trim_fraction(n, 1_000_000));
    }
    let hours = n / 3_600_000_000_000;
    let minutes = (n / 60_000_000_000) % 60;
    let seconds = trim_fraction(n % 60_000_000_000, 1_000_000_000);
    match (hours, minutes) {
        (0, 0) => format!("{sign}{seconds}s"),
        (0, m) => format!("{sign}{m}m{seconds}s"),
        (h, m) => format!("{sign}{h}h{m}m{seconds}s"),
    }
}

/// `n / unit` with the fraction's trailing zeros trimmed (`1500, 1000` → `1.5`).
fn trim_fraction(n: u64, unit: u64) -> String {
    let whole = n / unit;
    let frac = n % unit;
    if frac == 0 {
        return whole.to_string();
    }
    let width = unit.to_string().len() - 1;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(2_000_000), "2ms");
        assert_eq!(go_duration(-5_000_000_000), "-5s");
    }

    #[test]
    fn reader_rejects_truncation() {
        let mut r = Reader::new(&[0x80]);
        assert!(r.varint().is_err());
        let mut r = Reader::new(&[0x05, 1, 2]);
        assert!(r.bytes().is_err());
        let mut r = Reader::new(&[0xff; 11]);
        assert!(r.varint().is_err());
    }
}
