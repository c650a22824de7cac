//! Field selectors (`k8s.io/apimachinery/pkg/fields`): `f=v`, `f==v`, `f!=v` terms with
//! backslash escapes in values.

use std::fmt;

use super::SelectorError;

/// The operator of one field requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldOp {
    /// `f=v` or `f==v`
    Equals,
    /// `f!=v`
    NotEquals,
}

/// One `field op value` term of a field selector; `value` is unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    /// The field label, e.g. `metadata.name`.
    pub field: String,
    /// `=`/`==` or `!=`.
    pub op: FieldOp,
    /// The unescaped value.
    pub value: String,
}

impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            FieldOp::Equals => "=",
            FieldOp::NotEquals => "!=",
        };
        write!(f, "{}{}{}", self.field, op, escape_field_value(&self.value))
    }
}

/// A parsed field selector (`f=v`, `f==v`, `f!=v`, comma-separated AND, with `\,` `\=` `\\`
/// escapes in values), as upstream `fields.ParseSelector`.
///
/// The selector itself does not know which fields a kind supports: the server must check every
/// [`FieldRequirement::field`] against the kind's supported field labels first and answer 400
/// `field label not supported: X` for the others, as upstream does before matching.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Parses a `fieldSelector` query value. Terms are sorted (as upstream does) and empty terms
    /// are skipped; keys are taken verbatim (no whitespace trimming, like upstream).
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut parts = split_field_terms(s);
        parts.sort();
        let mut requirements = Vec::new();
        for part in parts {
            if part.is_empty() {
                continue;
            }
            let Some((field, op, raw)) = split_field_term(part) else {
                return Err(SelectorError(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            let value = unescape_field_value(raw)?;
            requirements.push(FieldRequirement {
                field: field.to_string(),
                op,
                value,
            });
        }
        Ok(Self { requirements })
    }

    /// True when the selector has no terms (matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The terms, sorted as upstream sorts them; the server checks each `field` is supported.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// Whether an object matches. `get` returns the object's value of a field; `None` is
    /// treated as `""` (upstream matches against a `fields.Set`, where a missing field reads
    /// as empty). Only call this after rejecting unsupported fields.
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| {
            let actual = get(&r.field).unwrap_or_default();
            match r.op {
                FieldOp::Equals => actual == r.value,
                FieldOp::NotEquals => actual != r.value,
            }
        })
    }

    /// The value an `=`/`==` term pins `field` to, if any.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.op == FieldOp::Equals)
            .map(|r| r.value.as_str())
    }

    /// `metadata.name=X`: lets the server narrow a list or watch to one key.
    pub fn single_name(&self) -> Option<&str> {
        self.requires_exact_match("metadata.name")
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// Splits on commas that are not backslash-escaped; escapes stay in the terms.
fn split_field_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits at the first operator; `!=` and `==` are tried before `=` at each position.
fn split_field_term(term: &str) -> Option<(&str, FieldOp, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op, kind) in [
            ("!=", FieldOp::NotEquals),
            ("==", FieldOp::Equals),
            ("=", FieldOp::Equals),
        ] {
            if let Some(value) = rest.strip_prefix(op) {
                return Some((&term[..i], kind, value));
            }
        }
    }
    None
}

fn unescape_field_value(s: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(s.len());
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            match c {
                '\\' | ',' | '=' => out.push(c),
                other => {
                    return Err(SelectorError(format!(
                        "invalid field selector: invalid escape sequence: \\{other}"
                    )))
                }
            }
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            // Go prints the rune with %v, i.e. as its code point number.
            ',' | '=' => {
                return Err(SelectorError(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                )))
            }
            other => out.push(other),
        }
    }
    if escaped {
        return Err(SelectorError(
            "invalid field selector: invalid escape sequence: \\".to_string(),
        ));
    }
    Ok(out)
}

/// Escapes `\`, `,` and `=` in a field selector value.
pub fn escape_field_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_selector_parse_and_match() {
        let obj = |f: &str| match f {
            "metadata.name" => Some("web-1".to_string()),
            "metadata.namespace" => Some("default".to_string()),
            "status.phase" => Some("Running".to_string()),
            "spec.nodeName" => None,
            _ => None,
        };
        let cases: &[(&str, bool)] = &[
            ("", true),
            ("metadata.name=web-1", true),
            ("metadata.name==web-1", true),
            ("metadata.name=web-2", false),
            ("metadata.name!=web-2", true),
            ("status.phase=Running,metadata.namespace=default", true),
            ("status.phase!=Running,metadata.namespace=default", false),
            ("spec.nodeName=", true),
            ("spec.nodeName!=", false),
            ("metadata.name=web-1,", true),
        ];
        for (sel, want) in cases {
            let s = FieldSelector::parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
            assert_eq!(s.matches(obj), *want, "selector {sel:?}");
        }
        let s = FieldSelector::parse("status.phase=Running,metadata.name=web-1").expect("parse");
        assert_eq!(s.single_name(), Some("web-1"));
        assert_eq!(s.to_string(), "metadata.name=web-1,status.phase=Running");
        assert_eq!(s.requirements().len(), 2);
        assert_eq!(s.requirements()[1].field, "status.phase");
        assert_eq!(
            FieldSelector::parse("metadata.name!=x")
                .expect("ne")
                .single_name(),
            None
        );
        assert!(FieldSelector::parse("").expect("empty").is_empty());
    }

    #[test]
    fn field_selector_escapes() {
        let s = FieldSelector::parse(r"involvedObject.name=a\,b\=c\\d,involvedObject.kind=Pod")
            .expect("parse");
        assert_eq!(s.requirements()[1].field, "involvedObject.name");
        assert_eq!(s.requirements()[1].value, r"a,b=c\d");
        assert_eq!(
            s.to_string(),
            r"involvedObject.kind=Pod,involvedObject.name=a\,b\=c\\d"
        );
        assert_eq!(FieldSelector::parse(&s.to_string()).expect("reparse"), s);
        // `!=` wins over `=` at the same position; `==` does not leave a leading '='.
        let s = FieldSelector::parse("a==b").expect("==");
        assert_eq!(s.requirements()[0].value, "b");
        let s = FieldSelector::parse("a!=b").expect("!=");
        assert_eq!(s.requirements()[0].op, FieldOp::NotEquals);
    }

    #[test]
    fn field_selector_errors_match_upstream() {
        let cases: &[(&str, &str)] = &[
            (
                "metadata.name",
                "invalid selector: 'metadata.name'; can't understand 'metadata.name'",
            ),
            (
                r"a=b\x",
                r"invalid field selector: invalid escape sequence: \x",
            ),
            (
                r"a=b\",
                r"invalid field selector: invalid escape sequence: \",
            ),
            (
                "a=b=c",
                "invalid field selector: unescaped character in value: 61",
            ),
        ];
        for (input, want) in cases {
            let err = FieldSelector::parse(input).expect_err(input);
            assert_eq!(err.to_string(), *want, "input {input:?}");
        }
    }
}
