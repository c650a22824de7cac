//! Changing objects in place: `label`, `annotate`, `patch` (json, merge, strategic), `replace`
//! with a stale resourceVersion, and `scale`.

use anyhow::{ensure, Context as _, Result};
use kubelite_e2e::{assert_contains, expect_at, Env};
use serde_json::json;

const TWO_CONTAINERS: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports: [{containerPort: 80}]
      - name: side
        image: busybox:1.36
        command: ["sleep", "infinity"]
"#;

/// `label` and `annotate`: add, refuse to overwrite, `--overwrite`, remove with `key-`.
pub async fn label_and_annotate(env: Env) -> Result<()> {
    env.create_namespace().await?;
    let k = env.kubectl_ns();
    k.ok(&["create", "configmap", "target", "--from-literal=a=b"])
        .await?;

    ensure!(k.ok(&["label", "cm", "target", "env=prod"]).await? == "configmap/target labeled\n");
    let refused = k.fails(&["label", "cm", "target", "env=dev"]).await?;
    assert_contains(
        &refused.stderr,
        "'env' already has a value (prod), and --overwrite is false",
    )?;
    ensure!(
        k.ok(&["label", "cm", "target", "env=dev", "--overwrite"])
            .await?
            == "configmap/target labeled\n"
    );
    let labels = k.get_json(&["cm", "target"]).await?["metadata"]["labels"].clone();
    ensure!(labels == json!({"env": "dev"}), "{labels}");
    ensure!(k.ok(&["label", "cm", "target", "env-"]).await? == "configmap/target unlabeled\n");
    let got = k.get_json(&["cm", "target"]).await?;
    // Upstream drops empty label and annotation maps (`omitempty`).
    ensure!(
        got["metadata"].get("labels").is_none(),
        "labels after removing the only one: {}",
        got["metadata"]
    );

    ensure!(
        k.ok(&["annotate", "cm", "target", "note=hello world"])
            .await?
            == "configmap/target annotated\n"
    );
    let refused = k.fails(&["annotate", "cm", "target", "note=again"]).await?;
    assert_contains(&refused.stderr, "already has a value (hello world)")?;
    assert_contains(&refused.stderr, "--overwrite is false")?;
    k.ok(&["annotate", "cm", "target", "note=again", "--overwrite"])
        .await?;
    let note = k
        .ok(&[
            "get",
            "cm",
            "target",
            "-o",
            "jsonpath={.metadata.annotations.note}",
        ])
        .await?;
    ensure!(note == "again", "{note}");
    ensure!(k.ok(&["annotate", "cm", "target", "note-"]).await? == "configmap/target annotated\n");
    let got = k.get_json(&["cm", "target"]).await?;
    ensure!(
        got["metadata"].get("annotations").is_none(),
        "annotations after removing the only one: {}",
        got["metadata"]
    );
    // Labels by selector across several objects.
    k.ok(&["create", "configmap", "second"]).await?;
    let out = k.ok(&["label", "cm", "--all", "batch=1"]).await?;
    ensure!(
        out == "configmap/second labeled\nconfigmap/target labeled\n",
        "{out}"
    );
    Ok(())
}

