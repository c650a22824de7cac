//! API discovery documents: aggregated (`apidiscovery.k8s.io/v2`) and legacy
//! (`APIVersions`, `APIGroupList`, `APIGroup`, `APIResourceList`), built from the resource table.
//!
//! Aggregated discovery is what kubectl 1.30+ prefers; kubectl 1.27-1.29 ask for the identical
//! `v2beta1` shape, so [`negotiate_aggregated`] answers either with the same JSON and the
//! matching Content-Type. Clients that ask for neither get the legacy documents.

use kubelite_api::resource::{ResourceInfo, Scope, Subresource};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// Content-Type of aggregated discovery responses, exactly as kubectl expects.
pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Content-Type of aggregated discovery for clients (kubectl 1.27-1.29) that only ask for v2beta1.
pub const AGGREGATED_V2BETA1_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

/// Which aggregated discovery version a client accepts; both share one JSON shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggregatedVersion {
    V2,
    V2Beta1,
}

impl AggregatedVersion {
    /// The Content-Type to answer with.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::V2 => AGGREGATED_CONTENT_TYPE,
            Self::V2Beta1 => AGGREGATED_V2BETA1_CONTENT_TYPE,
        }
    }

    /// The `apiVersion` of the APIGroupDiscoveryList.
    pub fn api_version(self) -> &'static str {
        match self {
            Self::V2 => "apidiscovery.k8s.io/v2",
            Self::V2Beta1 => "apidiscovery.k8s.io/v2beta1",
        }
    }

    /// Rewrite a document built by [`aggregated_core`]/[`aggregated_apis`] (v2) for this version.
    pub fn apply(self, mut doc: Value) -> Value {
        if let Some(obj) = doc.as_object_mut() {
            obj.insert("apiVersion".into(), Value::from(self.api_version()));
        }
        doc
    }
}

/// The aggregated discovery version an Accept header asks for: v2 if listed anywhere, else
/// v2beta1, else None (serve legacy discovery).
pub fn negotiate_aggregated(accept: &str) -> Option<AggregatedVersion> {
    let mut found = None;
    for media in accept.split(',') {
        let mut parts = media.split(';').map(str::trim);
        let essence = parts.next().unwrap_or_default();
        if !essence.eq_ignore_ascii_case("application/json") {
            continue;
        }
        let (mut g, mut v, mut as_) = ("", "", "");
        for p in parts {
            if let Some((k, val)) = p.split_once('=') {
                match k.trim() {
                    "g" => g = val.trim(),
                    "v" => v = val.trim(),
                    "as" => as_ = val.trim(),
                    _ => {}
                }
            }
        }
        if g != "apidiscovery.k8s.io" || as_ != "APIGroupDiscoveryList" {
            continue;
        }
        match v {
            "v2" => return Some(AggregatedVersion::V2),
            "v2beta1" => found = Some(AggregatedVersion::V2Beta1),
            _ => {}
        }
    }
    found
}

/// Whether an Accept header asks for aggregated discovery (apidiscovery.k8s.io v2 or v2beta1).
pub fn wants_aggregated(accept: &str) -> bool {
    negotiate_aggregated(accept).is_some()
}

/// `/api` aggregated: an APIGroupDiscoveryList with the core group (`metadata.name: ""`).
pub fn aggregated_core(resources: &[ResourceInfo]) -> Value {
    let core: Vec<&ResourceInfo> = resources.iter().filter(|r| r.group.is_empty()).collect();
    let items: Vec<Value> = if core.is_empty() {
        Vec::new()
    } else {
        vec![group_discovery("", &core)]
    };
    discovery_list(items)
}

/// `/apis` aggregated: an APIGroupDiscoveryList with every named group.
pub fn aggregated_apis(resources: &[ResourceInfo]) -> Value {
    let items = named_groups(resources)
        .into_iter()
        .map(|(group, members)| group_discovery(group, &members))
        .collect();
    discovery_list(items)
}

fn discovery_list(items: Vec<Value>) -> Value {
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

/// Named groups in first-appearance order, each with its resources.
fn named_groups(resources: &[ResourceInfo]) -> Vec<(&'static str, Vec<&ResourceInfo>)> {
    let mut groups: Vec<(&'static str, Vec<&ResourceInfo>)> = Vec::new();
    for r in resources.iter().filter(|r| !r.group.is_empty()) {
        match groups.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, members)) => members.push(r),
            None => groups.push((r.group, vec![r])),
        }
    }
    groups
}

