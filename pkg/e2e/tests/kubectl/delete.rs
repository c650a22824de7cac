//! `kubectl delete`: immediate and graceful pod deletion, `--force`, propagation policies and the
//! finalizers the API server itself adds, deletion by label, and namespace termination.

use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use kubelite_e2e::{assert_contains, expect_at, wait_until, Env, Kubectl};
use serde_json::{json, Value};

fn pod(name: &str, node: Option<&str>) -> String {
    let node = node
        .map(|n| format!("\n  nodeName: {n}"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:{node}\n  containers:\n  \
         - name: c\n    image: busybox\n"
    )
}

/// `get` of one object, or `None` once it is NotFound.
async fn get_opt(k: &Kubectl, kind: &str, name: &str) -> Result<Option<Value>> {
    let out = k.run(&["get", kind, name, "-o", "json"]).await?;
    if out.success() {
        return Ok(Some(serde_json::from_str(&out.stdout)?));
    }
    if out.stderr.contains("(NotFound)") {
        return Ok(None);
    }
    anyhow::bail!("get {kind}/{name}: {out}")
}

/// Unbound pods go at once; bound pods get a grace period until forced.
pub async fn delete_pods(env: Env) -> Result<()> {
    env.create_namespace().await?;
    let k = env.kubectl_ns();
    k.create_yaml(&pod("loose", None)).await?.ok()?;
    let out = k.ok(&["delete", "pod", "loose"]).await?;
    ensure!(out == "pod \"loose\" deleted\n", "{out}");
    ensure!(
        get_opt(&k, "pod", "loose").await?.is_none(),
        "unbound pod still there"
    );

    // A pod on a node waits for its kubelet: deletionTimestamp and a 30 s grace period.
    k.create_yaml(&pod("bound", Some("node-1"))).await?.ok()?;
    let out = k.ok(&["delete", "pod", "bound", "--wait=false"]).await?;
    ensure!(out == "pod \"bound\" deleted\n", "{out}");
    let p = get_opt(&k, "pod", "bound")
        .await?
        .context("a bound pod must stay until its kubelet confirms")?;
    ensure!(p["metadata"]["deletionTimestamp"].is_string(), "{p}");
    ensure!(p["metadata"]["deletionGracePeriodSeconds"] == 30, "{p}");
    let status = k.get_json(&["pods"]).await?;
    ensure!(
        status["items"].as_array().map(Vec::len) == Some(1),
        "{status}"
    );
    let table = kubelite_e2e::Table::parse(&k.ok(&["get", "pods"]).await?);
    table.expect_row("bound", &[("STATUS", "Terminating")])?;
    let timed_out = k
        .fails(&["wait", "--for=delete", "pod/bound", "--timeout=2s"])
        .await?;
    assert_contains(
        &timed_out.stderr,
        "timed out waiting for the condition on pods/bound",
    )?;

    let forced = k
        .run(&["delete", "pod", "bound", "--grace-period=0", "--force"])
        .await?
        .ok()?;
    ensure!(forced.stdout == "pod \"bound\" force deleted\n", "{forced}");
    assert_contains(
        &forced.stderr,
        "Warning: Immediate deletion does not wait for confirmation that the running resource has been terminated",
    )?;
    ensure!(
        get_opt(&k, "pod", "bound").await?.is_none(),
        "forced pod still there"
    );
    let gone = k
        .ok(&["wait", "--for=delete", "pod/bound", "--timeout=5s"])
        .await;
    ensure!(gone.is_ok(), "wait on a deleted pod: {gone:?}");

    let missing = k.fails(&["delete", "pod", "nope"]).await?;
    assert_contains(
        &missing.stderr,
        "Error from server (NotFound): pods \"nope\" not found",
    )?;
    let ignored = k
        .run(&["delete", "pod", "nope", "--ignore-not-found"])
        .await?
        .ok()?;
    ensure!(ignored.stdout.is_empty(), "{ignored}");
    Ok(())
}

fn deployment(name: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  selector:\n    \
         matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    \
         spec:\n      containers: [{{name: c, image: nginx}}]\n"
    )
}

/// A ReplicaSet owned by deployment `owner` (as the deployment controller would create it).
fn owned_replicaset(owner: &str, uid: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: {owner}-rs\n  labels: {{app: {owner}}}\n  \
         ownerReferences:\n  - apiVersion: apps/v1\n    kind: Deployment\n    name: {owner}\n    \
         uid: {uid}\n    controller: true\n    blockOwnerDeletion: true\nspec:\n  selector:\n    \
         matchLabels: {{app: {owner}}}\n  template:\n    metadata:\n      labels: {{app: {owner}}}\n    \
         spec:\n      containers: [{{name: c, image: nginx}}]\n"
    )
}

