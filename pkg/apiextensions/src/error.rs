//! Field errors in the shape of apimachinery's `field.Error`, so the apiserver can turn them into
//! `Status` causes with upstream reasons and messages.

use serde_json::Value;
use std::fmt;

/// What kind of problem a [`FieldError`] reports; mirrors apimachinery's `field.ErrorType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A required value is missing.
    Required,
    /// The value is invalid.
    Invalid,
    /// The value has the wrong JSON type (reason `FieldValueTypeInvalid`).
    TypeInvalid,
    /// The value is not one of an enumerated set.
    NotSupported,
    /// The field may not be set (here).
    Forbidden,
    /// The value duplicates an earlier one.
    Duplicate,
    /// The string is too long.
    TooLong,
    /// The list or map has too many items.
    TooMany,
    /// Something went wrong that is not the client's fault.
    Internal,
}

impl ErrorKind {
    /// The `Status.details.causes[].reason` upstream uses for this kind.
    pub fn reason(self) -> &'static str {
        match self {
            ErrorKind::Required => "FieldValueRequired",
            ErrorKind::Invalid => "FieldValueInvalid",
            ErrorKind::TypeInvalid => "FieldValueTypeInvalid",
            ErrorKind::NotSupported => "FieldValueNotSupported",
            ErrorKind::Forbidden => "FieldValueForbidden",
            ErrorKind::Duplicate => "FieldValueDuplicate",
            ErrorKind::TooLong => "FieldValueTooLong",
            ErrorKind::TooMany => "FieldValueTooMany",
            ErrorKind::Internal => "InternalError",
        }
    }

    /// The words upstream prints for this kind (`Invalid value`, `Required value`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Required => "Required value",
            ErrorKind::Invalid | ErrorKind::TypeInvalid => "Invalid value",
            ErrorKind::NotSupported => "Unsupported value",
            ErrorKind::Forbidden => "Forbidden",
            ErrorKind::Duplicate => "Duplicate value",
            ErrorKind::TooLong => "Too long",
            ErrorKind::TooMany => "Too many",
            ErrorKind::Internal => "Internal error",
        }
    }
}

/// One validation problem at one field path, e.g. `spec.versions[0].name`.
///
/// `Display` renders upstream's `field.Error.Error()`, e.g.
/// `spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"`.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    /// Field path in upstream notation: `a.b[0].c`, map keys as `properties[spec]`.
    pub path: String,
    /// The kind of problem.
    pub kind: ErrorKind,
    /// The offending value, printed after the kind; `None` omits it (as upstream's `omitValue`).
    pub value: Option<Value>,
    /// The detail after the value; may be empty.
    pub message: String,
}

impl FieldError {
    fn new(path: &str, kind: ErrorKind, value: Option<Value>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.to_string(),
            kind,
            value,
            message: message.into(),
        }
    }

    /// `field.Required`.
    pub fn required(path: &str, message: impl Into<String>) -> Self {
        Self::new(path, ErrorKind::Required, None, message)
    }

    /// `field.Invalid`.
    pub fn invalid(path: &str, value: impl Into<Value>, message: impl Into<String>) -> Self {
        Self::new(path, ErrorKind::Invalid, Some(value.into()), message)
    }

    /// `field.Invalid` without printing a value (used where upstream prints a Go struct dump).
    pub fn invalid_no_value(path: &str, message: impl Into<String>) -> Self {
        Self::new(path, ErrorKind::Invalid, None, message)
    }

    /// `field.TypeInvalid`.
    pub fn type_invalid(path: &str, value: impl Into<Value>, message: impl Into<String>) -> Self {
        Self::new(path, ErrorKind::TypeInvalid, Some(value.into()), message)
    }

    /// `field.NotSupported`: the message lists the supported values like upstream.
    pub fn not_supported(path: &str, value: impl Into<Value>, supported: &[String]) -> Self {
        let quoted: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        let msg = if quoted.is_empty() {
            String::new()
        } else {
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(path, ErrorKind::NotSupported, Some(value.into()), msg)
    }

    /// `field.Forbidden`.
    pub fn forbidden(path: &str, message: impl Into<String>) -> Self {
        Self::new(path, ErrorKind::Forbidden, None, message)
    }

    /// `field.Duplicate`.
    pub fn duplicate(path: &str, value: impl Into<Value>) -> Self {
        Self::new(path, ErrorKind::Duplicate, Some(value.into()), "")
    }

    /// `field.TooLong` with a maximum length in bytes.
    pub fn too_long(path: &str, max: i64) -> Self {
        let unit = if max == 1 { "byte" } else { "bytes" };
        Self::new(
            path,
            ErrorKind::TooLong,
            None,
            format!("may not be more than {max} {unit}"),
        )
    }

    /// `field.TooMany` with the actual and maximum number of items.
    pub fn too_many(path: &str, actual: i64, max: i64) -> Self {
        Self::new(
            path,
            ErrorKind::TooMany,
            Some(Value::from(actual)),
            format!("must have at most {max} items"),
        )
    }

    /// `field.InternalError`.
    pub fn internal(path: &str, message: impl Into<String>) -> Self {
        Self::new(path, ErrorKind::Internal, None, message)
    }

    /// `Status.details.causes[].reason` for this error.
    pub fn reason(&self) -> &'static str {
        self.kind.reason()
    }

    /// Upstream's `ErrorBody()`: the message without the field path, as used in
    /// `Status.details.causes[].message`.
    pub fn body(&self) -> String {
        let mut s = self.kind.as_str().to_string();
        let omit = matches!(
            self.kind,
            ErrorKind::Required | ErrorKind::Forbidden | ErrorKind::TooLong | ErrorKind::Internal
        );
        if let (false, Some(v)) = (omit, &self.value) {
            s.push_str(": ");
            s.push_str(&render_value(v));
        }
        if !self.message.is_empty() {
            s.push_str(": ");
            s.push_str(&self.message);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.body())
    }
}

