//! Commands that need no objects: version, discovery, cluster-info and the raw non-resource and
//! list endpoints.

use anyhow::{ensure, Context as _, Result};
use kubelite_e2e::{assert_contains, expect_at, Env, Table};
use serde_json::{json, Value};

/// `kubectl version` sees the server as v1.33.0 (and so the dispatcher runs kubectl 1.33).
pub async fn version(env: Env) -> Result<()> {
    let out = env.kubectl.ok(&["version"]).await?;
    assert_contains(&out, "Server Version: v1.33.0")?;
    assert_contains(&out, "Client Version: v1.33.")?;
    let json: Value = serde_json::from_str(&env.kubectl.ok(&["version", "-o", "json"]).await?)?;
    ensure!(json["serverVersion"]["gitVersion"] == "v1.33.0", "{json}");
    ensure!(json["serverVersion"]["major"] == "1", "{json}");
    ensure!(json["serverVersion"]["minor"] == "33", "{json}");
    ensure!(
        json["clientVersion"]["minor"] == "33",
        "dispatcher chose {json}"
    );
    Ok(())
}

/// `api-resources` lists the built-ins with short names, group/version, scope and kind.
pub async fn api_resources(env: Env) -> Result<()> {
    let out = env.kubectl.ok(&["api-resources"]).await?;
    let table = Table::parse(&out);
    table.expect_headers("NAME SHORTNAMES APIVERSION NAMESPACED KIND")?;
    let expect = [
        ("pods", "po", "v1", "true", "Pod"),
        ("deployments", "deploy", "apps/v1", "true", "Deployment"),
        ("services", "svc", "v1", "true", "Service"),
        ("configmaps", "cm", "v1", "true", "ConfigMap"),
        ("namespaces", "ns", "v1", "false", "Namespace"),
        ("nodes", "no", "v1", "false", "Node"),
        ("replicasets", "rs", "apps/v1", "true", "ReplicaSet"),
        ("endpoints", "ep", "v1", "true", "Endpoints"),
        ("jobs", "", "batch/v1", "true", "Job"),
    ];
    for (name, short, gv, namespaced, kind) in expect {
        table.expect_row(
            name,
            &[
                ("SHORTNAMES", short),
                ("APIVERSION", gv),
                ("NAMESPACED", namespaced),
                ("KIND", kind),
            ],
        )?;
    }
    let names = env
        .kubectl
        .ok(&["api-resources", "--api-group=apps", "-o", "name"])
        .await?;
    assert_contains(&names, "deployments.apps\n")?;
    let versions = env.kubectl.ok(&["api-versions"]).await?;
    for gv in ["apps/v1", "batch/v1", "v1"] {
        ensure!(
            versions.lines().any(|l| l == gv),
            "{gv} missing in\n{versions}"
        );
    }
    Ok(())
}

/// `get all` on an empty namespace prints kubectl's "No resources found" and exits 0.
pub async fn get_all_empty_namespace(env: Env) -> Result<()> {
    env.create_namespace().await?;
    let out = env.kubectl_ns().run(&["get", "all"]).await?.ok()?;
    ensure!(out.stdout.trim().is_empty(), "{out}");
    assert_contains(
        &out.stderr,
        &format!("No resources found in {} namespace.", env.ns),
    )?;
    Ok(())
}

/// What the API server bootstraps by itself: the four system namespaces and the `kubernetes`
/// Service (first IP of the range, 443 → the server's port) with its Endpoints and EndpointSlice.
pub async fn bootstrap_objects(env: Env) -> Result<()> {
    let ns = Table::parse(
        &env.kubectl
            .ok(&[
                "get",
                "ns",
                "default",
                "kube-system",
                "kube-public",
                "kube-node-lease",
            ])
            .await?,
    );
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        ns.expect_row(name, &[("STATUS", "Active")])?;
    }
    let port = env.url.rsplit(':').next().unwrap_or_default().to_string();
    let k = env.kubectl.in_namespace("default");
    let svc = k.get_json(&["service", "kubernetes"]).await?;
    for (pointer, want) in [
        ("/spec/clusterIP", json!("10.96.0.1")),
        ("/spec/ports/0/name", json!("https")),
        ("/spec/ports/0/port", json!(443)),
        ("/spec/ports/0/protocol", json!("TCP")),
        ("/metadata/labels/component", json!("apiserver")),
        ("/metadata/labels/provider", json!("kubernetes")),
    ] {
        expect_at(&svc, pointer, want)?;
    }
    let ep = k.get_json(&["endpoints", "kubernetes"]).await?;
    expect_at(&ep, "/subsets/0/ports/0/name", json!("https"))?;
    expect_at(&ep, "/subsets/0/ports/0/port", json!(port.parse::<u16>()?))?;
    let slice = k.get_json(&["endpointslices", "kubernetes"]).await?;
    expect_at(&slice, "/addressType", json!("IPv4"))?;
    expect_at(&slice, "/ports/0/port", json!(port.parse::<u16>()?))?;
    expect_at(
        &slice,
        "/metadata/labels/kubernetes.io~1service-name",
        json!("kubernetes"),
    )?;
    Ok(())
}