/// `patch` with `--type=json`, `--type=merge` and the default strategic merge patch.
pub async fn patch_types(env: Env) -> Result<()> {
    env.create_namespace().await?;
    let k = env.kubectl_ns();
    k.create_yaml(TWO_CONTAINERS).await?.ok()?;

    let out = k
        .ok(&[
            "patch",
            "deploy",
            "web",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/replicas","value":3},{"op":"add","path":"/metadata/labels/j","value":"1"}]"#,
        ])
        .await?;
    ensure!(out == "deployment.apps/web patched\n", "{out}");
    let d = k.get_json(&["deploy", "web"]).await?;
    ensure!(d["spec"]["replicas"] == 3, "{d}");
    ensure!(d["metadata"]["labels"]["j"] == "1", "{d}");

    let failed_test = k
        .fails(&[
            "patch",
            "deploy",
            "web",
            "--type=json",
            "-p",
            r#"[{"op":"test","path":"/spec/replicas","value":7}]"#,
        ])
        .await?;
    // A failed `test` op is a 422 without object details: kubectl prints "The request is invalid".
    assert_contains(&failed_test.stderr, "/spec/replicas")?;

    expect_at(&d, "/metadata/generation", json!(2))?;

    let merge = r#"{"metadata":{"labels":{"m":"1","j":null}}}"#;
    let out = k
        .ok(&["patch", "deploy", "web", "--type=merge", "-p", merge])
        .await?;
    ensure!(out == "deployment.apps/web patched\n", "{out}");
    let d = k.get_json(&["deploy", "web"]).await?;
    expect_at(&d, "/metadata/labels", json!({"app": "web", "m": "1"}))?;
    // A label change does not bump a deployment's generation; an annotation change does
    // (upstream: annotations are copied to the replica sets).
    expect_at(&d, "/metadata/generation", json!(2))?;
    k.ok(&["annotate", "deploy", "web", "note=x"]).await?;
    let d = k.get_json(&["deploy", "web"]).await?;
    expect_at(&d, "/metadata/generation", json!(3))?;
    let rv_before = k
        .ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .await?;
    let out = k
        .ok(&["patch", "deploy", "web", "--type=merge", "-p", merge])
        .await?;
    ensure!(out == "deployment.apps/web patched (no change)\n", "{out}");
    let rv_after = k
        .ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .await?;
    ensure!(
        rv_before == rv_after,
        "no-op patch wrote: {rv_before} -> {rv_after}"
    );

    // Strategic: containers merge by name, so only `web` changes.
    let out = k
        .ok(&[
            "patch",
            "deploy",
            "web",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.26"}]}}}}"#,
        ])
        .await?;
    ensure!(out == "deployment.apps/web patched\n", "{out}");
    let c = k.get_json(&["deploy", "web"]).await?["spec"]["template"]["spec"]["containers"].clone();
    let pairs: Vec<(String, String)> = c
        .as_array()
        .context("containers")?
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_string(),
                c["image"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    ensure!(
        pairs
            == [
                ("web".to_string(), "nginx:1.26".to_string()),
                ("side".to_string(), "busybox:1.36".to_string())
            ],
        "{c}"
    );
    ensure!(
        c[0]["ports"] == json!([{"containerPort": 80, "protocol": "TCP"}]),
        "{c}"
    );

    let out = k
        .ok(&[
            "patch",
            "deploy",
            "web",
            "--type=strategic",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"side","$patch":"delete"}]}}}}"#,
        ])
        .await?;
    ensure!(out == "deployment.apps/web patched\n", "{out}");
    let c = k.get_json(&["deploy", "web"]).await?["spec"]["template"]["spec"]["containers"].clone();
    ensure!(
        c.as_array().map(Vec::len) == Some(1) && c[0]["name"] == "web",
        "{c}"
    );

    // A strategic patch on a list without a merge key replaces it (args are atomic).
    k.ok(&[
        "patch",
        "deploy",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","args":["a","b"]}]}}}}"#,
    ])
    .await?;
    k.ok(&[
        "patch",
        "deploy",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","args":["c"]}]}}}}"#,
    ])
    .await?;
    let args = k
        .ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].args}",
        ])
        .await?;
    ensure!(args == r#"["c"]"#, "{args}");
    Ok(())
}

