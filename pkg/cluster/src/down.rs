//! `kubelite down`: stop the dev cluster running on a data dir and remove what it left on the
//! host (pod containers and sandboxes, the proxy's rules and interface).
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

/// What `down` cleans beyond the process.
#[derive(Clone, Debug)]
pub struct DownConfig {
    /// The data dir `kubelite up` ran on.
    pub data_dir: PathBuf,
    /// The node whose containers to remove (their `kubelite.io/node` label).
    pub node_names: Vec<String>,
    /// The proxy settings whose chains and interface to remove.
    pub proxy: kubelite_proxy::Config,
    /// How long to wait for the process to exit after SIGTERM.
    pub timeout: Duration,
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

#[cfg(test)]
mod tests {
    use super::*;

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
