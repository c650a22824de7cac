//! Every kubectl release installed beside the dispatcher (1.27 … 1.33) runs the everyday
//! workflow against a real API server: the `kubectl` on PATH picks the release matching the
//! server's minor (1.33), but users also run older releases directly, and those differ on the
//! wire (discovery v2beta1 before 1.30, protobuf bodies from `kubectl create` in 1.32+,
//! OpenAPI v2 vs v3 for `explain` and validation).
//!
//! Run: `cargo test -p kubelite-e2e --test kubectl_versions` (one server per release).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use kubelite_apiserver::testing::TestServer;
use kubelite_e2e::kubectl::installed_releases;
use kubelite_e2e::{assert_contains, Kubectl, Table};
use serde_json::Value;

/// How long one release's whole workflow may take.
const WORKFLOW_TIMEOUT: Duration = Duration::from_secs(120);

const APP: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
data:
  greeting: hello
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: c
        image: kubelite/busybox:v1
        command: [sleep, "3600"]
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
"#;

/// The same manifest with one field changed in the Deployment and one in the ConfigMap.
fn app_changed() -> String {
    APP.replace("replicas: 2", "replicas: 3")
        .replace("greeting: hello", "greeting: bonjour")
}

const LIST: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: listed-a}
  data: {k: a}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: listed-b}
  data: {k: b}
"#;

const UNKNOWN_FIELD: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: typo
spec:
  foo: 1
  selector:
    matchLabels: {app: typo}
  template:
    metadata:
      labels: {app: typo}
    spec:
      containers: [{name: c, image: kubelite/busybox:v1}]
"#;

/// The release `kubectl.1.<minor>` beside the dispatcher.
fn release(minor: u32) -> Result<PathBuf> {
    let releases = installed_releases()?;
    releases
        .iter()
        .find(|(m, _)| *m == minor)
        .map(|(_, p)| p.clone())
        .with_context(|| format!("kubectl 1.{minor} is not installed (found {releases:?})"))
}

/// `kubectl get <what> -o jsonpath=<path>`.
async fn jsonpath(k: &Kubectl, what: &[&str], path: &str) -> Result<String> {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    let output = format!("-o=jsonpath={path}");
    args.push(&output);
    k.ok(&args).await
}

async fn workflow(minor: u32) -> Result<()> {
    let server = TestServer::start()
        .await
        .context("starting the API server")?;
    let kubectl = Kubectl::new(server.kubeconfig_path())?.with_program(&release(minor)?);
    tokio::time::timeout(WORKFLOW_TIMEOUT, steps(minor, kubectl))
        .await
        .with_context(|| format!("kubectl 1.{minor}: timed out after {WORKFLOW_TIMEOUT:?}"))?
        .with_context(|| format!("kubectl 1.{minor}"))
}

