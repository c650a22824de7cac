//! Pod spec defaulting and validation, shared by pods and every kind with a pod template
//! (upstream `SetDefaults_PodSpec`/`SetDefaults_Container` and `ValidatePodSpec`).

use std::fmt::{self, Display};
use std::sync::OnceLock;

use serde_json::{Map, Value};

use super::common::{
    arr, child, each_obj, lookup, lookup_token, non_negative, not_found, s, set_default,
};
use crate::meta::{dns1123_label_errors, qualified_name_errors};
use crate::strategy::FieldCause;

/// The path of a list item, `{parent}.{key}[{index}]`, rendered only when a cause is
/// reported: valid specs (nearly every request) then never `format!` a path per container,
/// port or mount.
struct Item<'a, P> {
    parent: P,
    key: &'a str,
    index: usize,
}

impl<P: Display> Display for Item<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}[{}]", self.parent, self.key, self.index)
    }
}

/// Defaults of a pod spec (pods and templates alike).
pub(crate) fn default_pod_spec(spec: &mut Map<String, Value>) {
    set_default(spec, "dnsPolicy", "ClusterFirst".into());
    set_default(spec, "restartPolicy", "Always".into());
    set_default(spec, "terminationGracePeriodSeconds", 30.into());
    set_default(spec, "securityContext", Value::Object(Map::new()));
    set_default(spec, "schedulerName", "default-scheduler".into());
    let host_network = spec.get("hostNetwork").and_then(Value::as_bool) == Some(true);
    for key in ["containers", "initContainers"] {
        each_obj(spec, key, |c| default_container(c, host_network));
    }
    each_obj(spec, "volumes", default_volume);
}

fn default_container(c: &mut Map<String, Value>, host_network: bool) {
    if c.get("imagePullPolicy")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        let image = c.get("image").and_then(Value::as_str).unwrap_or("");
        let policy = if image_tag(image) == "latest" {
            "Always"
        } else {
            "IfNotPresent"
        };
        c.insert("imagePullPolicy".into(), policy.into());
    }
    set_default(c, "terminationMessagePath", "/dev/termination-log".into());
    set_default(c, "terminationMessagePolicy", "File".into());
    set_default(c, "resources", Value::Object(Map::new()));
    each_obj(c, "ports", |p| {
        set_default(p, "protocol", "TCP".into());
        if host_network {
            if let Some(cp) = p.get("containerPort").cloned() {
                if p.get("hostPort").and_then(Value::as_i64).unwrap_or(0) == 0 {
                    p.insert("hostPort".into(), cp);
                }
            }
        }
    });
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).and_then(Value::as_object_mut) {
            set_default(p, "timeoutSeconds", 1.into());
            set_default(p, "periodSeconds", 10.into());
            set_default(p, "successThreshold", 1.into());
            set_default(p, "failureThreshold", 3.into());
            if let Some(h) = p.get_mut("httpGet").and_then(Value::as_object_mut) {
                set_default(h, "scheme", "HTTP".into());
            }
        }
    }
    each_obj(c, "env", |e| {
        if let Some(r) = e.get_mut("valueFrom").and_then(Value::as_object_mut) {
            if let Some(f) = r.get_mut("fieldRef").and_then(Value::as_object_mut) {
                set_default(f, "apiVersion", "v1".into());
            }
        }
    });
}

/// The tag of an image reference as upstream's `parsers.ParseImageName` sees it: `latest`
/// when there is neither tag nor digest, `""` for a digest-only reference.
fn image_tag(image: &str) -> &str {
    let (name, has_digest) = match image.split_once('@') {
        Some((n, _)) => (n, true),
        None => (image, false),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        Some((_, tag)) => tag,
        None if has_digest => "",
        None => "latest",
    }
}

const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];

