//! Label selectors (`k8s.io/apimachinery/pkg/labels`): the query syntax parser, conversion
//! from `metav1.LabelSelector`, matching and canonical printing.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

use super::parser::parse_requirements;
use super::validation::{
    aggregate, field_invalid, go_quote, go_string_slice, label_key_errors, label_value_errors,
};
use super::SelectorError;

/// The operator of one label requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LabelOp {
    /// `k=v`
    Equals,
    /// `k==v`
    DoubleEquals,
    /// `k!=v`
    NotEquals,
    /// `k in (a,b)`
    In,
    /// `k notin (a,b)`
    NotIn,
    /// `k`
    Exists,
    /// `!k`
    DoesNotExist,
    /// `k>5` (integer comparison)
    GreaterThan,
    /// `k<5` (integer comparison)
    LessThan,
}

/// One `key op values` term of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRequirement {
    key: String,
    op: LabelOp,
    values: Vec<String>,
}

impl LabelRequirement {
    /// Builds a requirement, validating key, operator arity and values like upstream
    /// `labels.NewRequirement` (errors are aggregated as upstream prints them).
    pub fn new(key: &str, op: LabelOp, values: Vec<String>) -> Result<Self, SelectorError> {
        let mut errs = Vec::new();
        let key_errs = label_key_errors(key);
        if !key_errs.is_empty() {
            errs.push(field_invalid("key", &go_quote(key), &key_errs.join("; ")));
        }
        match op {
            LabelOp::In | LabelOp::NotIn if values.is_empty() => errs.push(field_invalid(
                "values",
                &go_string_slice(&values),
                "for 'in', 'notin' operators, values set can't be empty",
            )),
            LabelOp::Equals | LabelOp::DoubleEquals | LabelOp::NotEquals if values.len() != 1 => {
                errs.push(field_invalid(
                    "values",
                    &go_string_slice(&values),
                    "exact-match compatibility requires one single value",
                ))
            }
            LabelOp::Exists | LabelOp::DoesNotExist if !values.is_empty() => {
                errs.push(field_invalid(
                    "values",
                    &go_string_slice(&values),
                    "values set must be empty for exists and does not exist",
                ))
            }
            LabelOp::GreaterThan | LabelOp::LessThan => {
                if values.len() != 1 {
                    errs.push(field_invalid(
                        "values",
                        &go_string_slice(&values),
                        "for 'Gt', 'Lt' operators, exactly one value is required",
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(field_invalid(
                            &format!("values[{i}]"),
                            &go_quote(v),
                            "for 'Gt', 'Lt' operators, the value must be an integer",
                        ));
                    }
                }
            }
            _ => {}
        }
        for (i, v) in values.iter().enumerate() {
            let value_errs = label_value_errors(v);
            if !value_errs.is_empty() {
                errs.push(field_invalid(
                    &format!("values[{i}][{key}]"),
                    &go_quote(v),
                    &value_errs.join("; "),
                ));
            }
        }
        if errs.is_empty() {
            Ok(Self {
                key: key.to_string(),
                op,
                values,
            })
        } else {
            Err(SelectorError(aggregate(errs)))
        }
    }

    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn op(&self) -> LabelOp {
        self.op
    }

    /// The values (empty for `Exists`/`DoesNotExist`).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether a label set (looked up through `get`) satisfies this requirement.
    fn matches_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        let has = |v: &str| self.values.iter().any(|x| x == v);
        match self.op {
            LabelOp::In | LabelOp::Equals | LabelOp::DoubleEquals => {
                get(&self.key).is_some_and(has)
            }
            LabelOp::NotIn | LabelOp::NotEquals => get(&self.key).is_none_or(|v| !has(v)),
            LabelOp::Exists => get(&self.key).is_some(),
            LabelOp::DoesNotExist => get(&self.key).is_none(),
            LabelOp::GreaterThan | LabelOp::LessThan => {
                let Some(actual) = get(&self.key).and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                let [wanted] = self.values.as_slice() else {
                    return false;
                };
                let Ok(wanted) = wanted.parse::<i64>() else {
                    return false;
                };
                if self.op == LabelOp::GreaterThan {
                    actual > wanted
                } else {
                    actual < wanted
                }
            }
        }
    }
}

