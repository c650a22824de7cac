//! Tests for the `/openapi/v2` document: its JSON shape, its protobuf round trip, and that
//! every schema passes the rules kubectl's parser (kube-openapi `pkg/util/proto`) applies.

use std::collections::HashSet;

use super::gnostic::{self, Document, Schema};
use super::*;
use kubelite_api::resource::builtin_resources;

/// kube-openapi's `ParseSchema` rules: a `$ref` names a definition and has no type or
/// properties; one type at most; arrays have exactly one item schema; primitives are known.
fn kubectl_parses(s: &Schema, names: &HashSet<&str>, path: &str) -> Result<(), String> {
    if !s.xref.is_empty() {
        let name = s
            .xref
            .strip_prefix("#/definitions/")
            .ok_or(format!("{path}: non-definition ref {}", s.xref))?;
        if !names.contains(name) {
            return Err(format!("{path}: unknown model {name}"));
        }
        if s.properties
            .as_ref()
            .is_some_and(|p| !p.additional_properties.is_empty())
        {
            return Err(format!("{path}: ref with properties"));
        }
        if s.r#type.as_ref().is_some_and(|t| !t.value.is_empty()) {
            return Err(format!("{path}: ref with a type"));
        }
        return Ok(());
    }
    let types = s
        .r#type
        .as_ref()
        .map(|t| t.value.clone())
        .unwrap_or_default();
    let props = |s: &Schema| -> Result<(), String> {
        for p in s.properties.iter().flat_map(|p| &p.additional_properties) {
            let sub = p
                .value
                .as_ref()
                .ok_or(format!("{path}.{}: empty", p.name))?;
            kubectl_parses(sub, names, &format!("{path}.{}", p.name))?;
        }
        Ok(())
    };
    match types.as_slice() {
        [] => props(s),
        [t] if t == "object" => {
            props(s)?;
            if let Some(ap) = &s.additional_properties {
                if let Some(gnostic::AdditionalPropertiesOneof::Schema(sub)) = &ap.oneof {
                    kubectl_parses(sub, names, &format!("{path}.*"))?;
                }
            }
            Ok(())
        }
        [t] if t == "array" => {
            let items = s.items.as_ref().map(|i| i.schema.as_slice()).unwrap_or(&[]);
            match items {
                [one] => kubectl_parses(one, names, &format!("{path}[]")),
                _ => Err(format!("{path}: array without exactly one item schema")),
            }
        }
        [t] if ["string", "number", "integer", "boolean"].contains(&t.as_str()) => Ok(()),
        other => Err(format!("{path}: unsupported type {other:?}")),
    }
}

fn gvks(s: &Schema) -> Vec<serde_json::Value> {
    s.vendor_extension
        .iter()
        .filter(|e| e.name == "x-kubernetes-group-version-kind")
        .filter_map(|e| e.value.as_ref())
        .filter_map(|v| serde_yaml_ng::from_str::<Vec<Value>>(&v.yaml).ok())
        .flatten()
        .collect()
}

fn decoded(resources: &[ResourceInfo], overrides: &Map<String, Value>) -> Document {
    let built = V2Document::build(resources, overrides);
    assert_eq!(built.protobuf_etag, etag(&built.protobuf));
    Document::decode(built.protobuf.as_ref()).expect("protobuf decodes")
}

fn definition<'a>(doc: &'a Document, name: &str) -> &'a Schema {
    doc.definitions
        .as_ref()
        .expect("definitions")
        .additional_properties
        .iter()
        .find(|d| d.name == name)
        .and_then(|d| d.value.as_ref())
        .unwrap_or_else(|| panic!("{name} missing"))
}

fn property<'a>(s: &'a Schema, name: &str) -> &'a Schema {
    s.properties
        .iter()
        .flat_map(|p| &p.additional_properties)
        .find(|p| p.name == name)
        .and_then(|p| p.value.as_ref())
        .unwrap_or_else(|| panic!("property {name} missing"))
}

