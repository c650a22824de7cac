//! Client-side `kubectl apply`: created → unchanged → configured, three-way merges that keep
//! other writers' changes and remove what the manifest dropped; plus server-side apply.

use anyhow::{ensure, Result};
use kubelite_e2e::Env;
use serde_json::json;

fn deployment(image: &str, with_extras: bool) -> String {
    let (label, annotation, min_ready, env_b) = if with_extras {
        (
            "\n    extra: \"yes\"",
            "\n  annotations:\n    note: first",
            "\n  minReadySeconds: 5",
            "\n        - name: B\n          value: \"2\"",
        )
    } else {
        ("", "", "", "")
    };
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web{label}{annotation}
spec:
  replicas: 1{min_ready}
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: nginx
        image: {image}
        env:
        - name: A
          value: "1"{env_b}
"#
    )
}

/// The whole client-side apply lifecycle on a Deployment and a ConfigMap.
pub async fn client_side_apply_lifecycle(env: Env) -> Result<()> {
    env.create_namespace().await?;
    let k = env.kubectl_ns();

    let out = k.apply_yaml(&deployment("nginx:1.25", true)).await?.ok()?;
    ensure!(out.stdout == "deployment.apps/web created\n", "{out}");
    let d = k.get_json(&["deploy", "web"]).await?;
    let last = d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .unwrap_or_default();
    ensure!(
        last.contains("\"image\":\"nginx:1.25\""),
        "last-applied: {d}"
    );
    ensure!(d["metadata"]["generation"] == 1, "{d}");

    let out = k.apply_yaml(&deployment("nginx:1.25", true)).await?.ok()?;
    ensure!(out.stdout == "deployment.apps/web unchanged\n", "{out}");
    let again = k.get_json(&["deploy", "web"]).await?;
    ensure!(
        again["metadata"]["resourceVersion"] == d["metadata"]["resourceVersion"],
        "an unchanged apply must not write: {} -> {}",
        d["metadata"]["resourceVersion"],
        again["metadata"]["resourceVersion"]
    );

    let out = k.apply_yaml(&deployment("nginx:1.26", true)).await?.ok()?;
    ensure!(out.stdout == "deployment.apps/web configured\n", "{out}");
    let d = k.get_json(&["deploy", "web"]).await?;
    let c = &d["spec"]["template"]["spec"]["containers"];
    ensure!(c.as_array().map(Vec::len) == Some(1), "{c}");
    ensure!(c[0]["image"] == "nginx:1.26", "{c}");
    ensure!(
        c[0]["env"] == json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]),
        "{c}"
    );
    ensure!(
        d["metadata"]["generation"] == 2,
        "spec change bumps generation: {d}"
    );

    // Another writer's label is not in last-applied: a later apply must keep it.
    k.ok(&["label", "deploy", "web", "owner=ops"]).await?;

    let out = k.apply_yaml(&deployment("nginx:1.26", false)).await?.ok()?;
    ensure!(out.stdout == "deployment.apps/web configured\n", "{out}");
    let d = k.get_json(&["deploy", "web"]).await?;
    ensure!(
        d["metadata"]["labels"] == json!({"app": "web", "owner": "ops"}),
        "labels after dropping `extra`: {}",
        d["metadata"]["labels"]
    );
    ensure!(
        d["metadata"]["annotations"].get("note").is_none(),
        "annotation `note` still present: {}",
        d["metadata"]["annotations"]
    );
    ensure!(
        d["spec"].get("minReadySeconds").is_none() || d["spec"]["minReadySeconds"] == 0,
        "minReadySeconds still set: {}",
        d["spec"]
    );
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    ensure!(c["env"] == json!([{"name": "A", "value": "1"}]), "env: {c}");
    ensure!(c["image"] == "nginx:1.26", "{c}");

    // A ConfigMap: data keys added and removed.
    let cm = |data: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: conf\ndata:\n{data}")
    };
    let out = k.apply_yaml(&cm("  a: \"1\"\n  b: \"2\"\n")).await?.ok()?;
    ensure!(out.stdout == "configmap/conf created\n", "{out}");
    let out = k.apply_yaml(&cm("  a: \"1\"\n  c: \"3\"\n")).await?.ok()?;
    ensure!(out.stdout == "configmap/conf configured\n", "{out}");
    let data = k.get_json(&["cm", "conf"]).await?["data"].clone();
    ensure!(data == json!({"a": "1", "c": "3"}), "{data}");

    // --dry-run=server validates and answers without storing.
    let out = k
        .run_with_stdin(
            &["apply", "--dry-run=server", "-f", "-"],
            Some(&cm("  a: \"9\"\n")),
        )
        .await?
        .ok()?;
    ensure!(
        out.stdout == "configmap/conf configured (server dry run)\n",
        "{out}"
    );
    let data = k.get_json(&["cm", "conf"]).await?["data"].clone();
    ensure!(
        data == json!({"a": "1", "c": "3"}),
        "dry run stored: {data}"
    );
    Ok(())
}

