//! `kubelite down`: stop the dev cluster running on a data dir and remove what it left on the
//! host: pod containers and sandboxes, the pod network (its Docker bridge and Docker's rules
//! for it), the proxy's iptables chains and its service-CIDR interface.
//!
//! A running `kubelite up` records itself in `<data-dir>/kubelite.pid`; `down` sends it SIGTERM
//! (the same clean shutdown as Ctrl-C), waits for it to exit, then cleans up. The cluster's
//! objects stay in the data dir: `kubelite up` on it again brings them back.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kubelite_kubelet::Runtime;

use crate::{Error, Result};

/// The pid file name inside the data dir.
pub const PID_FILE: &str = "kubelite.pid";

/// Where `up` records what it creates on the host, so `down` on the same data dir removes
/// exactly that without being given the same flags again.
pub const HOST_STATE_FILE: &str = "host.json";

/// What `down` cleans beyond the process.
#[derive(Clone, Debug)]
pub struct DownConfig {
    /// The data dir `kubelite up` ran on.
    pub data_dir: PathBuf,
    /// The node whose containers to remove (their `kubelite.io/node` label).
    pub node_names: Vec<String>,
    /// The proxy settings whose chains and interface to remove.
    pub proxy: kubelite_proxy::Config,
    /// The Docker network `up` created for pods, removed once its containers are gone (only
    /// if it carries kubelite's label, so a user's network of that name is never touched).
    pub pod_network: Option<String>,
    /// How long to wait for the process to exit after SIGTERM.
    pub timeout: Duration,
}

impl DownConfig {
    /// What `up` with `config` creates on the host.
    pub fn for_cluster(config: &crate::UpConfig) -> Self {
        Self {
            data_dir: config.data_dir.clone(),
            node_names: config.node_names(),
            proxy: config.proxy_config(),
            pod_network: Some(config.pod_network.clone()),
            timeout: Duration::from_secs(30),
        }
    }

    /// What the `up` that last ran on `data_dir` recorded, if it did.
    pub fn recorded(data_dir: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(data_dir.join(HOST_STATE_FILE)).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        let text_of = |key: &str| v[key].as_str().map(str::to_string);
        Some(Self {
            data_dir: data_dir.to_path_buf(),
            node_names: v["nodeNames"]
                .as_array()?
                .iter()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect(),
            proxy: kubelite_proxy::Config {
                chain_prefix: text_of("proxyChainPrefix")?,
                interface: text_of("proxyInterface")?,
                service_cidr: text_of("serviceCIDR")?,
                ..kubelite_proxy::Config::default()
            },
            pod_network: text_of("podNetwork"),
            timeout: Duration::from_secs(30),
        })
    }

    /// Records this configuration in the data dir for a later `down`.
    pub fn record(&self) -> Result<()> {
        let v = serde_json::json!({
            "nodeNames": self.node_names,
            "podNetwork": self.pod_network,
            "proxyChainPrefix": self.proxy.chain_prefix,
            "proxyInterface": self.proxy.interface,
            "serviceCIDR": self.proxy.service_cidr,
        });
        let path = self.data_dir.join(HOST_STATE_FILE);
        let tmp = path.with_extension("tmp");
        let write = std::fs::write(&tmp, v.to_string()).and_then(|()| std::fs::rename(&tmp, &path));
        write.map_err(|source| Error::DataDir { path, source })
    }
}

/// Records this process as the cluster of `data_dir`; refuses when another live one has.
pub fn claim(data_dir: &Path) -> Result<PidFile> {
    let path = data_dir.join(PID_FILE);
    if let Some(pid) = read_pid(&path) {
        if alive(pid) && pid != std::process::id() {
            return Err(Error::AlreadyRunning { pid, path });
        }
    }
    std::fs::write(&path, format!("{}\n", std::process::id())).map_err(|source| {
        Error::DataDir {
            path: path.clone(),
            source,
        }
    })?;
    Ok(PidFile { path })
}