fn default_volume(v: &mut Map<String, Value>) {
    if !VOLUME_SOURCES.iter().any(|k| v.contains_key(*k)) {
        v.insert("emptyDir".into(), Value::Object(Map::new()));
    }
    for key in ["configMap", "secret", "downwardAPI", "projected"] {
        if let Some(src) = v.get_mut(key).and_then(Value::as_object_mut) {
            set_default(src, "defaultMode", 420.into());
        }
    }
    if let Some(h) = v.get_mut("hostPath").and_then(Value::as_object_mut) {
        set_default(h, "type", "".into());
    }
}

/// Upstream's `qos.GetPodQOS`: Guaranteed when every container has cpu and memory limits
/// equal to its requests, BestEffort when none has any, else Burstable.
pub(crate) fn qos_class(spec: &Value) -> &'static str {
    let containers = arr(spec, "/containers")
        .iter()
        .chain(arr(spec, "/initContainers"));
    let mut any = false;
    let mut guaranteed = true;
    for c in containers {
        let requests = lookup(c, "/resources/requests").and_then(Value::as_object);
        let limits = lookup(c, "/resources/limits").and_then(Value::as_object);
        let relevant = |m: Option<&Map<String, Value>>| {
            m.map(|m| m.keys().any(|k| k == "cpu" || k == "memory"))
                .unwrap_or(false)
        };
        if relevant(requests) || relevant(limits) {
            any = true;
        }
        for r in ["cpu", "memory"] {
            let limit = limits.and_then(|l| l.get(r));
            // Requests default to limits, so an absent request equals the limit.
            let request = requests.and_then(|q| q.get(r)).or(limit);
            if limit.is_none() || parse_quantity(request) != parse_quantity(limit) {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// A quantity's value as a float, for comparisons only; `None` when it does not parse.
pub(crate) fn parse_quantity(v: Option<&Value>) -> Option<f64> {
    let v = v?;
    if let Some(n) = v.as_f64() {
        return Some(n);
    }
    let s = v.as_str()?;
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    if split == 0 {
        return None;
    }
    let (num, suffix) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse::<i32>().ok()?),
        _ => return None,
    };
    Some(n * mult)
}

/// Same as [`parse_quantity`] but also accepts bare numbers without a suffix.
fn quantity_value(v: &Value) -> Option<f64> {
    if let Some(s) = v.as_str() {
        if let Ok(n) = s.parse::<f64>() {
            return Some(n);
        }
    }
    parse_quantity(Some(v))
}

const QUANTITY_ERR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

fn validate_resources(res: &Value, path: impl Display, out: &mut Vec<FieldCause>) {
    for kind in ["limits", "requests"] {
        for (name, q) in res
            .get(kind)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let field = || format!("{path}.{kind}[{name}]");
            for m in qualified_name_errors(name) {
                out.push(FieldCause::invalid(field(), &Value::from(name.as_str()), m));
            }
            match quantity_value(q) {
                None => out.push(FieldCause::invalid(field(), q, QUANTITY_ERR)),
                Some(n) if n < 0.0 => out.push(FieldCause::invalid(
                    field(),
                    q,
                    "must be greater than or equal to 0",
                )),
                Some(_) => {}
            }
        }
    }
    // A request may not exceed its limit; a resource that cannot be overcommitted (extended
    // resources, huge pages) needs a limit, and its request must equal it.
    for (name, q) in res
        .get("requests")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let overcommit = overcommit_allowed(name);
        let Some(limit) = limit_of(res, name) else {
            if !overcommit {
                out.push(FieldCause {
                    reason: "FieldValueRequired",
                    field: format!("{path}.limits"),
                    message: "Required value: Limit must be set for non overcommitable resources"
                        .into(),
                });
            }
            continue;
        };
        if let (Some(req), Some(lim)) = (quantity_value(q), quantity_value(limit)) {
            let relation = if req != lim && !overcommit {
                "must be equal to"
            } else if req > lim {
                "must be less than or equal to"
            } else {
                continue;
            };
            out.push(FieldCause::invalid(
                format!("{path}.requests"),
                &Value::from(display_quantity(q)),
                format!("{relation} {name} limit of {}", display_quantity(limit)),
            ));
        }
    }
}

