//! Error paths as kubectl prints them: NotFound, AlreadyExists, Invalid with the field, and
//! strict / warn / ignore field validation.

use anyhow::{ensure, Result};
use kubelite_e2e::{assert_contains, assert_not_contains, Env};

/// NotFound, AlreadyExists and Invalid, each with upstream's wording.
pub async fn error_messages(env: Env) -> Result<()> {
    env.create_namespace().await?;
    let k = env.kubectl_ns();

    let out = k.fails(&["get", "pod", "nope"]).await?;
    ensure!(out.code == Some(1), "{out}");
    ensure!(
        out.stderr.trim_end() == "Error from server (NotFound): pods \"nope\" not found",
        "{out}"
    );
    let out = k.fails(&["get", "deploy", "nope"]).await?;
    assert_contains(
        &out.stderr,
        "Error from server (NotFound): deployments.apps \"nope\" not found",
    )?;

    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dup\n";
    k.create_yaml(cm).await?.ok()?;
    let out = k.create_yaml(cm).await?.failed()?;
    assert_contains(
        &out.stderr,
        "Error from server (AlreadyExists): error when creating \"STDIN\": configmaps \"dup\" already exists",
    )?;
    let out = k.fails(&["create", "configmap", "dup"]).await?;
    assert_contains(&out.stderr, "configmaps \"dup\" already exists")?;

    let mismatched = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: bad
spec:
  selector:
    matchLabels: {app: one}
  template:
    metadata:
      labels: {app: other}
    spec:
      containers: [{name: c, image: nginx}]
"#;
    let out = k.create_yaml(mismatched).await?.failed()?;
    assert_contains(&out.stderr, "The Deployment \"bad\" is invalid")?;
    assert_contains(&out.stderr, "spec.template.metadata.labels")?;
    assert_contains(&out.stderr, "`selector` does not match template `labels`")?;

    let upper = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: Bad_Name\nspec:\n  containers: [{name: c, image: nginx}]\n";
    let out = k.create_yaml(upper).await?.failed()?;
    assert_contains(&out.stderr, "The Pod \"Bad_Name\" is invalid")?;
    assert_contains(&out.stderr, "metadata.name: Invalid value: \"Bad_Name\"")?;
    assert_contains(&out.stderr, "a lowercase RFC 1123 subdomain")?;

    let no_containers =
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: empty\nspec:\n  containers: []\n";
    let out = k.create_yaml(no_containers).await?.failed()?;
    assert_contains(&out.stderr, "The Pod \"empty\" is invalid")?;
    assert_contains(&out.stderr, "spec.containers: Required value")?;

    // Nothing invalid was stored.
    let pods = k.run(&["get", "pods,deploy"]).await?.ok()?;
    ensure!(pods.stdout.is_empty(), "{pods}");
    Ok(())
}

const UNKNOWN_FIELD: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: strict
data: {a: b}
bogus: 1
"#;

const UNKNOWN_NESTED: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: strict-pod
spec:
  containers:
  - name: c
    image: nginx
    imagePullPolicyy: Always
"#;

/// Default strict validation rejects unknown fields; `--validate=warn` warns; `false` ignores.
pub async fn field_validation(env: Env) -> Result<()> {
    env.create_namespace().await?;
    let k = env.kubectl_ns();

    let out = k.create_yaml(UNKNOWN_FIELD).await?.failed()?;
    assert_contains(
        &out.stderr,
        "strict decoding error: unknown field \"bogus\"",
    )?;
    let out = k.apply_yaml(UNKNOWN_NESTED).await?.failed()?;
    assert_contains(
        &out.stderr,
        "strict decoding error: unknown field \"spec.containers[0].imagePullPolicyy\"",
    )?;

    let out = k
        .run_with_stdin(
            &["create", "--validate=warn", "-f", "-"],
            Some(UNKNOWN_FIELD),
        )
        .await?
        .ok()?;
    ensure!(out.stdout == "configmap/strict created\n", "{out}");
    assert_contains(&out.stderr, "Warning: unknown field \"bogus\"")?;
    k.ok(&["delete", "cm", "strict"]).await?;

    let out = k
        .run_with_stdin(
            &["create", "--validate=false", "-f", "-"],
            Some(UNKNOWN_FIELD),
        )
        .await?
        .ok()?;
    ensure!(out.stdout == "configmap/strict created\n", "{out}");
    assert_not_contains(&out.stderr, "unknown field")?;
    let stored = k.get_json(&["cm", "strict"]).await?;
    ensure!(
        stored.get("bogus").is_none(),
        "unknown field stored: {stored}"
    );
    ensure!(stored["data"]["a"] == "b", "{stored}");

    let out = k
        .run_with_stdin(
            &["apply", "--validate=false", "-f", "-"],
            Some(UNKNOWN_NESTED),
        )
        .await?
        .ok()?;
    ensure!(out.stdout == "pod/strict-pod created\n", "{out}");
    let pod = k.get_json(&["pod", "strict-pod"]).await?;
    ensure!(
        pod["spec"]["containers"][0]
            .get("imagePullPolicyy")
            .is_none(),
        "{pod}"
    );
    Ok(())
}

/// Immutable fields: a deployment's selector, an immutable ConfigMap's data.
pub async fn immutable_fields(env: Env) -> Result<()> {
    env.create_namespace().await?;
    let k = env.kubectl_ns();
    k.ok(&["create", "deployment", "imm", "--image=nginx"])
        .await?;
    let out = k
        .fails(&[
            "patch",
            "deploy",
            "imm",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/selector/matchLabels/app","value":"other"},{"op":"replace","path":"/spec/template/metadata/labels/app","value":"other"}]"#,
        ])
        .await?;
    assert_contains(
        &out.stderr,
        "The Deployment \"imm\" is invalid: spec.selector",
    )?;
    assert_contains(&out.stderr, "field is immutable")?;

    let frozen = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: frozen\ndata: {a: \"1\"}\nimmutable: true\n";
    k.create_yaml(frozen).await?.ok()?;
    let out = k
        .fails(&[
            "patch",
            "cm",
            "frozen",
            "--type=merge",
            "-p",
            r#"{"data":{"a":"2"}}"#,
        ])
        .await?;
    assert_contains(
        &out.stderr,
        "The ConfigMap \"frozen\" is invalid: data: Forbidden: field is immutable when `immutable` is set",
    )?;
    // Metadata stays mutable.
    k.ok(&["label", "cm", "frozen", "still=mutable"]).await?;
    Ok(())
}
