//! Read-side commands beyond `get`: `describe`, `explain` (OpenAPI v3), `--sort-by` (full
//! objects in tables), `diff` (server dry run), and the workload helpers `run`, `expose` and
//! `set image`.

use anyhow::{ensure, Result};
use kubelite_e2e::{assert_contains, expect_at, Env, Table};
use serde_json::json;

/// `describe` renders pods, deployments and services from the typed objects plus their events.
pub async fn describe(env: Env) -> Result<()> {
    env.create_namespace().await?;
    let k = env.kubectl_ns();
    let out = k
        .ok(&["run", "solo", "--image=busybox", "--labels=app=solo"])
        .await?;
    ensure!(out == "pod/solo created\n", "{out}");
    k.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.25",
        "--replicas=2",
    ])
    .await?;
    let out = k
        .ok(&[
            "expose",
            "deployment",
            "web",
            "--port=80",
            "--target-port=8080",
        ])
        .await?;
    ensure!(out == "service/web exposed\n", "{out}");

    // An event about the pod: describe finds it by involvedObject field selectors.
    let uid = k
        .ok(&["get", "pod", "solo", "-o", "jsonpath={.metadata.uid}"])
        .await?;
    let event = format!(
        r#"apiVersion: v1
kind: Event
metadata:
  name: solo.e2e
involvedObject:
  apiVersion: v1
  kind: Pod
  name: solo
  namespace: {ns}
  uid: {uid}
reason: Testing
message: hello from e2e
type: Normal
source:
  component: e2e
count: 1
firstTimestamp: "2025-01-01T00:00:00Z"
lastTimestamp: "2025-01-01T00:00:00Z"
"#,
        ns = env.ns
    );
    k.create_yaml(&event).await?.ok()?;
    let events = Table::parse(&k.ok(&["get", "events"]).await?);
    events.expect_headers("LAST SEEN TYPE REASON OBJECT MESSAGE")?;
    ensure!(
        events.column_values("OBJECT")? == ["pod/solo"]
            && events.column_values("MESSAGE")? == ["hello from e2e"],
        "{events:?}"
    );
    let selected = k
        .ok(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.kind=Pod,involvedObject.name=solo,involvedObject.uid={uid}"),
            "-o",
            "name",
        ])
        .await?;
    ensure!(selected == "event/solo.e2e\n", "{selected}");

    let pod = k.ok(&["describe", "pod", "solo"]).await?;
    assert_contains(&pod, "Normal  Testing")?;
    assert_contains(&pod, "hello from e2e")?;
    for line in [
        "Name:             solo",
        &format!("Namespace:        {}", env.ns),
        "Labels:           app=solo",
        "Status:           Pending",
        "Node:             <none>",
        "    Image:        busybox",
        "QoS Class:        BestEffort",
    ] {
        assert_contains(&pod, line)?;
    }
    let deploy = k.ok(&["describe", "deployment", "web"]).await?;
    for line in [
        "Selector:               app=web",
        "Replicas:               2 desired | 0 updated | 0 total | 0 available | 0 unavailable",
        "StrategyType:           RollingUpdate",
        "RollingUpdateStrategy:  25% max unavailable, 25% max surge",
        "    Image:         nginx:1.25",
    ] {
        assert_contains(&deploy, line)?;
    }
    let svc = k.ok(&["describe", "service", "web"]).await?;
    for line in [
        "Selector:                 app=web",
        "Type:                     ClusterIP",
        "TargetPort:               8080/TCP",
        "Session Affinity:         None",
    ] {
        assert_contains(&svc, line)?;
    }
    let ns = env.kubectl.ok(&["describe", "namespace", &env.ns]).await?;
    assert_contains(&ns, "Status:       Active")?;
    Ok(())
}

/// `explain` reads the OpenAPI v3 documents.
pub async fn explain(env: Env) -> Result<()> {
    let out = env
        .kubectl
        .ok(&["explain", "deployment.spec.replicas"])
        .await?;
    for line in [
        "GROUP:      apps",
        "KIND:       Deployment",
        "VERSION:    v1",
        "FIELD: replicas <integer>",
    ] {
        assert_contains(&out, line)?;
    }
    assert_contains(&out, "Number of desired pods")?;
    let out = env.kubectl.ok(&["explain", "pods.spec.containers"]).await?;
    assert_contains(&out, "FIELD: containers <[]Container>")?;
    assert_contains(&out, "image\t<string>")?;
    let out = env
        .kubectl
        .ok(&["explain", "configmap", "--recursive"])
        .await?;
    assert_contains(&out, "KIND:       ConfigMap")?;
    assert_contains(&out, "binaryData\t<map[string]string>")?;
    Ok(())
}

