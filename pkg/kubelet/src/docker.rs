//! The Docker implementation of [`Runtime`]; the only module that knows `bollard`.

use std::collections::HashMap;

use async_trait::async_trait;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, HostConfig, Ipam, IpamConfig, NetworkCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, InspectNetworkOptions, ListContainersOptions,
    ListNetworksOptions, LogsOptions, RemoveContainerOptions, StopContainerOptions,
};
use bollard::Docker;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;

use crate::runtime::{
    ContainerInfo, ContainerSpec, ExecSession, LogOptions, Result, RunState, Runtime, RuntimeError,
};

/// Docker Engine over its local socket.
#[derive(Debug, Clone)]
pub struct DockerRuntime {
    docker: Docker,
}

impl DockerRuntime {
    /// Connects with the local defaults (`DOCKER_HOST` or `/var/run/docker.sock`); no IO yet.
    pub fn connect() -> Result<Self> {
        let docker = Docker::connect_with_local_defaults().map_err(err)?;
        Ok(Self { docker })
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
        let v = self.docker.version().await.map_err(err)?;
        Ok(format!("docker://{}", v.version.unwrap_or_default()))
    }

    async fn image_present(&self, image: &str) -> Result<bool> {
        match self.docker.inspect_image(image).await {
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
        let inspected = self.docker.inspect_image(image).await.map_err(err)?;
        Ok(inspected.size.unwrap_or(0))
    }

    async fn enable_hairpin(&self, network: &str) -> Result<()> {
        let net = self
            .docker
            .inspect_network(network, None::<InspectNetworkOptions>)
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
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(filters),
            }))
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
        self.docker.create_network(req).await.map_err(err)?;
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
            .docker
            .create_container(Some(opts), body)
            .await
            .map_err(err)?;
        Ok(r.id)
    }

    async fn start(&self, id: &str) -> Result<()> {
        self.docker.start_container(id, None).await.map_err(err)
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
        match self.docker.remove_container(id, Some(opts)).await {
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
        let summaries = self.docker.list_containers(Some(opts)).await.map_err(err)?;
        let mut out = Vec::with_capacity(summaries.len());
        for s in summaries {
            let Some(id) = s.id else { continue };
            match self.inspect(&id, None).await {
                Ok(info) => out.push(info),
                // Removed between list and inspect: it is simply gone.
                Err(RuntimeError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn inspect(&self, id: &str, network: Option<&str>) -> Result<ContainerInfo> {
        let r = self.docker.inspect_container(id, None).await.map_err(err)?;
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
            let r = self.docker.inspect_exec(exec_id).await.map_err(err)?;
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
        match self.docker.remove_volume(name, Some(opts)).await {
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