#[test]
fn json_is_swagger_with_definitions_and_operations() {
    let doc = v2_json(builtin_resources());
    assert_eq!(doc["swagger"], "2.0");
    let text = doc.to_string();
    assert!(!text.contains("#/components/"), "v3 references left");
    let defs = doc["definitions"].as_object().expect("definitions");
    for piece in text.split("\"$ref\":\"#/definitions/").skip(1) {
        let name = piece.split('"').next().expect("name");
        assert!(defs.contains_key(name), "dangling ref {name}");
    }
    // Every served kind has a GVK-tagged definition.
    for r in builtin_resources() {
        let def = &defs[&schema_name(r.group, r.version, r.kind)];
        assert!(
            def["x-kubernetes-group-version-kind"]
                .as_array()
                .expect("gvk list")
                .contains(&json!({"group": r.group, "kind": r.kind, "version": r.version})),
            "{}",
            r.kind
        );
    }
    let pod = &defs["io.k8s.api.core.v1.Pod"];
    assert_eq!(
        pod["properties"]["spec"]["$ref"],
        "#/definitions/io.k8s.api.core.v1.PodSpec"
    );
    assert!(pod["properties"]["spec"]["description"]
        .as_str()
        .is_some_and(|d| d.starts_with("Specification of the desired behavior of the pod")));
    assert!(pod["properties"]["spec"].get("allOf").is_none());
    let containers = &defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(
        containers["items"]["$ref"],
        "#/definitions/io.k8s.api.core.v1.Container"
    );
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(
        defs["io.k8s.api.core.v1.PodSpec"]["required"],
        json!(["containers"])
    );

    let item = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
    let patch = &item["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        json!({"group": "apps", "kind": "Deployment", "version": "v1"})
    );
    let consumes = patch["consumes"].as_array().expect("consumes");
    assert!(consumes.contains(&json!("application/merge-patch+json")));
    assert!(!consumes.contains(&json!("application/strategic-merge-patch+json")));
    let params = patch["parameters"].as_array().expect("params");
    assert!(params
        .iter()
        .any(|p| p["name"] == "fieldValidation" && p["in"] == "query" && p["type"] == "string"));
    assert!(params.iter().any(|p| p["in"] == "body"
        && p["schema"]["$ref"] == "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"));
    assert_eq!(
        patch["responses"]["200"]["schema"]["$ref"],
        "#/definitions/io.k8s.api.apps.v1.Deployment"
    );
    assert!(item["parameters"]
        .as_array()
        .expect("path params")
        .iter()
        .any(|p| p["name"] == "name" && p["in"] == "path" && p["type"] == "string"));
    assert!(!V2_PROTOBUF_CONTENT_TYPE.contains('@'));
}