/// Removes the pid file when the cluster stops.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether a process with `pid` exists (Linux: its /proc entry).
fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Stop the cluster of `config.data_dir` (if running) and clean the host.
pub async fn down(config: &DownConfig) -> Result<()> {
    let path = config.data_dir.join(PID_FILE);
    match read_pid(&path) {
        Some(pid) if alive(pid) => {
            println!("  stopping kubelite (pid {pid})");
            let status = tokio::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await?;
            if !status.success() {
                return Err(Error::Stop(format!("kill -TERM {pid} failed")));
            }
            let deadline = Instant::now() + config.timeout;
            while alive(pid) {
                if Instant::now() >= deadline {
                    return Err(Error::Stop(format!(
                        "pid {pid} still running after {:?}",
                        config.timeout
                    )));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = std::fs::remove_file(&path);
        }
        _ => println!("  kubelite is not running on {}", config.data_dir.display()),
    }
    remove_containers(&config.node_names).await?;
    if let Some(network) = &config.pod_network {
        remove_network(network).await?;
    }
    match kubelite_proxy::cleanup(&config.proxy).await {
        Ok(()) => println!("  proxy rules and interface removed"),
        Err(e) => println!("  proxy cleanup skipped: {e}"),
    }
    Ok(())
}

/// Stop and remove every container the nodes' kubelets created (sandboxes last).
async fn remove_containers(nodes: &[String]) -> Result<()> {
    let runtime = match kubelite_kubelet::docker::DockerRuntime::connect() {
        Ok(r) => r,
        Err(e) => {
            println!("  docker not reachable, containers left as they are: {e}");
            return Ok(());
        }
    };
    let mut removed = 0;
    for node in nodes {
        let mut containers = runtime
            .list(&[(kubelite_kubelet::LABEL_NODE, node.as_str())])
            .await
            .map_err(|e| Error::Stop(e.to_string()))?;
        // App containers first, then the pause containers that own their namespaces.
        containers.sort_by_key(|c| {
            c.labels
                .get(kubelite_kubelet::LABEL_CONTAINER)
                .map(String::as_str)
                == Some(kubelite_kubelet::SANDBOX)
        });
        for c in containers {
            let _ = runtime.stop(&c.id, 2).await;
            runtime
                .remove(&c.id)
                .await
                .map_err(|e| Error::Stop(e.to_string()))?;
            removed += 1;
        }
    }
    println!("  {removed} container(s) removed");
    Ok(())
}

/// The label `ensure_network` puts on the pod network.
const NETWORK_LABEL: &str = "kubelite.io/network";

/// Remove the pod network (its bridge goes with it) if it exists and is kubelite's. The
/// kubelet's runtime has no network removal, and adding one there for `down` alone is not
/// worth a trait method: this is one `docker network rm`.
async fn remove_network(name: &str) -> Result<()> {
    let inspect = tokio::process::Command::new("docker")
        .args(["network", "inspect", "--format"])
        .arg(format!("{{{{index .Labels \"{NETWORK_LABEL}\"}}}}"))
        .arg(name)
        .output()
        .await;
    let label = match inspect {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        // No such network (already removed) or no docker CLI: nothing we can remove.
        Ok(_) => return Ok(()),
        Err(e) => {
            println!("  docker CLI not available, network {name} left as it is: {e}");
            return Ok(());
        }
    };
    if label.is_empty() {
        println!("  network {name} is not kubelite's (no {NETWORK_LABEL} label), left as it is");
        return Ok(());
    }
    let out = tokio::process::Command::new("docker")
        .args(["network", "rm", name])
        .output()
        .await?;
    if !out.status.success() {
        return Err(Error::Stop(format!(
            "docker network rm {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    println!("  pod network {name} removed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_up_records_is_what_down_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(DownConfig::recorded(dir.path()).is_none());
        let config = DownConfig {
            data_dir: dir.path().to_path_buf(),
            node_names: vec!["a".into(), "a-hollow-0".into()],
            proxy: kubelite_proxy::Config {
                chain_prefix: "KT1-".into(),
                interface: "kt1".into(),
                ..kubelite_proxy::Config::default()
            },
            pod_network: Some("net".into()),
            timeout: Duration::from_secs(30),
        };
        config.record().expect("record");
        let read = DownConfig::recorded(dir.path()).expect("recorded");
        assert_eq!(read.node_names, config.node_names);
        assert_eq!(read.pod_network, config.pod_network);
        assert_eq!(read.proxy.chain_prefix, "KT1-");
        assert_eq!(read.proxy.interface, "kt1");
    }

    #[test]
    fn a_live_pid_file_blocks_a_second_claim() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Our own pid counts as "us": claiming twice from one process is allowed.
        let first = claim(dir.path()).expect("claim");
        assert!(dir.path().join(PID_FILE).exists());
        drop(first);
        assert!(!dir.path().join(PID_FILE).exists());
        // pid 1 is always alive: another cluster holds the dir.
        std::fs::write(dir.path().join(PID_FILE), "1\n").expect("write");
        match claim(dir.path()) {
            Err(Error::AlreadyRunning { pid: 1, .. }) => {}
            other => panic!("expected AlreadyRunning, got {other:?}"),
        }
        // A stale pid file (no such process) is taken over.
        std::fs::write(dir.path().join(PID_FILE), "4000000000\n").expect("write");
        assert!(claim(dir.path()).is_ok());
    }
}
