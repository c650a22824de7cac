//! `x-kubernetes-validations`: CEL rules compiled once with the schema (via the `cel` crate) and
//! evaluated against a custom resource with `self` (and `oldSelf` on update), as
//! apiextensions-apiserver does. Transition rules (those using `oldSelf`) run only where an old
//! value correlates: same object key, or same `x-kubernetes-list-map-keys` item.
//! A failed rule's message is its `messageExpression` (evaluated with the same variables) when
//! that yields a usable string, else its `message`, else `failed rule: <rule>`, as upstream.
//! Not supported: `optionalOldSelf` (such rules are skipped without an old value), cost limits,
//! static type checks (a `messageExpression` that is not a string falls back at evaluation),
//! and the Kubernetes CEL library extensions (`isSorted`, `url`, `quantity`, ...); rules using
//! them fail with an evaluation error.

use crate::error::FieldError;
use crate::schema::{Additional, Schema};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::ValidationRule;
use serde_json::Value;
use std::sync::Arc;

/// Longest message a `messageExpression` may produce (upstream's
/// `MaxEvaluatedMessageExpressionSizeBytes`); longer ones fall back to the static message.
const MAX_MESSAGE_EXPRESSION_BYTES: usize = 5 * 1024;

/// One rule with its compiled program (or the compile error).
#[derive(Clone, Debug)]
pub(crate) struct CompiledRule {
    rule: ValidationRule,
    program: Result<Arc<cel::Program>, String>,
    /// The compiled `messageExpression`, if the rule has one that compiles (CRD validation
    /// rejects one that does not, so a stored CRD never lacks it).
    message_program: Option<Arc<cel::Program>>,
    uses_old_self: bool,
}

/// Compiles a node's rules; failures are kept and reported at evaluation and CRD validation.
pub(crate) fn compile_rules(rules: &[ValidationRule]) -> Vec<CompiledRule> {
    rules
        .iter()
        .map(|r| {
            let program = cel::Program::compile(&r.rule).map_err(|e| e.to_string());
            let uses_old_self = program
                .as_ref()
                .is_ok_and(|p| p.references().has_variable("oldSelf"));
            let message_program = r
                .message_expression
                .as_deref()
                .filter(|m| !m.trim().is_empty())
                .and_then(|m| cel::Program::compile(m).ok())
                .map(Arc::new);
            CompiledRule {
                rule: r.clone(),
                program: program.map(Arc::new),
                message_program,
                uses_old_self,
            }
        })
        .collect()
}

/// The compile error of a rule, if any (used by CRD validation).
pub(crate) fn compile_error(rule: &str) -> Option<String> {
    cel::Program::compile(rule).err().map(|e| e.to_string())
}

/// Evaluates every `x-kubernetes-validations` rule in the schema against `obj`; `old` is the
/// stored object on update (enables transition rules). Returns one error per failed rule, at the
/// rule's node path plus its `fieldPath`, worded as upstream: the rule's `message`, or
/// `failed rule: <rule>`.
pub fn validate_rules(schema: &Schema, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    walk(schema, obj, old, "", &mut errs);
    errs
}

fn join(path: &str, key: &str) -> String {
    match (path.is_empty(), key.is_empty()) {
        (_, true) => path.to_string(),
        (true, false) => key.to_string(),
        (false, false) => format!("{path}.{key}"),
    }
}

fn walk(s: &Schema, v: &Value, old: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) {
    for r in &s.compiled_rules {
        if let Some(e) = eval_rule(s, r, v, old, path) {
            errs.push(e);
        }
    }
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let cs = match s.properties.get(k) {
                    Some(ps) => ps,
                    None => match &s.additional {
                        Additional::Schema(a) => a.as_ref(),
                        _ => continue,
                    },
                };
                let old_child = old.and_then(|o| o.get(k));
                walk(cs, child, old_child, &join(path, k), errs);
            }
        }
        Value::Array(items) => {
            let Some(is) = &s.items else { return };
            for (i, it) in items.iter().enumerate() {
                let old_item = correlate(s, it, old);
                walk(is, it, old_item, &format!("{path}[{i}]"), errs);
            }
        }
        _ => {}
    }
}

/// The old item with the same list-map keys (only `x-kubernetes-list-type: map` correlates).
fn correlate<'a>(s: &Schema, item: &Value, old: Option<&'a Value>) -> Option<&'a Value> {
    if s.list_type.as_deref() != Some("map") || s.list_map_keys.is_empty() {
        return None;
    }
    old?.as_array()?
        .iter()
        .find(|o| s.list_map_keys.iter().all(|k| o.get(k) == item.get(k)))
}

