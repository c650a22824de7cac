//! Label selectors compiled once per pod/node, so per-node matching does no parsing.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::NodeSelectorRequirement;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Label map type used throughout the scheduler.
pub type Labels = BTreeMap<String, String>;

/// Namespace name -> its labels (for `namespaceSelector` in pod affinity terms).
pub type NamespaceLabels = std::collections::HashMap<String, Labels>;

/// A selector operator (label selectors and node selector requirements).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Value in the set.
    In(Vec<String>),
    /// Key absent or value not in the set.
    NotIn(Vec<String>),
    /// Key present.
    Exists,
    /// Key absent.
    DoesNotExist,
    /// Value parses as an integer greater than this.
    Gt(i64),
    /// Value parses as an integer less than this.
    Lt(i64),
    /// An operator we cannot evaluate: never matches (upstream rejects these in validation).
    Invalid,
}

/// One requirement `key op`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// Label key (or field name for matchFields).
    pub key: String,
    /// Operator with its values.
    pub op: Op,
}

impl Requirement {
    fn from_parts(key: &str, operator: &str, values: Option<&Vec<String>>) -> Self {
        let values = values.cloned().unwrap_or_default();
        let int = |v: &Vec<String>| match v.as_slice() {
            [one] => one.parse::<i64>().ok(),
            _ => None,
        };
        let op = match operator {
            "In" => Op::In(values),
            "NotIn" => Op::NotIn(values),
            "Exists" => Op::Exists,
            "DoesNotExist" => Op::DoesNotExist,
            "Gt" => int(&values).map_or(Op::Invalid, Op::Gt),
            "Lt" => int(&values).map_or(Op::Invalid, Op::Lt),
            _ => Op::Invalid,
        };
        Self {
            key: key.to_string(),
            op,
        }
    }

    /// A node selector requirement (matchExpressions / matchFields entry).
    pub fn from_node(r: &NodeSelectorRequirement) -> Self {
        Self::from_parts(&r.key, &r.operator, r.values.as_ref())
    }

    /// Whether `value` (the label's value, `None` when the key is absent) satisfies this.
    pub fn matches_value(&self, value: Option<&str>) -> bool {
        match (&self.op, value) {
            (Op::In(vs), Some(v)) => vs.iter().any(|x| x == v),
            (Op::In(_), None) => false,
            (Op::NotIn(vs), Some(v)) => !vs.iter().any(|x| x == v),
            (Op::NotIn(_), None) => true,
            (Op::Exists, v) => v.is_some(),
            (Op::DoesNotExist, v) => v.is_none(),
            (Op::Gt(n), Some(v)) => v.parse::<i64>().is_ok_and(|x| x > *n),
            (Op::Lt(n), Some(v)) => v.parse::<i64>().is_ok_and(|x| x < *n),
            _ => false,
        }
    }

    /// Whether the label set satisfies this requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matches_value(labels.get(&self.key).map(String::as_str))
    }
}

/// A compiled `metav1.LabelSelector`. `Nothing` (from a missing selector) matches no object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Matches nothing.
    Nothing,
    /// All requirements must hold; empty matches everything.
    Reqs(Vec<Requirement>),
}

impl Selector {
    /// Compiles an optional label selector; `None` selects nothing (affinity semantics).
    pub fn compile(sel: Option<&LabelSelector>) -> Self {
        let Some(sel) = sel else {
            return Selector::Nothing;
        };
        let mut reqs = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            reqs.push(Requirement {
                key: k.clone(),
                op: Op::In(vec![v.clone()]),
            });
        }
        for e in sel.match_expressions.iter().flatten() {
            reqs.push(Requirement::from_parts(
                &e.key,
                &e.operator,
                e.values.as_ref(),
            ));
        }
        Selector::Reqs(reqs)
    }

    /// Whether the label set is selected.
    pub fn matches(&self, labels: &Labels) -> bool {
        match self {
            Selector::Nothing => false,
            Selector::Reqs(reqs) => reqs.iter().all(|r| r.matches(labels)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> Requirement {
        let values: Vec<String> = values.iter().map(|s| s.to_string()).collect();
        Requirement::from_parts(key, op, Some(&values))
    }

    #[test]
    fn requirement_table() {
        let l = labels(&[("zone", "a"), ("gen", "5")]);
        let cases = [
            (req("zone", "In", &["a", "b"]), true),
            (req("zone", "In", &["b"]), false),
            (req("zone", "NotIn", &["b"]), true),
            (req("missing", "NotIn", &["b"]), true),
            (req("zone", "NotIn", &["a"]), false),
            (req("zone", "Exists", &[]), true),
            (req("missing", "Exists", &[]), false),
            (req("missing", "DoesNotExist", &[]), true),
            (req("zone", "DoesNotExist", &[]), false),
            (req("gen", "Gt", &["4"]), true),
            (req("gen", "Gt", &["5"]), false),
            (req("gen", "Lt", &["6"]), true),
            (req("zone", "Lt", &["6"]), false),
            (req("gen", "Gt", &["x"]), false),
            (req("zone", "Bogus", &[]), false),
        ];
        for (i, (r, want)) in cases.iter().enumerate() {
            assert_eq!(r.matches(&l), *want, "case {i}: {r:?}");
        }
    }

    #[test]
    fn selector_nil_empty_and_combined() {
        let l = labels(&[("app", "web"), ("tier", "fe")]);
        assert!(!Selector::compile(None).matches(&l));
        assert!(Selector::compile(Some(&LabelSelector::default())).matches(&l));
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: Some(vec!["fe".into()]),
            }]),
        };
        assert!(Selector::compile(Some(&sel)).matches(&l));
        assert!(!Selector::compile(Some(&sel)).matches(&labels(&[("app", "web")])));
    }
}
