//! The kubelet's streaming endpoints end to end: unmodified `kubectl port-forward`, `exec` and
//! `attach` (and kube-rs port-forward) through a real apiserver to a real Docker kubelet, over
//! WebSocket and over the SPDY fallbacks.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::PostParams;
use kube::Api;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

mod common;
use common::Harness;

/// Creates a one-container busybox pod bound to this node and waits until it runs.
async fn run_busybox(h: &Harness, name: &str, script: &str) -> Result<()> {
    h.run_pod(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "main", "image": common::BUSYBOX,
            "command": ["sh", "-c", script],
        }]}
    }))
    .await?;
    wait_running(h, name).await
}

/// Waits until pod `name` is Running.
async fn wait_running(h: &Harness, name: &str) -> Result<()> {
    h.wait_pod(name, 60, "Running", |p| common::phase(p) == "Running")
        .await
        .map(|_| ())
}

/// A kubectl command against the test server (`env` set on top of ours).
fn kubectl(h: &Harness, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("kubectl");
    cmd.arg("--kubeconfig")
        .arg(h.server.kubeconfig_path())
        .arg("--cache-dir")
        .arg(h.root.path().join("kubectl-cache"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs kubectl to completion with `stdin` as input.
async fn kubectl_run(
    h: &Harness,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &[u8],
) -> Result<std::process::Output> {
    let mut child = kubectl(h, args, env).spawn()?;
    let mut pipe = child.stdin.take().context("stdin")?;
    pipe.write_all(stdin).await?;
    drop(pipe);
    tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .context("kubectl timed out")?
        .context("kubectl")
}

/// Starts `kubectl port-forward pod/<pod> :<port>` and returns it with its local port.
async fn port_forward(
    h: &Harness,
    pod: &str,
    port: u16,
    env: &[(&str, &str)],
) -> Result<(tokio::process::Child, u16)> {
    let target = format!("pod/{pod}");
    let remote = format!(":{port}");
    let mut child = kubectl(h, &["port-forward", &target, &remote], env).spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let local = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            // "Forwarding from 127.0.0.1:41234 -> 8080"
            if let Some(rest) = line.strip_prefix("Forwarding from 127.0.0.1:") {
                let port = rest.split_whitespace().next().unwrap_or_default();
                return Ok::<u16, anyhow::Error>(port.parse()?);
            }
        }
        bail!("port-forward exited before forwarding")
    })
    .await;
    let local = match local {
        Ok(r) => r?,
        Err(_) => {
            let _ = child.kill().await;
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err).await;
            }
            bail!("port-forward never became ready: {err}");
        }
    };
    // Keep draining stdout ("Handling connection for ...") so kubectl never blocks on it.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, local))
}

/// An HTTP/1.0 GET through the forwarded port; returns the whole response.
async fn http_get(port: u16) -> Result<String> {
    let io = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n")
            .await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        Ok::<String, anyhow::Error>(String::from_utf8_lossy(&out).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(20), io)
        .await
        .context("GET through port-forward timed out")?
}

const HTTPD: &str = "mkdir -p /www && printf 'hello-from-pod' > /www/index.html && \
                     exec httpd -f -p 8080 -h /www";