fn eval_rule(
    s: &Schema,
    r: &CompiledRule,
    v: &Value,
    old: Option<&Value>,
    path: &str,
) -> Option<FieldError> {
    if r.uses_old_self && old.is_none() {
        return None;
    }
    let field_path = r
        .rule
        .field_path
        .as_deref()
        .map(|f| f.trim_start_matches('.'))
        .unwrap_or_default();
    let err_path = join(path, field_path);
    let type_name = s.type_.clone().unwrap_or_default();
    let program = match &r.program {
        Ok(p) => p,
        Err(e) => {
            return Some(FieldError::invalid(
                &err_path,
                type_name,
                format!("compilation failed: {e}"),
            ))
        }
    };
    let mut ctx = cel::Context::default();
    let eval_err = |e: String| {
        Some(FieldError::invalid(
            &err_path,
            type_name.clone(),
            format!("{e} evaluating rule: {}", r.rule.rule.trim()),
        ))
    };
    match cel::to_value(v) {
        Ok(sv) => ctx.add_variable_from_value("self", sv),
        Err(e) => return eval_err(e.to_string()),
    }
    if let Some(o) = old {
        match cel::to_value(o) {
            Ok(ov) => ctx.add_variable_from_value("oldSelf", ov),
            Err(e) => return eval_err(e.to_string()),
        }
    }
    match program.execute(&ctx) {
        Ok(cel::Value::Bool(true)) => None,
        Ok(cel::Value::Bool(false)) => {
            let message = r
                .message_program
                .as_deref()
                .and_then(|p| evaluated_message(p, &ctx));
            Some(rule_failed(r, message, &err_path, type_name))
        }
        Ok(other) => eval_err(format!("rule did not evaluate to a bool but to {other:?}")),
        Err(e) => eval_err(e.to_string()),
    }
}

/// The message a `messageExpression` produced, trimmed; `None` (use the static message) when
/// it failed, is not a string, is blank, spans lines or is too long, as upstream documents.
fn evaluated_message(program: &cel::Program, ctx: &cel::Context) -> Option<String> {
    let cel::Value::String(s) = program.execute(ctx).ok()? else {
        return None;
    };
    let msg = s.trim();
    let usable =
        !msg.is_empty() && !msg.contains(['\n', '\r']) && msg.len() <= MAX_MESSAGE_EXPRESSION_BYTES;
    usable.then(|| msg.to_string())
}

