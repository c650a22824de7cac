//! Pod volumes: emptyDir, hostPath and the projected kinds (configMap, secret, downwardAPI,
//! projected) materialised under `<root>/pods/<uid>/volumes/`, and each container's mounts.
//!
//! Projected volumes are written like upstream's atomic writer: the payload goes into a fresh
//! timestamped directory, `..data` is swapped to it with one rename, and every top-level entry is
//! a symlink through `..data`, so a container never sees half of an update.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, Volume};

use crate::runtime::Mount;

/// Where one pod volume lives on the host.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Source {
    /// A host directory or file, bind-mounted.
    Host(PathBuf),
    /// A memory-backed runtime volume of this name.
    Tmpfs(String),
}

/// The resolved volumes of a pod, by volume name.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct PodVolumes {
    pub by_name: HashMap<String, (Source, bool)>,
}

/// `<root>/pods/<uid>`: everything the kubelet keeps for one pod.
pub(crate) fn pod_dir(root: &Path, uid: &str) -> PathBuf {
    root.join("pods").join(uid)
}

/// The runtime volume name of a memory emptyDir.
pub(crate) fn tmpfs_name(uid: &str, volume: &str) -> String {
    format!("kubelite-{uid}-{volume}")
}

fn io(what: &Path, e: std::io::Error) -> String {
    format!("{}: {e}", what.display())
}

/// Makes every volume of the pod exist with its current content. An error is a FailedMount
/// message; the pod's containers then wait.
pub(crate) async fn setup(
    client: &kube::Client,
    root: &Path,
    pod: &Pod,
    node_cpus: i64,
    node_memory: i64,
) -> Result<PodVolumes, String> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let base = pod_dir(root, &uid).join("volumes");
    let mut out = PodVolumes::default();
    let spec = pod.spec.clone().unwrap_or_default();
    for v in spec.volumes.iter().flatten() {
        let (source, read_only) = if let Some(e) = &v.empty_dir {
            if e.medium.as_deref() == Some("Memory") {
                (Source::Tmpfs(tmpfs_name(&uid, &v.name)), false)
            } else {
                let dir = base.join("kubernetes.io~empty-dir").join(&v.name);
                std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
                // Containers of the pod may run as different users: emptyDir is world-writable.
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                    .map_err(|e| io(&dir, e))?;
                (Source::Host(dir), false)
            }
        } else if let Some(h) = &v.host_path {
            (Source::Host(host_path(&h.path, h.type_.as_deref())?), false)
        } else {
            let files = crate::projection::payload(client, pod, v, node_cpus, node_memory).await?;
            let dir = base.join(plugin_dir(v)).join(&v.name);
            write_atomic(&dir, &files).map_err(|e| io(&dir, e))?;
            // Upstream mounts every projected kind read-only.
            (Source::Host(dir), true)
        };
        out.by_name.insert(v.name.clone(), (source, read_only));
    }
    Ok(out)
}

fn plugin_dir(v: &Volume) -> &'static str {
    if v.config_map.is_some() {
        "kubernetes.io~configmap"
    } else if v.secret.is_some() {
        "kubernetes.io~secret"
    } else if v.downward_api.is_some() {
        "kubernetes.io~downward-api"
    } else {
        "kubernetes.io~projected"
    }
}

/// Checks (or creates) a hostPath per its `type`.
fn host_path(path: &str, type_: Option<&str>) -> Result<PathBuf, String> {
    let p = PathBuf::from(path);
    let meta = std::fs::metadata(&p);
    let bad = |want: &str| {
        Err(format!(
            "hostPath type check failed: {path} is not a {want}"
        ))
    };
    match type_.unwrap_or("") {
        "" => {}
        "DirectoryOrCreate" => {
            std::fs::create_dir_all(&p).map_err(|e| io(&p, e))?;
        }
        "FileOrCreate" if meta.is_err() => {
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
            }
            std::fs::write(&p, b"").map_err(|e| io(&p, e))?;
        }
        "Directory" if !meta.as_ref().is_ok_and(|m| m.is_dir()) => return bad("directory"),
        "File" if !meta.as_ref().is_ok_and(|m| m.is_file()) => return bad("file"),
        "Socket" | "CharDevice" | "BlockDevice" if meta.is_err() => return bad(type_.unwrap_or("")),
        _ => {}
    }
    Ok(p)
}

/// Writes `files` into `dir` through a `..data` symlink swap; a no-op when nothing changed.
pub(crate) fn write_atomic(dir: &Path, files: &[crate::projection::File]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let data = dir.join("..data");
    if unchanged(&data, files) {
        return Ok(());
    }
    let stamp = format!(
        "..{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let fresh = dir.join(&stamp);
    std::fs::create_dir_all(&fresh)?;
    for (path, content, mode) in files {
        let p = fresh.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, content)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode as u32 & 0o777))?;
    }
    let old = std::fs::read_link(&data).ok();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&stamp, &tmp)?;
    std::fs::rename(&tmp, &data)?;
    // Top-level entries point through ..data; stale ones go.
    let mut tops: Vec<String> = files
        .iter()
        .filter_map(|(p, _, _)| p.split('/').next().map(str::to_string))
        .collect();
    tops.sort();
    tops.dedup();
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !tops.contains(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    for t in &tops {
        let link = dir.join(t);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(t), &link)?;
        }
    }
    if let Some(old) = old.filter(|o| o.as_os_str() != stamp.as_str()) {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(())
}

