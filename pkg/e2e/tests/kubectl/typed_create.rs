//! The typed `kubectl create <kind>` subcommands, which send protobuf request bodies (kubectl
//! 1.33), each followed by a `get` of what was stored.

use anyhow::{ensure, Result};
use kubelite_e2e::{assert_contains, Env, Table};
use serde_json::json;

use crate::create_get::in_service_cidr;

/// namespace, configmap, secret generic, deployment, service clusterip, job, serviceaccount.
pub async fn typed_create_subcommands(env: Env) -> Result<()> {
    let out = env.kubectl.ok(&["create", "namespace", &env.ns]).await?;
    ensure!(out == format!("namespace/{} created\n", env.ns), "{out}");
    let ns = env.kubectl.get_json(&["namespace", &env.ns]).await?;
    ensure!(ns["status"]["phase"] == "Active", "{ns}");
    ensure!(ns["spec"]["finalizers"] == json!(["kubernetes"]), "{ns}");
    ensure!(
        ns["metadata"]["labels"]["kubernetes.io/metadata.name"] == env.ns.as_str(),
        "namespace name label: {ns}"
    );
    let k = env.kubectl_ns();

    let out = k
        .ok(&[
            "create",
            "configmap",
            "c",
            "--from-literal=a=b",
            "--from-literal=x=y z",
        ])
        .await?;
    ensure!(out == "configmap/c created\n", "{out}");
    let cm = k.get_json(&["configmap", "c"]).await?;
    ensure!(cm["data"] == json!({"a": "b", "x": "y z"}), "{cm}");
    Table::parse(&k.ok(&["get", "cm", "c"]).await?).expect_row("c", &[("DATA", "2")])?;

    let out = k
        .ok(&["create", "secret", "generic", "s", "--from-literal=k=v"])
        .await?;
    ensure!(out == "secret/s created\n", "{out}");
    let secret = k.get_json(&["secret", "s"]).await?;
    ensure!(secret["data"] == json!({"k": "dg=="}), "{secret}");
    ensure!(secret["type"] == "Opaque", "{secret}");
    let table = Table::parse(&k.ok(&["get", "secrets", "s"]).await?);
    table.expect_headers("NAME TYPE DATA AGE")?;
    table.expect_row("s", &[("TYPE", "Opaque"), ("DATA", "1")])?;

    let out = k
        .ok(&[
            "create",
            "deployment",
            "web",
            "--image=nginx:1.25",
            "--replicas=2",
            "--port=80",
        ])
        .await?;
    ensure!(out == "deployment.apps/web created\n", "{out}");
    let d = k.get_json(&["deployment", "web"]).await?;
    ensure!(d["metadata"]["labels"] == json!({"app": "web"}), "{d}");
    ensure!(d["spec"]["replicas"] == 2, "{d}");
    ensure!(
        d["spec"]["selector"] == json!({"matchLabels": {"app": "web"}}),
        "{d}"
    );
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    ensure!(c["name"] == "nginx" && c["image"] == "nginx:1.25", "{c}");
    ensure!(
        c["ports"] == json!([{"containerPort": 80, "protocol": "TCP"}]),
        "{c}"
    );
    ensure!(
        d["spec"]["strategy"]["type"] == "RollingUpdate",
        "defaults applied: {d}"
    );
    let table = Table::parse(&k.ok(&["get", "deploy", "web", "-o", "wide"]).await?);
    table.expect_row(
        "web",
        &[
            ("READY", "0/2"),
            ("UP-TO-DATE", "0"),
            ("AVAILABLE", "0"),
            ("IMAGES", "nginx:1.25"),
        ],
    )?;

    let out = k
        .ok(&["create", "service", "clusterip", "svc", "--tcp=80:8080"])
        .await?;
    ensure!(out == "service/svc created\n", "{out}");
    let svc = k.get_json(&["service", "svc"]).await?;
    ensure!(svc["spec"]["selector"] == json!({"app": "svc"}), "{svc}");
    ensure!(
        svc["spec"]["ports"]
            == json!([{"name": "80-8080", "port": 80, "protocol": "TCP", "targetPort": 8080}]),
        "{svc}"
    );
    let ip = svc["spec"]["clusterIP"].as_str().unwrap_or_default();
    ensure!(in_service_cidr(ip), "{svc}");
    Table::parse(&k.ok(&["get", "svc", "svc"]).await?).expect_row(
        "svc",
        &[
            ("TYPE", "ClusterIP"),
            ("CLUSTER-IP", ip),
            ("EXTERNAL-IP", "<none>"),
            ("PORT(S)", "80/TCP"),
        ],
    )?;
    // A headless service keeps clusterIP None.
    k.ok(&[
        "create",
        "service",
        "clusterip",
        "headless",
        "--clusterip=None",
        "--tcp=53:53",
    ])
    .await?;
    let ip = k
        .ok(&["get", "svc", "headless", "-o", "jsonpath={.spec.clusterIP}"])
        .await?;
    ensure!(ip == "None", "headless clusterIP {ip}");

    let out = k.ok(&["create", "job", "j", "--image=busybox"]).await?;
    ensure!(out == "job.batch/j created\n", "{out}");
    let job = k.get_json(&["job", "j"]).await?;
    let spec = &job["spec"];
    ensure!(
        spec["template"]["spec"]["containers"][0]["image"] == "busybox",
        "{job}"
    );
    ensure!(
        spec["template"]["spec"]["containers"][0]["name"] == "j",
        "{job}"
    );
    ensure!(
        spec["template"]["spec"]["restartPolicy"] == "Never",
        "{job}"
    );
    ensure!(spec["backoffLimit"] == 6, "{job}");
    ensure!(
        spec["completions"] == 1 && spec["parallelism"] == 1,
        "{job}"
    );
    let table = Table::parse(&k.ok(&["get", "jobs"]).await?);
    table.expect_headers("NAME STATUS COMPLETIONS DURATION AGE")?;
    // No job controller: no start time, so no duration; not suspended, failed or complete.
    table.expect_row(
        "j",
        &[
            ("STATUS", "Running"),
            ("COMPLETIONS", "0/1"),
            ("DURATION", ""),
        ],
    )?;

    let out = k.ok(&["create", "serviceaccount", "sa"]).await?;
    ensure!(out == "serviceaccount/sa created\n", "{out}");
    let table = Table::parse(&k.ok(&["get", "sa", "sa"]).await?);
    table.expect_headers("NAME SECRETS AGE")?;
    table.expect_row("sa", &[("SECRETS", "0")])?;

    // --dry-run=server goes through the server without storing.
    let out = k
        .ok(&[
            "create",
            "configmap",
            "dry",
            "--from-literal=a=b",
            "--dry-run=server",
        ])
        .await?;
    ensure!(out == "configmap/dry created (server dry run)\n", "{out}");
    let missing = k.fails(&["get", "cm", "dry"]).await?;
    ensure!(
        missing.stderr.contains("configmaps \"dry\" not found"),
        "{missing}"
    );
    Ok(())
}

