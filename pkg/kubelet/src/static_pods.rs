//! Static pods: manifests in `--pod-manifest-path` that the kubelet runs without the API, each
//! mirrored into the API as a read-only "mirror pod" (annotation `kubernetes.io/config.mirror`,
//! owned by the Node) that carries its status.
//!
//! As upstream, a static pod's uid is a hash of its manifest and the node, so an edited file is
//! a new pod: the old one is stopped and its mirror replaced.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::Api;
use tracing::{info, warn};

use crate::pods::PodManager;

/// Annotation on a mirror pod: the static pod's hash (its uid on this kubelet).
pub const ANNOTATION_MIRROR: &str = "kubernetes.io/config.mirror";
/// Annotation: the static pod's hash.
pub const ANNOTATION_HASH: &str = "kubernetes.io/config.hash";
/// Annotation: where the pod came from (`file` for static pods, `api` otherwise).
pub const ANNOTATION_SOURCE: &str = "kubernetes.io/config.source";

/// How often the manifest dir is re-read (upstream: 20s).
const SCAN_EVERY: Duration = Duration::from_secs(3);

/// Whether a pod from the API is a mirror pod (never run: its static pod runs instead).
pub(crate) fn is_mirror(p: &Pod) -> bool {
    p.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ANNOTATION_MIRROR))
}

/// Whether a pod is a static pod this kubelet read from disk.
pub(crate) fn is_static(p: &Pod) -> bool {
    p.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_SOURCE))
        .is_some_and(|s| s == "file")
}

/// Parses one manifest and completes it as upstream's file source does: namespace `default`,
/// name `<name>-<node>`, uid = hash, nodeName, source annotations.
pub(crate) fn load(text: &str, node: &str) -> Result<Pod, String> {
    let mut pod: Pod = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    let base = pod
        .metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or("pod has no name")?;
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    node.hash(&mut h);
    let hash = format!("{:016x}", h.finish());
    let m = &mut pod.metadata;
    m.name = Some(format!("{base}-{node}"));
    if m.namespace.as_deref().is_none_or(str::is_empty) {
        m.namespace = Some("default".into());
    }
    m.uid = Some(hash.clone());
    let ann = m.annotations.get_or_insert_with(BTreeMap::new);
    ann.insert(ANNOTATION_HASH.into(), hash);
    ann.insert(ANNOTATION_SOURCE.into(), "file".into());
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.node_name = Some(node.into());
    pod.status = None;
    Ok(pod)
}

/// Reads every `*.yaml`, `*.yml` and `*.json` in `dir` (hidden files skipped), keyed by uid.
fn scan(dir: &Path, node: &str) -> HashMap<String, Pod> {
    let mut out = HashMap::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let ext = path
            .extension()
            .and_then(|x| x.to_str())
            .unwrap_or_default();
        if name.starts_with('.') || !matches!(ext, "yaml" | "yml" | "json") {
            continue;
        }
        match std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| load(&t, node))
        {
            Ok(p) => {
                out.insert(p.metadata.uid.clone().unwrap_or_default(), p);
            }
            Err(e) => warn!(file = %path.display(), error = %e, "invalid static pod manifest"),
        }
    }
    out
}

/// The mirror of a static pod: same metadata and spec, the mirror annotation, owned by the Node.
pub(crate) fn mirror(p: &Pod, node: &Node) -> Pod {
    let mut m = p.clone();
    m.metadata.uid = None;
    let hash = p.metadata.uid.clone().unwrap_or_default();
    m.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(ANNOTATION_MIRROR.into(), hash);
    m.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.metadata.name.clone().unwrap_or_default(),
        uid: node.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        ..Default::default()
    }]);
    m.status = None;
    m
}

/// Keeps workers and mirror pods in line with the manifest dir until aborted.
pub(crate) async fn run(m: PodManager, dir: std::path::PathBuf) {
    let k = m.kubelet();
    let node = k.config.node_name.clone();
    let mut running: HashMap<String, Pod> = HashMap::new();
    loop {
        let want = scan(&dir, &node);
        for (uid, p) in &running {
            if !want.contains_key(uid) {
                info!(pod = %crate::pods::key(p), "static pod removed");
                m.gone(uid);
                delete_mirror(&k.client, p, Some(uid)).await;
            }
        }
        running.retain(|uid, _| want.contains_key(uid));
        for (uid, p) in &want {
            if !running.contains_key(uid) {
                info!(pod = %crate::pods::key(p), "static pod added");
                m.upsert(p.clone());
            }
            if let Err(e) = ensure_mirror(&k.client, p, &node).await {
                warn!(pod = %crate::pods::key(p), error = %e, "mirror pod sync failed");
            }
        }
        running = want;
        tokio::time::sleep(SCAN_EVERY).await;
    }
}

/// Creates the mirror pod if it is missing, replacing one of an older manifest.
async fn ensure_mirror(client: &kube::Client, p: &Pod, node: &str) -> Result<(), kube::Error> {
    let ns = p.metadata.namespace.clone().unwrap_or_default();
    let name = p.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let hash = p.metadata.uid.as_deref();
    if let Some(cur) = api.get_opt(&name).await? {
        let cur_hash = cur
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_MIRROR));
        if cur_hash.map(String::as_str) == hash && cur.metadata.deletion_timestamp.is_none() {
            return Ok(());
        }
        // A stale mirror (or a regular pod squatting on the name): replace it.
        delete_mirror(client, &cur, None).await;
        return Ok(());
    }
    let Some(n) = Api::<Node>::all(client.clone()).get_opt(node).await? else {
        // The Node is registered shortly; the next scan retries.
        return Ok(());
    };
    api.create(&PostParams::default(), &mirror(p, &n)).await?;
    Ok(())
}

/// Deletes the mirror of `p` right away; with `only_hash`, only a mirror of that manifest.
async fn delete_mirror(client: &kube::Client, p: &Pod, only_hash: Option<&String>) {
    let ns = p.metadata.namespace.clone().unwrap_or_default();
    let name = p.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let cur = match api.get_opt(&name).await {
        Ok(Some(c)) => c,
        _ => return,
    };
    let cur_hash = cur
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_MIRROR));
    if only_hash.is_some() && cur_hash != only_hash {
        return;
    }
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: cur.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    if let Err(e) = api.delete(&name, &dp).await {
        warn!(pod = %name, error = %e, "deleting mirror pod failed");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn manifest_becomes_a_static_pod_and_its_mirror() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    image: busybox\n";
        let p = load(text, "n1").unwrap();
        assert_eq!(p.metadata.name.as_deref(), Some("web-n1"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("default"));
        assert!(is_static(&p) && !is_mirror(&p));
        assert_eq!(
            load(text, "n1").unwrap().metadata.uid,
            p.metadata.uid,
            "stable hash"
        );
        assert_ne!(
            load(&text.replace("busybox", "x"), "n1")
                .unwrap()
                .metadata
                .uid,
            p.metadata.uid
        );
        let node: Node =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "n1", "uid": "nu"}}))
                .unwrap();
        let m = mirror(&p, &node);
        assert!(is_mirror(&m));
        assert_eq!(m.metadata.uid, None);
        let o = &m.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (o.kind.as_str(), o.uid.as_str(), o.controller),
            ("Node", "nu", Some(true))
        );
        assert_eq!(m.spec.unwrap().node_name.as_deref(), Some("n1"));
    }
}
