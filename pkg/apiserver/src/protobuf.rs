//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) decoded to JSON.
//!
//! kubectl's typed `create` subcommands send objects only in this form: the magic `k8s\0`, then
//! a `runtime.Unknown` envelope whose `raw` bytes are the object per `k8s.io/api/*/generated.proto`.
//! The envelope names the kind; field tables generated from the `k8s-pb` and `k8s-openapi` crates
//! (protobuf/schema.rs, by protobuf/gen_schema.py) map its fields to JSON names, so every field of
//! the supported kinds decodes, pod templates included.

mod schema;
mod wire;

use serde_json::{Map, Value};
use thiserror::Error;
use wire::Reader;

/// Content-Type of Kubernetes protobuf bodies.
pub const PROTOBUF_CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The four bytes that open every Kubernetes protobuf body.
pub const MAGIC: &[u8; 4] = b"k8s\0";

/// Media types the server decodes, as listed in its 415 message.
const ACCEPTED_MEDIA_TYPES: &str = "application/json, application/yaml";

/// Why a protobuf body could not be decoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The body lacks the `k8s\0` prefix.
    #[error("protobuf body does not start with the kubernetes magic prefix")]
    BadMagic,
    /// The body ended inside a field.
    #[error("protobuf body is truncated")]
    Truncated,
    /// Bytes that are not valid protobuf for the kind.
    #[error("malformed protobuf body: {0}")]
    Malformed(String),
    /// A kind the server cannot decode from protobuf: answer 415.
    #[error(
        "the body of the request was in an unknown format - accepted media types include: {ACCEPTED_MEDIA_TYPES}"
    )]
    UnknownKind { api_version: String, kind: String },
    /// A compressed envelope (`contentEncoding`), which clients never send.
    #[error("unsupported protobuf content encoding {0:?}")]
    ContentEncoding(String),
}

impl DecodeError {
    /// The HTTP status the server should answer with: 415 for kinds it cannot decode from
    /// protobuf, 400 for a body that is not valid protobuf.
    pub fn status_code(&self) -> u16 {
        match self {
            Self::UnknownKind { .. } => 415,
            _ => 400,
        }
    }
}

/// The `runtime.Unknown` envelope.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub api_version: String,
    pub kind: String,
    pub raw: &'a [u8],
    pub content_encoding: String,
    pub content_type: String,
}

/// Split a `k8s\0`-framed body into its envelope.
pub fn envelope(body: &[u8]) -> Result<Envelope<'_>, DecodeError> {
    let rest = body
        .strip_prefix(MAGIC.as_slice())
        .ok_or(DecodeError::BadMagic)?;
    let mut env = Envelope::default();
    let mut r = Reader::new(rest);
    let text = |b: &[u8]| {
        String::from_utf8(b.to_vec())
            .map_err(|_| DecodeError::Malformed("envelope string is not utf-8".into()))
    };
    while !r.done() {
        match r.key()? {
            (1, 2) => {
                let mut tm = Reader::new(r.bytes()?);
                while !tm.done() {
                    match tm.key()? {
                        (1, 2) => env.api_version = text(tm.bytes()?)?,
                        (2, 2) => env.kind = text(tm.bytes()?)?,
                        (_, wire) => tm.skip(wire)?,
                    }
                }
            }
            (2, 2) => env.raw = r.bytes()?,
            (3, 2) => env.content_encoding = text(r.bytes()?)?,
            (4, 2) => env.content_type = text(r.bytes()?)?,
            (_, wire) => r.skip(wire)?,
        }
    }
    Ok(env)
}

/// Decode a `k8s\0`-framed protobuf body into the object's JSON form (`apiVersion` and `kind`
/// first). See [`DecodeError::status_code`] for how failures map to HTTP.
pub fn decode(body: &[u8]) -> Result<Value, DecodeError> {
    let env = envelope(body)?;
    if !env.content_encoding.is_empty() {
        return Err(DecodeError::ContentEncoding(env.content_encoding));
    }
    let index = schema::ROOTS
        .iter()
        .find(|(av, kind, _)| *av == env.api_version && *kind == env.kind)
        .map(|(_, _, index)| *index)
        .ok_or_else(|| DecodeError::UnknownKind {
            api_version: env.api_version.clone(),
            kind: env.kind.clone(),
        })?;
    let fields = wire::decode_message(schema::MESSAGES, index, env.raw, 0)?;
    let mut out = Map::new();
    out.insert("apiVersion".into(), Value::String(env.api_version));
    out.insert("kind".into(), Value::String(env.kind));
    out.extend(fields);
    Ok(Value::Object(out))
}

/// Decode a `k8s\0`-framed protobuf body into the object's JSON form; the error is the message
/// to return (see [`decode`] for a typed error with its HTTP status).
pub fn decode_to_json(body: &[u8]) -> Result<Value, String> {
    decode(body).map_err(|e| e.to_string())
}

/// Whether `(apiVersion, kind)` can be decoded from protobuf.
pub fn supports(api_version: &str, kind: &str) -> bool {
    schema::ROOTS
        .iter()
        .any(|(av, k, _)| *av == api_version && *k == kind)
}

#[cfg(test)]
mod tests;
