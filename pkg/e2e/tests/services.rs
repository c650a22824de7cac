//! Services from inside real pods: a dev cluster (`kubelite_cluster::up`: apiserver, scheduler,
//! controllers, kubelet on Docker, cluster DNS, iptables proxy) with its own pod network,
//! service CIDR, chain prefix and sink interface, then from a busybox pod in one namespace:
//! a Service in another namespace by `svc.ns` and `svc.ns.svc.cluster.local` (HTTP GETs by
//! name through the pod's resolver, `nslookup` of the full name), by its ClusterIP,
//! and the same Service scaled to zero refusing connections at once.
//!
//! Needs root and Docker (skips otherwise); `hack/images` builds the busybox image.
//! Run: `cargo test -p kubelite-e2e --test services`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use kubelite_e2e::{wait_until, Kubectl};

/// Removes what the cluster may leave when the test fails half way: pod containers, the pod
/// network, the proxy's chains and sink interface.
struct Cleanup {
    node: String,
    network: String,
    proxy: kubelite_proxy::Config,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let ids = std::process::Command::new("docker")
            .args(["ps", "-aq", "--filter"])
            .arg(format!("label=kubelite.io/node={}", self.node))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default();
        for id in ids.split_whitespace() {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", id])
                .output();
        }
        let _ = std::process::Command::new("docker")
            .args(["network", "rm", &self.network])
            .output();
        // A runtime of its own on a plain thread: drop may run inside the test's runtime.
        let proxy = self.proxy.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                if let Err(e) = rt.block_on(kubelite_proxy::cleanup(&proxy)) {
                    eprintln!("proxy cleanup failed: {e}");
                }
            }
        })
        .join();
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The backend: two busybox httpd pods serving their hostname on 8080, behind Service `web`
/// (port 80) in namespace `b`; the client pod idles in namespace `a`.
fn manifests(node: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: a}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: b}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: b}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      nodeSelector: {{kubernetes.io/hostname: {node}}}
      containers:
      - name: httpd
        image: kubelite/busybox:v1
        command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe:
          tcpSocket: {{port: 8080}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: b}}
spec:
  type: NodePort
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: a}}
spec:
  nodeSelector: {{kubernetes.io/hostname: {node}}}
  terminationGracePeriodSeconds: 1
  containers:
  - name: sh
    image: kubelite/busybox:v1
    command: ["sleep", "3600"]
"#
    )
}

/// Runs `script` with `sh -c` in the client pod; returns (exit ok, stdout + stderr, time taken).
async fn in_client(k: &Kubectl, script: &str) -> Result<(bool, String, Duration)> {
    let start = Instant::now();
    let out = k
        .run(&["-n", "a", "exec", "client", "--", "sh", "-c", script])
        .await?;
    let took = start.elapsed();
    Ok((out.success(), format!("{}{}", out.stdout, out.stderr), took))
}