/// Service types through `create service` (node port allocation, a pending load balancer, an
/// external name) and typed secrets.
pub async fn typed_create_service_types(env: Env) -> Result<()> {
    env.create_namespace().await?;
    let k = env.kubectl_ns();
    for args in [
        &[
            "create",
            "service",
            "nodeport",
            "np",
            "--tcp=80:8080",
            "--node-port=30080",
        ][..],
        &["create", "service", "nodeport", "np2", "--tcp=81:8081"],
        &["create", "service", "loadbalancer", "lb", "--tcp=80"],
        &[
            "create",
            "service",
            "externalname",
            "ext",
            "--external-name=example.com",
        ],
    ] {
        let out = k.ok(args).await?;
        ensure!(out == format!("service/{} created\n", args[3]), "{out}");
    }
    let table = Table::parse(&k.ok(&["get", "svc", "-o", "wide"]).await?);
    table.expect_row(
        "np",
        &[
            ("TYPE", "NodePort"),
            ("EXTERNAL-IP", "<none>"),
            ("PORT(S)", "80:30080/TCP"),
        ],
    )?;
    table.expect_row(
        "lb",
        &[("TYPE", "LoadBalancer"), ("EXTERNAL-IP", "<pending>")],
    )?;
    table.expect_row(
        "ext",
        &[
            ("TYPE", "ExternalName"),
            ("CLUSTER-IP", "<none>"),
            ("EXTERNAL-IP", "example.com"),
            ("PORT(S)", "<none>"),
        ],
    )?;
    for name in ["np2", "lb"] {
        let port = k
            .ok(&[
                "get",
                "svc",
                name,
                "-o",
                "jsonpath={.spec.ports[0].nodePort}",
            ])
            .await?;
        let port: u16 = port.parse()?;
        ensure!((30000..=32767).contains(&port), "{name} nodePort {port}");
    }
    let out = k
        .fails(&[
            "create",
            "service",
            "nodeport",
            "dup",
            "--tcp=80:80",
            "--node-port=30080",
        ])
        .await?;
    assert_contains(
        &out.stderr,
        "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated",
    )?;
    // Deleting the service frees its node port.
    k.ok(&["delete", "svc", "np"]).await?;
    k.ok(&[
        "create",
        "service",
        "nodeport",
        "dup",
        "--tcp=80:80",
        "--node-port=30080",
    ])
    .await?;

    let out = k
        .ok(&[
            "create",
            "secret",
            "docker-registry",
            "reg",
            "--docker-server=r.example.com",
            "--docker-username=u",
            "--docker-password=p",
        ])
        .await?;
    ensure!(out == "secret/reg created\n", "{out}");
    Table::parse(&k.ok(&["get", "secret", "reg"]).await?).expect_row(
        "reg",
        &[("TYPE", "kubernetes.io/dockerconfigjson"), ("DATA", "1")],
    )?;
    // A dockerconfigjson secret must carry .dockerconfigjson.
    let bad = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: bad-reg\ntype: kubernetes.io/dockerconfigjson\ndata: {}\n";
    let out = k.create_yaml(bad).await?.failed()?;
    assert_contains(&out.stderr, "The Secret \"bad-reg\" is invalid")?;
    assert_contains(&out.stderr, "data[.dockerconfigjson]: Required value")?;
    Ok(())
}