#[test]
fn protobuf_round_trips_and_kubectl_can_parse_every_definition() {
    let doc = decoded(builtin_resources(), &Map::new());
    // Round trip through the prost types: decode(encode(x)) == x, and the same as converting
    // the JSON document directly.
    assert_eq!(
        Document::decode(doc.encode_to_vec().as_slice()).expect("decodes"),
        doc
    );
    assert_eq!(doc, gnostic::document(&v2_json(builtin_resources())));
    assert_eq!(doc.swagger, "2.0");
    every_definition_parses(&doc);

    let pod = definition(&doc, "io.k8s.api.core.v1.Pod");
    assert_eq!(
        gvks(pod),
        [json!({"group": "", "kind": "Pod", "version": "v1"})]
    );
    let spec = property(pod, "spec");
    assert_eq!(spec.xref, "#/definitions/io.k8s.api.core.v1.PodSpec");
    assert!(spec.description.contains("desired behavior of the pod"));
    let containers = property(definition(&doc, "io.k8s.api.core.v1.PodSpec"), "containers");
    assert_eq!(containers.r#type.as_ref().expect("type").value, ["array"]);
    let merge_key = containers
        .vendor_extension
        .iter()
        .find(|e| e.name == "x-kubernetes-patch-merge-key")
        .and_then(|e| e.value.as_ref())
        .expect("merge key");
    assert_eq!(merge_key.yaml.trim(), "name");
    // An object with properties keeps them; a map without keeps its value schema.
    let cm = definition(&doc, "io.k8s.api.core.v1.ConfigMap");
    let data = property(cm, "data");
    assert!(data.properties.is_none());
    assert!(matches!(
        data.additional_properties
            .as_ref()
            .and_then(|a| a.oneof.as_ref()),
        Some(gnostic::AdditionalPropertiesOneof::Schema(_))
    ));

    // The PATCH operation carries what kubectl's v2 query-parameter check reads.
    let paths = &doc.paths.as_ref().expect("paths").path;
    let item = paths
        .iter()
        .find(|p| p.name == "/api/v1/namespaces/{namespace}/pods/{name}")
        .and_then(|p| p.value.as_ref())
        .expect("pod path");
    let patch = item.patch.as_ref().expect("patch");
    let gvk = patch
        .vendor_extension
        .iter()
        .find(|e| e.name == "x-kubernetes-group-version-kind")
        .and_then(|e| e.value.as_ref())
        .expect("gvk");
    let gvk: std::collections::BTreeMap<String, String> =
        serde_yaml_ng::from_str(&gvk.yaml).expect("gvk is a string map");
    assert_eq!(gvk["kind"], "Pod");
    let has_field_validation = patch.parameters.iter().any(|p| {
        matches!(&p.oneof, Some(gnostic::ParametersItemOneof::Parameter(gnostic::Parameter {
            oneof: Some(gnostic::ParameterOneof::NonBodyParameter(gnostic::NonBodyParameter {
                oneof: Some(gnostic::NonBodyParameterOneof::QueryParameterSubSchema(q)),
            })),
        })) if q.name == "fieldValidation")
    });
    assert!(has_field_validation);
}

#[test]
fn custom_resources_get_definitions_from_their_schema() {
    let mut resources = builtin_resources().to_vec();
    let names = kubelite_api::resource::CustomNames {
        group: "example.com".into(),
        version: "v1".into(),
        kind: "Gadget".into(),
        plural: "gadgets".into(),
        singular: "gadget".into(),
        scope: kubelite_api::resource::Scope::Namespaced,
        short_names: vec![],
        categories: vec![],
        status: true,
        scale: false,
    };
    resources.push(names.leak());
    let mut overrides = Map::new();
    overrides.insert(
        "com.example.v1.Gadget".into(),
        json!({
            "type": "object", "description": "A gadget.",
            "properties": {
                "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                "metadata": {"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}], "description": "meta"},
                "spec": {"type": "object", "properties": {
                    "size": {"type": "integer", "description": "How big."},
                    "port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                }},
            },
            "x-kubernetes-group-version-kind": [{"group": "example.com", "kind": "Gadget", "version": "v1"}],
        }),
    );
    let json_doc = v2_json_with(&resources, &overrides);
    let gadget = &json_doc["definitions"]["com.example.v1.Gadget"];
    assert_eq!(gadget["description"], "A gadget.");
    assert_eq!(
        gadget["properties"]["metadata"],
        json!({"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "description": "meta"})
    );
    assert_eq!(
        gadget["properties"]["spec"]["properties"]["port"],
        json!({"x-kubernetes-int-or-string": true})
    );
    let list = &json_doc["definitions"]["com.example.v1.GadgetList"];
    assert_eq!(
        list["properties"]["items"]["items"]["$ref"],
        "#/definitions/com.example.v1.Gadget"
    );
    assert!(
        json_doc["paths"]["/apis/example.com/v1/namespaces/{namespace}/gadgets/{name}/status"]
            ["patch"]
            .is_object()
    );

    let doc = decoded(&resources, &overrides);
    every_definition_parses(&doc);
    let gadget = definition(&doc, "com.example.v1.Gadget");
    assert_eq!(
        gvks(gadget),
        [json!({"group": "example.com", "kind": "Gadget", "version": "v1"})]
    );
    let size = property(property(gadget, "spec"), "size");
    assert_eq!(size.description, "How big.");
}

#[test]
fn v2_document_is_cached_with_the_v3_set() {
    let set = V3Documents::build(builtin_resources());
    assert!(set.v2_built().is_none());
    let first = set.v2();
    assert!(Arc::ptr_eq(&first, &set.v2()));
    assert!(set.v2_built().is_some());
    assert_eq!(first.json_etag, etag(&first.json));
    let json: Value = serde_json::from_slice(&first.json).expect("json");
    assert_eq!(json, v2_json(builtin_resources()));
    // Deterministic: the same table gives the same bytes (the ETag is a content hash).
    let again = V2Document::build(builtin_resources(), &Map::new());
    assert_eq!(again.protobuf, first.protobuf);
    assert_eq!(again.json_etag, first.json_etag);
}

/// Every definition of `doc` passes kubectl's v2 parsing rules (one failure fails the whole
/// document in kubectl).
fn every_definition_parses(doc: &Document) {
    let defs = &doc
        .definitions
        .as_ref()
        .expect("definitions")
        .additional_properties;
    let names: HashSet<&str> = defs.iter().map(|d| d.name.as_str()).collect();
    for d in defs {
        kubectl_parses(d.value.as_ref().expect("schema"), &names, &d.name).expect("parses");
    }
}
