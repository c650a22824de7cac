//! The small core kinds: Namespace, Node, ConfigMap, Secret, ServiceAccount, and the
//! coordination Lease. None of them tracks `metadata.generation` upstream.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::common::{
    age_cell, age_col, arr, boolean, child, col, field, name_cell, name_col, path_mut, s,
    set_default,
};
use super::endpoints::meta_field;
use crate::meta::{qualified_name_errors, too_long};
use crate::resource::ResourceInfo;
use crate::strategy::{replace_status, Column, FieldCause, Strategy};

/// Upstream's cap on the summed size of a ConfigMap's or Secret's data (1 MiB).
pub const MAX_DATA_SIZE: usize = 1024 * 1024;

/// Namespaces (core/v1).
pub struct NamespaceStrategy(pub(crate) &'static ResourceInfo);

impl Strategy for NamespaceStrategy {
    fn info(&self) -> &ResourceInfo {
        self.0
    }

    /// Active; `spec.finalizers` come from defaulting.
    fn reset_status(&self, obj: &mut Value) {
        replace_status(obj, json!({"phase": "Active"}));
    }

    fn has_generation(&self) -> bool {
        false
    }

    fn default(&self, obj: &mut Value) {
        let name = s(obj, "/metadata/name").to_string();
        let Some(root) = obj.as_object_mut() else {
            return;
        };
        if let Some(spec) = child(root, "spec") {
            set_default(spec, "finalizers", json!(["kubernetes"]));
        }
        if let Some(status) = child(root, "status") {
            set_default(status, "phase", "Active".into());
        }
        // Upstream always (re)sets this label to the namespace's name.
        if !name.is_empty() {
            if let Some(labels) = child(root, "metadata").and_then(|m| child(m, "labels")) {
                labels.insert("kubernetes.io/metadata.name".into(), name.into());
            }
        }
    }

    fn validate_create(&self, obj: &Value) -> Vec<FieldCause> {
        let mut out = Vec::new();
        for (i, f) in arr(obj, "/spec/finalizers").iter().enumerate() {
            let path = format!("spec.finalizers[{i}]");
            let name = f.as_str().unwrap_or("");
            for m in qualified_name_errors(name) {
                out.push(FieldCause::invalid(&path, f, m));
            }
            let standard = matches!(name, "kubernetes" | "orphan" | "foregroundDeletion");
            if !name.contains('/') && !standard {
                out.push(FieldCause::invalid(
                    &path,
                    f,
                    "name is neither a standard finalizer name nor is it fully qualified",
                ));
            }
        }
        out
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            name_col(),
            col("Status", "string", "The status of the namespace", 0),
            age_col(),
        ]
    }

    fn row(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        vec![
            name_cell(obj),
            Value::from(s(obj, "/status/phase")),
            age_cell(obj, now),
        ]
    }

    fn field_value(&self, obj: &Value, name: &str) -> Option<String> {
        match name {
            "metadata.name" => field(obj, "/metadata/name"),
            "status.phase" => field(obj, "/status/phase"),
            _ => None,
        }
    }
}

