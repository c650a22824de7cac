//! The OpenAPI component schemas of one CRD version (what `/openapi/v3/apis/<group>/<version>`
//! publishes for it, and what `kubectl explain` reads), and their OpenAPI v2 form for
//! `/openapi/v2` (what kubectl's client-side validation reads).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{json, Map, Value};

const OBJECT_META_REF: &str =
    "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const LIST_META_REF: &str = "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
const API_VERSION_DESC: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const KIND_DESC: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
const METADATA_DESC: &str = "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const LIST_METADATA_DESC: &str = "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

/// The component name upstream uses: the group reversed, then version and kind
/// (`stable.example.com`, `v1`, `CronTab` → `com.example.stable.v1.CronTab`).
pub fn definition_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

/// The schema of the custom resource in `version`, as published: the CRD's schema with
/// `apiVersion`/`kind` described, `metadata` pointing at `ObjectMeta`, and
/// `x-kubernetes-group-version-kind`. `None` if the version does not exist.
pub fn openapi_v3_schema(crd: &CustomResourceDefinition, version: &str) -> Option<Value> {
    let v = crd.spec.versions.iter().find(|v| v.name == version)?;
    let mut schema = v
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or_else(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
    let obj = match schema.as_object_mut() {
        Some(o) => o,
        None => return Some(schema),
    };
    let props = obj
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(props) = props.as_object_mut() {
        props.insert(
            "apiVersion".into(),
            json!({"description": API_VERSION_DESC, "type": "string"}),
        );
        props.insert(
            "kind".into(),
            json!({"description": KIND_DESC, "type": "string"}),
        );
        props.insert(
            "metadata".into(),
            json!({"allOf": [{"$ref": OBJECT_META_REF}], "default": {}, "description": METADATA_DESC}),
        );
    }
    obj.insert(
        "x-kubernetes-group-version-kind".into(),
        json!([{"group": crd.spec.group, "kind": crd.spec.names.kind, "version": version}]),
    );
    Some(schema)
}

/// Both component schemas of a served version, keyed by [`definition_name`]: the kind and its
/// list (`<Kind>List`). Empty if the version does not exist.
pub fn components(crd: &CustomResourceDefinition, version: &str) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(item) = openapi_v3_schema(crd, version) else {
        return out;
    };
    let group = &crd.spec.group;
    let kind = &crd.spec.names.kind;
    let list_kind = crd
        .spec
        .names
        .list_kind
        .clone()
        .unwrap_or_else(|| format!("{kind}List"));
    let item_name = definition_name(group, version, kind);
    let list = json!({
        "description": format!("{list_kind} is a list of {kind}"),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"description": API_VERSION_DESC, "type": "string"},
            "items": {
                "description": format!("List of {}. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md", crd.spec.names.plural),
                "type": "array",
                "items": {"$ref": format!("#/components/schemas/{item_name}")}
            },
            "kind": {"description": KIND_DESC, "type": "string"},
            "metadata": {"allOf": [{"$ref": LIST_META_REF}], "default": {}, "description": LIST_METADATA_DESC}
        },
        "x-kubernetes-group-version-kind": [{"group": group, "kind": list_kind, "version": version}]
    });
    out.insert(definition_name(group, version, &list_kind), list);
    out.insert(item_name, item);
    out
}

/// The OpenAPI v2 form of a published v3 schema (from [`openapi_v3_schema`]), as upstream's
/// `ToStructuralOpenAPIV2` and the v2 builder make it: kubectl's v2 parser and validator know
/// nothing of `anyOf`/`oneOf`/`not`/`allOf`, `nullable`, preserved unknown fields, embedded
/// resources or int-or-string, so those nodes lose their type, properties and items (they
/// become "any value") rather than make kubectl reject valid objects. A root that preserves
/// unknown fields becomes a bare object: publishing `apiVersion`/`kind`/`metadata` properties
/// would make kubectl treat every other field as unknown. `$ref` wrappers (`metadata`) stay.
pub fn openapi_v2_schema(v3: &Value) -> Value {
    if v3.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        let mut root = Map::new();
        root.insert("type".into(), Value::from("object"));
        for key in ["description", "x-kubernetes-group-version-kind"] {
            if let Some(v) = v3.get(key) {
                root.insert(key.into(), v.clone());
            }
        }
        return Value::Object(root);
    }
    let mut out = v3.clone();
    strip_v2_unsupported(&mut out);
    out
}