impl fmt::Display for LabelRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.op == LabelOp::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let op = match self.op {
            LabelOp::Exists | LabelOp::DoesNotExist => return Ok(()),
            LabelOp::Equals => "=",
            LabelOp::DoubleEquals => "==",
            LabelOp::NotEquals => "!=",
            LabelOp::In => " in ",
            LabelOp::NotIn => " notin ",
            LabelOp::GreaterThan => ">",
            LabelOp::LessThan => "<",
        };
        f.write_str(op)?;
        let set = matches!(self.op, LabelOp::In | LabelOp::NotIn);
        let mut values = self.values.clone();
        values.sort();
        if set {
            write!(f, "({})", values.join(","))
        } else {
            f.write_str(&values.join(","))
        }
    }
}

/// A parsed label selector: an AND of requirements, kept sorted by key as upstream does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<LabelRequirement>,
    /// Set only for a null `metav1.LabelSelector`, which selects nothing.
    nothing: bool,
}

impl LabelSelector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// The selector that matches no object (what a null `metav1.LabelSelector` means).
    pub fn nothing() -> Self {
        Self {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Parses the `labelSelector` query syntax (`k=v`, `k==v`, `k!=v`, `k in (a,b)`,
    /// `k notin (a,b)`, `k`, `!k`, `k>5`, `k<5`, comma-separated AND). An empty string is
    /// [`LabelSelector::everything`].
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut requirements = parse_requirements(s)?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self {
            requirements,
            nothing: false,
        })
    }

    /// Converts a `metav1.LabelSelector` JSON value (`matchLabels` + `matchExpressions`) like
    /// upstream `LabelSelectorAsSelector`: null selects nothing, `{}` selects everything.
    pub fn from_label_selector(sel: &Value) -> Result<Self, SelectorError> {
        let obj = match sel {
            Value::Null => return Ok(Self::nothing()),
            Value::Object(obj) => obj,
            other => return Err(SelectorError(format!("invalid label selector: {other}"))),
        };
        let mut requirements = Vec::new();
        if let Some(labels) = obj.get("matchLabels").filter(|v| !v.is_null()) {
            let labels = labels
                .as_object()
                .ok_or_else(|| SelectorError("matchLabels must be an object".into()))?;
            for (k, v) in labels {
                let v = v.as_str().ok_or_else(|| {
                    SelectorError(format!("matchLabels value of {k:?} must be a string"))
                })?;
                requirements.push(LabelRequirement::new(
                    k,
                    LabelOp::Equals,
                    vec![v.to_string()],
                )?);
            }
        }
        if let Some(exprs) = obj.get("matchExpressions").filter(|v| !v.is_null()) {
            let exprs = exprs
                .as_array()
                .ok_or_else(|| SelectorError("matchExpressions must be a list".into()))?;
            for expr in exprs {
                let key = expr.get("key").and_then(Value::as_str).unwrap_or_default();
                let op_name = expr
                    .get("operator")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let op = match op_name {
                    "In" => LabelOp::In,
                    "NotIn" => LabelOp::NotIn,
                    "Exists" => LabelOp::Exists,
                    "DoesNotExist" => LabelOp::DoesNotExist,
                    other => {
                        return Err(SelectorError(format!(
                            "{} is not a valid label selector operator",
                            go_quote(other)
                        )))
                    }
                };
                let values = expr
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|vs| {
                        vs.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                requirements.push(LabelRequirement::new(key, op, values)?);
            }
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self {
            requirements,
            nothing: false,
        })
    }

    /// True when the selector does not restrict anything (matches every object).
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[LabelRequirement] {
        &self.requirements
    }

    /// Matches an object's `metadata.labels` map; `None`/absent labels are the empty set and
    /// non-string values are treated as absent.
    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        self.matches_with(|k| labels.get(k).and_then(Value::as_str))
    }

    /// Matches a plain label map.
    pub fn matches_map(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(|k| labels.get(k).map(String::as_str))
    }

    /// Matches an optional `metadata.labels` JSON value (absent or null = no labels).
    pub fn matches_value(&self, labels: Option<&Value>) -> bool {
        match labels.and_then(Value::as_object) {
            Some(map) => self.matches(map),
            None => self.matches(&Map::new()),
        }
    }

    fn matches_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str> + Copy) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches_with(get))
    }

    /// If the selector pins `label` to one value (`=`, `==` or a one-value `in`), that value.
    pub fn requires_exact_match(&self, label: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == label)?;
        match (r.op, r.values.as_slice()) {
            (LabelOp::Equals | LabelOp::DoubleEquals | LabelOp::In, [v]) => Some(v),
            _ => None,
        }
    }
}