/// `cluster-info` names the control plane URL (its output is ANSI-coloured even without a TTY).
pub async fn cluster_info(env: Env) -> Result<()> {
    let out = env.kubectl.ok(&["cluster-info"]).await?;
    let plain = strip_ansi(&out);
    assert_contains(
        &plain,
        &format!("Kubernetes control plane is running at {}", env.url),
    )?;
    Ok(())
}

/// `get --raw` on /version, /healthz, /livez, /readyz?verbose and /metrics.
pub async fn raw_endpoints(env: Env) -> Result<()> {
    let kubectl = &env.kubectl;
    let version: Value = serde_json::from_str(&kubectl.ok(&["get", "--raw", "/version"]).await?)?;
    ensure!(version["gitVersion"] == "v1.33.0", "{version}");
    ensure!(
        kubectl.ok(&["get", "--raw", "/healthz"]).await?.trim() == "ok",
        "healthz"
    );
    ensure!(
        kubectl.ok(&["get", "--raw", "/livez"]).await?.trim() == "ok",
        "livez"
    );
    let ready = kubectl.ok(&["get", "--raw", "/readyz?verbose"]).await?;
    assert_contains(&ready, "[+]ping ok")?;
    assert_contains(&ready, "readyz check passed")?;
    // Ensure at least one request was counted before reading the metrics.
    kubectl.ok(&["get", "namespaces"]).await?;
    let metrics = kubectl.ok(&["get", "--raw", "/metrics"]).await?;
    assert_contains(&metrics, "apiserver_request_total{")?;
    ensure!(
        metrics
            .lines()
            .any(|l| l.starts_with("apiserver_request_total{")
                && l.contains("resource=\"namespaces\"")),
        "no apiserver_request_total sample for namespaces in\n{metrics}"
    );
    Ok(())
}

/// A raw paginated list: `limit=1` returns one item and a continue token that yields the rest.
pub async fn raw_list_pagination(env: Env) -> Result<()> {
    env.create_namespace().await?;
    let k = env.kubectl_ns();
    for name in ["page-a", "page-b", "page-c"] {
        k.ok(&["create", "configmap", name, "--from-literal=k=v"])
            .await?;
    }
    let base = format!("/api/v1/namespaces/{}/configmaps", env.ns);
    let first: Value =
        serde_json::from_str(&k.ok(&["get", "--raw", &format!("{base}?limit=1")]).await?)?;
    ensure!(first["kind"] == "ConfigMapList", "{first}");
    ensure!(
        first["items"].as_array().map(Vec::len) == Some(1),
        "{first}"
    );
    let token = first["metadata"]["continue"]
        .as_str()
        .filter(|t| !t.is_empty())
        .with_context(|| format!("no continue token in {first}"))?;
    ensure!(
        first["metadata"]["remainingItemCount"] == 2,
        "remainingItemCount in {first}"
    );
    let mut names = vec![first["items"][0]["metadata"]["name"].clone()];
    let second: Value = serde_json::from_str(
        &k.ok(&["get", "--raw", &format!("{base}?limit=5&continue={token}")])
            .await?,
    )?;
    for item in second["items"].as_array().context("items")? {
        names.push(item["metadata"]["name"].clone());
    }
    let cont = second["metadata"]["continue"].as_str().unwrap_or("");
    ensure!(cont.is_empty(), "last page still has continue {cont:?}");
    ensure!(
        names == ["page-a", "page-b", "page-c"],
        "pages returned {names:?}"
    );

    // Lists at a resourceVersion: Exact serves the past state, NotOlderThan the current one.
    let rv = first["metadata"]["resourceVersion"]
        .as_str()
        .context("list resourceVersion")?
        .to_string();
    k.ok(&["create", "configmap", "page-d"]).await?;
    let list_names = |body: &str| -> Result<Vec<String>> {
        let v: Value = serde_json::from_str(body)?;
        Ok(v["items"]
            .as_array()
            .context("items")?
            .iter()
            .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_string))
            .collect())
    };
    let exact = k
        .ok(&[
            "get",
            "--raw",
            &format!("{base}?resourceVersion={rv}&resourceVersionMatch=Exact"),
        ])
        .await?;
    ensure!(
        list_names(&exact)? == ["page-a", "page-b", "page-c"],
        "list at {rv} (Exact): {exact}"
    );
    let newer = k
        .ok(&[
            "get",
            "--raw",
            &format!("{base}?resourceVersion={rv}&resourceVersionMatch=NotOlderThan"),
        ])
        .await?;
    ensure!(
        list_names(&newer)? == ["page-a", "page-b", "page-c", "page-d"],
        "list not older than {rv}: {newer}"
    );
    Ok(())
}

/// Removes ANSI colour sequences (`ESC [ ... m`).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
