//! Shared fixtures for the proxy integration tests: a Docker network with busybox HTTP
//! backends, a proxy running in a task, and guards that remove containers, network, chains and
//! the sink interface even when a test fails.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::PostParams;
use kube::Api;
use kubelite_proxy::chains::{cleanup_batches, Existing};
use kubelite_proxy::Config;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A short random lowercase hex tag.
pub fn tag() -> String {
    format!("{:06x}", rand::random::<u32>() & 0xff_ffff)
}

fn sh(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `iptables-save` of nat + filter.
pub fn iptables_save() -> String {
    let mut s = sh("iptables-save", &["-t", "nat"]).unwrap_or_default();
    s.push('\n');
    s.push_str(&sh("iptables-save", &["-t", "filter"]).unwrap_or_default());
    s
}

/// Whether `ip link show dev <name>` finds the interface.
pub fn link_exists(name: &str) -> bool {
    sh("ip", &["-o", "link", "show", "dev", name]).is_ok()
}

/// A Docker network with HTTP backends; removed on drop.
pub struct Backends {
    pub network: String,
    pub containers: Vec<String>,
    /// (hostname, IP) per container.
    pub pods: Vec<(String, Ipv4Addr)>,
}

impl Backends {
    /// Creates a network in a free 10.213.x.0/24 and `n` busybox httpd containers that serve
    /// their hostname on :8080.
    pub fn start(n: usize) -> anyhow::Result<Self> {
        let t = tag();
        let network = format!("klproxy-{t}");
        let mut created = false;
        for _ in 0..20 {
            let subnet = format!("10.213.{}.0/24", rand::random::<u8>().max(1));
            if sh(
                "docker",
                &["network", "create", "--subnet", &subnet, &network],
            )
            .is_ok()
            {
                created = true;
                break;
            }
        }
        if !created {
            bail!("no free 10.213.x.0/24 for a Docker network");
        }
        let mut me = Self {
            network,
            containers: Vec::new(),
            pods: Vec::new(),
        };
        for i in 0..n {
            let name = format!("{}-b{i}", me.network);
            let host = format!("backend-{i}-{t}");
            sh(
                "docker",
                &[
                    "run",
                    "-d",
                    "--name",
                    &name,
                    "--hostname",
                    &host,
                    "--network",
                    &me.network,
                    "kubelite/busybox:v1",
                    "sh",
                    "-c",
                    "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www",
                ],
            )?;
            me.containers.push(name.clone());
            let ip = sh(
                "docker",
                &[
                    "inspect",
                    "-f",
                    "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                    &name,
                ],
            )?;
            me.pods.push((host, ip.parse().context("container IP")?));
        }
        // httpd starts in milliseconds, but wait until every backend answers directly.
        for (host, ip) in &me.pods {
            eventually(Duration::from_secs(10), || {
                get(SocketAddr::from((*ip, 8080)))
                    .ok()
                    .filter(|h| h == host)
            })
            .with_context(|| format!("backend {host} never answered"))?;
        }
        Ok(me)
    }
}

impl Backends {
    /// Puts container `i`'s bridge port in hairpin mode, as upstream's kubelet does
    /// (`--hairpin-mode=hairpin-veth`): without it a pod's packet DNATed back to itself is
    /// never sent out the port it came in on.
    pub fn enable_hairpin(&self, i: usize) -> anyhow::Result<()> {
        let c = &self.containers[i];
        let idx = sh("docker", &["exec", c, "cat", "/sys/class/net/eth0/iflink"])?;
        let links = sh("ip", &["-o", "link"])?;
        let veth = links
            .lines()
            .find_map(|l| {
                let (i, rest) = l.split_once(": ")?;
                (i == idx).then(|| {
                    rest.split(['@', ':'])
                        .next()
                        .unwrap_or_default()
                        .to_string()
                })
            })
            .context("veth of container")?;
        std::fs::write(format!("/sys/class/net/{veth}/brport/hairpin_mode"), "1")
            .with_context(|| format!("hairpin mode on {veth}"))?;
        Ok(())
    }
}

impl Drop for Backends {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = sh("docker", &["rm", "-f", c]);
        }
        let _ = sh("docker", &["network", "rm", &self.network]);
    }
}

/// HTTP GET of `addr` from inside a container with `nc` (busybox-static's wget crashes on
/// name service lookups); returns the body.
pub fn docker_wget(container: &str, addr: SocketAddr) -> anyhow::Result<String> {
    let script = format!(
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {} {}",
        addr.ip(),
        addr.port()
    );
    let out = sh("docker", &["exec", container, "sh", "-c", &script])?;
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().trim();
    if body.is_empty() {
        bail!("empty response from {addr}: {out:?}");
    }
    Ok(body.to_string())
}