impl fmt::Display for LabelSelector {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> Map<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect()
    }

    #[test]
    fn label_operators_match() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("n", "7")]);
        let cases: &[(&str, bool)] = &[
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app=db", false),
            ("app!=db", true),
            ("app!=web", false),
            ("missing!=x", true),
            ("app in (web,db)", true),
            ("app in (db)", false),
            ("app notin (db)", true),
            ("app notin (web)", false),
            ("missing notin (web)", true),
            ("missing in (web)", false),
            ("app", true),
            ("missing", false),
            ("!missing", true),
            ("!app", false),
            ("n>5", true),
            ("n>7", false),
            ("n<8", true),
            ("n<7", false),
            ("app>5", false),
            ("missing<5", false),
            ("app=web,tier=front", true),
            ("app=web,tier=back", false),
            ("  app = web ,  tier in ( front , back )  ", true),
            ("in=x", false),
            ("app in (in, notin, web)", true),
        ];
        for (sel, want) in cases {
            let s = LabelSelector::parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
            assert_eq!(s.matches(&l), *want, "selector {sel:?}");
            let map: BTreeMap<String, String> = l
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            assert_eq!(s.matches_map(&map), *want, "selector {sel:?} (map)");
        }
        assert!(LabelSelector::parse("!app")
            .expect("parse")
            .matches_value(None));
        assert!(!LabelSelector::parse("app")
            .expect("parse")
            .matches_value(None));
    }

    #[test]
    fn label_display_is_canonical() {
        let cases: &[(&str, &str)] = &[
            ("b=1,a=2", "a=2,b=1"),
            ("x in (c, a,b)", "x in (a,b,c)"),
            ("x notin (a)", "x notin (a)"),
            ("!x, y", "!x,y"),
            ("x==1", "x==1"),
            ("x!=1", "x!=1"),
            ("x>1,y<2", "x>1,y<2"),
            ("x=", "x="),
            ("x in ()", "x in ()"),
            ("x in (a,,b)", "x in (,a,b)"),
            ("example.com/k=v", "example.com/k=v"),
        ];
        for (input, want) in cases {
            let s = LabelSelector::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(s.to_string(), *want, "input {input:?}");
            let again = LabelSelector::parse(&s.to_string()).expect("reparse");
            assert_eq!(again, s);
        }
        assert!(LabelSelector::parse("").expect("empty").is_empty());
        assert!(LabelSelector::everything().is_empty());
        assert!(!LabelSelector::parse("a").expect("a").is_empty());
    }

    #[test]
    fn label_parse_errors_match_upstream() {
        let name_re = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
        let cases: Vec<(&str, String)> = vec![
            ("app:monolith", format!("unable to parse requirement: <nil>: Invalid value: \"app:monolith\": {name_re}")),
            ("*bar", format!("unable to parse requirement: <nil>: Invalid value: \"*bar\": {name_re}")),
            (
                "app.kubernetes_io/name=x",
                "unable to parse requirement: <nil>: Invalid value: \"app.kubernetes_io/name\": prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".to_string(),
            ),
            ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt".to_string()),
            ("a=b=c", "found '=', expected: ',' or 'end of string'".to_string()),
            ("a,", "found '', expected: identifier after ','".to_string()),
            ("=a", "found '=', expected: !, identifier, or 'end of string'".to_string()),
            ("a in b", "unable to parse requirement: found 'b' expected: '('".to_string()),
            ("a in (b", "unable to parse requirement: found '', expected: ',' or ')'".to_string()),
            ("a>b", "unable to parse requirement: values[0]: Invalid value: \"b\": for 'Gt', 'Lt' operators, the value must be an integer".to_string()),
            (
                "a=b_",
                "unable to parse requirement: values[0][a]: Invalid value: \"b_\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".to_string(),
            ),
        ];
        for (input, want) in cases {
            let err = LabelSelector::parse(input).expect_err(input);
            assert_eq!(err.to_string(), want, "input {input:?}");
        }
        let long = "v".repeat(64);
        let err = LabelSelector::parse(&format!("a={long}")).expect_err("long value");
        assert!(
            err.to_string()
                .contains("must be no more than 63 characters"),
            "{err}"
        );
        let err = LabelSelector::parse(&format!("{long}=a")).expect_err("long key");
        assert!(
            err.to_string()
                .contains("name part must be no more than 63 characters"),
            "{err}"
        );
    }

    #[test]
    fn from_label_selector_converts_metav1() {
        let l = labels(&[("app", "web"), ("env", "prod")]);
        let cases: Vec<(Value, bool, &str)> = vec![
            (json!({}), true, ""),
            (json!({"matchLabels": {"app": "web"}}), true, "app=web"),
            (json!({"matchLabels": {"app": "db"}}), false, "app=db"),
            (
                json!({"matchLabels": {"app": "web"}, "matchExpressions": [
                    {"key": "env", "operator": "In", "values": ["prod", "dev"]},
                    {"key": "gone", "operator": "DoesNotExist"},
                    {"key": "app", "operator": "Exists"}
                ]}),
                true,
                "app=web,app,env in (dev,prod),!gone",
            ),
            (
                json!({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]}),
                false,
                "env notin (prod)",
            ),
        ];
        for (sel, want, display) in cases {
            let s = LabelSelector::from_label_selector(&sel).expect("convert");
            assert_eq!(s.matches(&l), want, "{sel}");
            assert_eq!(s.to_string(), display, "{sel}");
        }
        let nothing = LabelSelector::from_label_selector(&Value::Null).expect("null");
        assert!(!nothing.matches(&l));
        assert!(!nothing.is_empty());
        assert!(LabelSelector::from_label_selector(&json!({}))
            .expect("{}")
            .is_empty());

        let err = LabelSelector::from_label_selector(
            &json!({"matchExpressions": [{"key": "a", "operator": "Foo"}]}),
        )
        .expect_err("bad op");
        assert_eq!(
            err.to_string(),
            "\"Foo\" is not a valid label selector operator"
        );
        let err = LabelSelector::from_label_selector(
            &json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}),
        )
        .expect_err("empty in");
        assert_eq!(
            err.to_string(),
            "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"
        );
        let err = LabelSelector::from_label_selector(
            &json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
        )
        .expect_err("exists with values");
        assert_eq!(
            err.to_string(),
            "values: Invalid value: []string{\"x\"}: values set must be empty for exists and does not exist"
        );
    }

    #[test]
    fn exact_match_helpers() {
        let s = LabelSelector::parse("app=web,tier in (a),x in (a,b)").expect("parse");
        assert_eq!(s.requires_exact_match("app"), Some("web"));
        assert_eq!(s.requires_exact_match("tier"), Some("a"));
        assert_eq!(s.requires_exact_match("x"), None);
        assert_eq!(s.requires_exact_match("y"), None);
    }
}
