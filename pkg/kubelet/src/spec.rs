//! Translation of a pod's containers into runtime [`ContainerSpec`]s: env, resources, labels.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::Api;

use crate::runtime::ContainerSpec;
use crate::{
    LABEL_ATTEMPT, LABEL_CONTAINER, LABEL_NODE, LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_POD_UID,
};

/// Labels identifying one container of a pod.
pub(crate) fn labels(
    node: &str,
    pod: &Pod,
    container: &str,
    attempt: i32,
) -> BTreeMap<String, String> {
    let m = &pod.metadata;
    BTreeMap::from([
        (LABEL_NODE.to_string(), node.to_string()),
        (LABEL_POD_UID.to_string(), m.uid.clone().unwrap_or_default()),
        (
            LABEL_POD_NAME.to_string(),
            m.name.clone().unwrap_or_default(),
        ),
        (
            LABEL_POD_NAMESPACE.to_string(),
            m.namespace.clone().unwrap_or_default(),
        ),
        (LABEL_CONTAINER.to_string(), container.to_string()),
        (LABEL_ATTEMPT.to_string(), attempt.to_string()),
    ])
}

/// A Docker-safe container name: `k8s_<container>_<pod>_<ns>_<uid>_<attempt>`.
pub(crate) fn container_name(pod: &Pod, container: &str, attempt: i32) -> String {
    let m = &pod.metadata;
    format!(
        "k8s_{}_{}_{}_{}_{}",
        container,
        m.name.as_deref().unwrap_or_default(),
        m.namespace.as_deref().unwrap_or_default(),
        m.uid.as_deref().unwrap_or_default(),
        attempt
    )
}

/// Parses a memory quantity into bytes (`128Mi`, `1G`, `1000`).
pub(crate) fn parse_memory(q: &str) -> Option<i64> {
    let q = q.trim();
    let suffixes: [(&str, f64); 12] = [
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("Ti", 1024f64.powi(4)),
        ("Pi", 1024f64.powi(5)),
        ("Ei", 1024f64.powi(6)),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    for (s, mult) in suffixes {
        if let Some(n) = q.strip_suffix(s) {
            return n.parse::<f64>().ok().map(|v| (v * mult) as i64);
        }
    }
    if let Some(n) = q.strip_suffix('m') {
        return n.parse::<f64>().ok().map(|v| (v / 1000.0) as i64);
    }
    q.parse::<f64>().ok().map(|v| v as i64)
}

/// Parses a CPU quantity into millicores (`500m`, `1`, `0.5`).
pub(crate) fn parse_millicpu(q: &str) -> Option<i64> {
    let q = q.trim();
    match q.strip_suffix('m') {
        Some(n) => n.parse::<i64>().ok(),
        None => q.parse::<f64>().ok().map(|v| (v * 1000.0).round() as i64),
    }
}

/// Resolves the container's env (values, fieldRefs, configMap/secret keys) as `K=V` strings.
pub(crate) async fn env(
    client: &kube::Client,
    pod: &Pod,
    c: &Container,
    pod_ip: &str,
    host_ip: &str,
) -> Result<Vec<String>, String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut out = Vec::new();
    for e in c.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            v.clone()
        } else if let Some(from) = &e.value_from {
            if let Some(f) = &from.field_ref {
                match f.field_path.as_str() {
                    "metadata.name" => pod.metadata.name.clone().unwrap_or_default(),
                    "metadata.namespace" => ns.clone(),
                    "metadata.uid" => pod.metadata.uid.clone().unwrap_or_default(),
                    "spec.nodeName" => pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.node_name.clone())
                        .unwrap_or_default(),
                    "spec.serviceAccountName" => pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.service_account_name.clone())
                        .unwrap_or_default(),
                    "status.podIP" => pod_ip.to_string(),
                    "status.hostIP" => host_ip.to_string(),
                    other => return Err(format!("unsupported fieldRef {other}")),
                }
            } else if let Some(r) = &from.config_map_key_ref {
                let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
                let cm = api.get_opt(&r.name).await.map_err(|e| e.to_string())?;
                match cm.and_then(|cm| cm.data.and_then(|d| d.get(&r.key).cloned())) {
                    Some(v) => v,
                    None if r.optional == Some(true) => continue,
                    None => {
                        return Err(format!(
                            "configmap {}/{} key {} not found",
                            ns, r.name, r.key
                        ))
                    }
                }
            } else if let Some(r) = &from.secret_key_ref {
                let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
                let s = api.get_opt(&r.name).await.map_err(|e| e.to_string())?;
                match s.and_then(|s| s.data.and_then(|d| d.get(&r.key).cloned())) {
                    Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                    None if r.optional == Some(true) => continue,
                    None => {
                        return Err(format!("secret {}/{} key {} not found", ns, r.name, r.key))
                    }
                }
            } else {
                continue;
            }
        } else {
            String::new()
        };
        out.push(format!("{}={}", e.name, value));
    }
    Ok(out)
}

