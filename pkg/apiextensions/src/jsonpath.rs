//! The small JSONPath dialect of `additionalPrinterColumns` (kubectl's template syntax without
//! braces): `.a.b`, `['a.b']`, `[0]`, `[-1]`, `[*]`, `.*`, and filters such as
//! `[?(@.type=="Ready")]` with `==`, `!=`, `<`, `<=`, `>`, `>=` or bare existence.

use serde_json::Value;

/// Why a JSONPath expression could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid json path {path:?}: {reason}")]
pub struct JsonPathError {
    /// The expression.
    pub path: String,
    /// What was wrong.
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    Wildcard,
    Filter(Filter),
}

#[derive(Clone, Debug, PartialEq)]
struct Filter {
    lhs: Vec<Step>,
    op: Option<(String, Value)>,
}

/// A parsed JSONPath expression.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

impl JsonPath {
    /// Parses an expression like `.status.conditions[?(@.type=="Ready")].status`; surrounding
    /// `{}` are accepted too.
    pub fn parse(src: &str) -> Result<JsonPath, JsonPathError> {
        let trimmed = src.trim();
        let inner = trimmed
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .unwrap_or(trimmed);
        let inner = inner.strip_prefix('$').unwrap_or(inner);
        let err = |reason: &str| JsonPathError {
            path: src.to_string(),
            reason: reason.to_string(),
        };
        let (steps, rest) = parse_steps(inner).map_err(|r| err(&r))?;
        if !rest.is_empty() {
            return Err(err(&format!("unexpected {rest:?}")));
        }
        Ok(JsonPath { steps })
    }

    /// All values the expression selects in `root`, in document order.
    pub fn eval<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        eval_steps(&self.steps, root)
    }

    /// The first value selected, if any.
    pub fn first<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        self.eval(root).into_iter().next()
    }
}

fn parse_steps(mut s: &str) -> Result<(Vec<Step>, &str), String> {
    let mut steps = Vec::new();
    loop {
        if let Some(rest) = s.strip_prefix('.') {
            if let Some(r) = rest.strip_prefix('*') {
                steps.push(Step::Wildcard);
                s = r;
                continue;
            }
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-' || c == '/'))
                .unwrap_or(rest.len());
            if end == 0 {
                if rest.is_empty() && steps.is_empty() {
                    // "." alone selects the root.
                    return Ok((steps, rest));
                }
                return Err("expected a field name after '.'".into());
            }
            steps.push(Step::Field(rest[..end].to_string()));
            s = &rest[end..];
        } else if let Some(rest) = s.strip_prefix('[') {
            let (step, r) = parse_bracket(rest)?;
            steps.push(step);
            s = r;
        } else {
            return Ok((steps, s));
        }
    }
}

fn parse_bracket(s: &str) -> Result<(Step, &str), String> {
    if let Some(r) = s.strip_prefix("*]") {
        return Ok((Step::Wildcard, r));
    }
    if let Some(q) = s.chars().next().filter(|c| *c == '\'' || *c == '"') {
        let body = &s[1..];
        let end = body.find(q).ok_or("unterminated quoted key")?;
        let rest = body[end + 1..].strip_prefix(']').ok_or("expected ']'")?;
        return Ok((Step::Field(body[..end].to_string()), rest));
    }
    if let Some(r) = s.strip_prefix("?(") {
        let r = r.trim_start();
        let r = r.strip_prefix('@').ok_or("filter must start with @")?;
        let (lhs, r) = parse_steps(r)?;
        let r = r.trim_start();
        let (op, r) = match ["==", "!=", "<=", ">=", "<", ">"]
            .iter()
            .find(|o| r.starts_with(**o))
        {
            Some(o) => {
                let (lit, r) = parse_literal(r[o.len()..].trim_start())?;
                (Some((o.to_string(), lit)), r)
            }
            None => (None, r),
        };
        let r = r.trim_start().strip_prefix(")]").ok_or("expected ')]'")?;
        return Ok((Step::Filter(Filter { lhs, op }), r));
    }
    let end = s.find(']').ok_or("expected ']'")?;
    let idx: i64 = s[..end]
        .trim()
        .parse()
        .map_err(|_| format!("unsupported subscript {:?}", &s[..end]))?;
    Ok((Step::Index(idx), &s[end + 1..]))
}

