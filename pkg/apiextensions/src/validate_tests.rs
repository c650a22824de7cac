//! Table-driven tests of custom resource validation against a compiled schema.

use crate::schema::Schema;
use serde_json::{json, Value};

fn schema(v: Value) -> Schema {
    Schema::compile(&serde_json::from_value(v).expect("props")).expect("compile")
}

fn errors(s: &Schema, obj: Value) -> Vec<String> {
    s.validate(&obj).iter().map(ToString::to_string).collect()
}

fn spec_schema(spec_props: Value) -> Schema {
    schema(
        json!({"type": "object", "properties": {"spec": {"type": "object", "properties": spec_props}}}),
    )
}

#[test]
fn scalar_validations() {
    let s = spec_schema(json!({
        "replicas": {"type": "integer", "minimum": 0, "maximum": 10},
        "ex": {"type": "number", "minimum": 1, "exclusiveMinimum": true, "maximum": 2.5, "exclusiveMaximum": true},
        "step": {"type": "integer", "multipleOf": 5},
        "name": {"type": "string", "minLength": 2, "maxLength": 4, "pattern": "^[a-z]+$"},
        "mode": {"type": "string", "enum": ["a", "b"]},
        "on": {"type": "boolean"},
        "when": {"type": "string", "format": "date-time"},
        "opt": {"type": "string", "nullable": true},
        "ios": {"x-kubernetes-int-or-string": true}
    }));
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({"spec": {"replicas": 3, "name": "abc", "mode": "a", "on": true, "ex": 2,
                         "step": 10, "when": "2024-01-01T00:00:00Z", "opt": null, "ios": "50%"}}), vec![]),
        (json!({"spec": {"ios": 3}}), vec![]),
        (json!({"spec": {"replicas": 3.0}}), vec![]),
        (json!({"spec": {"replicas": "string"}}),
         vec![r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#]),
        (json!({"spec": {"replicas": 1.5}}),
         vec![r#"spec.replicas: Invalid value: "number": spec.replicas in body must be of type integer: "number""#]),
        (json!({"spec": {"replicas": -1}}),
         vec!["spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0"]),
        (json!({"spec": {"replicas": 11}}),
         vec!["spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10"]),
        (json!({"spec": {"ex": 1}}),
         vec!["spec.ex: Invalid value: 1: spec.ex in body should be greater than 1"]),
        (json!({"spec": {"ex": 2.5}}),
         vec!["spec.ex: Invalid value: 2.5: spec.ex in body should be less than 2.5"]),
        (json!({"spec": {"step": 7}}),
         vec!["spec.step: Invalid value: 7: spec.step in body should be a multiple of 5"]),
        (json!({"spec": {"name": "a"}}),
         vec![r#"spec.name: Invalid value: "a": spec.name in body should be at least 2 chars long"#]),
        (json!({"spec": {"name": "abcde"}}),
         vec!["spec.name: Too long: may not be more than 4 bytes"]),
        (json!({"spec": {"name": "A1"}}),
         vec![r#"spec.name: Invalid value: "A1": spec.name in body should match '^[a-z]+$'"#]),
        (json!({"spec": {"mode": "c"}}),
         vec![r#"spec.mode: Unsupported value: "c": supported values: "a", "b""#]),
        (json!({"spec": {"on": "yes"}}),
         vec![r#"spec.on: Invalid value: "string": spec.on in body must be of type boolean: "string""#]),
        (json!({"spec": {"on": null}}),
         vec![r#"spec.on: Invalid value: "null": spec.on in body must be of type boolean: "null""#]),
        (json!({"spec": {"when": "tomorrow"}}),
         vec![r#"spec.when: Invalid value: "tomorrow": spec.when in body must be of type date-time: "tomorrow""#]),
        (json!({"spec": {"ios": true}}),
         vec![r#"spec.ios: Invalid value: "boolean": spec.ios in body must be of type integer,string: "boolean""#]),
        (json!({"spec": "nope"}),
         vec![r#"spec: Invalid value: "string": spec in body must be of type object: "string""#]),
    ];
    for (obj, want) in cases {
        assert_eq!(errors(&s, obj.clone()), want, "{obj}");
    }
}

#[test]
fn object_and_array_validations() {
    let s = spec_schema(json!({
        "must": {"type": "object", "required": ["a", "b"], "properties": {"a": {"type": "string"}, "b": {"type": "string"}}},
        "props": {"type": "object", "minProperties": 1, "maxProperties": 2, "additionalProperties": {"type": "integer"}},
        "list": {"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "string"}},
        "set": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        "map": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "properties": {"name": {"type": "string"}, "v": {"type": "integer"}}}}
    }));
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({"spec": {"must": {"a": "x", "b": "y"}, "props": {"k": 1}, "list": ["a"],
                         "set": ["a", "b"], "map": [{"name": "a"}, {"name": "b"}]}}), vec![]),
        (json!({"spec": {"must": {"a": "x"}}}), vec!["spec.must.b: Required value"]),
        (json!({"spec": {"props": {}}}),
         vec!["spec.props: Invalid value: 1: spec.props in body should have at least 1 properties"]),
        (json!({"spec": {"props": {"a": 1, "b": 2, "c": 3}}}),
         vec!["spec.props: Too many: 3: must have at most 2 items"]),
        (json!({"spec": {"props": {"a": "x"}}}),
         vec![r#"spec.props.a: Invalid value: "string": spec.props.a in body must be of type integer: "string""#]),
        (json!({"spec": {"list": []}}),
         vec!["spec.list: Invalid value: 0: spec.list in body should have at least 1 items"]),
        (json!({"spec": {"list": ["a", "b", "c"]}}),
         vec!["spec.list: Too many: 3: must have at most 2 items"]),
        (json!({"spec": {"list": ["a", 1]}}),
         vec![r#"spec.list[1]: Invalid value: "integer": spec.list[1] in body must be of type string: "integer""#]),
        (json!({"spec": {"set": ["a", "a"]}}), vec![r#"spec.set[1]: Duplicate value: "a""#]),
        (json!({"spec": {"map": [{"name": "a", "v": 1}, {"name": "a", "v": 2}]}}),
         vec![r#"spec.map[1]: Duplicate value: {"name":"a"}"#]),
    ];
    for (obj, want) in cases {
        assert_eq!(errors(&s, obj.clone()), want, "{obj}");
    }
}

#[test]
fn root_allows_type_meta_and_checks_only_name_in_metadata() {
    let s = schema(json!({"type": "object", "properties": {
        "metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 5}}},
        "spec": {"type": "object"}}}));
    assert!(errors(
        &s,
        json!({"apiVersion": "a/v1", "kind": "K", "metadata": {"name": "ok", "labels": {"a": "b"}}})
    )
    .is_empty());
    assert_eq!(
        errors(&s, json!({"metadata": {"name": "toolong"}})),
        vec!["metadata.name: Too long: may not be more than 5 bytes"]
    );
}

#[test]
fn embedded_resource_and_junctors() {
    let s = spec_schema(json!({
        "tmpl": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true},
        "port": {"type": "integer", "anyOf": [{"minimum": 1, "maximum": 10}, {"minimum": 100}]},
        "one": {"type": "integer", "oneOf": [{"minimum": 0}, {"maximum": 5}]},
        "neg": {"type": "string", "not": {"enum": ["forbidden"]}},
        "all": {"type": "string", "allOf": [{"minLength": 2}, {"maxLength": 3}]}
    }));
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({"spec": {"tmpl": {"apiVersion": "v1", "kind": "Pod", "spec": {}}, "port": 5,
                         "one": 10, "neg": "ok", "all": "abc"}}), vec![]),
        (json!({"spec": {"tmpl": {"spec": {}}}}),
         vec!["spec.tmpl.apiVersion: Required value: must not be empty", "spec.tmpl.kind: Required value: must not be empty"]),
        (json!({"spec": {"tmpl": {"apiVersion": "v1", "kind": "Not_A_Kind"}}}),
         vec![r#"spec.tmpl.kind: Invalid value: "Not_A_Kind": may have mixed case, but should otherwise match: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"#]),
        (json!({"spec": {"port": 50}}),
         vec![r#"spec.port: Invalid value: "": spec.port must validate at least one schema (anyOf)"#,
              "spec.port: Invalid value: 50: spec.port in body should be less than or equal to 10"]),
        (json!({"spec": {"one": 3}}),
         vec![r#"spec.one: Invalid value: "": spec.one must validate one and only one schema (oneOf). Found 2 valid alternatives"#]),
        (json!({"spec": {"neg": "forbidden"}}),
         vec![r#"spec.neg: Invalid value: "": spec.neg must not validate the schema (not)"#]),
        (json!({"spec": {"all": "abcd"}}),
         vec![r#"spec.all: Invalid value: "": spec.all must validate all the schemas (allOf)"#,
              "spec.all: Too long: may not be more than 3 bytes"]),
    ];
    for (obj, want) in cases {
        assert_eq!(errors(&s, obj.clone()), want, "{obj}");
    }
}