/// Upstream's `IsOvercommitAllowed`: native resources (no domain, or a `kubernetes.io/` one)
/// other than huge pages.
fn overcommit_allowed(name: &str) -> bool {
    let native = !name.contains('/') || name.contains("kubernetes.io/");
    native && !name.starts_with("hugepages-")
}

/// The limit of the resource `name`, looked up by its whole name as upstream does (an
/// extended resource such as `nvidia.com/gpu` holds a `/`).
fn limit_of<'a>(res: &'a Value, name: &str) -> Option<&'a Value> {
    res.get("limits")?.get(name)
}

fn display_quantity(v: &Value) -> String {
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

/// Upstream's `IsValidPortNum`.
pub(crate) fn port_num_errors(port: i64) -> Vec<String> {
    if (1..=65535).contains(&port) {
        Vec::new()
    } else {
        vec!["must be between 1 and 65535, inclusive".into()]
    }
}

/// Upstream's `IsValidPortName` (an IANA service name).
pub(crate) fn port_name_errors(name: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if name.len() > 15 {
        errs.push("must be no more than 15 characters".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if !name.chars().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".into());
    }
    if name.contains("--") {
        errs.push("must not contain consecutive hyphens".into());
    }
    if name.starts_with('-') || name.ends_with('-') {
        errs.push("must not begin or end with a hyphen".into());
    }
    errs
}

/// Protocol check shared by container, service and endpoint ports.
pub(crate) fn validate_protocol(port: &Value, path: impl Display, out: &mut Vec<FieldCause>) {
    match port.get("protocol").and_then(Value::as_str) {
        None | Some("") => out.push(FieldCause::required(format!("{path}.protocol"))),
        Some("TCP" | "UDP" | "SCTP") => {}
        Some(p) => out.push(FieldCause::not_supported(
            format!("{path}.protocol"),
            &Value::from(p),
            &["SCTP", "TCP", "UDP"],
        )),
    }
}

fn validate_containers(
    spec: &Value,
    key: &str,
    path: &str,
    volumes: &[&str],
    out: &mut Vec<FieldCause>,
) {
    let mut names: Vec<&str> = Vec::new();
    let containers = lookup_token(spec, key)
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    for (i, c) in containers.iter().enumerate() {
        let cp = Item {
            parent: path,
            key,
            index: i,
        };
        let name = s(c, "/name");
        if name.is_empty() {
            out.push(FieldCause::required(format!("{cp}.name")));
        } else {
            for m in dns1123_label_errors(name) {
                out.push(FieldCause::invalid(
                    format!("{cp}.name"),
                    &Value::from(name),
                    m,
                ));
            }
            if names.contains(&name) {
                out.push(FieldCause::duplicate(
                    format!("{cp}.name"),
                    &Value::from(name),
                ));
            }
            names.push(name);
        }
        if s(c, "/image").trim().is_empty() {
            out.push(FieldCause::required(format!("{cp}.image")));
        }
        match c.get("imagePullPolicy").and_then(Value::as_str) {
            None | Some("Always" | "IfNotPresent" | "Never") => {}
            Some(p) => out.push(FieldCause::not_supported(
                format!("{cp}.imagePullPolicy"),
                &Value::from(p),
                &["Always", "IfNotPresent", "Never"],
            )),
        }
        let mut port_names: Vec<&str> = Vec::new();
        for (j, p) in arr(c, "/ports").iter().enumerate() {
            let pp = Item {
                parent: &cp,
                key: "ports",
                index: j,
            };
            let pname = s(p, "/name");
            if !pname.is_empty() {
                for m in port_name_errors(pname) {
                    out.push(FieldCause::invalid(
                        format!("{pp}.name"),
                        &Value::from(pname),
                        m,
                    ));
                }
                if port_names.contains(&pname) {
                    out.push(FieldCause::duplicate(
                        format!("{pp}.name"),
                        &Value::from(pname),
                    ));
                }
                port_names.push(pname);
            }
            match p.get("containerPort").and_then(Value::as_i64).unwrap_or(0) {
                0 => out.push(FieldCause::required(format!("{pp}.containerPort"))),
                n => {
                    for m in port_num_errors(n) {
                        out.push(FieldCause::invalid(
                            format!("{pp}.containerPort"),
                            &Value::from(n),
                            m,
                        ));
                    }
                }
            }
            if let Some(h) = p
                .get("hostPort")
                .and_then(Value::as_i64)
                .filter(|h| *h != 0)
            {
                for m in port_num_errors(h) {
                    out.push(FieldCause::invalid(
                        format!("{pp}.hostPort"),
                        &Value::from(h),
                        m,
                    ));
                }
            }
            validate_protocol(p, &pp, out);
        }
        for (j, m) in arr(c, "/volumeMounts").iter().enumerate() {
            let mp = Item {
                parent: &cp,
                key: "volumeMounts",
                index: j,
            };
            let vname = s(m, "/name");
            if vname.is_empty() {
                out.push(FieldCause::required(format!("{mp}.name")));
            } else if !volumes.contains(&vname) {
                out.push(not_found(format!("{mp}.name"), &Value::from(vname)));
            }
            if s(m, "/mountPath").is_empty() {
                out.push(FieldCause::required(format!("{mp}.mountPath")));
            }
        }
        if let Some(res) = c.get("resources") {
            validate_resources(res, format_args!("{cp}.resources"), out);
        }
        for (j, e) in arr(c, "/env").iter().enumerate() {
            if s(e, "/name").is_empty() {
                out.push(FieldCause::required(format!("{cp}.env[{j}].name")));
            }
        }
        for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
            if let Some(p) = c.get(probe).filter(|p| !p.is_null()) {
                validate_probe(p, probe, format_args!("{cp}.{probe}"), out);
            }
        }
    }
}

const PROBE_HANDLERS: &[&str] = &["exec", "httpGet", "tcpSocket", "grpc"];

/// Upstream's probe rules: exactly one handler, non-negative timings, a valid port, and a
/// success threshold of 1 for liveness and startup probes.
fn validate_probe(p: &Value, kind: &str, path: impl Display, out: &mut Vec<FieldCause>) {
    let mut handlers = PROBE_HANDLERS
        .iter()
        .filter(|h| p.get(**h).is_some_and(|v| !v.is_null()));
    if handlers.next().is_none() {
        out.push(crate::meta::required_with(
            &path.to_string(),
            "must specify a handler type",
        ));
    }
    for h in handlers {
        out.push(FieldCause::forbidden(
            format!("{path}.{h}"),
            "may not specify more than 1 handler type",
        ));
    }
    for h in ["httpGet", "tcpSocket"] {
        match lookup_token(p, h).and_then(|handler| lookup_token(handler, "port")) {
            Some(Value::Number(n)) => {
                let n = n.as_i64().unwrap_or(0);
                for m in port_num_errors(n) {
                    out.push(FieldCause::invalid(
                        format!("{path}.{h}.port"),
                        &Value::from(n),
                        m,
                    ));
                }
            }
            Some(Value::String(name)) => {
                for m in port_name_errors(name) {
                    out.push(FieldCause::invalid(
                        format!("{path}.{h}.port"),
                        &Value::from(name.as_str()),
                        m,
                    ));
                }
            }
            _ => {}
        }
    }
    for f in [
        "/initialDelaySeconds",
        "/timeoutSeconds",
        "/periodSeconds",
        "/successThreshold",
        "/failureThreshold",
    ] {
        // The pointer doubles as the field's last segment: `/periodSeconds` → `.periodSeconds`.
        let name = f.trim_start_matches('/');
        non_negative(p, f, format_args!("{path}.{name}"), out);
    }
    if kind != "readinessProbe" {
        if let Some(n) = p.get("successThreshold").and_then(Value::as_i64) {
            if n != 1 {
                out.push(FieldCause::invalid(
                    format!("{path}.successThreshold"),
                    &Value::from(n),
                    "must be 1",
                ));
            }
        }
    }
}

/// Upstream's pod spec validation (the parts kubectl users run into), at `path`
/// (`spec` for pods, `spec.template.spec` for templates).
pub(crate) fn validate_pod_spec(spec: &Value, path: &str) -> Vec<FieldCause> {
    let mut out = Vec::new();
    let mut volumes: Vec<&str> = Vec::new();
    for (i, v) in arr(spec, "/volumes").iter().enumerate() {
        let name = s(v, "/name");
        let vp = Item {
            parent: path,
            key: "volumes",
            index: i,
        };
        if name.is_empty() {
            out.push(FieldCause::required(format!("{vp}.name")));
            continue;
        }
        for m in dns1123_label_errors(name) {
            out.push(FieldCause::invalid(
                format!("{vp}.name"),
                &Value::from(name),
                m,
            ));
        }
        if volumes.contains(&name) {
            out.push(FieldCause::duplicate(
                format!("{vp}.name"),
                &Value::from(name),
            ));
        }
        volumes.push(name);
        let mut sources = VOLUME_SOURCES
            .iter()
            .filter(|k| v.get(**k).is_some_and(|s| !s.is_null()));
        if sources.next().is_none() {
            out.push(crate::meta::required_with(
                &vp.to_string(),
                "must specify a volume type",
            ));
        }
        for k in sources {
            out.push(FieldCause::forbidden(
                format!("{vp}.{k}"),
                "may not specify more than 1 volume type",
            ));
        }
    }
    if arr(spec, "/containers").is_empty() {
        out.push(FieldCause::required(format!("{path}.containers")));
    }
    validate_containers(spec, "initContainers", path, &volumes, &mut out);
    validate_containers(spec, "containers", path, &volumes, &mut out);
    match spec.get("restartPolicy").and_then(Value::as_str) {
        None | Some("Always" | "OnFailure" | "Never") => {}
        Some(p) => out.push(FieldCause::not_supported(
            format!("{path}.restartPolicy"),
            &Value::from(p),
            &["Always", "OnFailure", "Never"],
        )),
    }
    match spec.get("dnsPolicy").and_then(Value::as_str) {
        None | Some("ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None") => {}
        Some(p) => out.push(FieldCause::not_supported(
            format!("{path}.dnsPolicy"),
            &Value::from(p),
            &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
        )),
    }
    if let Some(n) = spec.get("activeDeadlineSeconds").and_then(Value::as_i64) {
        if n <= 0 {
            out.push(FieldCause::invalid(
                format!("{path}.activeDeadlineSeconds"),
                &Value::from(n),
                "must be between 1 and 2147483647, inclusive",
            ));
        }
    }
    let node_name = s(spec, "/nodeName");
    if !node_name.is_empty() {
        for m in crate::meta::dns1123_subdomain_errors(node_name) {
            out.push(FieldCause::invalid(
                format!("{path}.nodeName"),
                &Value::from(node_name),
                m,
            ));
        }
    }
    out
}

/// Add the two NoExecute tolerations upstream's `DefaultTolerationSeconds` admission plugin
/// adds on pod create, unless the pod already tolerates those taints.
pub(crate) fn add_default_tolerations(spec: &mut Map<String, Value>) {
    for &(key, ref entry) in default_tolerations() {
        let tolerated = spec
            .get("tolerations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|t| {
                let tkey = t.get("key").and_then(Value::as_str).unwrap_or("");
                let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
                let op = t.get("operator").and_then(Value::as_str).unwrap_or("Equal");
                (tkey == key || (tkey.is_empty() && op == "Exists"))
                    && (effect.is_empty() || effect == "NoExecute")
            });
        if tolerated {
            continue;
        }
        match spec.get_mut("tolerations") {
            Some(Value::Array(list)) => list.push(entry.clone()),
            Some(Value::Null) | None => {
                spec.insert("tolerations".into(), Value::Array(vec![entry.clone()]));
            }
            Some(_) => {}
        }
    }
}