/// Prints a bad value as Go's `%q`/`%v` would for JSON scalars; objects and arrays as JSON.
pub(crate) fn render_value(v: &Value) -> String {
    match v {
        Value::Null => "\"null\"".to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Number(n) => go_number(n),
        other => other.to_string(),
    }
}

/// Go's `%v` for a float64 that holds a whole number prints no fraction.
pub(crate) fn go_number(n: &serde_json::Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    match n.as_f64() {
        Some(f) => go_float(f),
        None => n.to_string(),
    }
}

/// Go's `%v` for a float64.
pub(crate) fn go_float(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e21 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

/// The `Status.message` upstream builds for a 422: `Kind.group "name" is invalid: <errors>`,
/// with several errors wrapped in brackets and joined by `, `.
pub fn invalid_message(qualified_kind: &str, name: &str, errors: &[FieldError]) -> String {
    let joined = match errors {
        [one] => one.to_string(),
        many => format!(
            "[{}]",
            many.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    format!("{qualified_kind} {name:?} is invalid: {joined}")
}

/// Field path builder with upstream rendering (`a.b`, `a[0]`, `a[key]`).
#[derive(Clone, Debug, Default)]
pub(crate) struct Path(String);

impl Path {
    pub(crate) fn new(root: &str) -> Self {
        Path(root.to_string())
    }
    pub(crate) fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Path(name.to_string())
        } else {
            Path(format!("{}.{name}", self.0))
        }
    }
    pub(crate) fn index(&self, i: usize) -> Self {
        Path(format!("{}[{i}]", self.0))
    }
    pub(crate) fn key(&self, k: &str) -> Self {
        Path(format!("{}[{k}]", self.0))
    }
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_like_apimachinery() {
        let cases = [
            (
                FieldError::type_invalid(
                    "spec.replicas",
                    "string",
                    "spec.replicas in body must be of type integer: \"string\"",
                ),
                r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#,
            ),
            (FieldError::required("spec.x", ""), "spec.x: Required value"),
            (
                FieldError::not_supported(
                    "spec.scope",
                    "Foo",
                    &["Cluster".into(), "Namespaced".into()],
                ),
                r#"spec.scope: Unsupported value: "Foo": supported values: "Cluster", "Namespaced""#,
            ),
            (
                FieldError::invalid(
                    "spec.n",
                    json!(-1),
                    "spec.n in body should be greater than or equal to 0",
                ),
                "spec.n: Invalid value: -1: spec.n in body should be greater than or equal to 0",
            ),
            (
                FieldError::too_long("spec.s", 3),
                "spec.s: Too long: may not be more than 3 bytes",
            ),
            (
                FieldError::too_many("spec.l", 4, 3),
                "spec.l: Too many: 4: must have at most 3 items",
            ),
            (
                FieldError::forbidden("spec.f", "nope"),
                "spec.f: Forbidden: nope",
            ),
            (
                FieldError::duplicate("spec.l[1]", "a"),
                r#"spec.l[1]: Duplicate value: "a""#,
            ),
            (
                FieldError::invalid("spec.f", json!(1.5), "x"),
                "spec.f: Invalid value: 1.5: x",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_string(), want);
        }
        assert_eq!(ErrorKind::TypeInvalid.reason(), "FieldValueTypeInvalid");
    }

    #[test]
    fn status_message_wraps_several_errors() {
        let one = [FieldError::required("spec.a", "")];
        assert_eq!(
            invalid_message("Foo.example.com", "x", &one),
            r#"Foo.example.com "x" is invalid: spec.a: Required value"#
        );
        let two = [
            FieldError::required("spec.a", ""),
            FieldError::required("spec.b", ""),
        ];
        assert_eq!(
            invalid_message("Foo.example.com", "x", &two),
            r#"Foo.example.com "x" is invalid: [spec.a: Required value, spec.b: Required value]"#
        );
    }

    #[test]
    fn path_rendering() {
        let p = Path::new("spec").child("versions").index(0).key("replicas");
        assert_eq!(p.as_str(), "spec.versions[0][replicas]");
        assert_eq!(Path::new("").child("a").as_str(), "a");
    }
}