/// Versions of one group's resources in first-appearance order; the first is preferred.
fn versions_of(members: &[&ResourceInfo]) -> Vec<&'static str> {
    let mut versions: Vec<&'static str> = Vec::new();
    for r in members {
        if !versions.contains(&r.version) {
            versions.push(r.version);
        }
    }
    versions
}

fn group_discovery(group: &str, members: &[&ResourceInfo]) -> Value {
    let versions: Vec<Value> = versions_of(members)
        .into_iter()
        .map(|v| {
            let resources: Vec<Value> = members
                .iter()
                .filter(|r| r.version == v)
                .map(|r| resource_discovery(r))
                .collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
}

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Namespaced => "Namespaced",
        Scope::Cluster => "Cluster",
    }
}

/// The kind a subresource answers with. Streaming subresources carry no kind in the table, but
/// upstream still advertises one (its options type, or the parent for `log`/`finalize`), and
/// kubectl drops subresources without a `responseKind`, so the same kinds are reported here.
pub fn subresource_kind(r: &ResourceInfo, sub: &Subresource) -> (String, String, String) {
    if let Some((g, v, k)) = sub.kind {
        return (g.to_string(), v.to_string(), k.to_string());
    }
    let kind = match (r.kind, sub.name) {
        ("Pod", "exec") => "PodExecOptions",
        ("Pod", "attach") => "PodAttachOptions",
        ("Pod", "portforward") => "PodPortForwardOptions",
        ("Pod", "proxy") => "PodProxyOptions",
        ("Service", "proxy") => "ServiceProxyOptions",
        ("Node", "proxy") => "NodeProxyOptions",
        _ => r.kind,
    };
    (r.group.to_string(), r.version.to_string(), kind.to_string())
}

fn resource_discovery(r: &ResourceInfo) -> Value {
    let mut obj = Map::new();
    obj.insert("resource".into(), Value::from(r.plural));
    obj.insert(
        "responseKind".into(),
        json!({"group": r.group, "version": r.version, "kind": r.kind}),
    );
    obj.insert("scope".into(), Value::from(scope_name(r.scope)));
    obj.insert("singularResource".into(), Value::from(r.singular));
    obj.insert("verbs".into(), json!(r.verbs));
    if !r.short_names.is_empty() {
        obj.insert("shortNames".into(), json!(r.short_names));
    }
    if !r.categories.is_empty() {
        obj.insert("categories".into(), json!(r.categories));
    }
    if !r.subresources.is_empty() {
        let subs: Vec<Value> = r
            .subresources
            .iter()
            .map(|s| {
                let (g, v, k) = subresource_kind(r, s);
                json!({
                    "subresource": s.name,
                    "responseKind": {"group": g, "version": v, "kind": k},
                    "verbs": s.verbs,
                })
            })
            .collect();
        obj.insert("subresources".into(), Value::Array(subs));
    }
    Value::Object(obj)
}

/// `/api` legacy: APIVersions.
pub fn legacy_api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    })
}

fn group_entry(group: &str, members: &[&ResourceInfo]) -> Map<String, Value> {
    let versions: Vec<Value> = versions_of(members)
        .into_iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    let preferred = versions.first().cloned().unwrap_or(Value::Null);
    let mut obj = Map::new();
    obj.insert("name".into(), Value::from(group));
    obj.insert("versions".into(), Value::Array(versions));
    obj.insert("preferredVersion".into(), preferred);
    obj
}

