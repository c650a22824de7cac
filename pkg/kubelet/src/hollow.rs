//! A hollow [`Runtime`]: runs nothing, but reports every created container as running and
//! gives sandboxes IPs from the pod subnet. With `Config::hollow` one process can play many
//! nodes for control-plane scale tests (like upstream's kubemark hollow nodes).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use k8s_openapi::jiff::Timestamp;

use crate::runtime::{
    ContainerInfo, ContainerSpec, ExecSession, LogOptions, Result, RunState, Runtime, RuntimeError,
};

/// The hollow runtime. Cheap to clone; clones share state.
#[derive(Debug, Default, Clone)]
pub struct HollowRuntime {
    inner: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    containers: HashMap<String, ContainerInfo>,
    next: u32,
    /// First address and size of the pod subnet, once `ensure_network` named it.
    subnet: Option<(u32, u32)>,
}

impl HollowRuntime {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Poisoning only means a panicking thread held the lock; the map is still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many containers exist now (any state).
    pub fn len(&self) -> usize {
        self.lock().containers.len()
    }

    /// Whether no containers exist.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn parse_subnet(s: &str) -> Option<(u32, u32)> {
    let (ip, len) = s.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let len: u32 = len.parse().ok()?;
    let size = 1u32
        .checked_shl(32u32.checked_sub(len)?)
        .unwrap_or(u32::MAX);
    Some((u32::from(ip), size))
}

fn now() -> String {
    Timestamp::now().to_string()
}

#[async_trait]
impl Runtime for HollowRuntime {
    async fn version(&self) -> Result<String> {
        Ok("hollow://1.0".into())
    }
    async fn pull(&self, _image: &str) -> Result<i64> {
        // A hollow node has every image: nothing is fetched.
        Ok(0)
    }
    async fn image_present(&self, _image: &str) -> Result<bool> {
        Ok(true)
    }
    async fn ensure_network(&self, _name: &str, subnet: &str) -> Result<()> {
        let mut st = self.lock();
        if st.subnet.is_none() {
            st.subnet = parse_subnet(subnet);
        }
        Ok(())
    }
    async fn create(&self, spec: &ContainerSpec) -> Result<String> {
        let mut st = self.lock();
        st.next += 1;
        let n = st.next;
        let id = format!("hollow{n:012}");
        // Only the sandbox owns the pod IP; skip the network and gateway addresses.
        let ip = (spec.labels.get(crate::LABEL_CONTAINER).map(String::as_str)
            == Some(crate::SANDBOX))
        .then(|| {
            let (base, size) = st
                .subnet
                .unwrap_or((u32::from(Ipv4Addr::new(10, 244, 0, 0)), 1 << 16));
            Ipv4Addr::from(base + 2 + n % size.saturating_sub(3).max(1)).to_string()
        });
        st.containers.insert(
            id.clone(),
            ContainerInfo {
                id: id.clone(),
                labels: spec.labels.clone(),
                state: RunState::Created,
                started_at: None,
                finished_at: None,
                image: spec.image.clone(),
                image_id: format!("sha256:hollow-{}", spec.image),
                ip,
            },
        );
        Ok(id)
    }
    async fn start(&self, id: &str) -> Result<()> {
        let mut st = self.lock();
        let c = st
            .containers
            .get_mut(id)
            .ok_or_else(|| RuntimeError::NotFound(id.into()))?;
        c.state = RunState::Running;
        c.started_at = Some(now());
        Ok(())
    }
    async fn stop(&self, id: &str, _grace_seconds: i64) -> Result<()> {
        if let Some(c) = self.lock().containers.get_mut(id) {
            if c.state == RunState::Running {
                // What a well-behaved process does on SIGTERM.
                c.state = RunState::Exited {
                    code: 0,
                    oom_killed: false,
                };
                c.finished_at = Some(now());
            }
        }
        Ok(())
    }
    async fn remove(&self, id: &str) -> Result<()> {
        self.lock().containers.remove(id);
        Ok(())
    }
    async fn list(&self, labels: &[(&str, &str)]) -> Result<Vec<ContainerInfo>> {
        Ok(self
            .lock()
            .containers
            .values()
            .filter(|c| {
                labels
                    .iter()
                    .all(|(k, v)| c.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .cloned()
            .collect())
    }
    async fn inspect(&self, id: &str, _network: Option<&str>) -> Result<ContainerInfo> {
        self.lock()
            .containers
            .get(id)
            .cloned()
            .ok_or_else(|| RuntimeError::NotFound(id.into()))
    }
    async fn logs(
        &self,
        id: &str,
        _opts: &LogOptions,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        self.inspect(id, None).await?;
        Ok(Box::pin(futures::stream::empty()))
    }
    async fn exec(
        &self,
        id: &str,
        _cmd: &[String],
        _stdin: bool,
        _tty: bool,
    ) -> Result<ExecSession> {
        self.inspect(id, None).await?;
        Ok(ExecSession {
            id: format!("exec-{id}"),
            output: Box::pin(futures::stream::empty()),
            input: Box::pin(tokio::io::sink()),
        })
    }
    async fn exec_exit_code(&self, _exec_id: &str) -> Result<i64> {
        Ok(0)
    }
    async fn exec_resize(&self, _exec_id: &str, _width: u16, _height: u16) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sandboxes_get_subnet_ips_and_containers_run() {
        let rt = HollowRuntime::default();
        rt.ensure_network("n", "10.50.0.0/16").await.unwrap();
        let mut spec = ContainerSpec::default();
        spec.labels
            .insert(crate::LABEL_CONTAINER.into(), crate::SANDBOX.into());
        let id = rt.create(&spec).await.unwrap();
        rt.start(&id).await.unwrap();
        let info = rt.inspect(&id, Some("n")).await.unwrap();
        assert_eq!(info.state, RunState::Running);
        assert!(info.ip.unwrap().starts_with("10.50."));
        rt.stop(&id, 30).await.unwrap();
        rt.remove(&id).await.unwrap();
        assert!(rt.is_empty());
    }
}
