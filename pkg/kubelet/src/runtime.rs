//! The container runtime seam: a small trait the pod sync logic drives, plus a recording fake.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

/// Errors from a container runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The runtime daemon could not be reached or answered with an error.
    #[error("container runtime: {0}")]
    Runtime(String),
    /// The named container, image or network does not exist.
    #[error("not found: {0}")]
    NotFound(String),
}

/// Result alias for runtime calls.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// What to create: one container of a pod (or its sandbox).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerSpec {
    /// Container name (unique on the host).
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Overrides the image entrypoint (the pod's `command`).
    pub entrypoint: Option<Vec<String>>,
    /// Overrides the image cmd (the pod's `args`).
    pub cmd: Option<Vec<String>>,
    /// `KEY=value` pairs.
    pub env: Vec<String>,
    /// Working directory.
    pub working_dir: Option<String>,
    /// Labels used to find the container again.
    pub labels: BTreeMap<String, String>,
    /// Hostname (sandbox only).
    pub hostname: Option<String>,
    /// Docker network mode: a network name, `host` or `container:<id>`.
    pub network_mode: Option<String>,
    /// IPC mode: `shareable` for the sandbox, `container:<id>` for app containers.
    pub ipc_mode: Option<String>,
    /// Memory limit in bytes.
    pub memory: Option<i64>,
    /// CPU quota in microseconds per 100ms period.
    pub cpu_quota: Option<i64>,
    /// Volumes mounted into the container.
    pub mounts: Vec<Mount>,
    /// `uid[:gid]` the process runs as (securityContext runAsUser/runAsGroup).
    pub user: Option<String>,
    /// Privileged mode.
    pub privileged: bool,
    /// Linux capabilities to add (without the `CAP_` prefix).
    pub cap_add: Vec<String>,
    /// Linux capabilities to drop.
    pub cap_drop: Vec<String>,
    /// Mounts the root filesystem read-only.
    pub read_only_rootfs: bool,
    /// Host port bindings (sandbox only; app containers share its network namespace).
    pub ports: Vec<PortBinding>,
    /// Keep stdin open for `kubectl attach -i` (the pod's `stdin`).
    pub stdin: bool,
    /// Close stdin after the first attach ends (`stdinOnce`).
    pub stdin_once: bool,
    /// Allocate a terminal (`tty`).
    pub tty: bool,
}

/// One mount of a [`ContainerSpec`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mount {
    /// Host path (bind) or runtime volume name (tmpfs volume).
    pub source: String,
    /// Path inside the container.
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
    /// `source` names a memory-backed runtime volume shared by the pod's containers
    /// (emptyDir medium Memory) instead of a host path.
    pub tmpfs_volume: bool,
}

/// A container port published on the host (hostPort).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortBinding {
    /// Port inside the pod.
    pub container_port: i32,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    /// Port on the host.
    pub host_port: i32,
    /// Host address to bind; empty means all.
    pub host_ip: String,
}

/// The run state of a container as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    /// Created but never started.
    Created,
    /// Running now.
    Running,
    /// Exited with a code.
    Exited {
        /// Process exit code.
        code: i32,
        /// Whether the kernel OOM killer ended it.
        oom_killed: bool,
    },
}

/// What the runtime knows about one container.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerInfo {
    /// Runtime container id.
    pub id: String,
    /// Labels set at creation.
    pub labels: BTreeMap<String, String>,
    /// Current run state.
    pub state: RunState,
    /// RFC 3339 start time, if it ever started.
    pub started_at: Option<String>,
    /// RFC 3339 finish time, if it exited.
    pub finished_at: Option<String>,
    /// Image reference it was created from.
    pub image: String,
    /// Image id (`sha256:...`).
    pub image_id: String,
    /// IP address on the given network, for sandboxes.
    pub ip: Option<String>,
}

/// Options for reading logs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    /// Keep streaming new output.
    pub follow: bool,
    /// Only the last N lines.
    pub tail_lines: Option<i64>,
    /// Prefix each line with its RFC 3339 timestamp.
    pub timestamps: bool,
    /// Only output newer than this many seconds.
    pub since_seconds: Option<i64>,
}

/// The result of a finished exec.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecOutput {
    /// Process exit code.
    pub exit_code: i64,
}

/// An attached exec: output frames tagged with their stream (1 stdout, 2 stderr) and stdin.
pub struct ExecSession {
    /// Runtime exec id, for the exit code and resizes.
    pub id: String,
    /// Output as (channel, bytes); ends when the process exits.
    pub output: BoxStream<'static, Result<(u8, Bytes)>>,
    /// The process's stdin.
    pub input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
}