/// `/apis` legacy: APIGroupList.
pub fn legacy_group_list(resources: &[ResourceInfo]) -> Value {
    let groups: Vec<Value> = named_groups(resources)
        .into_iter()
        .map(|(g, members)| Value::Object(group_entry(g, &members)))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>` legacy: APIGroup, or None for an unknown group.
pub fn legacy_group(resources: &[ResourceInfo], group: &str) -> Option<Value> {
    let (g, members) = named_groups(resources)
        .into_iter()
        .find(|(g, _)| *g == group)?;
    let mut obj = Map::new();
    obj.insert("kind".into(), Value::from("APIGroup"));
    obj.insert("apiVersion".into(), Value::from("v1"));
    obj.extend(group_entry(g, &members));
    Some(Value::Object(obj))
}

/// A stable short hash of a resource's storage version, as upstream computes it: base64 of the
/// first 8 bytes of sha256(`group/version/kind`).
pub fn storage_version_hash(r: &ResourceInfo) -> String {
    use base64::Engine;
    let digest = Sha256::digest(format!("{}/{}/{}", r.group, r.version, r.kind).as_bytes());
    base64::engine::general_purpose::STANDARD.encode(&digest[..8])
}

/// `/api/v1` or `/apis/<group>/<version>`: APIResourceList, or None when not served.
pub fn legacy_resource_list(
    resources: &[ResourceInfo],
    group: &str,
    version: &str,
) -> Option<Value> {
    let members: Vec<&ResourceInfo> = resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if members.is_empty() {
        return None;
    }
    let mut list = Vec::new();
    for r in &members {
        let mut obj = Map::new();
        obj.insert("name".into(), Value::from(r.plural));
        obj.insert("singularName".into(), Value::from(r.singular));
        obj.insert("namespaced".into(), Value::from(r.namespaced()));
        obj.insert("kind".into(), Value::from(r.kind));
        obj.insert("verbs".into(), json!(r.verbs));
        if !r.short_names.is_empty() {
            obj.insert("shortNames".into(), json!(r.short_names));
        }
        if !r.categories.is_empty() {
            obj.insert("categories".into(), json!(r.categories));
        }
        obj.insert(
            "storageVersionHash".into(),
            Value::from(storage_version_hash(r)),
        );
        list.push(Value::Object(obj));
        for s in &r.subresources {
            let (g, v, k) = subresource_kind(r, s);
            let mut sub = Map::new();
            sub.insert(
                "name".into(),
                Value::from(format!("{}/{}", r.plural, s.name)),
            );
            // Upstream leaves singularName empty on subresources.
            sub.insert("singularName".into(), Value::from(""));
            sub.insert("namespaced".into(), Value::from(r.namespaced()));
            // group/version appear only when they differ from the list's (e.g. Scale).
            if g != r.group || v != r.version {
                sub.insert("group".into(), Value::from(g));
                sub.insert("version".into(), Value::from(v));
            }
            sub.insert("kind".into(), Value::from(k));
            sub.insert("verbs".into(), json!(s.verbs));
            list.push(Value::Object(sub));
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": list,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubelite_api::resource::builtin_resources;

    fn find<'a>(list: &'a Value, name: &str) -> &'a Value {
        list.as_array()
            .expect("array")
            .iter()
            .find(|r| r["resource"] == name || r["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    }

    #[test]
    fn negotiates_v2_then_v2beta1() {
        let kubectl_132 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(
            negotiate_aggregated(kubectl_132),
            Some(AggregatedVersion::V2)
        );
        let kubectl_127 =
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(
            negotiate_aggregated(kubectl_127),
            Some(AggregatedVersion::V2Beta1)
        );
        assert!(wants_aggregated(
            "application/json; g=apidiscovery.k8s.io; v=v2; as=APIGroupDiscoveryList"
        ));
        assert!(!wants_aggregated("application/json"));
        assert!(!wants_aggregated(
            "application/json;as=Table;v=v1;g=meta.k8s.io"
        ));
        let doc = AggregatedVersion::V2Beta1.apply(aggregated_core(builtin_resources()));
        assert_eq!(doc["apiVersion"], "apidiscovery.k8s.io/v2beta1");
    }

    #[test]
    fn aggregated_core_shape() {
        let doc = aggregated_core(builtin_resources());
        assert_eq!(doc["kind"], "APIGroupDiscoveryList");
        assert_eq!(doc["apiVersion"], "apidiscovery.k8s.io/v2");
        let items = doc["items"].as_array().expect("items");
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["metadata"]["name"], "");
        let v = &items[0]["versions"][0];
        assert_eq!(v["version"], "v1");
        assert_eq!(v["freshness"], "Current");
        let pods = find(&v["resources"], "pods");
        assert_eq!(
            pods["responseKind"],
            json!({"group": "", "version": "v1", "kind": "Pod"})
        );
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(pods["singularResource"], "pod");
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        let log = find_sub(pods, "log");
        assert_eq!(
            log["responseKind"],
            json!({"group": "", "version": "v1", "kind": "Pod"})
        );
        assert_eq!(log["verbs"], json!(["get"]));
        let exec = find_sub(pods, "exec");
        assert_eq!(exec["responseKind"]["kind"], "PodExecOptions");
        let eviction = find_sub(pods, "eviction");
        assert_eq!(
            eviction["responseKind"],
            json!({"group": "policy", "version": "v1", "kind": "Eviction"})
        );
        let ns = find(&v["resources"], "namespaces");
        assert_eq!(ns["scope"], "Cluster");
        assert!(ns.get("categories").is_none());
        // Every resource and subresource carries a responseKind and non-empty verbs.
        for r in v["resources"].as_array().expect("resources") {
            assert!(r["responseKind"]["kind"].is_string());
            assert!(!r["verbs"].as_array().expect("verbs").is_empty());
            for s in r["subresources"].as_array().into_iter().flatten() {
                assert!(s["responseKind"]["kind"].is_string(), "{s}");
            }
        }
    }

    fn find_sub<'a>(r: &'a Value, name: &str) -> &'a Value {
        r["subresources"]
            .as_array()
            .expect("subresources")
            .iter()
            .find(|s| s["subresource"] == name)
            .unwrap_or_else(|| panic!("subresource {name} missing"))
    }

    #[test]
    fn aggregated_apis_shape() {
        let doc = aggregated_apis(builtin_resources());
        let items = doc["items"].as_array().expect("items");
        assert!(items.iter().all(|i| i["metadata"]["name"] != ""));
        let apps = items
            .iter()
            .find(|i| i["metadata"]["name"] == "apps")
            .expect("apps");
        let v = &apps["versions"][0];
        assert_eq!(v["version"], "v1");
        let deploy = find(&v["resources"], "deployments");
        assert_eq!(
            deploy["responseKind"],
            json!({"group": "apps", "version": "v1", "kind": "Deployment"})
        );
        assert_eq!(deploy["shortNames"], json!(["deploy"]));
        assert_eq!(deploy["categories"], json!(["all"]));
        let scale = find_sub(deploy, "scale");
        assert_eq!(
            scale["responseKind"],
            json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
        );
        assert_eq!(
            find_sub(deploy, "status")["responseKind"]["kind"],
            "Deployment"
        );
        assert!(items.iter().any(|i| i["metadata"]["name"] == "batch"));
    }

    #[test]
    fn legacy_documents() {
        let versions = legacy_api_versions("10.0.0.1:6443");
        assert_eq!(versions["versions"], json!(["v1"]));
        assert_eq!(
            versions["serverAddressByClientCIDRs"][0]["serverAddress"],
            "10.0.0.1:6443"
        );

        let groups = legacy_group_list(builtin_resources());
        let apps = groups["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .find(|g| g["name"] == "apps")
            .expect("apps");
        assert_eq!(
            apps["preferredVersion"],
            json!({"groupVersion": "apps/v1", "version": "v1"})
        );
        assert!(groups["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .all(|g| g["name"] != ""));

        let group = legacy_group(builtin_resources(), "batch").expect("batch");
        assert_eq!(group["kind"], "APIGroup");
        assert_eq!(group["versions"][0]["groupVersion"], "batch/v1");
        assert!(legacy_group(builtin_resources(), "nope.example.com").is_none());

        let list = legacy_resource_list(builtin_resources(), "apps", "v1").expect("apps/v1");
        assert_eq!(list["groupVersion"], "apps/v1");
        let deploy = find(&list["resources"], "deployments");
        assert_eq!(deploy["namespaced"], true);
        assert_eq!(deploy["kind"], "Deployment");
        assert_eq!(deploy["shortNames"], json!(["deploy"]));
        assert!(deploy["storageVersionHash"]
            .as_str()
            .is_some_and(|h| !h.is_empty()));
        let scale = find(&list["resources"], "deployments/scale");
        assert_eq!(scale["group"], "autoscaling");
        assert_eq!(scale["version"], "v1");
        assert_eq!(scale["kind"], "Scale");
        let status = find(&list["resources"], "deployments/status");
        assert_eq!(status["kind"], "Deployment");
        assert!(status.get("group").is_none());

        let core = legacy_resource_list(builtin_resources(), "", "v1").expect("v1");
        assert_eq!(core["groupVersion"], "v1");
        assert_eq!(find(&core["resources"], "pods/log")["kind"], "Pod");
        assert_eq!(
            find(&core["resources"], "pods/exec")["verbs"],
            json!(["create", "get"])
        );
        assert!(legacy_resource_list(builtin_resources(), "apps", "v2").is_none());
    }

    #[test]
    fn storage_version_hash_is_stable() {
        let r = &builtin_resources()[0];
        assert_eq!(storage_version_hash(r), storage_version_hash(r));
        assert_eq!(storage_version_hash(r).len(), 12);
    }
}