fn parse_literal(s: &str) -> Result<(Value, &str), String> {
    if let Some(q) = s.chars().next().filter(|c| *c == '\'' || *c == '"') {
        let body = &s[1..];
        let end = body.find(q).ok_or("unterminated string")?;
        return Ok((Value::from(&body[..end]), &body[end + 1..]));
    }
    let end = s.find([')', ' ']).unwrap_or(s.len());
    let tok = &s[..end];
    let v = match tok {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "null" => Value::Null,
        _ => serde_json::from_str::<serde_json::Number>(tok)
            .map(Value::Number)
            .map_err(|_| format!("unsupported literal {tok:?}"))?,
    };
    Ok((v, &s[end..]))
}

fn eval_steps<'a>(steps: &[Step], root: &'a Value) -> Vec<&'a Value> {
    let mut cur = vec![root];
    for step in steps {
        let mut next = Vec::new();
        for v in cur {
            match step {
                Step::Field(f) => next.extend(v.get(f.as_str())),
                Step::Index(i) => {
                    if let Some(a) = v.as_array() {
                        let len = a.len() as i64;
                        let at = if *i < 0 { len + i } else { *i };
                        if (0..len).contains(&at) {
                            next.extend(a.get(at as usize));
                        }
                    }
                }
                Step::Wildcard => match v {
                    Value::Array(a) => next.extend(a.iter()),
                    Value::Object(m) => next.extend(m.values()),
                    _ => {}
                },
                Step::Filter(f) => {
                    if let Some(a) = v.as_array() {
                        next.extend(a.iter().filter(|it| filter_matches(f, it)));
                    }
                }
            }
        }
        cur = next;
    }
    cur
}

fn filter_matches(f: &Filter, item: &Value) -> bool {
    let found = eval_steps(&f.lhs, item);
    let Some((op, lit)) = &f.op else {
        return !found.is_empty();
    };
    found.iter().any(|v| compare(v, op, lit))
}

fn compare(v: &Value, op: &str, lit: &Value) -> bool {
    use std::cmp::Ordering;
    let ord = match (v, lit) {
        (Value::Number(a), Value::Number(b)) => a.as_f64().partial_cmp(&b.as_f64()),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        _ => {
            return match op {
                "==" => v == lit,
                "!=" => v != lit,
                _ => false,
            }
        }
    };
    let Some(ord) = ord else { return false };
    match op {
        "==" => ord == Ordering::Equal,
        "!=" => ord != Ordering::Equal,
        "<" => ord == Ordering::Less,
        "<=" => ord != Ordering::Greater,
        ">" => ord == Ordering::Greater,
        ">=" => ord != Ordering::Less,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn eval_table() {
        let obj = json!({
            "metadata": {"name": "a", "labels": {"app.kubernetes.io/name": "x"},
                         "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"replicas": 3, "items": [{"n": 1}, {"n": 2}, {"n": 3}]},
            "status": {"conditions": [
                {"type": "Progressing", "status": "False"},
                {"type": "Ready", "status": "True"}
            ]}
        });
        let cases: &[(&str, Vec<Value>)] = &[
            (".spec.replicas", vec![json!(3)]),
            (
                ".metadata.creationTimestamp",
                vec![json!("2024-01-01T00:00:00Z")],
            ),
            (
                ".status.conditions[?(@.type==\"Ready\")].status",
                vec![json!("True")],
            ),
            (
                ".status.conditions[?(@.type == 'Ready')].status",
                vec![json!("True")],
            ),
            (
                ".status.conditions[?(@.type!=\"Ready\")].type",
                vec![json!("Progressing")],
            ),
            (".spec.items[1].n", vec![json!(2)]),
            (".spec.items[-1].n", vec![json!(3)]),
            (".spec.items[*].n", vec![json!(1), json!(2), json!(3)]),
            (".spec.items[?(@.n>1)].n", vec![json!(2), json!(3)]),
            (".spec.items[7].n", vec![]),
            (
                ".metadata.labels['app.kubernetes.io/name']",
                vec![json!("x")],
            ),
            ("{.metadata.name}", vec![json!("a")]),
            (".nope.deeper", vec![]),
        ];
        for (expr, want) in cases {
            let p = JsonPath::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
            let got: Vec<Value> = p.eval(&obj).into_iter().cloned().collect();
            assert_eq!(&got, want, "{expr}");
        }
    }

    #[test]
    fn parse_errors() {
        for bad in [
            ".spec[",
            ".spec[abc]",
            ".status.conditions[?(@.type==)]",
            ".a..b",
            "spec",
        ] {
            assert!(JsonPath::parse(bad).is_err(), "{bad}");
        }
    }
}
