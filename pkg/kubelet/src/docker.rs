//! The Docker implementation of [`Runtime`]; the only module that knows `bollard`.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, ContainerSummaryStateEnum, HostConfig, Ipam, IpamConfig,
    NetworkCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, InspectNetworkOptions, ListContainersOptions,
    ListNetworksOptions, LogsOptions, RemoveContainerOptions, StopContainerOptions,
};
use bollard::Docker;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::Semaphore;

use crate::runtime::{
    ContainerInfo, ContainerSpec, ExecSession, LogOptions, Result, RunState, Runtime, RuntimeError,
};

/// How many short Docker requests are in flight at once. bollard pools no connections, so
/// each request is a connection with its own buffers and task; when 100 pod workers sync at
/// once (a batch of new pods, a node drain) they would open 100 connections together, and
/// the heap keeps that high-water mark long after. Docker serializes most container
/// operations anyway, so a few at a time start pods as fast.
const MAX_REQUESTS: usize = 8;

/// Docker Engine over its local socket.
#[derive(Debug, Clone)]
pub struct DockerRuntime {
    docker: Docker,
    /// Permits for [`MAX_REQUESTS`]; calls that can last (a stop's grace period, pulls,
    /// log, exec and attach streams) take none.
    requests: Arc<Semaphore>,
    /// What [`Runtime::list`] last inspected per container id, with the listed state it was
    /// inspected in. A kubelet container only moves forward (created → running → exited; the
    /// kubelet never restarts one, it creates the next attempt), so while the list shows the
    /// same state the inspection still holds: a steady node re-lists without re-inspecting,
    /// as upstream's PLEG inspects only the containers whose state changed.
    inspected: Arc<Mutex<HashMap<String, (ContainerSummaryStateEnum, ContainerInfo)>>>,
}

impl DockerRuntime {
    /// Connects with the local defaults (`DOCKER_HOST` or `/var/run/docker.sock`); no IO yet.
    pub fn connect() -> Result<Self> {
        let docker = Docker::connect_with_local_defaults().map_err(err)?;
        Ok(Self {
            docker,
            requests: Arc::new(Semaphore::new(MAX_REQUESTS)),
            inspected: Arc::default(),
        })
    }

    /// Runs one short request under a [`MAX_REQUESTS`] permit.
    async fn limited<F: Future>(&self, request: F) -> F::Output {
        // The semaphore is never closed; were it, requests would simply go unthrottled.
        let _permit = self.requests.acquire().await.ok();
        request.await
    }