/// Whether `data` already holds exactly these files.
fn unchanged(data: &Path, files: &[crate::projection::File]) -> bool {
    if std::fs::read_link(data).is_err() {
        return false;
    }
    let mut count = 0usize;
    let mut stack = vec![data.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            return false;
        };
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            } else {
                count += 1;
            }
        }
    }
    count == files.len()
        && files.iter().all(|(p, content, mode)| {
            let f = data.join(p);
            std::fs::read(&f).is_ok_and(|c| &c == content)
                && std::fs::metadata(&f)
                    .is_ok_and(|m| m.permissions().mode() & 0o777 == *mode as u32 & 0o777)
        })
}

/// The mounts of one container from its volumeMounts.
pub(crate) fn mounts(vols: &PodVolumes, c: &Container) -> Result<Vec<Mount>, String> {
    let mut out = Vec::new();
    for vm in c.volume_mounts.iter().flatten() {
        let Some((source, forced_ro)) = vols.by_name.get(&vm.name) else {
            return Err(format!("volume {:?} is not defined in the pod", vm.name));
        };
        let read_only = vm.read_only.unwrap_or(false) || *forced_ro;
        let sub = vm.sub_path.clone().filter(|s| !s.is_empty());
        if sub
            .as_deref()
            .is_some_and(|s| s.starts_with('/') || s.split('/').any(|p| p == ".."))
        {
            return Err(format!(
                "subPath {:?} must be a relative path without '..'",
                sub
            ));
        }
        let m = match (source, sub) {
            (Source::Host(p), None) => Mount {
                source: p.to_string_lossy().into_owned(),
                target: vm.mount_path.clone(),
                read_only,
                tmpfs_volume: false,
            },
            (Source::Host(p), Some(s)) => {
                let full = p.join(&s);
                // Upstream creates a missing subPath as a directory inside the volume.
                if std::fs::symlink_metadata(&full).is_err() && !forced_ro {
                    std::fs::create_dir_all(&full).map_err(|e| io(&full, e))?;
                    let _ = std::fs::set_permissions(&full, std::fs::Permissions::from_mode(0o777));
                }
                Mount {
                    source: full.to_string_lossy().into_owned(),
                    target: vm.mount_path.clone(),
                    read_only,
                    tmpfs_volume: false,
                }
            }
            (Source::Tmpfs(name), None) => Mount {
                source: name.clone(),
                target: vm.mount_path.clone(),
                read_only,
                tmpfs_volume: true,
            },
            (Source::Tmpfs(_), Some(_)) => {
                return Err("subPath on a memory emptyDir is not supported".into())
            }
        };
        out.push(m);
    }
    Ok(out)
}

/// Removes the pod's directory and memory volumes once its containers are gone.
pub(crate) async fn teardown(k: &crate::Kubelet, pod: Option<&Pod>, uid: &str) {
    for v in pod
        .and_then(|p| p.spec.as_ref())
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
    {
        if v.empty_dir.as_ref().and_then(|e| e.medium.as_deref()) == Some("Memory") {
            if let Err(e) = k.runtime.remove_volume(&tmpfs_name(uid, &v.name)).await {
                tracing::warn!(pod_uid = %uid, error = %e, "removing memory volume failed");
            }
        }
    }
    let dir = pod_dir(&k.config.root_dir, uid);
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), error = %e, "removing pod dir failed");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_swaps_data_and_prunes_stale_keys() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("v");
        write_atomic(
            &dir,
            &[
                ("a".into(), b"1".to_vec(), 0o644),
                ("sub/b".into(), b"2".to_vec(), 0o400),
            ],
        )
        .unwrap();
        assert_eq!(std::fs::read(dir.join("a")).unwrap(), b"1");
        assert_eq!(std::fs::read(dir.join("sub/b")).unwrap(), b"2");
        let mode = std::fs::metadata(dir.join("sub/b"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o400);
        let first = std::fs::read_link(dir.join("..data")).unwrap();
        write_atomic(
            &dir,
            &[
                ("a".into(), b"1".to_vec(), 0o644),
                ("sub/b".into(), b"2".to_vec(), 0o400),
            ],
        )
        .unwrap();
        assert_eq!(
            std::fs::read_link(dir.join("..data")).unwrap(),
            first,
            "no-op rewrite"
        );
        write_atomic(&dir, &[("a".into(), b"3".to_vec(), 0o644)]).unwrap();
        assert_eq!(std::fs::read(dir.join("a")).unwrap(), b"3");
        assert!(std::fs::symlink_metadata(dir.join("sub")).is_err());
        assert!(!dir.join(first).exists(), "old payload removed");
    }
}