/// `wget http://host:port/` from the client pod, as a user would: a name goes through the
/// pod's resolver (search path, ndots) like any program's would. Bounded by busybox
/// `timeout`, not `wget -T`, which segfaults in Debian's busybox-static.
async fn get(k: &Kubectl, host: &str, port: u16) -> Result<String> {
    let (ok, out, _) =
        in_client(k, &format!("timeout 10 wget -q -O- http://{host}:{port}/")).await?;
    ensure!(ok, "wget http://{host}:{port}/ from the pod failed: {out}");
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pods_reach_services_across_namespaces_by_name_and_cluster_ip() -> Result<()> {
    if !kubelite_cluster::can_run_cluster() {
        eprintln!("SKIP: needs root and a running Docker");
        return Ok(());
    }
    ensure!(
        std::process::Command::new(root().join("hack/images"))
            .status()?
            .success(),
        "hack/images failed"
    );
    // Everything of this cluster's own, so it runs beside other clusters and proxy tests
    // (which use 10.96.0.0/12, 10.120-209.x and 10.213.x): pod network 10.214.x.0/24,
    // services 10.215.x.0/24, and a chain prefix and interface named after the tag.
    let tag: u32 = rand::random::<u32>() % 100_000;
    let third = rand::random::<u8>();
    let node = format!("kl-svc-{tag}");
    let network = format!("kubelite-svc-{tag}");
    let service_cidr = format!("10.215.{third}.0/24");
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    let config = kubelite_cluster::UpConfig {
        data_dir: dir.path().join("data"),
        etcd_servers: Vec::new(),
        kubeconfig: kubeconfig.clone(),
        context: "kubelite".into(),
        listen: "127.0.0.1:0".parse()?,
        reset: false,
        node_name: node.clone(),
        kubelet_listen: "127.0.0.1:0".parse()?,
        proxy: true,
        hollow_nodes: 0,
        pod_network: network.clone(),
        pod_subnet: format!("10.214.{third}.0/24"),
        service_cidr: service_cidr.clone(),
        proxy_chain_prefix: format!("KLE{tag:05}-"),
        proxy_interface: format!("kle{tag}"),
    };
    let proxy_config = config.proxy_config();
    let down = kubelite_cluster::down::DownConfig {
        timeout: Duration::from_secs(10),
        ..kubelite_cluster::down::DownConfig::for_cluster(&config)
    };
    let _cleanup = Cleanup {
        node: node.clone(),
        network: network.clone(),
        proxy: proxy_config.clone(),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let up = tokio::spawn(kubelite_cluster::up(config, async move {
        let _ = stop_rx.await;
    }));
    // The kubeconfig appears once the node is Ready.
    wait_until(Duration::from_secs(90), || {
        let p = kubeconfig.clone();
        async move { Ok(p.exists().then_some(())) }
    })
    .await
    .context("cluster did not come up")?;
    let k = Kubectl::new(&kubeconfig)?.with_timeout(Duration::from_secs(60));

    k.run_with_stdin(&["apply", "-f", "-"], Some(&manifests(&node)))
        .await?
        .ok()?;
    k.ok(&[
        "-n",
        "b",
        "rollout",
        "status",
        "deployment/web",
        "--timeout=120s",
    ])
    .await?;
    k.ok(&[
        "-n",
        "a",
        "wait",
        "--for=condition=Ready",
        "pod/client",
        "--timeout=120s",
    ])
    .await?;
    let cluster_ip: Ipv4Addr = k
        .ok(&[
            "-n",
            "b",
            "get",
            "svc",
            "web",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
        .await?
        .trim()
        .parse()
        .context("web's ClusterIP")?;
    let dns_ip = kubelite_cluster::nth_address(&service_cidr, 10).context("dns IP")?;
    let pods = k
        .ok(&[
            "-n",
            "b",
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])
        .await?;
    let backends: Vec<String> = pods.split_whitespace().map(str::to_string).collect();
    ensure!(backends.len() == 2, "web pods: {pods}");

    // The pod's resolver points at the cluster DNS Service, with the upstream search path.
    let (_, resolv, _) = in_client(&k, "cat /etc/resolv.conf").await?;
    ensure!(resolv.contains(&format!("nameserver {dns_ip}")), "{resolv}");
    ensure!(
        resolv.contains("search a.svc.cluster.local svc.cluster.local cluster.local"),
        "{resolv}"
    );

    // DNS from namespace a: the full name answers web's ClusterIP. Wait for the first answer:
    // the proxy programs kube-dns's ClusterIP asynchronously.
    let want = cluster_ip.to_string();
    let out = wait_until(Duration::from_secs(30), || async {
        let (ok, out, _) = in_client(&k, "nslookup web.b.svc.cluster.local").await?;
        ensure!(ok && out.contains(&want), "no {want} in: {out}");
        Ok(Some(out))
    })
    .await
    .context("nslookup web.b.svc.cluster.local from namespace a")?;
    ensure!(out.contains(&format!("Address: {want}")), "{out}");
    // The same name in a's own namespace does not exist.
    let (ok, out, _) = in_client(&k, "nslookup web.a.svc.cluster.local").await?;
    ensure!(!ok && out.contains("NXDOMAIN"), "web.a resolved: {out}");

    // HTTP by name, both spellings: a web pod answers with its hostname. `web.b` resolves
    // only through the search path (busybox's nslookup does not apply it; libc, which nc
    // uses, does, as every program in a pod would).
    for name in ["web.b", "web.b.svc.cluster.local"] {
        let out = get(&k, name, 80).await?;
        ensure!(
            backends.iter().any(|b| out.contains(b.as_str())),
            "GET {name}: {out} (backends {backends:?})"
        );
    }

    // By ClusterIP; over several connections both endpoints answer.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let out = get(&k, &cluster_ip.to_string(), 80).await?;
        let host = out
            .rsplit("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        ensure!(backends.contains(&host), "{host:?} is not a web pod");
        seen.insert(host);
        if seen.len() == backends.len() {
            break;
        }
    }
    ensure!(
        seen.len() == 2,
        "only {seen:?} answered through {cluster_ip}"
    );

    // NodePort from the pod, to the node's address on the pod network (the bridge gateway:
    // this dev node's InternalIP is 127.0.0.1, which inside a pod is the pod itself).
    let node_port = k
        .ok(&[
            "-n",
            "b",
            "get",
            "svc",
            "web",
            "-o",
            "jsonpath={.spec.ports[0].nodePort}",
        ])
        .await?;
    let node_ip = kubelite_cluster::nth_address(&format!("10.214.{third}.0/24"), 1)
        .context("pod network gateway")?
        .to_string();
    let port: u16 = node_port.trim().parse().context("web's nodePort")?;
    let out = get(&k, &node_ip, port).await?;
    ensure!(
        backends.iter().any(|b| out.trim() == b),
        "wget {node_ip}:{port} from the pod: {out}"
    );

    // Hairpin: a web pod reaching its own Service's ClusterIP can be sent back to itself
    // (the bridge port in hairpin mode plus the proxy's masquerade make that work).
    let me = &backends[0];
    let in_me = |url: String| {
        let k = &k;
        async move {
            let script = format!("timeout 10 wget -q -O- {url}");
            k.run(&["-n", "b", "exec", me, "--", "sh", "-c", &script])
                .await
        }
    };
    // Same namespace, short name: `wget http://web` from a pod in b.
    let out = in_me("http://web/".to_string()).await?;
    ensure!(
        out.success() && backends.iter().any(|b| out.stdout.trim() == b),
        "wget http://web from {me}: {} {}",
        out.stdout,
        out.stderr
    );
    let mut answered = Vec::new();
    for _ in 0..40 {
        let out = in_me(format!("http://{cluster_ip}/")).await?;
        ensure!(out.success(), "GET {cluster_ip} from {me}: {}", out.stderr);
        let host = out.stdout.trim().to_string();
        if &host == me {
            answered.clear();
            break;
        }
        answered.push(host);
    }
    ensure!(
        answered.is_empty(),
        "{me} never reached itself through {cluster_ip}; answers: {answered:?}"
    );

    // Scaled to zero: the Service keeps its ClusterIP but has no endpoints, and a connection
    // from the pod is refused at once (REJECT), not left to time out (nc -w 10).
    k.ok(&["-n", "b", "scale", "deployment/web", "--replicas=0"])
        .await?;
    // Until the pods are gone their serving-terminating endpoints still take traffic (as
    // upstream), so the check starts once they are deleted.
    k.ok(&[
        "-n",
        "b",
        "wait",
        "--for=delete",
        "pod",
        "-l",
        "app=web",
        "--timeout=60s",
    ])
    .await?;
    let refused = |out: &str| out.contains("Connection refused");
    wait_until(Duration::from_secs(60), || async {
        let (ok, out, _) = in_client(&k, &format!("nc -w 10 {cluster_ip} 80 </dev/null")).await?;
        Ok((!ok && refused(&out)).then_some(()))
    })
    .await
    .context("connections to the empty Service were not refused")?;
    let (ok, out, took) = in_client(&k, &format!("nc -w 10 {cluster_ip} 80 </dev/null")).await?;
    ensure!(!ok && refused(&out), "nc to the empty Service: {out}");
    // The whole `kubectl exec` round trip, far below nc's 10 s timeout.
    ensure!(took < Duration::from_secs(5), "refusal took {took:?}");
    // By name too: DNS still answers, the connection is refused.
    let (ok, out, _) = in_client(&k, "nc -w 10 web.b 80 </dev/null").await?;
    ensure!(!ok && refused(&out), "nc web.b with no endpoints: {out}");

    // Stop, then `down`'s cleanup: nothing of this cluster is left.
    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(60), up)
        .await
        .context("kubelite up did not stop")???;
    kubelite_cluster::down::down(&down).await?;
    let rules = std::process::Command::new("iptables-save").output()?;
    if String::from_utf8_lossy(&rules.stdout).contains(&proxy_config.chain_prefix) {
        bail!("chains of {} left", proxy_config.chain_prefix);
    }
    Ok(())
}
