//! The content of configMap, secret, downwardAPI and projected volumes: which files, with
//! which bytes and modes, from the API objects and the pod itself.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, Volume,
};
use kube::Api;

/// Default file mode of projected files (0644).
const DEFAULT_MODE: i32 = 0o644;

/// One projected file: relative path, content, mode.
pub(crate) type File = (String, Vec<u8>, i32);

/// The files a configMap/secret/downwardAPI/projected volume holds now.
pub(crate) async fn payload(
    client: &kube::Client,
    pod: &Pod,
    v: &Volume,
    cpus: i64,
    mem: i64,
) -> Result<Vec<File>, String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    if let Some(c) = &v.config_map {
        let mode = c.default_mode.unwrap_or(DEFAULT_MODE);
        return config_map(client, &ns, &c.name, c.items.as_deref(), c.optional, mode).await;
    }
    if let Some(s) = &v.secret {
        let mode = s.default_mode.unwrap_or(DEFAULT_MODE);
        let name = s.secret_name.clone().unwrap_or_default();
        return secret(client, &ns, &name, s.items.as_deref(), s.optional, mode).await;
    }
    if let Some(d) = &v.downward_api {
        let mode = d.default_mode.unwrap_or(DEFAULT_MODE);
        return downward(pod, d.items.as_deref().unwrap_or_default(), mode, cpus, mem);
    }
    if let Some(p) = &v.projected {
        let mode = p.default_mode.unwrap_or(DEFAULT_MODE);
        let mut files = Vec::new();
        for s in p.sources.iter().flatten() {
            if let Some(c) = &s.config_map {
                files.extend(
                    config_map(client, &ns, &c.name, c.items.as_deref(), c.optional, mode).await?,
                );
            } else if let Some(c) = &s.secret {
                files.extend(
                    secret(client, &ns, &c.name, c.items.as_deref(), c.optional, mode).await?,
                );
            } else if let Some(d) = &s.downward_api {
                let items = d.items.as_deref().unwrap_or_default();
                files.extend(downward(pod, items, mode, cpus, mem)?);
            } else if let Some(t) = &s.service_account_token {
                files.push((t.path.clone(), token(client, pod, t).await?, mode));
            } else {
                return Err("unsupported projected volume source".into());
            }
        }
        return Ok(files);
    }
    Err(format!(
        "volume {:?}: only emptyDir, hostPath, configMap, secret, downwardAPI and projected are supported",
        v.name
    ))
}

/// Selects keys per `items` (all keys when unset).
fn select(
    kind: &str,
    name: &str,
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    optional: bool,
    mode: i32,
) -> Result<Vec<File>, String> {
    let Some(items) = items else {
        return Ok(data.into_iter().map(|(k, v)| (k, v, mode)).collect());
    };
    let mut out = Vec::new();
    for it in items {
        match data.get(&it.key) {
            Some(v) => out.push((it.path.clone(), v.clone(), it.mode.unwrap_or(mode))),
            None if optional => {}
            None => {
                return Err(format!(
                    "{kind} {name:?} references non-existent {kind} key: {}",
                    it.key
                ))
            }
        }
    }
    Ok(out)
}

/// The object `name` in `ns`; `None` when it is missing and `optional`, an error (worded like
/// upstream's mount failure) when it is missing and required.
async fn fetch<K>(
    client: &kube::Client,
    ns: &str,
    name: &str,
    kind: &str,
    optional: bool,
) -> Result<Option<K>, String>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    match api.get_opt(name).await.map_err(|e| e.to_string())? {
        Some(obj) => Ok(Some(obj)),
        None if optional => Ok(None),
        None => Err(format!("{kind} {name:?} not found")),
    }
}

async fn config_map(
    client: &kube::Client,
    ns: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
    mode: i32,
) -> Result<Vec<File>, String> {
    let optional = optional.unwrap_or(false);
    let Some(cm) = fetch::<ConfigMap>(client, ns, name, "configmap", optional).await? else {
        return Ok(Vec::new());
    };
    let mut data: BTreeMap<String, Vec<u8>> = cm
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    data.extend(
        cm.binary_data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0)),
    );
    select("configmap", name, data, items, optional, mode)
}

async fn secret(
    client: &kube::Client,
    ns: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
    mode: i32,
) -> Result<Vec<File>, String> {
    let optional = optional.unwrap_or(false);
    let Some(s) = fetch::<Secret>(client, ns, name, "secret", optional).await? else {
        return Ok(Vec::new());
    };
    let mut data: BTreeMap<String, Vec<u8>> = s
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    // stringData is folded into data on write, but a raw store may still carry it.
    data.extend(
        s.string_data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes())),
    );
    select("secret", name, data, items, optional, mode)
}

/// A bound token for a serviceAccountToken projection, via the TokenRequest API.
async fn token(
    client: &kube::Client,
    pod: &Pod,
    t: &k8s_openapi::api::core::v1::ServiceAccountTokenProjection,
) -> Result<Vec<u8>, String> {
    use k8s_openapi::api::core::v1::ServiceAccount;
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let req = serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {
            "audiences": t.audience.iter().collect::<Vec<_>>(),
            "expirationSeconds": t.expiration_seconds.unwrap_or(3600),
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                "name": pod.metadata.name, "uid": pod.metadata.uid},
        }
    });
    let body = serde_json::to_vec(&req).map_err(|e| e.to_string())?;
    let r: serde_json::Value = api
        .create_subresource("token", &sa, &Default::default(), &body)
        .await
        .map_err(|e| format!("token for serviceaccount {sa:?}: {e}"))?;
    r.pointer("/status/token")
        .and_then(|t| t.as_str())
        .map(|t| t.as_bytes().to_vec())
        .ok_or_else(|| "TokenRequest returned no token".into())
}