fn rule_failed(
    r: &CompiledRule,
    evaluated: Option<String>,
    path: &str,
    type_name: String,
) -> FieldError {
    let msg = match (
        evaluated,
        r.rule.message.as_deref().filter(|m| !m.trim().is_empty()),
    ) {
        (Some(m), _) => m,
        (None, Some(m)) => m.to_string(),
        (None, None) => format!("failed rule: {}", r.rule.rule.trim()),
    };
    match r.rule.reason.as_deref() {
        Some("FieldValueForbidden") => FieldError::forbidden(path, msg),
        Some("FieldValueRequired") => FieldError::required(path, msg),
        Some("FieldValueDuplicate") => {
            let mut e = FieldError::duplicate(path, type_name);
            e.message = msg;
            e
        }
        _ => FieldError::invalid(path, type_name, msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(v: Value) -> Schema {
        Schema::compile(&serde_json::from_value(v).expect("props")).expect("compile")
    }

    fn errs(s: &Schema, obj: Value, old: Option<Value>) -> Vec<String> {
        validate_rules(s, &obj, old.as_ref())
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn rules_table() {
        let s = schema(json!({
            "type": "object",
            "properties": {"spec": {"type": "object",
                "x-kubernetes-validations": [
                    {"rule": "self.min <= self.max", "message": "min must not exceed max"},
                    {"rule": "self.replicas >= oldSelf.replicas", "message": "replicas may not shrink", "fieldPath": ".replicas"},
                    {"rule": "!has(self.forbidden)", "reason": "FieldValueForbidden", "message": "forbidden is forbidden"}
                ],
                "properties": {
                    "min": {"type": "integer"}, "max": {"type": "integer"}, "replicas": {"type": "integer"},
                    "forbidden": {"type": "string"},
                    "name": {"type": "string", "x-kubernetes-validations": [{"rule": "self.startsWith('a')"}]},
                    "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                        "items": {"type": "object", "x-kubernetes-validations": [{"rule": "self.port == oldSelf.port", "message": "port is immutable"}],
                            "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}}
                }}}
        }));
        let ok = json!({"spec": {"min": 1, "max": 2, "replicas": 3, "name": "abc"}});
        let cases: Vec<(Value, Option<Value>, Vec<&str>)> = vec![
            (ok.clone(), None, vec![]),
            (ok.clone(), Some(ok.clone()), vec![]),
            (
                json!({"spec": {"min": 3, "max": 2, "replicas": 1}}),
                None,
                vec![r#"spec: Invalid value: "object": min must not exceed max"#],
            ),
            (
                json!({"spec": {"min": 1, "max": 2, "replicas": 1}}),
                Some(ok.clone()),
                vec![r#"spec.replicas: Invalid value: "object": replicas may not shrink"#],
            ),
            (
                json!({"spec": {"min": 1, "max": 2, "replicas": 3, "forbidden": "x"}}),
                None,
                vec!["spec: Forbidden: forbidden is forbidden"],
            ),
            (
                json!({"spec": {"min": 1, "max": 2, "replicas": 3, "name": "zed"}}),
                None,
                vec![r#"spec.name: Invalid value: "string": failed rule: self.startsWith('a')"#],
            ),
            (
                json!({"spec": {"min": 1, "max": 2, "replicas": 3, "ports": [{"name": "a", "port": 2}, {"name": "b", "port": 3}]}}),
                Some(
                    json!({"spec": {"min": 1, "max": 2, "replicas": 3, "ports": [{"name": "b", "port": 3}, {"name": "a", "port": 1}]}}),
                ),
                vec![r#"spec.ports[0]: Invalid value: "object": port is immutable"#],
            ),
        ];
        for (obj, old, want) in cases {
            assert_eq!(errs(&s, obj.clone(), old), want, "{obj}");
        }
    }

    #[test]
    fn evaluation_and_compile_errors() {
        let s = schema(
            json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-validations": [{"rule": "self.missing == 1"}],
            "properties": {"a": {"type": "string", "x-kubernetes-validations": [{"rule": "self ==="}]}}}}}),
        );
        let got = errs(&s, json!({"spec": {"a": "x"}}), None);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got[0].starts_with(r#"spec: Invalid value: "object": "#),
            "{}",
            got[0]
        );
        assert!(
            got[0].ends_with("evaluating rule: self.missing == 1"),
            "{}",
            got[0]
        );
        assert!(
            got[1].starts_with(r#"spec.a: Invalid value: "string": compilation failed: "#),
            "{}",
            got[1]
        );
        assert!(compile_error("self ===").is_some());
        assert!(compile_error("self.a < 10").is_none());
    }

    #[test]
    fn message_expression_wins_and_falls_back_like_upstream() {
        let rule = |expr: &str| {
            json!({"rule": "self.min <= self.max", "message": "static message",
                   "messageExpression": expr})
        };
        let s = schema(
            json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-validations": [
                rule("'min ' + string(self.min) + ' exceeds max ' + string(self.max)"),
                // Fall back to the static message: runtime error, not a string, blank,
                // several lines, too long.
                rule("self.nope + 'x'"),
                rule("self.min"),
                rule("'  '"),
                rule("'one\\ntwo'"),
                rule("self.long"),
                // Surrounding spaces are trimmed; oldSelf is bound on update.
                rule("'  was ' + string(oldSelf.max) + '  '"),
            ],
            "properties": {"min": {"type": "integer"}, "max": {"type": "integer"},
                           "long": {"type": "string"}}}}}),
        );
        let bad = json!({"spec": {"min": 3, "max": 2, "long": "x".repeat(6000)}});
        let got = errs(&s, bad, Some(json!({"spec": {"min": 0, "max": 9}})));
        let field = r#"spec: Invalid value: "object": "#;
        let want: Vec<String> = [
            "min 3 exceeds max 2",
            "static message",
            "static message",
            "static message",
            "static message",
            "static message",
            "was 9",
        ]
        .iter()
        .map(|m| format!("{field}{m}"))
        .collect();
        assert_eq!(got, want);
        // Without a static message the default applies.
        let s = schema(
            json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-validations": [{"rule": "self.a == 1", "messageExpression": "''"}],
            "properties": {"a": {"type": "integer"}}}}}),
        );
        assert_eq!(
            errs(&s, json!({"spec": {"a": 2}}), None),
            [r#"spec: Invalid value: "object": failed rule: self.a == 1"#]
        );
    }

    #[test]
    fn schema_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Schema>();
    }
}
