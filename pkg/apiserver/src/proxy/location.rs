//! Where a pod's streaming request goes: the container it names (upstream's defaulting and
//! messages) and the kubelet address of the pod's node. Pure functions over the stored JSON.

use serde_json::Value;

use crate::error::{ApiError, Failure, Result};

/// The kubelet port when the node does not report one (upstream's `--kubelet-port` default).
pub const DEFAULT_KUBELET_PORT: u16 = 10250;

/// Address types tried in order. Upstream's default order starts with `Hostname`; kubelite
/// nodes register an InternalIP that is always reachable from the apiserver, while their
/// hostname may not resolve, so InternalIP comes first (what kubeadm clusters configure with
/// `--kubelet-preferred-address-types`).
const PREFERRED_ADDRESS_TYPES: [&str; 5] = [
    "InternalIP",
    "Hostname",
    "InternalDNS",
    "ExternalIP",
    "ExternalDNS",
];

fn names(pod: &Value, field: &str) -> Vec<String> {
    pod.pointer(&format!("/spec/{field}"))
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The container a log/exec/attach request addresses: the named one if the pod has it (regular,
/// init or ephemeral), else the only regular container; 400 with upstream's messages otherwise.
pub fn container(pod: &Value, pod_name: &str, requested: Option<&str>) -> Result<String> {
    let regular = names(pod, "containers");
    match requested.filter(|c| !c.is_empty()) {
        Some(c) => {
            let known = regular
                .iter()
                .chain(names(pod, "initContainers").iter())
                .chain(names(pod, "ephemeralContainers").iter())
                .any(|n| n == c);
            if known {
                Ok(c.to_string())
            } else {
                Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {pod_name}"
                )))
            }
        }
        None => match regular.as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {pod_name}"
            ))),
            many => {
                let mut msg = format!(
                    "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                    many.join(" ")
                );
                let init = names(pod, "initContainers");
                if !init.is_empty() {
                    msg.push_str(&format!(
                        " or one of the init containers: [{}]",
                        init.join(" ")
                    ));
                }
                Err(ApiError::bad_request(msg))
            }
        },
    }
}

/// `spec.nodeName`, if the pod is scheduled.
pub fn node_name(pod: &Value) -> Option<&str> {
    pod.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
}

/// `host:port` of the node's kubelet: the preferred address from `status.addresses` and
/// `status.daemonEndpoints.kubeletEndpoint.Port` (10250 when unset).
pub fn kubelet_authority(node: &Value) -> Result<String> {
    let addresses: Vec<(&str, &str)> = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| {
                    Some((
                        x.get("type").and_then(Value::as_str)?,
                        x.get("address").and_then(Value::as_str)?,
                    ))
                })
                .filter(|(_, addr)| !addr.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let host = PREFERRED_ADDRESS_TYPES
        .iter()
        .find_map(|want| addresses.iter().find(|(t, _)| t == want))
        .map(|(_, addr)| *addr)
        .ok_or_else(|| {
            let known: Vec<String> = addresses
                .iter()
                .map(|(t, a)| format!("{{{t} {a}}}"))
                .collect();
            // Upstream returns a plain error here, which becomes a 500 without a reason.
            ApiError::from(Failure {
                code: 500,
                reason: "",
                message: format!(
                    "no preferred addresses found; known addresses: [{}]",
                    known.join(" ")
                ),
                target: None,
                causes: Vec::new(),
            })
        })?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    // IPv6 literals need brackets in an authority.
    Ok(if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: &[&str], init: &[&str]) -> Value {
        let c: Vec<Value> = containers.iter().map(|n| json!({"name": n})).collect();
        let i: Vec<Value> = init.iter().map(|n| json!({"name": n})).collect();
        json!({"spec": {"containers": c, "initContainers": i}})
    }

    #[test]
    fn container_defaults_and_messages() {
        assert_eq!(container(&pod(&["a"], &[]), "p", None).expect("only"), "a");
        assert_eq!(
            container(&pod(&["a"], &[]), "p", Some("")).expect("empty"),
            "a"
        );
        assert_eq!(
            container(&pod(&["a", "b"], &["i"]), "p", Some("i")).expect("init"),
            "i"
        );
        let e = container(&pod(&["a", "b"], &[]), "p", None).expect_err("ambiguous");
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "a container name must be specified for pod p, choose one of: [a b]"
        );
        let e = container(&pod(&["a", "b"], &["i"]), "p", None).expect_err("ambiguous");
        assert!(e.message.ends_with(" or one of the init containers: [i]"));
        let e = container(&pod(&["a"], &[]), "p", Some("zz")).expect_err("unknown");
        assert_eq!(e.message, "container zz is not valid for pod p");
        assert_eq!(e.reason, "BadRequest");
    }

    #[test]
    fn kubelet_address_preference_and_port() {
        let node = json!({"status": {
            "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10255}}}});
        assert_eq!(kubelet_authority(&node).expect("addr"), "10.0.0.5:10255");
        let node = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}]}});
        assert_eq!(kubelet_authority(&node).expect("addr"), "n1:10250");
        let node = json!({"status": {"addresses": [{"type": "InternalIP", "address": "fd00::1"}]}});
        assert_eq!(kubelet_authority(&node).expect("v6"), "[fd00::1]:10250");
        let e = kubelet_authority(&json!({"status": {}})).expect_err("no address");
        assert_eq!(e.code, 500);
        assert_eq!(
            e.message,
            "no preferred addresses found; known addresses: []"
        );
    }

    #[test]
    fn node_name_requires_non_empty() {
        assert_eq!(node_name(&json!({"spec": {"nodeName": "n"}})), Some("n"));
        assert_eq!(node_name(&json!({"spec": {"nodeName": ""}})), None);
        assert_eq!(node_name(&json!({"spec": {}})), None);
    }
}