/// `apply --server-side` creates and updates (field manager `kubectl`), conflicts with a
/// `kubectl patch` of its field until `--force-conflicts`, and `--show-managed-fields` shows
/// the ownership.
pub async fn server_side_apply(env: Env) -> Result<()> {
    env.create_namespace().await?;
    let k = env.kubectl_ns();
    let cm = |v: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  key: \"{v}\"\n")
    };
    let run = |yaml: String| {
        let k = k.clone();
        async move {
            k.run_with_stdin(&["apply", "--server-side", "-f", "-"], Some(&yaml))
                .await
        }
    };
    let out = run(cm("1")).await?.ok()?;
    ensure!(out.stdout == "configmap/ssa serverside-applied\n", "{out}");
    let out = run(cm("2")).await?.ok()?;
    ensure!(out.stdout == "configmap/ssa serverside-applied\n", "{out}");
    let got = k.get_json(&["cm", "ssa", "--show-managed-fields"]).await?;
    ensure!(got["data"]["key"] == "2", "{got}");
    let owners = |v: &serde_json::Value| {
        v["metadata"]["managedFields"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        format!(
                            "{}/{}",
                            e["manager"].as_str().unwrap_or(""),
                            e["operation"].as_str().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    ensure!(owners(&got) == ["kubectl/Apply"], "{got}");

    // Another manager changes the applied field: the next apply conflicts, in kubectl's words.
    k.ok(&[
        "patch",
        "cm",
        "ssa",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"key":"p"}}"#,
    ])
    .await?;
    let out = run(cm("3")).await?.failed()?;
    ensure!(
        out.stderr.contains(
            r#"Apply failed with 1 conflict: conflict with "kubectl-patch" using v1: .data.key"#
        ) && out.stderr.contains("--force-conflicts"),
        "{out}"
    );
    let got = k.get_json(&["cm", "ssa", "--show-managed-fields"]).await?;
    ensure!(
        got["data"]["key"] == "p",
        "a conflicting apply wrote: {got}"
    );
    ensure!(owners(&got) == ["kubectl-patch/Update"], "{got}");

    // --force-conflicts takes the field back.
    let forced = k
        .run_with_stdin(
            &["apply", "--server-side", "--force-conflicts", "-f", "-"],
            Some(&cm("3")),
        )
        .await?
        .ok()?;
    ensure!(
        forced.stdout == "configmap/ssa serverside-applied\n",
        "{forced}"
    );
    let got = k.get_json(&["cm", "ssa", "--show-managed-fields"]).await?;
    ensure!(got["data"]["key"] == "3", "{got}");
    ensure!(owners(&got) == ["kubectl/Apply"], "{got}");

    // `get -o yaml` hides the entries unless asked for them.
    let plain = k.ok(&["get", "cm", "ssa", "-o", "yaml"]).await?;
    ensure!(!plain.contains("managedFields"), "{plain}");
    let shown = k
        .ok(&["get", "cm", "ssa", "-o", "yaml", "--show-managed-fields"])
        .await?;
    ensure!(
        shown.contains("managedFields:")
            && shown.contains("manager: kubectl\n")
            && shown.contains("operation: Apply")
            && shown.contains("fieldsType: FieldsV1")
            && shown.contains("f:key: {}"),
        "{shown}"
    );
    Ok(())
}
