//! Node administration that the API server alone completes: the node table, `cordon`,
//! `uncordon`, `taint`, node status through /status, and `drain` (eviction of a bound pod).

use anyhow::{ensure, Result};
use kubelite_e2e::{assert_contains, expect_at, Env, Table};
use serde_json::json;

/// Node lifecycle commands on a node object of this test's own (nodes are cluster-scoped, so it
/// is named after the test's namespace).
pub async fn node_admin(env: Env) -> Result<()> {
    env.create_namespace().await?;
    let node = env.ns.clone();
    let k = &env.kubectl;
    let out = k
        .create_yaml(&format!(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: {node}\n  labels:\n    node-role.kubernetes.io/worker: \"\"\n"
        ))
        .await?
        .ok()?;
    ensure!(out.stdout == format!("node/{node} created\n"), "{out}");
    let table = Table::parse(&k.ok(&["get", "nodes", &node]).await?);
    table.expect_headers("NAME STATUS ROLES AGE VERSION")?;
    // No Ready condition yet: Unknown; no kubelet version.
    table.expect_row(
        &node,
        &[("STATUS", "Unknown"), ("ROLES", "worker"), ("VERSION", "")],
    )?;

    ensure!(k.ok(&["cordon", &node]).await? == format!("node/{node} cordoned\n"));
    expect_at(
        &k.get_json(&["node", &node]).await?,
        "/spec/unschedulable",
        json!(true),
    )?;
    Table::parse(&k.ok(&["get", "no", &node]).await?)
        .expect_row(&node, &[("STATUS", "Unknown,SchedulingDisabled")])?;
    ensure!(k.ok(&["uncordon", &node]).await? == format!("node/{node} uncordoned\n"));
    let n = k.get_json(&["node", &node]).await?;
    ensure!(
        n["spec"].get("unschedulable").is_none() || n["spec"]["unschedulable"] == false,
        "{n}"
    );

    let out = k
        .ok(&["taint", "nodes", &node, "dedicated=e2e:NoSchedule"])
        .await?;
    ensure!(out == format!("node/{node} tainted\n"), "{out}");
    expect_at(
        &k.get_json(&["node", &node]).await?,
        "/spec/taints",
        json!([{"effect": "NoSchedule", "key": "dedicated", "value": "e2e"}]),
    )?;
    let out = k
        .ok(&["taint", "nodes", &node, "dedicated:NoSchedule-"])
        .await?;
    ensure!(out == format!("node/{node} untainted\n"), "{out}");

    let status = r#"{"status":{"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"e2e"}],"nodeInfo":{"kubeletVersion":"v1.33.0"}}}"#;
    k.ok(&[
        "patch",
        "node",
        &node,
        "--subresource=status",
        "--type=merge",
        "-p",
        status,
    ])
    .await?;
    Table::parse(&k.ok(&["get", "nodes", &node]).await?)
        .expect_row(&node, &[("STATUS", "Ready"), ("VERSION", "v1.33.0")])?;

    // drain: cordon, evict the bound pod (grace 0 deletes it at once), report drained.
    let kn = env.kubectl_ns();
    kn.create_yaml(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: on-node\nspec:\n  nodeName: {node}\n  containers: [{{name: c, image: busybox}}]\n"
    ))
    .await?
    .ok()?;
    let on_node = kn
        .ok(&[
            "get",
            "pods",
            "--field-selector",
            &format!("spec.nodeName={node}"),
            "-o",
            "name",
        ])
        .await?;
    ensure!(on_node == "pod/on-node\n", "{on_node}");
    let out = k
        .run(&[
            "drain",
            &node,
            "--ignore-daemonsets",
            "--force",
            "--grace-period=0",
            "--timeout=30s",
        ])
        .await?
        .ok()?;
    assert_contains(&out.stdout, &format!("node/{node} cordoned"))?;
    assert_contains(&out.stdout, "pod/on-node evicted")?;
    assert_contains(&out.stdout, &format!("node/{node} drained"))?;
    assert_contains(
        &out.stderr,
        "Warning: deleting Pods that declare no controller",
    )?;
    let left = kn.run(&["get", "pods"]).await?.ok()?;
    ensure!(left.stdout.is_empty(), "pods left after drain: {left}");

    let out = k.ok(&["delete", "node", &node]).await?;
    ensure!(out == format!("node \"{node}\" deleted\n"), "{out}");
    Ok(())
}
