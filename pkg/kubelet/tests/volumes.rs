//! Pod volumes against a real apiserver and real Docker: emptyDir (disk and memory), hostPath,
//! configMap/secret with items, modes and live updates, downwardAPI, projected, subPath,
//! readOnly, FailedMount for a missing configMap, and cleanup on delete. Also pod DNS files.

mod common;

use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;

use common::{phase, Harness, BUSYBOX};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn volumes_project_share_update_and_clean_up() -> Result<()> {
    let Some(h) = Harness::start(|_| {}).await? else {
        return Ok(());
    };
    let host_dir = h.root.path().join("host");
    std::fs::create_dir_all(&host_dir)?;
    std::fs::write(host_dir.join("from-host"), "hello host")?;
    let cms: Api<ConfigMap> = Api::namespaced(h.client.clone(), "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": "cfg"}, "data": {"a": "one", "b": "two"}}),
        )?,
    )
    .await?;
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), "default");
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "sec"}, "stringData": {"pw": "s3cret"}}),
            )?,
        )
        .await?;
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "vols", "namespace": "default", "labels": {"app": "v"}},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [
            {"name": "writer", "image": BUSYBOX, "command": ["sh", "-c", "echo shared > /scratch/x; sleep 3600"],
             "resources": {"limits": {"memory": "32Mi"}},
             "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}, {"name": "mem", "mountPath": "/mem"}]},
            {"name": "reader", "image": BUSYBOX, "command": ["sleep", "3600"], "volumeMounts": [
                {"name": "scratch", "mountPath": "/scratch"},
                {"name": "scratch", "mountPath": "/sub", "subPath": "deep/dir"},
                {"name": "mem", "mountPath": "/mem"},
                {"name": "host", "mountPath": "/host", "readOnly": true},
                {"name": "cfg", "mountPath": "/cfg"},
                {"name": "cfg-items", "mountPath": "/items"},
                {"name": "cfg", "mountPath": "/etc/one-file", "subPath": "a"},
                {"name": "sec", "mountPath": "/sec"},
                {"name": "down", "mountPath": "/down"},
                {"name": "proj", "mountPath": "/proj"}
            ]}
        ], "volumes": [
            {"name": "scratch", "emptyDir": {}},
            {"name": "mem", "emptyDir": {"medium": "Memory"}},
            {"name": "host", "hostPath": {"path": host_dir.to_string_lossy(), "type": "Directory"}},
            {"name": "cfg", "configMap": {"name": "cfg"}},
            {"name": "cfg-items", "configMap": {"name": "cfg", "items": [{"key": "b", "path": "nested/bee", "mode": 0o600}], "defaultMode": 0o644}},
            {"name": "sec", "secret": {"secretName": "sec", "defaultMode": 0o400}},
            {"name": "down", "downwardAPI": {"items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                {"path": "mem", "resourceFieldRef": {"containerName": "writer", "resource": "limits.memory", "divisor": "1Mi"}}
            ]}},
            {"name": "proj", "projected": {"sources": [
                {"configMap": {"name": "cfg", "items": [{"key": "a", "path": "cm-a"}]}},
                {"secret": {"name": "sec"}},
                {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}
            ]}}
        ]}
    });
    let name = h.run_pod(pod).await?;
    let p = h
        .wait_pod(&name, 60, "Running", |p| phase(p) == "Running")
        .await?;
    let uid = p.metadata.uid.clone().context("uid")?;
    // emptyDir is shared between containers, on disk under the kubelet root.
    h.wait_exec(&name, "reader", &["cat", "/scratch/x"], 20, |o| {
        o == "shared\n"
    })
    .await?;
    let on_disk = h
        .config
        .root_dir
        .join("pods")
        .join(&uid)
        .join("volumes/kubernetes.io~empty-dir/scratch/x");
    assert_eq!(std::fs::read_to_string(&on_disk)?, "shared\n");
    // subPath inside the emptyDir was created as a directory.
    assert!(on_disk.with_file_name("deep").join("dir").is_dir());
    // Memory emptyDir is a tmpfs shared by both containers.
    h.exec(&name, "writer", &["sh", "-c", "echo m > /mem/f"])
        .await?;
    assert_eq!(h.exec(&name, "reader", &["cat", "/mem/f"]).await?, "m\n");
    assert!(h
        .exec(&name, "reader", &["sh", "-c", "grep ' /mem ' /proc/mounts"])
        .await?
        .contains("tmpfs"));
    // hostPath, mounted read-only.
    assert_eq!(
        h.exec(&name, "reader", &["cat", "/host/from-host"]).await?,
        "hello host"
    );
    assert!(
        h.exec(&name, "reader", &["sh", "-c", "echo x > /host/y"])
            .await
            .is_err(),
        "readOnly hostPath is writable"
    );
    // configMap: every key, read-only; items with paths and modes; a subPath file.
    assert_eq!(
        h.exec(&name, "reader", &["cat", "/cfg/a", "/cfg/b"])
            .await?,
        "onetwo"
    );
    assert!(
        h.exec(&name, "reader", &["sh", "-c", "echo x > /cfg/c"])
            .await
            .is_err(),
        "configMap volume is writable"
    );
    assert_eq!(
        h.exec(&name, "reader", &["cat", "/items/nested/bee"])
            .await?,
        "two"
    );
    assert_eq!(
        h.exec(
            &name,
            "reader",
            &["stat", "-L", "-c", "%a", "/items/nested/bee"]
        )
        .await?
        .trim(),
        "600"
    );
    assert!(
        h.exec(&name, "reader", &["ls", "/items/a"]).await.is_err(),
        "unselected key projected"
    );
    assert_eq!(
        h.exec(&name, "reader", &["cat", "/etc/one-file"]).await?,
        "one"
    );
    // secret with defaultMode.
    assert_eq!(
        h.exec(&name, "reader", &["cat", "/sec/pw"]).await?,
        "s3cret"
    );
    assert_eq!(
        h.exec(&name, "reader", &["stat", "-L", "-c", "%a", "/sec/pw"])
            .await?
            .trim(),
        "400"
    );
    // downwardAPI and projected.
    assert_eq!(
        h.exec(&name, "reader", &["cat", "/down/labels"]).await?,
        "app=\"v\""
    );
    assert_eq!(
        h.exec(&name, "reader", &["cat", "/down/name"]).await?,
        "vols"
    );
    assert_eq!(h.exec(&name, "reader", &["cat", "/down/mem"]).await?, "32");
    assert_eq!(
        h.exec(
            &name,
            "reader",
            &["cat", "/proj/cm-a", "/proj/pw", "/proj/ns"]
        )
        .await?,
        "ones3cretdefault"
    );
    // Updates reach the volume (not the subPath copy, as upstream).
    cms.patch(
        "cfg",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"a": "uno"}})),
    )
    .await?;
    h.wait_exec(&name, "reader", &["cat", "/cfg/a"], 60, |o| o == "uno")
        .await?;
    h.wait_exec(&name, "reader", &["cat", "/proj/cm-a"], 30, |o| o == "uno")
        .await?;
    // Labels changed through the API show up in the downwardAPI file.
    h.pods()
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"app": "w"}}})),
        )
        .await?;
    h.wait_exec(&name, "reader", &["cat", "/down/labels"], 30, |o| {
        o == "app=\"w\""
    })
    .await?;
    // Deleting the pod removes its directory and its memory volume.
    h.pods().delete(&name, &DeleteParams::default()).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let pod_dir = h.config.root_dir.join("pods").join(&uid);
    while pod_dir.exists() || h.pods().get_opt(&name).await?.is_some() {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "pod dir {pod_dir:?} not removed"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let vols = std::process::Command::new("docker")
        .args(["volume", "ls", "-q"])
        .output()?;
    assert!(
        !String::from_utf8_lossy(&vols.stdout).contains(&uid),
        "memory volume left behind"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missing_config_map_waits_with_failed_mount_then_starts() -> Result<()> {
    let Some(h) = Harness::start(|_| {}).await? else {
        return Ok(());
    };
    let name = h
        .run_pod(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "waits", "namespace": "default"},
            "spec": {"terminationGracePeriodSeconds": 1,
                "containers": [{"name": "c", "image": BUSYBOX, "command": ["sleep", "3600"],
                    "volumeMounts": [{"name": "v", "mountPath": "/v"}]}],
                "volumes": [{"name": "v", "configMap": {"name": "later"}},
                            {"name": "opt", "configMap": {"name": "never", "optional": true}}]}
        }))
        .await?;
    let p = h
        .wait_pod(&name, 30, "ContainerCreating", |p| {
            common::main_status(p)
                .and_then(|s| s.state)
                .and_then(|s| s.waiting)
                .and_then(|w| w.reason)
                .as_deref()
                == Some("ContainerCreating")
        })
        .await?;
    assert_eq!(phase(&p), "Pending");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let evs = h.events(&name, "FailedMount").await?;
        if let Some(e) = evs.first() {
            assert!(
                e.message.as_deref().unwrap_or_default().contains("later"),
                "{:?}",
                e.message
            );
            assert_eq!(e.type_.as_deref(), Some("Warning"));
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no FailedMount event"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        h.containers().is_empty(),
        "containers started without their volume"
    );
    let cms: Api<ConfigMap> = Api::namespaced(h.client.clone(), "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "later"}, "data": {"k": "v"}}))?,
    )
    .await?;
    h.wait_pod(&name, 60, "Running", |p| phase(p) == "Running")
        .await?;
    assert_eq!(h.exec(&name, "c", &["cat", "/v/k"]).await?, "v");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_first_dns_and_managed_hosts() -> Result<()> {
    let Some(h) = Harness::start(|c| {
        c.cluster_dns = vec!["10.96.0.10".into()];
        c.cluster_domain = "cluster.local".into();
    })
    .await?
    else {
        return Ok(());
    };
    let spec = |name: &str, extra: serde_json::Value| {
        let mut p = json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"terminationGracePeriodSeconds": 1, "hostname": "web", "subdomain": "sub",
                "containers": [{"name": "c", "image": BUSYBOX, "command": ["sleep", "3600"]}]}
        });
        if let (Some(s), Some(e)) = (p["spec"].as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        p
    };
    let cf = h.run_pod(spec("cf", json!({}))).await?;
    let none = h
        .run_pod(spec("none", json!({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.2.3.4"], "searches": ["x.y"], "options": [{"name": "ndots", "value": "2"}]}})))
        .await?;
    let p = h
        .wait_pod(&cf, 60, "Running", |p| phase(p) == "Running")
        .await?;
    h.wait_pod(&none, 60, "Running", |p| phase(p) == "Running")
        .await?;
    let resolv = h.exec(&cf, "c", &["cat", "/etc/resolv.conf"]).await?;
    assert!(resolv.contains("nameserver 10.96.0.10\n"), "{resolv}");
    assert!(
        resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{resolv}"
    );
    assert!(resolv.contains("options ndots:5"), "{resolv}");
    let hosts = h.exec(&cf, "c", &["cat", "/etc/hosts"]).await?;
    let ip = p.status.and_then(|s| s.pod_ip).context("pod ip")?;
    assert!(
        hosts.contains(&format!("{ip}\tweb.sub.default.svc.cluster.local\tweb")),
        "{hosts}"
    );
    assert_eq!(h.exec(&cf, "c", &["hostname"]).await?.trim(), "web");
    assert_eq!(
        h.exec(&none, "c", &["cat", "/etc/resolv.conf"]).await?,
        "nameserver 1.2.3.4\nsearch x.y\noptions ndots:2\n"
    );
    Ok(())
}
