//! Table-driven tests of CRD defaulting and create/update validation.

use super::*;
use serde_json::{json, Value};

/// A valid CRD as JSON (before defaulting), to be mutated by each case.
fn base() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "replicas": {"type": "integer", "default": 1},
                        "port": {"x-kubernetes-int-or-string": true,
                                 "anyOf": [{"type": "integer"}, {"type": "string"}]},
                        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                    }},
                    "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}}
                }}},
                "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                                                           "statusReplicasPath": ".status.replicas"}},
                "additionalPrinterColumns": [{"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}]
            }]
        }
    })
}

fn typed(mut v: Value) -> CustomResourceDefinition {
    default_crd(&mut v);
    serde_json::from_value(v).expect("crd json")
}

fn errs_of(v: Value) -> Vec<String> {
    let mut crd = typed(v);
    prepare_crd_for_create(&mut crd);
    validate_crd(&crd).iter().map(ToString::to_string).collect()
}

/// Sets (or inserts, when the parent is an object) the value at a JSON pointer.
fn set(mut v: Value, pointer: &str, val: Value) -> Value {
    if let Some(slot) = v.pointer_mut(pointer) {
        *slot = val;
        return v;
    }
    let (parent, key) = pointer.rsplit_once('/').expect("pointer");
    v.pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .expect("parent object")
        .insert(key.to_string(), val);
    v
}

#[test]
fn defaults_names_and_conversion() {
    let mut v = base();
    default_crd(&mut v);
    assert_eq!(v["spec"]["names"]["singular"], "widget");
    assert_eq!(v["spec"]["names"]["listKind"], "WidgetList");
    assert_eq!(v["spec"]["conversion"], json!({"strategy": "None"}));
    let mut kept = set(
        base(),
        "/spec/names",
        json!({"plural": "widgets", "kind": "Widget", "singular": "w", "listKind": "Ws"}),
    );
    default_crd(&mut kept);
    assert_eq!(kept["spec"]["names"]["singular"], "w");
    assert_eq!(kept["spec"]["names"]["listKind"], "Ws");
}

#[test]
fn prepare_sets_stored_versions() {
    let mut crd = typed(base());
    prepare_crd_for_create(&mut crd);
    let stored = crd.status.as_ref().and_then(|s| s.stored_versions.clone());
    assert_eq!(stored, Some(vec!["v1".to_string()]));
    assert_eq!(storage_version(&crd), Some("v1"));
}