/// `--sort-by` asks the server for tables with full objects and sorts on any field.
pub async fn sort_by(env: Env) -> Result<()> {
    env.create_namespace().await?;
    let k = env.kubectl_ns();
    for (name, rank) in [("c", "1"), ("a", "3"), ("b", "2")] {
        k.ok(&[
            "create",
            "configmap",
            name,
            &format!("--from-literal=rank={rank}"),
        ])
        .await?;
    }
    let by_rank = k
        .ok(&["get", "cm", "--sort-by=.data.rank", "-o", "name"])
        .await?;
    ensure!(
        by_rank == "configmap/c\nconfigmap/b\nconfigmap/a\n",
        "{by_rank}"
    );
    let table = k.ok(&["get", "cm", "--sort-by=.data.rank"]).await?;
    ensure!(
        kubelite_e2e::table_names(&table) == ["c", "b", "a"],
        "{table}"
    );
    let by_time = k
        .ok(&[
            "get",
            "cm",
            "--sort-by=.metadata.creationTimestamp",
            "-o",
            "name",
        ])
        .await?;
    ensure!(by_time.lines().count() == 3, "{by_time}");
    Ok(())
}

/// `diff` shows what an apply would change (a server-side dry run) and exits 1; nothing is
/// stored. `set image` patches a container by name.
pub async fn diff_and_set_image(env: Env) -> Result<()> {
    env.create_namespace().await?;
    let k = env.kubectl_ns();
    k.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.25",
        "--replicas=2",
    ])
    .await?;
    let mut live = k.get_json(&["deploy", "web"]).await?;
    live["spec"]["replicas"] = json!(3);
    let out = k
        .run_with_stdin(&["diff", "-f", "-"], Some(&live.to_string()))
        .await?;
    ensure!(
        out.code == Some(1),
        "diff exits 1 when there are changes: {out}"
    );
    assert_contains(&out.stdout, "-  replicas: 2\n")?;
    assert_contains(&out.stdout, "+  replicas: 3\n")?;
    expect_at(
        &k.get_json(&["deploy", "web"]).await?,
        "/spec/replicas",
        json!(2),
    )?;
    live["spec"]["replicas"] = json!(2);
    let same = k
        .run_with_stdin(&["diff", "-f", "-"], Some(&live.to_string()))
        .await?;
    ensure!(
        same.code == Some(0) && same.stdout.is_empty(),
        "no changes: {same}"
    );

    let out = k
        .ok(&["set", "image", "deployment/web", "nginx=nginx:1.27"])
        .await?;
    ensure!(out == "deployment.apps/web image updated\n", "{out}");
    let d = k.get_json(&["deploy", "web"]).await?;
    expect_at(
        &d,
        "/spec/template/spec/containers/0/image",
        json!("nginx:1.27"),
    )?;
    expect_at(&d, "/metadata/generation", json!(2))?;
    Ok(())
}

/// logs and exec need a kubelet; without one the API server answers as upstream does: no logs
/// for an unscheduled pod, BadRequest for exec into it, NotFound for a pod on an unknown node.
pub async fn streams_without_kubelet(env: Env) -> Result<()> {
    env.create_namespace().await?;
    let k = env.kubectl_ns();
    k.ok(&["run", "solo", "--image=busybox"]).await?;
    let logs = k.run(&["logs", "solo"]).await?.ok()?;
    ensure!(logs.stdout.is_empty(), "{logs}");
    let exec = k.fails(&["exec", "solo", "--", "true"]).await?;
    assert_contains(
        &exec.stderr,
        "Error from server (BadRequest): pod solo does not have a host assigned",
    )?;
    k.create_yaml(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bound\nspec:\n  nodeName: ghost\n  containers: [{name: c, image: busybox}]\n",
    )
    .await?
    .ok()?;
    for args in [&["logs", "bound"][..], &["exec", "bound", "--", "true"]] {
        let out = k.fails(args).await?;
        assert_contains(
            &out.stderr,
            "Error from server (NotFound): nodes \"ghost\" not found",
        )?;
    }
    Ok(())
}