/// Nodes (core/v1).
pub struct NodeStrategy(pub(crate) &'static ResourceInfo);

const NODE_ROLE_PREFIX: &str = "node-role.kubernetes.io/";
const NODE_ROLE_LABEL: &str = "kubernetes.io/role";

impl Strategy for NodeStrategy {
    fn info(&self) -> &ResourceInfo {
        self.0
    }

    /// Kubelets register their node with its status (capacity, addresses), so it is kept.
    fn reset_status(&self, _obj: &mut Value) {}

    fn has_generation(&self) -> bool {
        false
    }

    fn default(&self, obj: &mut Value) {
        // SetDefaults_NodeStatus: allocatable defaults to capacity.
        let capacity = obj.pointer("/status/capacity").cloned();
        if let (Some(cap), Some(status)) = (capacity, path_mut(obj, &["status"])) {
            set_default(status, "allocatable", cap);
        }
    }

    fn validate_create(&self, obj: &Value) -> Vec<FieldCause> {
        let mut out = Vec::new();
        for (i, t) in arr(obj, "/spec/taints").iter().enumerate() {
            let key = s(t, "/key");
            for m in qualified_name_errors(key) {
                out.push(FieldCause::invalid(
                    format!("spec.taints[{i}].key"),
                    &Value::from(key),
                    m,
                ));
            }
            match s(t, "/effect") {
                "" => out.push(FieldCause::required(format!("spec.taints[{i}].effect"))),
                "NoSchedule" | "PreferNoSchedule" | "NoExecute" => {}
                e => out.push(FieldCause::not_supported(
                    format!("spec.taints[{i}].effect"),
                    &Value::from(e),
                    &["NoSchedule", "PreferNoSchedule", "NoExecute"],
                )),
            }
        }
        out
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldCause> {
        let mut out = self.validate_create(new);
        let old_cidr = s(old, "/spec/podCIDR");
        if !old_cidr.is_empty() && s(new, "/spec/podCIDR") != old_cidr {
            out.push(FieldCause::forbidden(
                "spec.podCIDRs",
                "node updates may not change podCIDR except from \"\" to valid",
            ));
        }
        out
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            name_col(),
            col("Status", "string", "The status of the node", 0),
            col("Roles", "string", "The roles of the node", 0),
            age_col(),
            col("Version", "string", "Kubelet Version reported by the node.", 0),
            col("Internal-IP", "string", "List of addresses reachable to the node. Queried from cloud provider, if available.", 1),
            col("External-IP", "string", "List of addresses reachable to the node. Queried from cloud provider, if available.", 1),
            col("OS-Image", "string", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).", 1),
            col("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).", 1),
            col("Container-Runtime", "string", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).", 1),
        ]
    }

    fn row(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let mut status: Vec<&str> = Vec::new();
        if let Some(c) = arr(obj, "/status/conditions")
            .iter()
            .find(|c| s(c, "/type") == "Ready")
        {
            status.push(if s(c, "/status") == "True" {
                "Ready"
            } else {
                "NotReady"
            });
        }
        if status.is_empty() {
            status.push("Unknown");
        }
        if boolean(obj, "/spec/unschedulable") {
            status.push("SchedulingDisabled");
        }
        let address = |t: &str| {
            arr(obj, "/status/addresses")
                .iter()
                .find(|a| s(a, "/type") == t)
                .map(|a| s(a, "/address").to_string())
                .unwrap_or_else(|| "<none>".into())
        };
        let info = |k: &str| match s(obj, &format!("/status/nodeInfo/{k}")) {
            "" => "<unknown>".to_string(),
            v => v.to_string(),
        };
        vec![
            name_cell(obj),
            Value::from(status.join(",")),
            Value::from(node_roles(obj)),
            age_cell(obj, now),
            Value::from(s(obj, "/status/nodeInfo/kubeletVersion")),
            Value::from(address("InternalIP")),
            Value::from(address("ExternalIP")),
            Value::from(info("osImage")),
            Value::from(info("kernelVersion")),
            Value::from(info("containerRuntimeVersion")),
        ]
    }

    fn field_value(&self, obj: &Value, name: &str) -> Option<String> {
        match name {
            "metadata.name" => field(obj, "/metadata/name"),
            "spec.unschedulable" => Some(boolean(obj, "/spec/unschedulable").to_string()),
            _ => None,
        }
    }
}

/// Upstream's `findNodeRoles`: `node-role.kubernetes.io/<role>` keys and the
/// `kubernetes.io/role` value, sorted and de-duplicated; `<none>` when there are none.
fn node_roles(obj: &Value) -> String {
    let mut roles: Vec<String> = Vec::new();
    for (k, v) in obj
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if let Some(role) = k.strip_prefix(NODE_ROLE_PREFIX) {
            if !role.is_empty() {
                roles.push(role.to_string());
            }
        } else if k == NODE_ROLE_LABEL {
            if let Some(v) = v.as_str().filter(|v| !v.is_empty()) {
                roles.push(v.to_string());
            }
        }
    }
    roles.sort();
    roles.dedup();
    if roles.is_empty() {
        "<none>".into()
    } else {
        roles.join(",")
    }
}