/// `replace` with a stale resourceVersion conflicts; `scale` sets spec.replicas via /scale.
pub async fn replace_conflict_and_scale(env: Env) -> Result<()> {
    env.create_namespace().await?;
    let k = env.kubectl_ns();
    k.ok(&["create", "configmap", "rep", "--from-literal=v=1"])
        .await?;
    let mut stale = k.get_json(&["cm", "rep"]).await?;
    k.ok(&[
        "patch",
        "cm",
        "rep",
        "--type=merge",
        "-p",
        r#"{"data":{"v":"2"}}"#,
    ])
    .await?;
    stale["data"]["v"] = json!("3");
    let out = k
        .run_with_stdin(&["replace", "-f", "-"], Some(&stale.to_string()))
        .await?
        .failed()?;
    assert_contains(&out.stderr, "Error from server (Conflict)")?;
    assert_contains(
        &out.stderr,
        "Operation cannot be fulfilled on configmaps \"rep\": the object has been modified; \
         please apply your changes to the latest version and try again",
    )?;
    // Without a resourceVersion the replace is unconditional.
    let mut fresh = stale.clone();
    if let Some(meta) = fresh["metadata"].as_object_mut() {
        meta.remove("resourceVersion");
    }
    let out = k
        .run_with_stdin(&["replace", "-f", "-"], Some(&fresh.to_string()))
        .await?
        .ok()?;
    ensure!(out.stdout == "configmap/rep replaced\n", "{out}");
    ensure!(k.get_json(&["cm", "rep"]).await?["data"]["v"] == "3");

    k.create_yaml(TWO_CONTAINERS).await?.ok()?;
    let out = k
        .ok(&["scale", "deployment", "web", "--replicas=3"])
        .await?;
    ensure!(out == "deployment.apps/web scaled\n", "{out}");
    ensure!(k.get_json(&["deploy", "web"]).await?["spec"]["replicas"] == 3);
    let scale: serde_json::Value = serde_json::from_str(
        &k.ok(&[
            "get",
            "--raw",
            &format!("/apis/apps/v1/namespaces/{}/deployments/web/scale", env.ns),
        ])
        .await?,
    )?;
    ensure!(
        scale["kind"] == "Scale" && scale["apiVersion"] == "autoscaling/v1",
        "{scale}"
    );
    ensure!(scale["spec"]["replicas"] == 3, "{scale}");
    ensure!(scale["status"]["selector"] == "app=web", "{scale}");
    // --current-replicas is a precondition.
    let out = k
        .fails(&[
            "scale",
            "deployment",
            "web",
            "--current-replicas=1",
            "--replicas=5",
        ])
        .await?;
    assert_contains(&out.stderr, "Expected replicas to be 1, was 3")?;
    ensure!(k.get_json(&["deploy", "web"]).await?["spec"]["replicas"] == 3);
    Ok(())
}

/// The status subresource: status writes through the main resource are dropped, writes through
/// `/status` change only status (and not the generation); `rollout status` then sees the
/// deployment as rolled out.
pub async fn status_subresource(env: Env) -> Result<()> {
    env.create_namespace().await?;
    let k = env.kubectl_ns();
    k.create_yaml(TWO_CONTAINERS).await?.ok()?;

    let out = k
        .ok(&[
            "patch",
            "deploy",
            "web",
            "--type=merge",
            "-p",
            r#"{"status":{"replicas":5}}"#,
        ])
        .await?;
    ensure!(out == "deployment.apps/web patched (no change)\n", "{out}");

    let status = r#"{"spec":{"replicas":9},"status":{"observedGeneration":1,"replicas":1,"updatedReplicas":1,"readyReplicas":1,"availableReplicas":1}}"#;
    let out = k
        .ok(&[
            "patch",
            "deploy",
            "web",
            "--subresource=status",
            "--type=merge",
            "-p",
            status,
        ])
        .await?;
    ensure!(out == "deployment.apps/web patched\n", "{out}");
    let d = k.get_json(&["deploy", "web"]).await?;
    expect_at(&d, "/spec/replicas", json!(1))?;
    expect_at(&d, "/status/readyReplicas", json!(1))?;
    expect_at(&d, "/metadata/generation", json!(1))?;
    let table = kubelite_e2e::Table::parse(&k.ok(&["get", "deploy", "web"]).await?);
    table.expect_row(
        "web",
        &[("READY", "1/1"), ("UP-TO-DATE", "1"), ("AVAILABLE", "1")],
    )?;
    let ready = k
        .ok(&[
            "get",
            "deploy",
            "web",
            "--subresource=status",
            "-o",
            "jsonpath={.status.availableReplicas}",
        ])
        .await?;
    ensure!(ready == "1", "{ready}");
    let out = k
        .ok(&["rollout", "status", "deployment/web", "--timeout=10s"])
        .await?;
    assert_contains(&out, "deployment \"web\" successfully rolled out")?;
    Ok(())
}