/// `key="value"` lines, sorted, as upstream formats labels and annotations.
fn map_lines(m: Option<&BTreeMap<String, String>>) -> Vec<u8> {
    let lines: Vec<String> = m
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    lines.join("\n").into_bytes()
}

fn downward(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    mode: i32,
    cpus: i64,
    mem: i64,
) -> Result<Vec<File>, String> {
    let m = &pod.metadata;
    let mut out = Vec::new();
    for it in items {
        let value: Vec<u8> = if let Some(f) = &it.field_ref {
            match f.field_path.as_str() {
                "metadata.name" => m.name.clone().unwrap_or_default().into_bytes(),
                "metadata.namespace" => m.namespace.clone().unwrap_or_default().into_bytes(),
                "metadata.uid" => m.uid.clone().unwrap_or_default().into_bytes(),
                "metadata.labels" => map_lines(m.labels.as_ref()),
                "metadata.annotations" => map_lines(m.annotations.as_ref()),
                p => match p
                    .strip_prefix("metadata.labels['")
                    .map(|k| (k, m.labels.as_ref()))
                    .or_else(|| {
                        p.strip_prefix("metadata.annotations['")
                            .map(|k| (k, m.annotations.as_ref()))
                    }) {
                    Some((k, map)) => {
                        let k = k.trim_end_matches("']");
                        map.and_then(|m| m.get(k))
                            .cloned()
                            .unwrap_or_default()
                            .into_bytes()
                    }
                    None => return Err(format!("unsupported downwardAPI fieldRef {p}")),
                },
            }
        } else if let Some(r) = &it.resource_field_ref {
            resource_value(pod, r, cpus, mem)?.into_bytes()
        } else {
            continue;
        };
        out.push((it.path.clone(), value, it.mode.unwrap_or(mode)));
    }
    Ok(out)
}

/// A resourceFieldRef value: the container's limit/request divided by the divisor, rounded up.
/// Unset limits fall back to the node's capacity, as upstream uses allocatable.
pub(crate) fn resource_value(
    pod: &Pod,
    r: &k8s_openapi::api::core::v1::ResourceFieldSelector,
    cpus: i64,
    mem: i64,
) -> Result<String, String> {
    let spec = pod.spec.clone().unwrap_or_default();
    let name = r.container_name.clone().unwrap_or_default();
    let c: Option<&Container> = spec.containers.iter().find(|c| c.name == name);
    let res = c.and_then(|c| c.resources.clone()).unwrap_or_default();
    let (which, kind) = r
        .resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported resource {}", r.resource))?;
    let q = match which {
        "limits" => res.limits.as_ref(),
        _ => res.requests.as_ref(),
    }
    .and_then(|m| m.get(kind))
    .map(|q| q.0.clone());
    let divisor = r
        .divisor
        .as_ref()
        .map(|d| d.0.clone())
        .unwrap_or_else(|| "1".into());
    let ceil = |a: i64, b: i64| if b <= 0 { a } else { (a + b - 1) / b };
    match kind {
        "cpu" => {
            let v = q
                .and_then(|q| crate::spec::parse_millicpu(&q))
                .unwrap_or(if which == "limits" { cpus * 1000 } else { 0 });
            let d = crate::spec::parse_millicpu(&divisor).unwrap_or(1000);
            Ok(ceil(v, d).to_string())
        }
        "memory" | "ephemeral-storage" => {
            let v = q
                .and_then(|q| crate::spec::parse_memory(&q))
                .unwrap_or(if which == "limits" { mem } else { 0 });
            let d = crate::spec::parse_memory(&divisor).unwrap_or(1);
            Ok(ceil(v, d).to_string())
        }
        other => Err(format!("unsupported resource {other}")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn items_select_keys_and_missing_keys_fail_unless_optional() {
        let data = BTreeMap::from([("k".to_string(), b"v".to_vec())]);
        let items = [KeyToPath {
            key: "k".into(),
            path: "x/y".into(),
            mode: Some(0o600),
        }];
        let f = select("configmap", "c", data.clone(), Some(&items), false, 0o644).unwrap();
        assert_eq!(f, vec![("x/y".to_string(), b"v".to_vec(), 0o600)]);
        let missing = [KeyToPath {
            key: "nope".into(),
            path: "n".into(),
            mode: None,
        }];
        assert!(select("configmap", "c", data.clone(), Some(&missing), false, 0o644).is_err());
        assert!(select("configmap", "c", data, Some(&missing), true, 0o644)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn downward_api_formats_labels_and_resources() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"b": "2", "a": "1"}},
            "spec": {"containers": [{"name": "c", "resources": {"limits": {"memory": "64Mi"}}}]}
        }))
        .unwrap();
        let items: Vec<DownwardAPIVolumeFile> = serde_json::from_value(serde_json::json!([
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}},
            {"path": "cpu", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu"}}
        ]))
        .unwrap();
        let f = downward(&pod, &items, 0o644, 2, 1 << 30).unwrap();
        assert_eq!(f[0].1, b"a=\"1\"\nb=\"2\"");
        assert_eq!(f[1].1, b"64");
        assert_eq!(f[2].1, b"2");
    }
}