/// The runtime spec of an app container joined to the sandbox `sandbox_id`.
pub(crate) fn app_container(
    node: &str,
    pod: &Pod,
    c: &Container,
    attempt: i32,
    sandbox_id: &str,
    env: Vec<String>,
    mounts: Vec<crate::runtime::Mount>,
) -> ContainerSpec {
    let limits = c.resources.as_ref().and_then(|r| r.limits.as_ref());
    let memory = limits
        .and_then(|l| l.get("memory"))
        .and_then(|q| parse_memory(&q.0));
    let cpu_quota = limits
        .and_then(|l| l.get("cpu"))
        .and_then(|q| parse_millicpu(&q.0))
        .map(|m| (m * 100).max(1000));
    ContainerSpec {
        name: container_name(pod, &c.name, attempt),
        image: c.image.clone().unwrap_or_default(),
        entrypoint: c.command.clone(),
        cmd: c.args.clone(),
        env,
        working_dir: c.working_dir.clone(),
        labels: labels(node, pod, &c.name, attempt),
        hostname: None,
        network_mode: Some(format!("container:{sandbox_id}")),
        ipc_mode: Some(format!("container:{sandbox_id}")),
        memory,
        cpu_quota,
        mounts,
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        ..security(pod, c)
    }
}

/// securityContext: user/group (container overrides pod), privileged, capabilities, read-only root.
fn security(pod: &Pod, c: &Container) -> ContainerSpec {
    let psc = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let sc = c.security_context.clone().unwrap_or_default();
    let uid = sc.run_as_user.or(psc.run_as_user);
    let gid = sc.run_as_group.or(psc.run_as_group);
    let user = match (uid, gid) {
        (Some(u), Some(g)) => Some(format!("{u}:{g}")),
        (Some(u), None) => Some(u.to_string()),
        // Docker needs a user with a group; upstream resolves the image user, root here.
        (None, Some(g)) => Some(format!("0:{g}")),
        (None, None) => None,
    };
    let caps = sc.capabilities.unwrap_or_default();
    // Docker takes names without the CAP_ prefix; Kubernetes allows either.
    let norm = |v: Option<Vec<String>>| -> Vec<String> {
        v.unwrap_or_default()
            .into_iter()
            .map(|c| c.strip_prefix("CAP_").map(str::to_string).unwrap_or(c))
            .collect()
    };
    ContainerSpec {
        user,
        privileged: sc.privileged.unwrap_or(false),
        cap_add: norm(caps.add),
        cap_drop: norm(caps.drop),
        read_only_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
        ..Default::default()
    }
}

/// hostPort bindings of every container, published by the sandbox.
fn host_ports(pod: &Pod) -> Vec<crate::runtime::PortBinding> {
    let spec = pod.spec.clone().unwrap_or_default();
    spec.containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            p.host_port
                .filter(|h| *h > 0)
                .map(|h| crate::runtime::PortBinding {
                    container_port: p.container_port,
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    host_port: h,
                    host_ip: p.host_ip.clone().unwrap_or_default(),
                })
        })
        .collect()
}

/// The runtime spec of the pod's pause container.
pub(crate) fn sandbox(
    node: &str,
    pod: &Pod,
    image: &str,
    network: &str,
    attempt: i32,
) -> ContainerSpec {
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    ContainerSpec {
        name: container_name(pod, crate::SANDBOX, attempt),
        image: image.to_string(),
        labels: labels(node, pod, crate::SANDBOX, attempt),
        // Docker refuses a hostname together with the host network.
        hostname: if host_network {
            None
        } else {
            Some(crate::dns::hostname(pod))
        },
        // With the host network the ports are already the host's.
        ports: if host_network {
            Vec::new()
        } else {
            host_ports(pod)
        },
        network_mode: Some(if host_network {
            "host".into()
        } else {
            network.to_string()
        }),
        ipc_mode: Some("shareable".into()),
        ..Default::default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_memory("128Mi"), Some(128 * 1024 * 1024));
        assert_eq!(parse_memory("1G"), Some(1_000_000_000));
        assert_eq!(parse_memory("1000"), Some(1000));
        assert_eq!(parse_millicpu("500m"), Some(500));
        assert_eq!(parse_millicpu("1.5"), Some(1500));
        assert_eq!(parse_millicpu("x"), None);
    }
}