/// Polls `f` every 50 ms until it returns `Some` or `limit` passes.
pub fn eventually<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("condition not met within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One HTTP/1.0 GET / over a fresh connection; returns the body (the backend's hostname).
pub fn get(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let body = buf.split("\r\n\r\n").nth(1).unwrap_or_default().trim();
    if body.is_empty() {
        return Err(std::io::Error::other(format!("empty response: {buf:?}")));
    }
    Ok(body.to_string())
}

/// A random ClusterIP inside the apiserver's default 10.96.0.0/12, away from 10.96.0.x.
pub fn random_cluster_ip() -> Ipv4Addr {
    Ipv4Addr::new(
        10,
        100,
        rand::random::<u8>(),
        rand::random::<u8>().clamp(2, 250),
    )
}

/// A random port in the default NodePort range that is free on this host right now.
pub fn random_node_port() -> u16 {
    loop {
        let p = 30000 + rand::random::<u16>() % 2768;
        if std::net::TcpListener::bind(("0.0.0.0", p)).is_ok() {
            return p;
        }
    }
}

/// A proxy config with a unique chain prefix and interface (and its own metrics).
pub fn unique_config() -> Config {
    let t = tag().to_uppercase();
    Config {
        chain_prefix: format!("KLT{t}-"),
        interface: format!("klt{}", t.to_lowercase()),
        metrics: Default::default(),
        ..Config::default()
    }
}

/// A proxy running in a task; on drop it stops and its chains and interface are removed.
pub struct Proxy {
    pub config: Config,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<kubelite_proxy::Result<()>>>,
}

impl Proxy {
    /// Starts the proxy and waits for its first sync: before it the service CIDR is not yet
    /// routed to the sink, and a test must not send traffic that could leave the machine.
    pub async fn start(client: kube::Client, config: Config) -> anyhow::Result<Self> {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "kubelite_proxy=debug".into()),
            )
            .with_test_writer()
            .try_init();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(kubelite_proxy::run(client, config.clone(), async move {
            let _ = rx.await;
        }));
        let me = Self {
            config,
            stop: Some(tx),
            task: Some(task),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while me.config.metrics.syncs() == 0 {
            if Instant::now() > deadline {
                bail!("proxy did not sync within 15s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(me)
    }

    /// Stops the proxy without cleanup (rules stay, like a restart).
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task).await???;
        }
        Ok(())
    }
}

/// Synchronous removal of everything a config names (the Drop path cannot await).
pub fn force_cleanup(config: &Config) {
    let existing = Existing::parse(&iptables_save(), &config.chain_prefix);
    for batch in cleanup_batches(&existing) {
        if let Ok(mut child) = Command::new("iptables-restore")
            .args(["-w", "5", "--noflush"])
            .stdin(Stdio::piped())
            .spawn()
        {
            if let Some(mut stdin) = child.stdin.take() {
                let _ = stdin.write_all(batch.as_bytes());
            }
            let _ = child.wait();
        }
    }
    if link_exists(&config.interface) {
        let _ = sh("ip", &["link", "del", &config.interface]);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
        force_cleanup(&self.config);
    }
}

/// Creates a Service `name` in `default` with the given ClusterIP (and NodePort).
pub async fn create_service(
    client: &kube::Client,
    name: &str,
    cluster_ip: Ipv4Addr,
    node_port: Option<u16>,
    affinity: bool,
) -> anyhow::Result<Service> {
    let mut port = json!({"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"});
    let mut spec = json!({"clusterIP": cluster_ip.to_string(), "type": "ClusterIP",
        "selector": {"app": name}});
    if let Some(np) = node_port {
        port["nodePort"] = json!(np);
        spec["type"] = json!("NodePort");
    }
    if affinity {
        spec["sessionAffinity"] = json!("ClientIP");
    }
    spec["ports"] = json!([port]);
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }))?;
    Ok(Api::<Service>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &svc)
        .await?)
}

/// An EndpointSlice for service `name` with `(ip, ready)` endpoints on port 8080.
pub fn slice(name: &str, endpoints: &[(Ipv4Addr, bool)]) -> anyhow::Result<EndpointSlice> {
    let eps: Vec<_> = endpoints
        .iter()
        .map(|(ip, ready)| json!({"addresses": [ip.to_string()], "conditions": {"ready": ready}}))
        .collect();
    Ok(serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{name}-abc"), "namespace": "default",
            "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": eps,
    }))?)
}

/// Creates or replaces the slice.
pub async fn put_slice(client: &kube::Client, s: &EndpointSlice) -> anyhow::Result<()> {
    let api = Api::<EndpointSlice>::namespaced(client.clone(), "default");
    let name = s.metadata.name.clone().unwrap_or_default();
    match api.get_opt(&name).await? {
        Some(cur) => {
            let mut next = s.clone();
            next.metadata.resource_version = cur.metadata.resource_version;
            api.replace(&name, &PostParams::default(), &next).await?;
        }
        None => {
            api.create(&PostParams::default(), s).await?;
        }
    }
    Ok(())
}

/// Hostnames seen over `n` GETs (failed GETs count as "error: ...").
pub fn spread(addr: SocketAddr, n: usize) -> std::collections::BTreeMap<String, usize> {
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..n {
        let k = get(addr).unwrap_or_else(|e| format!("error: {e}"));
        *seen.entry(k).or_insert(0) += 1;
    }
    seen
}