/// Upstream's `IsConfigMapKey`.
pub(crate) fn config_key_errors(key: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if key.len() > 253 {
        errs.push("must be no more than 253 characters".into());
    }
    let charset_ok = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !charset_ok {
        errs.push("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')".into());
    }
    if errs.is_empty() {
        if key == "." {
            errs.push("must not be '.'".into());
        } else if key == ".." {
            errs.push("must not be '..'".into());
        } else if key.starts_with("..") {
            errs.push("must not start with '..'".into());
        }
    }
    errs
}

/// Key rules and the size cap shared by ConfigMap `data`/`binaryData` and Secret `data`.
fn validate_data_maps(obj: &Value, maps: &[&str], size_field: &str, out: &mut Vec<FieldCause>) {
    let mut total = 0usize;
    for (idx, map) in maps.iter().enumerate() {
        for (k, v) in obj
            .get(*map)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            for m in config_key_errors(k) {
                out.push(FieldCause::invalid(
                    format!("{map}[{k}]"),
                    &Value::from(k.as_str()),
                    m,
                ));
            }
            if let Some(other) = maps
                .iter()
                .take(idx)
                .find(|o| obj.pointer(&format!("/{o}/{k}")).is_some())
            {
                out.push(FieldCause::invalid(
                    format!("{map}[{k}]"),
                    &Value::from(k.as_str()),
                    format!("duplicate of key present in {other}"),
                ));
            }
            total += v.as_str().map(str::len).unwrap_or(0);
        }
    }
    if total > MAX_DATA_SIZE {
        out.push(too_long(size_field, MAX_DATA_SIZE));
    }
}

/// Upstream's rule for objects with `immutable: true`: data and the flag itself stay put.
fn validate_immutable_data(new: &Value, old: &Value, maps: &[&str], out: &mut Vec<FieldCause>) {
    if !boolean(old, "/immutable") {
        return;
    }
    if new.get("immutable") != old.get("immutable") {
        out.push(FieldCause::forbidden(
            "immutable",
            "field is immutable when `immutable` is set",
        ));
    }
    for m in maps {
        if new.get(*m) != old.get(*m) {
            out.push(FieldCause::forbidden(
                *m,
                "field is immutable when `immutable` is set",
            ));
        }
    }
}