/// The container runtime the kubelet drives. Every call is idempotent where it can be:
/// stopping a stopped container or removing a missing one is not an error.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// Runtime name and version, e.g. `docker://20.10.24`.
    async fn version(&self) -> Result<String>;
    /// Whether the image exists locally.
    async fn image_present(&self, image: &str) -> Result<bool>;
    /// Pulls the image from its registry and returns its size in bytes (0 when unknown).
    async fn pull(&self, image: &str) -> Result<i64> {
        Err(RuntimeError::Runtime(format!(
            "pulling {image} is not supported by this runtime"
        )))
    }
    /// Makes sure the pod network exists with this subnet.
    async fn ensure_network(&self, name: &str, subnet: &str) -> Result<()>;
    /// Turns on hairpin mode for every port of the pod network's bridge, so a pod can reach
    /// itself through a Service ClusterIP (the packet leaves and re-enters the same port).
    /// Best effort where the bridge is out of reach (a remote daemon); default: nothing to do.
    async fn enable_hairpin(&self, _network: &str) -> Result<()> {
        Ok(())
    }
    /// Creates a container and returns its id.
    async fn create(&self, spec: &ContainerSpec) -> Result<String>;
    /// Starts a created container.
    async fn start(&self, id: &str) -> Result<()>;
    /// Stops with SIGTERM, then SIGKILL after `grace_seconds`.
    async fn stop(&self, id: &str, grace_seconds: i64) -> Result<()>;
    /// Removes a container (forcefully).
    async fn remove(&self, id: &str) -> Result<()>;
    /// Lists all containers (any state) carrying every one of these labels.
    async fn list(&self, labels: &[(&str, &str)]) -> Result<Vec<ContainerInfo>>;
    /// Inspects one container; `network` selects which network's IP to report.
    async fn inspect(&self, id: &str, network: Option<&str>) -> Result<ContainerInfo>;
    /// Streams a container's combined stdout/stderr.
    async fn logs(&self, id: &str, opts: &LogOptions) -> Result<BoxStream<'static, Result<Bytes>>>;
    /// Starts `cmd` in a running container, attached.
    async fn exec(&self, id: &str, cmd: &[String], stdin: bool, tty: bool) -> Result<ExecSession>;
    /// The exit code of a finished exec.
    async fn exec_exit_code(&self, exec_id: &str) -> Result<i64>;
    /// Resizes an exec's terminal.
    async fn exec_resize(&self, exec_id: &str, width: u16, height: u16) -> Result<()>;
    /// Attaches to a running container's main process (`kubectl attach`); the session id is
    /// the container id. Stdin only reaches a container created with stdin open.
    async fn attach(&self, id: &str, _stdin: bool, _tty: bool) -> Result<ExecSession> {
        Err(RuntimeError::Runtime(format!(
            "attaching to {id} is not supported by this runtime"
        )))
    }
    /// Resizes a container's own terminal (attach with a TTY).
    async fn resize(&self, _id: &str, _width: u16, _height: u16) -> Result<()> {
        Ok(())
    }
    /// Removes a runtime volume created for a [`Mount::tmpfs_volume`]; missing is not an error.
    async fn remove_volume(&self, _name: &str) -> Result<()> {
        Ok(())
    }
}

/// One call recorded by [`FakeRuntime`].
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// `create` with the spec's name and labels.
    Create(Box<ContainerSpec>),
    /// `start(id)`.
    Start(String),
    /// `stop(id, grace)`.
    Stop(String, i64),
    /// `remove(id)`.
    Remove(String),
    /// `pull(image)`.
    Pull(String),
    /// `list` with its `key=value` label filters.
    List(Vec<String>),
    /// `inspect(id)`.
    Inspect(String),
}

/// A recording in-memory runtime for unit tests of the sync logic.
#[derive(Debug, Default, Clone)]
pub struct FakeRuntime {
    inner: Arc<Mutex<FakeState>>,
}

#[derive(Debug, Default)]
struct FakeState {
    calls: Vec<Call>,
    containers: Vec<ContainerInfo>,
    images: Vec<String>,
    /// Images a `pull` can fetch.
    registry: Vec<String>,
    next: u64,
    down: bool,
}

impl FakeRuntime {
    /// A fake that knows these local images.
    pub fn with_images(images: &[&str]) -> Self {
        let fake = Self::default();
        fake.lock().images = images.iter().map(|s| s.to_string()).collect();
        fake
    }