async fn check_forwarding(h: &Harness, env: &[(&str, &str)]) -> Result<()> {
    let (mut child, local) = port_forward(h, "web", 8080, env).await?;
    // Two connections at once: each gets its own pair of SPDY streams.
    let (a, b) = tokio::join!(http_get(local), http_get(local));
    let (a, b) = (a?, b?);
    for body in [&a, &b] {
        assert!(
            body.starts_with("HTTP/1.") && body.contains(" 200 "),
            "{body}"
        );
        assert!(body.ends_with("hello-from-pod"), "{body}");
    }
    // And one more after those finished: the connection stays usable.
    let c = http_get(local).await?;
    assert!(c.ends_with("hello-from-pod"), "{c}");
    let _ = child.kill().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn port_forward_over_websocket_and_spdy() -> Result<()> {
    let Some(h) = Harness::start(|_| {}).await? else {
        return Ok(());
    };
    run_busybox(&h, "web", HTTPD).await?;
    // kubectl 1.31+ tunnels SPDY through a WebSocket by default...
    check_forwarding(&h, &[])
        .await
        .context("websocket tunnel")?;
    // ...and falls back to (or can be told to use) a plain SPDY/3.1 upgrade.
    check_forwarding(&h, &[("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")])
        .await
        .context("spdy upgrade")?;

    // kube-rs speaks the plain WebSocket channel protocol (v4.channel.k8s.io).
    let mut pf = h.pods().portforward("web", &[8080]).await?;
    let mut stream = pf.take_stream(8080).context("port stream")?;
    stream
        .write_all(b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n")
        .await?;
    let mut body = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut body))
        .await
        .context("kube-rs port-forward timed out")??;
    let body = String::from_utf8_lossy(&body);
    assert!(body.ends_with("hello-from-pod"), "{body}");
    drop(stream);
    pf.abort();

    // The kubelet's /metrics counted the sessions and sees the pod.
    let node: Node = Api::all(h.client.clone()).get(&h.node).await?;
    let port = node
        .status
        .and_then(|s| s.daemon_endpoints)
        .and_then(|d| d.kubelet_endpoint)
        .map(|e| e.port)
        .context("kubelet port")?;
    let text = tokio::time::timeout(Duration::from_secs(10), async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", u16::try_from(port)?)).await?;
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok::<String, anyhow::Error>(out)
    })
    .await??;
    assert!(text.contains("\nkubelet_running_pods 1\n"), "{text}");
    for (transport, n) in [("websocket", 2), ("spdy", 1)] {
        let line = format!(
            "kubelet_streaming_sessions_total{{kind=\"portforward\",transport=\"{transport}\"}} {n}\n"
        );
        assert!(text.contains(&line), "{text}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exec_over_spdy_reports_streams_and_exit_code() -> Result<()> {
    let Some(h) = Harness::start(|_| {}).await? else {
        return Ok(());
    };
    run_busybox(&h, "sh", "exec sleep 3600").await?;
    let spdy = [("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")];
    let out = kubectl_run(
        &h,
        &[
            "exec",
            "sh",
            "--",
            "sh",
            "-c",
            "echo to-stdout; echo to-stderr >&2; exit 3",
        ],
        &spdy,
        b"",
    )
    .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "stdout={stdout} stderr={stderr}"
    );
    assert_eq!(stdout, "to-stdout\n");
    assert!(stderr.contains("to-stderr"), "{stderr}");

    // stdin travels on its own stream and its end (FIN) ends `cat`.
    let out = kubectl_run(
        &h,
        &["exec", "-i", "sh", "--", "cat"],
        &spdy,
        b"line one\nline two\n",
    )
    .await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "line one\nline two\n");
    Ok(())
}

/// Runs `kubectl attach` until the pod's output shows up, then stops it.
async fn attach_sees_output(h: &Harness, env: &[(&str, &str)]) -> Result<String> {
    attach_until(h, &["attach", "ticker"], env, b"", "tick-").await
}

/// Runs `kubectl <args>` with `input` on its (still open) stdin until a stdout line starts with
/// `want`, then stops it and returns that line.
async fn attach_until(
    h: &Harness,
    args: &[&str],
    env: &[(&str, &str)],
    input: &[u8],
    want: &str,
) -> Result<String> {
    let mut child = kubectl(h, args, env).spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    stdin.write_all(input).await?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let seen = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await? {
            if line.starts_with(want) {
                return Ok::<String, anyhow::Error>(line);
            }
        }
        bail!("attach ended without output")
    })
    .await;
    drop(stdin);
    let _ = child.kill().await;
    match seen {
        Ok(r) => r,
        Err(_) => {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err).await;
            }
            bail!("no output from attach: {err}")
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attach_streams_the_main_process_output() -> Result<()> {
    let Some(h) = Harness::start(|_| {}).await? else {
        return Ok(());
    };
    run_busybox(
        &h,
        "ticker",
        "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.5; done",
    )
    .await?;
    let line = attach_sees_output(&h, &[]).await.context("websocket")?;
    assert!(line.starts_with("tick-"), "{line}");
    let line = attach_sees_output(&h, &[("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")])
        .await
        .context("spdy")?;
    assert!(line.starts_with("tick-"), "{line}");
    Ok(())
}

/// `kubectl attach -i` feeds the container's main process (the pod's `stdin: true` reaches
/// Docker's `OpenStdin`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attach_stdin_reaches_the_main_process() -> Result<()> {
    let Some(h) = Harness::start(|_| {}).await? else {
        return Ok(());
    };
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "reader", "namespace": "default"},
        "spec": {"nodeName": h.node, "terminationGracePeriodSeconds": 1, "containers": [{
            "name": "main", "image": "kubelite/busybox:v1", "command": ["cat"],
            "stdin": true,
        }]}
    }))?;
    h.pods().create(&PostParams::default(), &pod).await?;
    wait_running(&h, "reader").await?;
    for env in [
        &[][..],
        &[("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")][..],
    ] {
        let line = attach_until(
            &h,
            &["attach", "-i", "reader"],
            env,
            b"echoed-by-cat\n",
            "echoed-by-cat",
        )
        .await
        .with_context(|| format!("env {env:?}"))?;
        assert_eq!(line, "echoed-by-cat");
    }
    Ok(())
}