/// `--cascade=orphan|foreground` leave the owner in place with the `orphan` /
/// `foregroundDeletion` finalizer and a deletionTimestamp for the garbage collector to finish
/// (no GC runs here; removing the finalizer completes the deletion); `background` deletes the
/// owner at once.
pub async fn delete_cascade_policies(env: Env) -> Result<()> {
    env.create_namespace().await?;
    let k = env.kubectl_ns();
    for (name, cascade, finalizer) in [
        ("d-orphan", "orphan", Some("orphan")),
        ("d-fg", "foreground", Some("foregroundDeletion")),
        ("d-bg", "background", None),
    ] {
        k.create_yaml(&deployment(name)).await?.ok()?;
        let uid = k
            .ok(&["get", "deploy", name, "-o", "jsonpath={.metadata.uid}"])
            .await?;
        k.create_yaml(&owned_replicaset(name, &uid)).await?.ok()?;
        let rs_owner = k
            .ok(&[
                "get",
                "rs",
                &format!("{name}-rs"),
                "-o",
                "jsonpath={.metadata.ownerReferences[0].uid}",
            ])
            .await?;
        ensure!(
            rs_owner == uid,
            "ownerReference stored: {rs_owner} vs {uid}"
        );

        let out = k
            .ok(&[
                "delete",
                "deploy",
                name,
                &format!("--cascade={cascade}"),
                "--wait=false",
            ])
            .await?;
        ensure!(
            out == format!("deployment.apps \"{name}\" deleted\n"),
            "{out}"
        );
        let after = get_opt(&k, "deploy", name).await?;
        match finalizer {
            Some(f) => {
                let d = after.with_context(|| format!("{cascade}: owner deleted at once"))?;
                ensure!(
                    d["metadata"]["deletionTimestamp"].is_string(),
                    "{cascade}: {d}"
                );
                ensure!(
                    d["metadata"]["finalizers"] == json!([f]),
                    "{cascade}: finalizers {}",
                    d["metadata"]["finalizers"]
                );
                // The dependent is untouched by the API server.
                ensure!(
                    get_opt(&k, "rs", &format!("{name}-rs")).await?.is_some(),
                    "{cascade}: dependent deleted"
                );
                // Finishing what the GC would do: dropping the last finalizer deletes it.
                // The PATCH deletes the object, so the answer is a Status, which kubectl prints
                // as `status/<unknown> patched` (as upstream).
                let out = k
                    .ok(&[
                        "patch",
                        "deploy",
                        name,
                        "--type=json",
                        "-p",
                        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
                    ])
                    .await?;
                assert_contains(&out, "patched")?;
                let gone = wait_until(Duration::from_secs(10), || async {
                    Ok(get_opt(&k, "deploy", name).await?.is_none().then_some(()))
                })
                .await;
                ensure!(
                    gone.is_ok(),
                    "{cascade}: still there after removing finalizer: {gone:?}"
                );
            }
            None => {
                ensure!(after.is_none(), "background: owner still there: {after:?}");
                // Dependents are the garbage collector's job, not the API server's.
                let rs = get_opt(&k, "rs", &format!("{name}-rs"))
                    .await?
                    .context("background: the API server itself deleted the dependent")?;
                ensure!(
                    rs["metadata"]["ownerReferences"][0]["uid"] == uid.as_str(),
                    "dependent's ownerReference changed: {rs}"
                );
            }
        }
    }
    Ok(())
}