    /// Makes `pull` succeed for these images (and fail for any other).
    pub fn with_registry(self, images: &[&str]) -> Self {
        self.lock().registry = images.iter().map(|s| s.to_string()).collect();
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        // A poisoned lock only means another test thread panicked; the data is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes every later `version` call fail, as an unreachable daemon would.
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// Every mutating call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Marks a container as exited with this code.
    pub fn exit(&self, id: &str, code: i32) {
        let mut st = self.lock();
        if let Some(c) = st.containers.iter_mut().find(|c| c.id == id) {
            c.state = RunState::Exited {
                code,
                oom_killed: false,
            };
            c.finished_at = Some("2020-01-01T00:00:00Z".into());
        }
    }

    /// All containers currently known.
    pub fn containers(&self) -> Vec<ContainerInfo> {
        self.lock().containers.clone()
    }
}

#[async_trait]
impl Runtime for FakeRuntime {
    async fn version(&self) -> Result<String> {
        if self.lock().down {
            return Err(RuntimeError::Runtime(
                "cannot connect to the fake daemon".into(),
            ));
        }
        Ok("fake://1.0".into())
    }
    async fn image_present(&self, image: &str) -> Result<bool> {
        Ok(self.lock().images.iter().any(|i| i == image))
    }
    async fn pull(&self, image: &str) -> Result<i64> {
        let mut st = self.lock();
        st.calls.push(Call::Pull(image.into()));
        if !st.registry.iter().any(|i| i == image) {
            return Err(RuntimeError::NotFound(format!(
                "pull access denied for {image}, repository does not exist"
            )));
        }
        if !st.images.iter().any(|i| i == image) {
            st.images.push(image.into());
        }
        Ok(1024)
    }
    async fn ensure_network(&self, _name: &str, _subnet: &str) -> Result<()> {
        Ok(())
    }
    async fn create(&self, spec: &ContainerSpec) -> Result<String> {
        let mut st = self.lock();
        st.next += 1;
        let id = format!("c{}", st.next);
        st.calls.push(Call::Create(Box::new(spec.clone())));
        st.containers.push(ContainerInfo {
            id: id.clone(),
            labels: spec.labels.clone(),
            state: RunState::Created,
            started_at: None,
            finished_at: None,
            image: spec.image.clone(),
            image_id: format!("sha256:{}", spec.image),
            ip: Some("10.0.0.2".into()),
        });
        Ok(id)
    }
    async fn start(&self, id: &str) -> Result<()> {
        let mut st = self.lock();
        st.calls.push(Call::Start(id.into()));
        match st.containers.iter_mut().find(|c| c.id == id) {
            Some(c) => {
                c.state = RunState::Running;
                c.started_at = Some("2020-01-01T00:00:00Z".into());
                Ok(())
            }
            None => Err(RuntimeError::NotFound(id.into())),
        }
    }
    async fn stop(&self, id: &str, grace_seconds: i64) -> Result<()> {
        let mut st = self.lock();
        st.calls.push(Call::Stop(id.into(), grace_seconds));
        if let Some(c) = st.containers.iter_mut().find(|c| c.id == id) {
            if c.state == RunState::Running {
                c.state = RunState::Exited {
                    code: 0,
                    oom_killed: false,
                };
            }
        }
        Ok(())
    }
    async fn remove(&self, id: &str) -> Result<()> {
        let mut st = self.lock();
        st.calls.push(Call::Remove(id.into()));
        st.containers.retain(|c| c.id != id);
        Ok(())
    }
    async fn list(&self, labels: &[(&str, &str)]) -> Result<Vec<ContainerInfo>> {
        let filters = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut st = self.lock();
        st.calls.push(Call::List(filters));
        Ok(st
            .containers
            .iter()
            .filter(|c| {
                labels
                    .iter()
                    .all(|(k, v)| c.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .cloned()
            .collect())
    }
    async fn inspect(&self, id: &str, _network: Option<&str>) -> Result<ContainerInfo> {
        let mut st = self.lock();
        st.calls.push(Call::Inspect(id.into()));
        st.containers
            .iter()
            .find(|c| c.id == id)
            .cloned()
            .ok_or_else(|| RuntimeError::NotFound(id.into()))
    }
    async fn logs(
        &self,
        _id: &str,
        _opts: &LogOptions,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        Ok(Box::pin(futures::stream::iter(vec![Ok(
            Bytes::from_static(b"fake\n"),
        )])))
    }
    async fn exec(
        &self,
        _id: &str,
        _cmd: &[String],
        _stdin: bool,
        _tty: bool,
    ) -> Result<ExecSession> {
        Ok(ExecSession {
            id: "exec".into(),
            output: Box::pin(futures::stream::iter(vec![Ok((
                1,
                Bytes::from_static(b"fake\n"),
            ))])),
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
