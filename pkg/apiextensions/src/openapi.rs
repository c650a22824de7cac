//! The OpenAPI v3 component schemas of one CRD version (what `/openapi/v3/apis/<group>/<version>`
//! publishes for it, and what `kubectl explain` reads).

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
}