/// ConfigMaps (core/v1).
pub struct ConfigMapStrategy(pub(crate) &'static ResourceInfo);

impl Strategy for ConfigMapStrategy {
    fn info(&self) -> &ResourceInfo {
        self.0
    }

    fn has_generation(&self) -> bool {
        false
    }

    fn spec_changed(&self, _new: &Value, _old: &Value) -> bool {
        false
    }

    fn validate_create(&self, obj: &Value) -> Vec<FieldCause> {
        let mut out = Vec::new();
        validate_data_maps(obj, &["data", "binaryData"], "", &mut out);
        out
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldCause> {
        let mut out = self.validate_create(new);
        validate_immutable_data(new, old, &["data", "binaryData"], &mut out);
        out
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            name_col(),
            col("Data", "string", "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.", 0),
            age_col(),
        ]
    }

    fn row(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let len = |k: &str| {
            obj.get(k)
                .and_then(Value::as_object)
                .map(Map::len)
                .unwrap_or(0)
        };
        vec![
            name_cell(obj),
            Value::from(len("data") + len("binaryData")),
            age_cell(obj, now),
        ]
    }

    fn field_value(&self, obj: &Value, name: &str) -> Option<String> {
        meta_field(obj, name)
    }
}

/// Secrets (core/v1).
pub struct SecretStrategy(pub(crate) &'static ResourceInfo);

impl Strategy for SecretStrategy {
    fn info(&self) -> &ResourceInfo {
        self.0
    }

    fn has_generation(&self) -> bool {
        false
    }

    fn spec_changed(&self, _new: &Value, _old: &Value) -> bool {
        false
    }

    /// Type Opaque, and `stringData` merged into `data` (base64) then dropped, as upstream's
    /// conversion does: `stringData` is write-only.
    fn default(&self, obj: &mut Value) {
        let Some(root) = obj.as_object_mut() else {
            return;
        };
        set_default(root, "type", "Opaque".into());
        let Some(Value::Object(string_data)) = root.remove("stringData") else {
            return;
        };
        if let Some(data) = child(root, "data") {
            for (k, v) in string_data {
                let text = v.as_str().unwrap_or("");
                data.insert(k, Value::from(base64_encode(text.as_bytes())));
            }
        }
    }

    fn validate_create(&self, obj: &Value) -> Vec<FieldCause> {
        let mut out = Vec::new();
        validate_data_maps(obj, &["data"], "data", &mut out);
        let has = |k: &str| obj.pointer("/data").and_then(|d| d.get(k)).is_some();
        let mut require = |keys: &[&str]| {
            for k in keys {
                if !has(k) {
                    out.push(FieldCause::required(format!("data[{k}]")));
                }
            }
        };
        match s(obj, "/type") {
            "kubernetes.io/tls" => require(&["tls.crt", "tls.key"]),
            "kubernetes.io/dockerconfigjson" => require(&[".dockerconfigjson"]),
            "kubernetes.io/dockercfg" => require(&[".dockercfg"]),
            "kubernetes.io/ssh-auth" => require(&["ssh-privatekey"]),
            "kubernetes.io/service-account-token"
                if s(
                    obj,
                    "/metadata/annotations/kubernetes.io~1service-account.name",
                )
                .is_empty() =>
            {
                out.push(FieldCause::required(
                    "metadata.annotations[kubernetes.io/service-account.name]",
                ));
            }
            "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
                out.push(FieldCause::required("data[username]"));
                out.push(FieldCause::required("data[password]"));
            }
            _ => {}
        }
        out
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldCause> {
        let mut out = self.validate_create(new);
        super::common::immutable(new, old, "/type", "type", &mut out);
        validate_immutable_data(new, old, &["data"], &mut out);
        out
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            name_col(),
            col("Type", "string", "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types", 0),
            col("Data", "string", "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4", 0),
            age_col(),
        ]
    }

    fn row(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let len = obj
            .get("data")
            .and_then(Value::as_object)
            .map(Map::len)
            .unwrap_or(0);
        vec![
            name_cell(obj),
            Value::from(s(obj, "/type")),
            Value::from(len),
            age_cell(obj, now),
        ]
    }

    fn field_value(&self, obj: &Value, name: &str) -> Option<String> {
        match name {
            "type" => field(obj, "/type"),
            _ => meta_field(obj, name),
        }
    }
}

/// Standard base64 with padding, for `stringData`.
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// ServiceAccounts (core/v1).
pub struct ServiceAccountStrategy(pub(crate) &'static ResourceInfo);

impl Strategy for ServiceAccountStrategy {
    fn info(&self) -> &ResourceInfo {
        self.0
    }

    fn has_generation(&self) -> bool {
        false
    }

    fn spec_changed(&self, _new: &Value, _old: &Value) -> bool {
        false
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            name_col(),
            col("Secrets", "string", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.", 0),
            age_col(),
        ]
    }

    fn row(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        vec![
            name_cell(obj),
            Value::from(arr(obj, "/secrets").len()),
            age_cell(obj, now),
        ]
    }

    fn field_value(&self, obj: &Value, name: &str) -> Option<String> {
        meta_field(obj, name)
    }
}

/// Leases (coordination.k8s.io/v1).
pub struct LeaseStrategy(pub(crate) &'static ResourceInfo);

impl Strategy for LeaseStrategy {
    fn info(&self) -> &ResourceInfo {
        self.0
    }

    fn has_generation(&self) -> bool {
        false
    }

    fn validate_create(&self, obj: &Value) -> Vec<FieldCause> {
        let mut out = Vec::new();
        if let Some(n) = obj
            .pointer("/spec/leaseDurationSeconds")
            .and_then(Value::as_i64)
        {
            if n <= 0 {
                out.push(FieldCause::invalid(
                    "spec.leaseDurationSeconds",
                    &Value::from(n),
                    "must be greater than 0",
                ));
            }
        }
        super::common::non_negative(
            obj,
            "/spec/leaseTransitions",
            "spec.leaseTransitions",
            &mut out,
        );
        out
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            name_col(),
            col("Holder", "string", "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader Election is used, the holder identity must be equal to the elected LeaseCandidate.metadata.name field.", 0),
            age_col(),
        ]
    }

    fn row(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        vec![
            name_cell(obj),
            Value::from(s(obj, "/spec/holderIdentity")),
            age_cell(obj, now),
        ]
    }

    fn field_value(&self, obj: &Value, name: &str) -> Option<String> {
        meta_field(obj, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::strategy_for;
    use crate::meta::parse_time;
    use std::sync::Arc;

    fn strategy(group: &str, plural: &str) -> Arc<dyn Strategy> {
        strategy_for(group, "v1", plural).expect("strategy")
    }

    fn now() -> DateTime<Utc> {
        parse_time("2024-05-01T12:00:00Z").expect("now")
    }

    fn messages(causes: &[FieldCause]) -> Vec<String> {
        causes.iter().map(FieldCause::to_message).collect()
    }

    #[test]
    fn base64() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"hello world"), "aGVsbG8gd29ybGQ=");
    }

    #[test]
    fn config_keys() {
        assert!(config_key_errors("app.properties").is_empty());
        assert_eq!(config_key_errors(".."), vec!["must not be '..'"]);
        assert_eq!(config_key_errors("a b").len(), 1);
    }

    #[test]
    fn namespaces() {
        let ns = strategy("", "namespaces");
        let mut obj =
            json!({"metadata": {"name": "team-a", "creationTimestamp": "2024-05-01T09:00:00Z"}});
        ns.default(&mut obj);
        assert_eq!(obj["spec"], json!({"finalizers": ["kubernetes"]}));
        assert_eq!(obj["status"], json!({"phase": "Active"}));
        assert_eq!(
            obj["metadata"]["labels"],
            json!({"kubernetes.io/metadata.name": "team-a"})
        );
        assert_eq!(ns.validate_create(&obj), vec![]);
        assert_eq!(
            ns.row(&obj, now()),
            vec![json!("team-a"), json!("Active"), json!("3h")]
        );
        assert_eq!(
            ns.field_value(&obj, "status.phase").as_deref(),
            Some("Active")
        );
        assert!(!ns.has_generation());
        let bad = json!({"spec": {"finalizers": ["custom"]}});
        assert_eq!(
            messages(&ns.validate_create(&bad)),
            vec!["spec.finalizers[0]: Invalid value: \"custom\": name is neither a standard finalizer name nor is it fully qualified"]
        );
    }

    #[test]
    fn nodes() {
        let nodes = strategy("", "nodes");
        let obj = json!({"metadata": {"name": "n1", "creationTimestamp": "2024-04-21T12:00:00Z",
                "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "master"}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}],
                "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian", "kernelVersion": "6.1", "containerRuntimeVersion": "containerd://1.7"}}});
        assert_eq!(
            nodes.row(&obj, now()),
            vec![
                json!("n1"),
                json!("Ready,SchedulingDisabled"),
                json!("control-plane,master"),
                json!("10d"),
                json!("v1.33.0"),
                json!("192.168.1.10"),
                json!("<none>"),
                json!("Debian"),
                json!("6.1"),
                json!("containerd://1.7")
            ]
        );
        let bare = json!({"metadata": {"name": "n2"}});
        let row = nodes.row(&bare, now());
        assert_eq!(
            (row[1].clone(), row[2].clone(), row[7].clone()),
            (json!("Unknown"), json!("<none>"), json!("<unknown>"))
        );
        let not_ready = json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        assert_eq!(nodes.row(&not_ready, now())[1], "NotReady");
        assert_eq!(
            nodes.field_value(&obj, "spec.unschedulable").as_deref(),
            Some("true")
        );
        let mut cap = json!({"status": {"capacity": {"cpu": "2"}}});
        nodes.default(&mut cap);
        assert_eq!(cap["status"]["allocatable"], json!({"cpu": "2"}));
        let tainted = json!({"spec": {"taints": [{"key": "k", "effect": "Sometimes"}]}});
        assert_eq!(
            messages(&nodes.validate_create(&tainted)),
            vec!["spec.taints[0].effect: Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\""]
        );
    }

    #[test]
    fn configmaps() {
        let cm = strategy("", "configmaps");
        let obj = json!({"metadata": {"name": "cfg"}, "data": {"a": "1", "b.txt": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(cm.validate_create(&obj), vec![]);
        assert_eq!(cm.row(&obj, now())[1], 3);
        let bad = json!({"data": {"bad key": "x", "c": "y"}, "binaryData": {"c": "AA=="}});
        assert_eq!(
            messages(&cm.validate_create(&bad)),
            vec![
                "data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                "binaryData[c]: Invalid value: \"c\": duplicate of key present in data",
            ]
        );
        let big = json!({"data": {"a": "x".repeat(MAX_DATA_SIZE + 1)}});
        assert_eq!(cm.validate_create(&big)[0].reason, "FieldValueTooLong");
        let old = json!({"immutable": true, "data": {"a": "1"}});
        let new = json!({"immutable": true, "data": {"a": "2"}});
        assert_eq!(
            messages(&cm.validate_update(&new, &old)),
            vec!["data: Forbidden: field is immutable when `immutable` is set"]
        );
        assert!(!cm.has_generation());
    }

    #[test]
    fn secrets() {
        let sec = strategy("", "secrets");
        let mut obj =
            json!({"metadata": {"name": "s"}, "data": {"a": "eA=="}, "stringData": {"b": "hello"}});
        sec.default(&mut obj);
        assert_eq!(obj["type"], "Opaque");
        assert_eq!(obj["data"], json!({"a": "eA==", "b": "aGVsbG8="}));
        assert!(obj.get("stringData").is_none());
        assert_eq!(
            sec.row(&obj, now())[1..3].to_vec(),
            vec![json!("Opaque"), json!(2)]
        );
        assert_eq!(sec.field_value(&obj, "type").as_deref(), Some("Opaque"));
        let tls = json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}});
        assert_eq!(
            messages(&sec.validate_create(&tls)),
            vec!["data[tls.key]: Required value"]
        );
        let mut retyped = obj.clone();
        retyped["type"] = json!("kubernetes.io/basic-auth");
        retyped["data"]["username"] = json!("eA==");
        assert_eq!(
            messages(&sec.validate_update(&retyped, &obj)),
            vec!["type: Invalid value: \"kubernetes.io/basic-auth\": field is immutable"]
        );
    }

    #[test]
    fn service_accounts_and_leases() {
        let sa = strategy("", "serviceaccounts");
        let obj = json!({"metadata": {"name": "default"}, "secrets": [{"name": "x"}]});
        assert_eq!(sa.row(&obj, now())[1], 1);
        let lease = strategy("coordination.k8s.io", "leases");
        let obj = json!({"metadata": {"name": "kube-scheduler"}, "spec": {"holderIdentity": "node-1_abc", "leaseDurationSeconds": 0}});
        assert_eq!(lease.row(&obj, now())[1], "node-1_abc");
        assert_eq!(
            messages(&lease.validate_create(&obj)),
            vec!["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"]
        );
        assert!(!lease.has_generation() && !sa.has_generation());
    }
}