#[test]
fn create_validation_table() {
    let no_schema_version = json!({"name": "v1", "served": true, "storage": true});
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (base(), vec![]),
        (set(base(), "/metadata/name", json!("gadgets.example.com")),
         vec![r#"metadata.name: Invalid value: "gadgets.example.com": must be spec.names.plural+"."+spec.group"#]),
        (set(set(base(), "/spec/group", json!("example")), "/metadata/name", json!("widgets.example")),
         vec![r#"spec.group: Invalid value: "example": should be a domain with at least one dot"#]),
        (set(base(), "/spec/scope", json!("Global")),
         vec![r#"spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced""#]),
        (set(base(), "/spec/versions/0/storage", json!(false)),
         vec!["spec.versions: Invalid value: must have exactly one version marked as storage version"]),
        (set(base(), "/spec/versions", json!([])),
         vec!["spec.versions: Required value: must have at least one version",
              "spec.versions: Invalid value: must have exactly one version marked as storage version"]),
        (set(base(), "/spec/versions/0", no_schema_version),
         vec!["spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required"]),
        (set(base(), "/spec/versions/0/name", json!("V1")),
         vec![r#"spec.versions[0].name: Invalid value: "V1": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"#]),
        (set(base(), "/spec/names", json!({"plural": "widgets", "singular": "widget", "kind": "Widget_X", "listKind": "WidgetList"})),
         vec![r#"spec.names.kind: Invalid value: "Widget_X": may have mixed case, but should otherwise match: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"#]),
        (set(base(), "/spec/names", json!({"plural": "widgets", "kind": "Widget", "listKind": "Widget"})),
         vec![r#"spec.names.listKind: Invalid value: "Widget": kind and listKind may not be the same"#]),
        (set(base(), "/spec/conversion", json!({"strategy": "Webhook"})),
         vec![r#"spec.conversion.strategy: Unsupported value: "Webhook": supported values: "None""#]),
        (set(base(), "/spec/preserveUnknownFields", json!(true)),
         vec!["spec.preserveUnknownFields: Invalid value: true: cannot set to true, set x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead"]),
        (set(base(), "/spec/versions/0/subresources/scale/specReplicasPath", json!(".status.replicas")),
         vec![r#"spec.versions[0].subresources.scale.specReplicasPath: Invalid value: ".status.replicas": should be a json path under .spec"#]),
        (set(base(), "/spec/versions/0/additionalPrinterColumns/0/type", json!("float")),
         vec![r#"spec.versions[0].additionalPrinterColumns[0].type: Invalid value: "float": must be one of boolean,date,integer,number,string"#]),
        (set(base(), "/spec/versions/0/additionalPrinterColumns/0/jsonPath", json!("spec.replicas")),
         vec![r#"spec.versions[0].additionalPrinterColumns[0].jsonPath: Invalid value: "spec.replicas": must be a simple json path starting with ."#]),
    ];
    for (v, want) in cases {
        assert_eq!(errs_of(v.clone()), want, "{}", v["spec"]);
    }
}

#[test]
fn structural_schema_table() {
    let p = "spec.versions[0].schema.openAPIV3Schema";
    let with_schema = |s: Value| set(base(), "/spec/versions/0/schema/openAPIV3Schema", s);
    let cases: Vec<(Value, Vec<String>)> = vec![
        (json!({"type": "string"}),
         vec![format!(r#"{p}.type: Invalid value: "string": must be object at the root"#)]),
        (json!({"type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}}}}),
         vec![format!("{p}.properties[spec].type: Required value: must not be empty for specified object fields")]),
        (json!({"type": "object", "properties": {"spec": {"type": "object",
            "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}}}}),
         vec![format!("{p}.properties[spec].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive")]),
        (json!({"type": "object", "properties": {"l": {"type": "array"}}}),
         vec![format!("{p}.properties[l].items: Required value: must be specified")]),
        (json!({"type": "object", "properties": {"l": {"type": "array", "items": {"properties": {}}}}}),
         vec![format!("{p}.properties[l].items.type: Required value: must not be empty for specified array items")]),
        (json!({"type": "object", "properties": {"s": {"type": "string", "pattern": "(["}}}),
         vec![format!("{p}.properties[s].pattern: Invalid value: \"([\": must be a valid regular expression, but isn't: {}",
                      regex::Regex::new(&String::from("([")).expect_err("bad").to_string())]),
        (json!({"type": "object", "properties": {"s": {"type": "string", "anyOf": [{"type": "string"}]}}}),
         vec![format!("{p}.properties[s].anyOf[0].type: Forbidden: must be empty to be structural")]),
        (json!({"type": "object", "properties": {"s": {"type": "integer", "default": "x"}}}),
         vec![format!(r#"{p}.properties[s].default: Invalid value: "string": {p}.properties[s].default in body must be of type integer: "string""#)]),
        (json!({"type": "object", "properties": {"s": {"type": "object", "x-kubernetes-preserve-unknown-fields": false}}}),
         vec![format!("{p}.properties[s].x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or undefined")]),
        (json!({"type": "object", "properties": {"s": {"type": "string", "x-kubernetes-int-or-string": true}}}),
         vec![format!(r#"{p}.properties[s].type: Invalid value: "string": must be empty if x-kubernetes-int-or-string is true"#)]),
        (json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {"labels": {"type": "object"}}}}}),
         vec![format!("{p}.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified")]),
        (json!({"type": "object", "properties": {"l": {"type": "array", "x-kubernetes-list-type": "map", "items": {"type": "object"}}}}),
         vec![format!("{p}.properties[l].x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type is map")]),
        (json!({"type": "object", "properties": {"e": {"type": "object", "x-kubernetes-embedded-resource": true}}}),
         vec![format!("{p}.properties[e].properties: Required value: must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields")]),
        (json!({"type": "object", "properties": {"u": {"type": "array", "uniqueItems": true, "items": {"type": "string"}}}}),
         vec![format!("{p}.properties[u].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic")]),
        (json!({"type": "object", "properties": {"m": {"type": "object", "additionalProperties": false}}}),
         vec![format!("{p}.properties[m].additionalProperties: Forbidden: additionalProperties cannot be set to false")]),
        (json!({"type": "object", "properties": {"m": {"$ref": "#/x", "type": "object"}}}),
         vec![format!("{p}.properties[m].$ref: Forbidden: $ref is not supported")]),
        (json!({"type": "object", "properties": {"s": {"type": "string", "x-kubernetes-validations": [{"rule": "self =="}]}}}),
         vec![format!("{p}.properties[s].x-kubernetes-validations[0].rule: Invalid value: \"self ==\": compilation failed: {}",
                      crate::cel::compile_error("self ==").expect("bad rule"))]),
        (json!({"type": "object", "properties": {"s": {"type": "string", "x-kubernetes-validations": [
            {"rule": "self != ''", "messageExpression": "'bad: ' +"},
            {"rule": "self != ''", "messageExpression": "  "},
            {"rule": "self != ''", "messageExpression": "'s is ' + self"}]}}}),
         vec![format!("{p}.properties[s].x-kubernetes-validations[0].messageExpression: Invalid value: \"'bad: ' +\": messageExpression compilation failed: {}",
                      crate::cel::compile_error("'bad: ' +").expect("bad expression")),
              format!("{p}.properties[s].x-kubernetes-validations[1].messageExpression: Required value: messageExpression must be non-empty if specified")]),
        (json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}), vec![]),
        (json!({"type": "object", "properties": {"metadata": {"type": "object",
            "properties": {"name": {"type": "string", "maxLength": 10}}}}}), vec![]),
    ];
    for (schema, want) in cases {
        assert_eq!(errs_of(with_schema(schema.clone())), want, "{schema}");
    }
}

#[test]
fn update_validation_table() {
    let established = |mut v: Value| {
        v["status"] = json!({"storedVersions": ["v1"],
            "conditions": [{"type": "Established", "status": "True"}]});
        v
    };
    let cases: Vec<(Value, Value, Vec<&str>)> = vec![
        (established(base()), base(), vec![]),
        (
            established(base()),
            set(
                set(base(), "/spec/group", json!("other.io")),
                "/metadata/name",
                json!("widgets.other.io"),
            ),
            vec![r#"spec.group: Invalid value: "other.io": field is immutable"#],
        ),
        (
            established(base()),
            set(base(), "/spec/scope", json!("Cluster")),
            vec![r#"spec.scope: Invalid value: "Cluster": field is immutable"#],
        ),
        (base(), set(base(), "/spec/scope", json!("Cluster")), vec![]),
        (
            established(base()),
            set(base(), "/spec/versions/0/name", json!("v2")),
            vec![r#"status.storedVersions[0]: Invalid value: "v1": must appear in spec.versions"#],
        ),
    ];
    for (old, new, want) in cases {
        let mut old_crd = typed(old);
        if old_crd.status.is_none() {
            prepare_crd_for_create(&mut old_crd);
        }
        let mut new_crd = typed(new);
        prepare_crd_for_update(&old_crd, &mut new_crd);
        let got: Vec<String> = validate_crd_update(&old_crd, &new_crd)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, want, "{}", new_crd.spec.group);
    }
}