fn strip_v2_unsupported(schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    for key in ["oneOf", "anyOf", "not"] {
        obj.remove(key);
    }
    // CRD schemas cannot hold `$ref`s; only the `metadata` wrapper this module adds can.
    let is_ref_wrapper = obj
        .get("allOf")
        .and_then(Value::as_array)
        .is_some_and(|all| all.iter().all(|s| s.get("$ref").is_some()));
    if !is_ref_wrapper {
        obj.remove("allOf");
    }
    let flag = |obj: &Map<String, Value>, key: &str| obj.get(key) == Some(&Value::Bool(true));
    let untyped = flag(obj, "nullable")
        || flag(obj, "x-kubernetes-preserve-unknown-fields")
        || flag(obj, "x-kubernetes-embedded-resource");
    obj.remove("nullable");
    if untyped {
        for key in ["type", "items", "properties", "additionalProperties"] {
            obj.remove(key);
        }
    }
    if flag(obj, "x-kubernetes-int-or-string") {
        obj.remove("type");
    }
    if let Some(props) = obj.get_mut("properties").and_then(Value::as_object_mut) {
        props.values_mut().for_each(strip_v2_unsupported);
    }
    for key in ["items", "additionalProperties"] {
        if let Some(sub) = obj.get_mut(key) {
            strip_v2_unsupported(sub);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> CustomResourceDefinition {
        serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "crontabs.stable.example.com"},
            "spec": {"group": "stable.example.com", "scope": "Namespaced",
                "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "listKind": "CronTabList"},
                "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                    "type": "object", "description": "A cron tab",
                    "properties": {"spec": {"type": "object", "properties": {"cronSpec": {"type": "string", "description": "when"}}}}
                }}}]}
        }))
        .expect("crd")
    }

    #[test]
    fn names_and_components() {
        assert_eq!(
            definition_name("stable.example.com", "v1", "CronTab"),
            "com.example.stable.v1.CronTab"
        );
        let comps = components(&crd(), "v1");
        let keys: Vec<&String> = comps.keys().collect();
        assert_eq!(
            keys,
            [
                "com.example.stable.v1.CronTabList",
                "com.example.stable.v1.CronTab"
            ]
        );
        let item = &comps["com.example.stable.v1.CronTab"];
        assert_eq!(item["description"], "A cron tab");
        assert_eq!(
            item["properties"]["spec"]["properties"]["cronSpec"]["description"],
            "when"
        );
        assert_eq!(
            item["properties"]["metadata"]["allOf"][0]["$ref"],
            OBJECT_META_REF
        );
        assert_eq!(
            item["x-kubernetes-group-version-kind"][0]["kind"],
            "CronTab"
        );
        let list = &comps["com.example.stable.v1.CronTabList"];
        assert_eq!(
            list["properties"]["items"]["items"]["$ref"],
            "#/components/schemas/com.example.stable.v1.CronTab"
        );
        assert!(components(&crd(), "v2").is_empty());
    }

    #[test]
    fn v2_schema_untypes_what_kubectl_cannot_validate() {
        let crd: CustomResourceDefinition = serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "things.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "things", "singular": "thing", "kind": "Thing"},
                "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": {"type": "object", "properties": {
                        "port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                                 "properties": {"a": {"type": "string"}}},
                        "maybe": {"type": "string", "nullable": true},
                        "tags": {"type": "array", "items": {"type": "string"}},
                    }}}
                }}}]}
        }))
        .expect("crd");
        let v2 = openapi_v2_schema(&openapi_v3_schema(&crd, "v1").expect("v1"));
        let spec = &v2["properties"]["spec"]["properties"];
        assert_eq!(spec["port"], json!({"x-kubernetes-int-or-string": true}));
        assert_eq!(
            spec["free"],
            json!({"x-kubernetes-preserve-unknown-fields": true})
        );
        assert_eq!(spec["maybe"], json!({}));
        assert_eq!(spec["tags"]["items"]["type"], "string");
        // The metadata $ref wrapper and the GVK survive.
        assert_eq!(
            v2["properties"]["metadata"]["allOf"][0]["$ref"],
            OBJECT_META_REF
        );
        assert_eq!(v2["x-kubernetes-group-version-kind"][0]["kind"], "Thing");

        let open = openapi_v2_schema(&json!({
            "type": "object", "x-kubernetes-preserve-unknown-fields": true,
            "properties": {"kind": {"type": "string"}},
            "x-kubernetes-group-version-kind": [{"group": "g", "version": "v", "kind": "K"}]
        }));
        assert_eq!(
            open,
            json!({"type": "object", "x-kubernetes-group-version-kind": [{"group": "g", "version": "v", "kind": "K"}]})
        );
    }
}