    fn inspected(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (ContainerSummaryStateEnum, ContainerInfo)>>
    {
        self.inspected.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The container as of a list that saw it in `state`: the earlier inspection while the
    /// state is the same, a fresh one otherwise. `None` when it is gone.
    async fn listed(
        &self,
        id: &str,
        state: Option<ContainerSummaryStateEnum>,
    ) -> Result<Option<ContainerInfo>> {
        // Transient states (restarting, removing, ...) are inspected every time.
        let stable = state.filter(|s| {
            matches!(
                s,
                ContainerSummaryStateEnum::CREATED
                    | ContainerSummaryStateEnum::RUNNING
                    | ContainerSummaryStateEnum::EXITED
            )
        });
        if let Some(s) = stable {
            if let Some((was, info)) = self.inspected().get(id) {
                if *was == s {
                    return Ok(Some(info.clone()));
                }
            }
        }
        match self.inspect(id, None).await {
            Ok(info) => {
                if let Some(s) = stable {
                    self.inspected().insert(id.to_string(), (s, info.clone()));
                }
                Ok(Some(info))
            }
            // Removed between list and inspect: it is simply gone.
            Err(RuntimeError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The underlying client, for image import and exec.
    pub fn client(&self) -> &Docker {
        &self.docker
    }
}

fn err(e: DockerError) -> RuntimeError {
    match e {
        DockerError::DockerResponseServerError {
            status_code: 404,
            message,
        } => RuntimeError::NotFound(message),
        other => RuntimeError::Runtime(other.to_string()),
    }
}

/// A bind mount, or a named tmpfs volume Docker creates on first use and the pod shares.
fn docker_mount(m: &crate::runtime::Mount) -> bollard::models::Mount {
    use bollard::models::{
        MountBindOptions, MountType, MountVolumeOptions, MountVolumeOptionsDriverConfig,
    };
    if m.tmpfs_volume {
        let opts = HashMap::from([
            ("type".to_string(), "tmpfs".to_string()),
            ("device".to_string(), "tmpfs".to_string()),
        ]);
        return bollard::models::Mount {
            target: Some(m.target.clone()),
            source: Some(m.source.clone()),
            typ: Some(MountType::VOLUME),
            read_only: Some(m.read_only),
            volume_options: Some(MountVolumeOptions {
                driver_config: Some(MountVolumeOptionsDriverConfig {
                    name: Some("local".into()),
                    options: Some(opts),
                }),
                labels: Some(HashMap::from([(
                    "kubelite.io/volume".to_string(),
                    "emptydir".to_string(),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        };
    }
    bollard::models::Mount {
        target: Some(m.target.clone()),
        source: Some(m.source.clone()),
        typ: Some(MountType::BIND),
        read_only: Some(m.read_only),
        // hostPath volumes without a type may name a missing path: Docker creates it, as `-v` does.
        bind_options: Some(MountBindOptions {
            create_mountpoint: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// hostPort bindings keyed as Docker wants them (`80/tcp`).
fn port_map(ports: &[crate::runtime::PortBinding]) -> bollard::models::PortMap {
    let mut map = bollard::models::PortMap::new();
    for p in ports {
        let key = format!("{}/{}", p.container_port, p.protocol.to_lowercase());
        let binding = bollard::models::PortBinding {
            host_ip: (!p.host_ip.is_empty()).then(|| p.host_ip.clone()),
            host_port: Some(p.host_port.to_string()),
        };
        map.entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(binding);
    }
    map
}

/// Splits an image reference into what Docker's pull takes: the repository (with a digest, the
/// whole reference) and the tag, `latest` when none is given, as `docker pull` does.
fn split_reference(image: &str) -> (&str, &str) {
    if image.contains('@') {
        return (image, "");
    }
    // A colon after the last slash is a tag; one before it is a registry port.
    let last = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    match image[last..].rfind(':') {
        Some(i) => (&image[..last + i], &image[last + i + 1..]),
        None => (image, "latest"),
    }
}

fn to_info(r: bollard::models::ContainerInspectResponse, network: Option<&str>) -> ContainerInfo {
    let state = r.state.unwrap_or_default();
    let run = if state.running.unwrap_or(false) {
        RunState::Running
    } else if state
        .finished_at
        .as_deref()
        .is_some_and(|f| !f.starts_with("0001"))
    {
        RunState::Exited {
            code: state.exit_code.unwrap_or(0) as i32,
            oom_killed: state.oom_killed.unwrap_or(false),
        }
    } else {
        RunState::Created
    };
    let valid = |t: Option<String>| t.filter(|t| !t.starts_with("0001"));
    let config = r.config.unwrap_or_default();
    let ip = network.and_then(|n| {
        r.network_settings
            .and_then(|s| s.networks)
            .and_then(|mut nets| nets.remove(n))
            .and_then(|e| e.ip_address)
            .filter(|ip| !ip.is_empty())
    });
    ContainerInfo {
        id: r.id.unwrap_or_default(),
        labels: config.labels.unwrap_or_default().into_iter().collect(),
        state: run,
        started_at: valid(state.started_at),
        finished_at: valid(state.finished_at),
        image: config.image.unwrap_or_default(),
        image_id: r.image.unwrap_or_default(),
        ip,
    }
}

#[async_trait]
impl Runtime for DockerRuntime {
    async fn version(&self) -> Result<String> {
        let v = self.limited(self.docker.version()).await.map_err(err)?;
        Ok(format!("docker://{}", v.version.unwrap_or_default()))
    }

    async fn image_present(&self, image: &str) -> Result<bool> {
        match self.limited(self.docker.inspect_image(image)).await {
            Ok(_) => Ok(true),
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(e) => Err(err(e)),
        }
    }

    async fn pull(&self, image: &str) -> Result<i64> {
        let (from, tag) = split_reference(image);
        let opts = CreateImageOptions {
            from_image: Some(from.to_string()),
            tag: Some(tag.to_string()),
            ..Default::default()
        };
        let mut progress = self.docker.create_image(Some(opts), None, None);
        // The pull is done when the progress stream ends; an error may arrive mid-stream.
        while let Some(item) = progress.next().await {
            item.map_err(err)?;
        }
        let inspected = self
            .limited(self.docker.inspect_image(image))
            .await
            .map_err(err)?;
        Ok(inspected.size.unwrap_or(0))
    }

    async fn enable_hairpin(&self, network: &str) -> Result<()> {
        let net = self
            .limited(
                self.docker
                    .inspect_network(network, None::<InspectNetworkOptions>),
            )
            .await
            .map_err(err)?;
        // Docker names a user-defined bridge `br-<first 12 of the id>` unless told otherwise.
        let bridge = net
            .options
            .as_ref()
            .and_then(|o| o.get("com.docker.network.bridge.name").cloned())
            .or_else(|| {
                net.id
                    .as_ref()
                    .map(|id| format!("br-{}", &id[..id.len().min(12)]))
            })
            .ok_or_else(|| RuntimeError::NotFound(format!("bridge of network {network}")))?;
        let ports = std::path::Path::new("/sys/class/net")
            .join(&bridge)
            .join("brif");
        let entries = std::fs::read_dir(&ports)
            .map_err(|e| RuntimeError::Runtime(format!("{}: {e}", ports.display())))?;
        for port in entries.flatten() {
            let knob = port.path().join("hairpin_mode");
            // Ports already in hairpin mode are left alone: this runs on every sandbox start.
            if std::fs::read_to_string(&knob).is_ok_and(|v| v.trim() == "1") {
                continue;
            }
            std::fs::write(&knob, "1")
                .map_err(|e| RuntimeError::Runtime(format!("{}: {e}", knob.display())))?;
        }
        Ok(())
    }

    async fn ensure_network(&self, name: &str, subnet: &str) -> Result<()> {
        let filters = HashMap::from([("name".to_string(), vec![name.to_string()])]);
        let existing = self
            .limited(self.docker.list_networks(Some(ListNetworksOptions {
                filters: Some(filters),
            })))
            .await
            .map_err(err)?;
        // The name filter matches substrings, so compare exactly.
        if existing.iter().any(|n| n.name.as_deref() == Some(name)) {
            return Ok(());
        }
        let req = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            ipam: Some(Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(subnet.to_string()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            labels: Some(HashMap::from([(
                "kubelite.io/network".to_string(),
                "pods".to_string(),
            )])),
            ..Default::default()
        };
        self.limited(self.docker.create_network(req))
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String> {
        let host_config = HostConfig {
            network_mode: spec.network_mode.clone(),
            ipc_mode: spec.ipc_mode.clone(),
            memory: spec.memory,
            cpu_quota: spec.cpu_quota,
            cpu_period: spec.cpu_quota.map(|_| 100_000),
            mounts: Some(spec.mounts.iter().map(docker_mount).collect()),
            privileged: Some(spec.privileged),
            cap_add: (!spec.cap_add.is_empty()).then(|| spec.cap_add.clone()),
            cap_drop: (!spec.cap_drop.is_empty()).then(|| spec.cap_drop.clone()),
            readonly_rootfs: Some(spec.read_only_rootfs),
            port_bindings: (!spec.ports.is_empty()).then(|| port_map(&spec.ports)),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            user: spec.user.clone(),
            exposed_ports: (!spec.ports.is_empty())
                .then(|| port_map(&spec.ports).into_keys().collect()),
            image: Some(spec.image.clone()),
            entrypoint: spec.entrypoint.clone(),
            cmd: spec.cmd.clone(),
            env: Some(spec.env.clone()),
            working_dir: spec.working_dir.clone(),
            labels: Some(spec.labels.clone().into_iter().collect()),
            hostname: spec.hostname.clone(),
            host_config: Some(host_config),
            // What `kubectl attach -i` needs: an open stdin Docker keeps for later attaches.
            open_stdin: Some(spec.stdin),
            attach_stdin: Some(spec.stdin),
            stdin_once: Some(spec.stdin_once),
            tty: Some(spec.tty),
            ..Default::default()
        };
        let opts = CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        let r = self
            .limited(self.docker.create_container(Some(opts), body))
            .await
            .map_err(err)?;
        Ok(r.id)
    }

    async fn start(&self, id: &str) -> Result<()> {
        self.limited(self.docker.start_container(id, None))
            .await
            .map_err(err)
    }

    async fn stop(&self, id: &str, grace_seconds: i64) -> Result<()> {
        let opts = StopContainerOptions {
            t: Some(grace_seconds.clamp(0, i32::MAX as i64) as i32),
            signal: None,
        };
        match self.docker.stop_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            // 304: already stopped; 404: already gone. Both mean the goal is reached.
            Err(DockerError::DockerResponseServerError {
                status_code: 304 | 404,
                ..
            }) => Ok(()),
            Err(e) => Err(err(e)),
        }
    }

    async fn remove(&self, id: &str) -> Result<()> {
        let opts = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        self.inspected().remove(id);
        match self
            .limited(self.docker.remove_container(id, Some(opts)))
            .await
        {
            Ok(()) => Ok(()),
            Err(DockerError::DockerResponseServerError {
                status_code: 404 | 409,
                ..
            }) => Ok(()),
            Err(e) => Err(err(e)),
        }
    }

    async fn list(&self, labels: &[(&str, &str)]) -> Result<Vec<ContainerInfo>> {
        let label_filters: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let filters = HashMap::from([("label".to_string(), label_filters)]);
        let opts = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let summaries = self
            .limited(self.docker.list_containers(Some(opts)))
            .await
            .map_err(err)?;
        let mut out = Vec::with_capacity(summaries.len());
        let mut seen = HashSet::with_capacity(summaries.len());
        for s in summaries {
            let Some(id) = s.id else { continue };
            if let Some(info) = self.listed(&id, s.state).await? {
                out.push(info);
            }
            seen.insert(id);
        }
        // Inspections of containers this list would have shown are of containers now gone.
        self.inspected().retain(|id, (_, info)| {
            seen.contains(id)
                || !labels
                    .iter()
                    .all(|(k, v)| info.labels.get(*k).map(String::as_str) == Some(*v))
        });
        Ok(out)
    }

    async fn inspect(&self, id: &str, network: Option<&str>) -> Result<ContainerInfo> {
        let r = self
            .limited(self.docker.inspect_container(id, None))
            .await
            .map_err(err)?;
        Ok(to_info(r, network))
    }

    async fn logs(&self, id: &str, opts: &LogOptions) -> Result<BoxStream<'static, Result<Bytes>>> {
        let since = opts
            .since_seconds
            .map(|s| (k8s_openapi::jiff::Timestamp::now().as_second() - s).max(0) as i32)
            .unwrap_or(0);
        let o = LogsOptions {
            follow: opts.follow,
            stdout: true,
            stderr: true,
            since,
            until: 0,
            timestamps: opts.timestamps,
            tail: opts
                .tail_lines
                .map(|n| n.to_string())
                .unwrap_or_else(|| "all".into()),
        };
        // Fail early when the container is missing instead of in the middle of a stream.
        self.docker.inspect_container(id, None).await.map_err(err)?;
        let stream = self
            .docker
            .logs(id, Some(o))
            .map(|r| r.map(|out| out.into_bytes()).map_err(err));
        Ok(Box::pin(stream))
    }

    async fn exec(&self, id: &str, cmd: &[String], stdin: bool, tty: bool) -> Result<ExecSession> {
        use bollard::container::LogOutput;
        use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
        let created = self
            .docker
            .create_exec(
                id,
                CreateExecOptions {
                    attach_stdin: Some(stdin),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(tty),
                    cmd: Some(cmd.to_vec()),
                    ..Default::default()
                },
            )
            .await
            .map_err(err)?;
        let opts = StartExecOptions {
            detach: false,
            tty,
            output_capacity: None,
        };
        match self
            .docker
            .start_exec(&created.id, Some(opts))
            .await
            .map_err(err)?
        {
            StartExecResults::Attached { output, input } => Ok(ExecSession {
                id: created.id,
                output: Box::pin(output.filter_map(|r| async move {
                    match r {
                        Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                            Some(Ok((1, message)))
                        }
                        Ok(LogOutput::StdErr { message }) => Some(Ok((2, message))),
                        Ok(LogOutput::StdIn { .. }) => None,
                        Err(e) => Some(Err(err(e))),
                    }
                })),
                input,
            }),
            StartExecResults::Detached => {
                Err(RuntimeError::Runtime("exec started detached".into()))
            }
        }
    }

    async fn exec_exit_code(&self, exec_id: &str) -> Result<i64> {
        // The output stream can end a moment before Docker records the exit code.
        for _ in 0..50 {
            let r = self
                .limited(self.docker.inspect_exec(exec_id))
                .await
                .map_err(err)?;
            if r.running != Some(true) {
                return Ok(r.exit_code.unwrap_or(0));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Err(RuntimeError::Runtime(format!(
            "exec {exec_id} did not finish"
        )))
    }

    async fn exec_resize(&self, exec_id: &str, width: u16, height: u16) -> Result<()> {
        let opts = bollard::query_parameters::ResizeExecOptions {
            w: i32::from(width),
            h: i32::from(height),
        };
        self.docker.resize_exec(exec_id, opts).await.map_err(err)
    }

    async fn attach(&self, id: &str, stdin: bool, _tty: bool) -> Result<ExecSession> {
        use bollard::container::LogOutput;
        let opts = bollard::query_parameters::AttachContainerOptions {
            detach_keys: None,
            logs: false,
            stream: true,
            stdin,
            stdout: true,
            stderr: true,
        };
        let r = self
            .docker
            .attach_container(id, Some(opts))
            .await
            .map_err(err)?;
        Ok(ExecSession {
            id: id.to_string(),
            output: Box::pin(r.output.filter_map(|r| async move {
                match r {
                    Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                        Some(Ok((1, message)))
                    }
                    Ok(LogOutput::StdErr { message }) => Some(Ok((2, message))),
                    Ok(LogOutput::StdIn { .. }) => None,
                    Err(e) => Some(Err(err(e))),
                }
            })),
            input: r.input,
        })
    }

    async fn resize(&self, id: &str, width: u16, height: u16) -> Result<()> {
        let opts = bollard::query_parameters::ResizeContainerTTYOptions {
            w: i32::from(width),
            h: i32::from(height),
        };
        self.docker
            .resize_container_tty(id, opts)
            .await
            .map_err(err)
    }

    async fn remove_volume(&self, name: &str) -> Result<()> {
        let opts = bollard::query_parameters::RemoveVolumeOptions { force: true };
        match self
            .limited(self.docker.remove_volume(name, Some(opts)))
            .await
        {
            Ok(()) => Ok(()),
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_reference;

    #[test]
    fn references_split_like_docker_pull() {
        assert_eq!(split_reference("busybox"), ("busybox", "latest"));
        assert_eq!(split_reference("busybox:1.36"), ("busybox", "1.36"));
        assert_eq!(
            split_reference("127.0.0.1:5000/a/b"),
            ("127.0.0.1:5000/a/b", "latest")
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/a/b:v1"),
            ("127.0.0.1:5000/a/b", "v1")
        );
        assert_eq!(split_reference("b@sha256:ab"), ("b@sha256:ab", ""));
    }
}