async fn steps(minor: u32, kubectl: Kubectl) -> Result<()> {
    // The release runs itself (no dispatch) and sees the server's version.
    let version: Value = serde_json::from_str(&kubectl.ok(&["version", "-o", "json"]).await?)?;
    ensure!(
        version["clientVersion"]["minor"] == minor.to_string().as_str(),
        "{version}"
    );
    ensure!(
        version["serverVersion"]["gitVersion"] == "v1.33.0",
        "{version}"
    );

    // Discovery: resources with short names (aggregated discovery v2 or v2beta1).
    let resources = Table::parse(&kubectl.ok(&["api-resources"]).await?);
    resources.expect_row(
        "deployments",
        &[("SHORTNAMES", "deploy"), ("KIND", "Deployment")],
    )?;

    // A typed `create` (a protobuf body from 1.32 on).
    let out = kubectl.ok(&["create", "namespace", "vt"]).await?;
    assert_contains(&out, "namespace/vt created")?;
    let k = kubectl.in_namespace("vt");

    // Client-side apply: created, unchanged, configured.
    let out = k.apply_yaml(APP).await?.ok()?.stdout;
    for line in [
        "configmap/cfg created",
        "deployment.apps/web created",
        "service/web created",
    ] {
        assert_contains(&out, line)?;
    }
    let out = k.apply_yaml(APP).await?.ok()?.stdout;
    assert_contains(&out, "deployment.apps/web unchanged")?;
    let out = k.apply_yaml(&app_changed()).await?.ok()?.stdout;
    assert_contains(&out, "deployment.apps/web configured")?;
    assert_contains(&out, "configmap/cfg configured")?;
    assert_contains(&out, "service/web unchanged")?;
    ensure!(jsonpath(&k, &["deploy", "web"], "{.spec.replicas}").await? == "3");
    ensure!(jsonpath(&k, &["cm", "cfg"], "{.data.greeting}").await? == "bonjour");
    // Server defaults, as `get -o yaml` users expect them.
    ensure!(jsonpath(&k, &["deploy", "web"], "{.spec.strategy.type}").await? == "RollingUpdate");
    ensure!(jsonpath(&k, &["deploy", "web"], "{.spec.revisionHistoryLimit}").await? == "10");
    let cluster_ip = jsonpath(&k, &["svc", "web"], "{.spec.clusterIP}").await?;
    ensure!(
        cluster_ip.parse::<std::net::Ipv4Addr>().is_ok(),
        "clusterIP {cluster_ip:?}"
    );

    // Server-side tables.
    Table::parse(&k.ok(&["get", "deploy"]).await?)
        .expect_headers("NAME READY UP-TO-DATE AVAILABLE AGE")?;
    Table::parse(&k.ok(&["get", "svc"]).await?)
        .expect_headers("NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE")?;
    let all = k.ok(&["get", "all"]).await?;
    assert_contains(&all, "deployment.apps/web")?;
    assert_contains(&all, "service/web")?;
    let described = k.ok(&["describe", "deploy", "web"]).await?;
    assert_contains(&described, "Replicas:")?;
    assert_contains(&described, "RollingUpdate")?;

    // Mutations: scale, label, annotate, the three patch types.
    assert_contains(
        &k.ok(&["scale", "deploy", "web", "--replicas=1"]).await?,
        "deployment.apps/web scaled",
    )?;
    ensure!(jsonpath(&k, &["deploy", "web"], "{.spec.replicas}").await? == "1");
    assert_contains(
        &k.ok(&["label", "cm", "cfg", "tier=x"]).await?,
        "configmap/cfg labeled",
    )?;
    ensure!(
        k.ok(&["get", "cm", "-l", "tier=x", "-o", "name"])
            .await?
            .trim()
            == "configmap/cfg"
    );
    // kubectl 1.27 prints "annotate", later releases "annotated".
    assert_contains(
        &k.ok(&["annotate", "cm", "cfg", "note=y"]).await?,
        "configmap/cfg annotate",
    )?;
    ensure!(jsonpath(&k, &["cm", "cfg"], "{.metadata.annotations.note}").await? == "y");
    let strategic = r#"{"spec":{"template":{"spec":{"containers":[{"name":"c","image":"kubelite/busybox:v2"}]}}}}"#;
    assert_contains(
        &k.ok(&["patch", "deploy", "web", "-p", strategic]).await?,
        "deployment.apps/web patched",
    )?;
    let containers = jsonpath(
        &k,
        &["deploy", "web"],
        "{.spec.template.spec.containers[*].name}",
    )
    .await?;
    ensure!(
        containers == "c",
        "strategic merge kept one container: {containers:?}"
    );
    k.ok(&[
        "patch",
        "cm",
        "cfg",
        "--type=merge",
        "-p",
        r#"{"data":{"m":"1"}}"#,
    ])
    .await?;
    k.ok(&[
        "patch",
        "cm",
        "cfg",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/data/j","value":"2"}]"#,
    ])
    .await?;
    ensure!(jsonpath(&k, &["cm", "cfg"], "{.data.m}{.data.j}").await? == "12");

    // Typed creates and server-side apply.
    assert_contains(
        &k.ok(&["create", "configmap", "c2", "--from-literal=k=v"])
            .await?,
        "configmap/c2 created",
    )?;
    assert_contains(
        &k.ok(&["create", "deployment", "d2", "--image=kubelite/busybox:v1"])
            .await?,
        "deployment.apps/d2 created",
    )?;
    let ssa = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ss}\ndata: {a: b}\n";
    let out = k
        .run_with_stdin(&["apply", "--server-side", "-f", "-"], Some(ssa))
        .await?
        .ok()?
        .stdout;
    assert_contains(&out, "configmap/ss serverside-applied")?;
    let managers = jsonpath(&k, &["cm", "ss"], "{.metadata.managedFields[*].operation}").await?;
    ensure!(managers == "Apply", "managedFields operations {managers:?}");

    // A `kind: List` manifest (validated against /openapi/v2) and an unknown field (rejected
    // under the default --validate=strict).
    let out = k.apply_yaml(LIST).await?.ok()?.stdout;
    assert_contains(&out, "configmap/listed-a created")?;
    assert_contains(&out, "configmap/listed-b created")?;
    let typo = k.apply_yaml(UNKNOWN_FIELD).await?.failed()?;
    assert_contains(&typo.stderr, "unknown field \"spec.foo\"")?;

    // `explain` reads the published schemas.
    assert_contains(
        &kubectl.ok(&["explain", "deployment.spec.replicas"]).await?,
        "Number of desired pods",
    )?;

    // Optimistic concurrency: replacing with a stale resourceVersion is a conflict.
    let stale = k.ok(&["get", "cm", "c2", "-o", "json"]).await?;
    k.ok(&["label", "cm", "c2", "bump=1"]).await?;
    let conflict = k
        .run_with_stdin(&["replace", "-f", "-"], Some(&stale))
        .await?
        .failed()?;
    assert_contains(
        &conflict.stderr,
        "Operation cannot be fulfilled on configmaps \"c2\": the object has been modified; please apply your changes to the latest version and try again",
    )?;

    // Watch: a new object shows up on a running `get -w`.
    let watch = k.spawn(&["get", "cm", "--watch-only", "-o", "name"])?;
    // The watch may start after the create: retry creates until one is seen.
    let mut seen = false;
    for i in 0..20 {
        k.ok(&["create", "configmap", &format!("w{i}")]).await?;
        if watch
            .wait_for_line(Duration::from_millis(500), |l| l.starts_with("configmap/w"))
            .await
            .is_ok()
        {
            seen = true;
            break;
        }
    }
    ensure!(seen, "get -w saw no create: {}", watch.stderr());
    drop(watch);

    // Errors and deletion.
    let missing = k.fails(&["get", "deploy", "nope"]).await?;
    assert_contains(
        &missing.stderr,
        "Error from server (NotFound): deployments.apps \"nope\" not found",
    )?;
    let out = k
        .run_with_stdin(&["delete", "-f", "-"], Some(APP))
        .await?
        .ok()?
        .stdout;
    assert_contains(&out, "deployment.apps \"web\" deleted")?;
    k.fails(&["get", "deploy", "web"]).await?;
    Ok(())
}

macro_rules! releases {
    ($($name:ident => $minor:expr),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() -> Result<()> {
                workflow($minor).await
            }
        )*
    };
}

releases!(
    kubectl_1_27 => 27,
    kubectl_1_28 => 28,
    kubectl_1_29 => 29,
    kubectl_1_30 => 30,
    kubectl_1_31 => 31,
    kubectl_1_32 => 32,
    kubectl_1_33 => 33,
);