/// The taint keys `DefaultTolerationSeconds` covers, each with the toleration it adds. Built
/// once: cloning copies the maps with their stored hashes, where `json!` on every pod create
/// rebuilt and rehashed them.
fn default_tolerations() -> &'static [(&'static str, Value); 2] {
    static TOLERATIONS: OnceLock<[(&str, Value); 2]> = OnceLock::new();
    TOLERATIONS.get_or_init(|| {
        [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable",
        ]
        .map(|key| {
            let entry = serde_json::json!({
                "key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300
            });
            (key, entry)
        })
    })
}

/// Defaults of a pod template (`spec.template`) of a workload kind.
pub(crate) fn default_template(obj: &mut Value) {
    if let Some(spec) = obj.as_object_mut().and_then(|o| child(o, "spec")) {
        if let Some(t) = spec.get_mut("template").and_then(Value::as_object_mut) {
            if let Some(ps) = child(t, "spec") {
                default_pod_spec(ps);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn image_tags() {
        assert_eq!(image_tag("nginx"), "latest");
        assert_eq!(image_tag("nginx:1.25"), "1.25");
        assert_eq!(image_tag("localhost:5000/nginx"), "latest");
        assert_eq!(image_tag("localhost:5000/nginx:v1"), "v1");
        assert_eq!(image_tag("nginx@sha256:abc"), "");
    }

    #[test]
    fn qos_classes() {
        let be = json!({"containers": [{"name": "a", "resources": {}}]});
        assert_eq!(qos_class(&be), "BestEffort");
        let g = json!({"containers": [{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]});
        assert_eq!(qos_class(&g), "Guaranteed");
        let b = json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}]});
        assert_eq!(qos_class(&b), "Burstable");
        let b2 = json!({"containers": [{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}}]});
        assert_eq!(qos_class(&b2), "Burstable");
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity(Some(&json!("100m"))), Some(0.1));
        assert_eq!(parse_quantity(Some(&json!("1Ki"))), Some(1024.0));
        assert_eq!(quantity_value(&json!("2")), Some(2.0));
        assert_eq!(quantity_value(&json!("abc")), None);
        let mut out = Vec::new();
        validate_resources(
            &json!({"limits": {"cpu": "1"}, "requests": {"cpu": "2", "memory": "lots"}}),
            "r",
            &mut out,
        );
        let msgs: Vec<String> = out.iter().map(FieldCause::to_message).collect();
        assert_eq!(
            msgs[0],
            format!("r.requests[memory]: Invalid value: \"lots\": {QUANTITY_ERR}")
        );
        assert_eq!(
            msgs[1],
            "r.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1"
        );
        // Extended resources are looked up by their whole name.
        let mut out = Vec::new();
        validate_resources(
            &json!({"limits": {"example.com/gpu": "1"}, "requests": {"example.com/gpu": "2"}}),
            "r",
            &mut out,
        );
        assert_eq!(
            out.iter().map(FieldCause::to_message).collect::<Vec<_>>(),
            ["r.requests: Invalid value: \"2\": must be equal to example.com/gpu limit of 1"]
        );
        // ... which cannot be overcommitted: below the limit, or without one, is refused too.
        let mut out = Vec::new();
        validate_resources(
            &json!({"limits": {"example.com/gpu": "2", "hugepages-2Mi": "2Mi"},
                "requests": {"example.com/gpu": "1", "hugepages-2Mi": "2Mi", "example.com/fpga": "1",
                    "kubernetes.io/thing": "1", "cpu": "1"}}),
            "r",
            &mut out,
        );
        assert_eq!(
            out.iter().map(FieldCause::to_message).collect::<Vec<_>>(),
            [
                "r.requests: Invalid value: \"1\": must be equal to example.com/gpu limit of 2",
                "r.limits: Required value: Limit must be set for non overcommitable resources",
            ]
        );
    }

    #[test]
    fn port_names() {
        assert!(port_name_errors("http").is_empty());
        assert_eq!(
            port_name_errors("80"),
            vec!["must contain at least one letter (a-z)"]
        );
    }
}