/// `delete -l`, and `delete ns` terminating a namespace with its contents; creating in a
/// missing namespace fails with NotFound.
pub async fn delete_by_label_and_namespace(env: Env) -> Result<()> {
    env.create_namespace().await?;
    let k = env.kubectl_ns();
    for (name, app) in [("x1", "x"), ("x2", "x"), ("y1", "y")] {
        k.ok(&["create", "cm", name]).await?;
        k.ok(&["label", "cm", name, &format!("app={app}")]).await?;
    }
    let out = k.ok(&["delete", "cm", "-l", "app=x"]).await?;
    ensure!(
        out == "configmap \"x1\" deleted\nconfigmap \"x2\" deleted\n",
        "{out}"
    );
    let left = k.ok(&["get", "cm", "-o", "name"]).await?;
    ensure!(left == "configmap/y1\n", "{left}");
    let out = k.ok(&["delete", "cm", "--all"]).await?;
    ensure!(out == "configmap \"y1\" deleted\n", "{out}");
    let left = k.run(&["get", "cm"]).await?.ok()?;
    ensure!(left.stdout.is_empty(), "{left}");

    let doomed = env.other_ns("doomed");
    env.kubectl.ok(&["create", "namespace", &doomed]).await?;
    let kd = env.kubectl.in_namespace(&doomed);
    kd.ok(&["create", "configmap", "inside"]).await?;
    kd.create_yaml(&pod("inside", None)).await?.ok()?;
    let out = env
        .kubectl
        .ok(&["delete", "namespace", &doomed, "--wait=false"])
        .await?;
    ensure!(out == format!("namespace \"{doomed}\" deleted\n"), "{out}");
    if let Some(ns) = get_opt(&env.kubectl, "namespace", &doomed).await? {
        ensure!(ns["status"]["phase"] == "Terminating", "{ns}");
        ensure!(ns["metadata"]["deletionTimestamp"].is_string(), "{ns}");
    }
    wait_until(Duration::from_secs(30), || async {
        Ok(get_opt(&env.kubectl, "namespace", &doomed)
            .await?
            .is_none()
            .then_some(()))
    })
    .await
    .context("namespace never finished terminating")?;
    let contents = kd.run(&["get", "configmaps,pods"]).await?.ok()?;
    ensure!(contents.stdout.is_empty(), "contents survived: {contents}");
    let raw: Value = serde_json::from_str(
        &env.kubectl
            .ok(&[
                "get",
                "--raw",
                &format!("/api/v1/namespaces/{doomed}/configmaps"),
            ])
            .await?,
    )?;
    ensure!(raw["items"] == json!([]), "{raw}");

    let missing = env.other_ns("missing");
    let typed = env
        .kubectl
        .in_namespace(&missing)
        .fails(&["create", "configmap", "c"])
        .await?;
    assert_contains(
        &typed.stderr,
        &format!("namespaces \"{missing}\" not found"),
    )?;
    let from_file = env
        .kubectl
        .in_namespace(&missing)
        .create_yaml("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n")
        .await?
        .failed()?;
    assert_contains(
        &from_file.stderr,
        &format!("Error from server (NotFound): error when creating \"STDIN\": namespaces \"{missing}\" not found"),
    )?;
    Ok(())
}

/// A namespace held by a finalizer of ours: deleting it empties it and drops the `kubernetes`
/// spec finalizer, but it stays Terminating (and refuses new content) until our finalizer goes.
pub async fn terminating_namespace(env: Env) -> Result<()> {
    let ns = &env.ns;
    env.kubectl
        .create_yaml(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  finalizers: [e2e.kubelite.dev/hold]\n"
        ))
        .await?
        .ok()?;
    let k = env.kubectl_ns();
    k.ok(&["create", "configmap", "inside"]).await?;
    env.kubectl
        .ok(&["delete", "namespace", ns, "--wait=false"])
        .await?;

    let out = k
        .create_yaml("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: late\n")
        .await?
        .failed()?;
    wait_until(Duration::from_secs(20), || async {
        let cms = k.run(&["get", "configmaps", "-o", "name"]).await?.ok()?;
        let n = env.kubectl.get_json(&["namespace", ns]).await?;
        let emptied =
            cms.stdout.is_empty() && n["spec"]["finalizers"].as_array().is_none_or(Vec::is_empty);
        Ok(emptied.then_some(()))
    })
    .await
    .context("namespace contents and its `kubernetes` finalizer were never removed")?;
    let n = env.kubectl.get_json(&["namespace", ns]).await?;
    expect_at(&n, "/status/phase", json!("Terminating"))?;
    expect_at(&n, "/metadata/finalizers", json!(["e2e.kubelite.dev/hold"]))?;

    env.kubectl
        .ok(&[
            "patch",
            "namespace",
            ns,
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
        ])
        .await?;
    wait_until(Duration::from_secs(20), || async {
        Ok(get_opt(&env.kubectl, "namespace", ns)
            .await?
            .is_none()
            .then_some(()))
    })
    .await
    .context("namespace still there after its last finalizer went")?;
    // Checked last so that a wrong message does not hide the lifecycle checks above.
    assert_contains(
        &out.stderr,
        &format!(
            "Error from server (Forbidden): error when creating \"STDIN\": configmaps \"late\" is forbidden: \
             unable to create new content in namespace {ns} because it is being terminated"
        ),
    )?;
    Ok(())
}
