//! `create -f` of ordinary manifests, `kind: List` and multi-document files, and `get` in its
//! output formats, with selectors, across namespaces, in chunks and by short name.

use anyhow::{ensure, Context as _, Result};
use kubelite_e2e::{assert_contains, expect_at, table_names, Env, Table};
use serde_json::{json, Value};

/// A namespace (the test's own), a ConfigMap, a Deployment, a Service and a Pod.
pub fn app_manifest(ns: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata:
  name: {ns}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: {ns}
data:
  mode: fast
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {ns}
  labels:
    app: web
spec:
  replicas: 2
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
        image: nginx:1.25
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: {ns}
spec:
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: v1
kind: Pod
metadata:
  name: solo
  namespace: {ns}
  labels:
    app: solo
    tier: backend
spec:
  containers:
  - name: main
    image: busybox
    command: ["sleep", "3600"]
"#
    )
}

/// `create -f` prints one line per object; default and wide tables have upstream's columns.
pub async fn create_from_file_and_tables(env: Env) -> Result<()> {
    let out = env
        .kubectl
        .create_yaml(&app_manifest(&env.ns))
        .await?
        .ok()?;
    let expected = format!(
        "namespace/{} created\nconfigmap/settings created\ndeployment.apps/web created\n\
         service/web created\npod/solo created\n",
        env.ns
    );
    ensure!(out.stdout == expected, "{out}");
    let k = env.kubectl_ns();

    let pods = Table::parse(&k.ok(&["get", "pods"]).await?);
    pods.expect_headers("NAME READY STATUS RESTARTS AGE")?;
    pods.expect_row(
        "solo",
        &[("READY", "0/1"), ("STATUS", "Pending"), ("RESTARTS", "0")],
    )?;
    let pods_wide = Table::parse(&k.ok(&["get", "pods", "-o", "wide"]).await?);
    pods_wide
        .expect_headers("NAME READY STATUS RESTARTS AGE IP NODE NOMINATED NODE READINESS GATES")?;
    pods_wide.expect_row(
        "solo",
        &[
            ("IP", "<none>"),
            ("NODE", "<none>"),
            ("NOMINATED NODE", "<none>"),
            ("READINESS GATES", "<none>"),
        ],
    )?;

    // No controller runs: nothing is ready, updated or available yet.
    let deploys = Table::parse(&k.ok(&["get", "deployments"]).await?);
    deploys.expect_headers("NAME READY UP-TO-DATE AVAILABLE AGE")?;
    deploys.expect_row(
        "web",
        &[("READY", "0/2"), ("UP-TO-DATE", "0"), ("AVAILABLE", "0")],
    )?;
    let deploys_wide = Table::parse(&k.ok(&["get", "deploy", "-o", "wide"]).await?);
    deploys_wide
        .expect_headers("NAME READY UP-TO-DATE AVAILABLE AGE CONTAINERS IMAGES SELECTOR")?;
    deploys_wide.expect_row(
        "web",
        &[
            ("CONTAINERS", "nginx"),
            ("IMAGES", "nginx:1.25"),
            ("SELECTOR", "app=web"),
        ],
    )?;

    let svcs = Table::parse(&k.ok(&["get", "services"]).await?);
    svcs.expect_headers("NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE")?;
    svcs.expect_row(
        "web",
        &[
            ("TYPE", "ClusterIP"),
            ("EXTERNAL-IP", "<none>"),
            ("PORT(S)", "80/TCP"),
        ],
    )?;
    let ip = svcs.cell("web", "CLUSTER-IP")?;
    ensure!(in_service_cidr(&ip), "cluster IP {ip} outside 10.96.0.0/12");
    let svcs_wide = Table::parse(&k.ok(&["get", "svc", "-o", "wide"]).await?);
    svcs_wide.expect_headers("NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE SELECTOR")?;
    svcs_wide.expect_row("web", &[("SELECTOR", "app=web")])?;

    let cms = Table::parse(&k.ok(&["get", "configmaps", "settings"]).await?);
    cms.expect_headers("NAME DATA AGE")?;
    cms.expect_row("settings", &[("DATA", "1")])?;

    let ns = Table::parse(&env.kubectl.ok(&["get", "namespace", &env.ns]).await?);
    ns.expect_headers("NAME STATUS AGE")?;
    ns.expect_row(&env.ns, &[("STATUS", "Active")])?;
    Ok(())
}

/// `-o yaml|json|jsonpath|name`, `--show-labels`, and the defaults the server fills in.
pub async fn output_formats_and_defaults(env: Env) -> Result<()> {
    env.kubectl
        .create_yaml(&app_manifest(&env.ns))
        .await?
        .ok()?;
    let k = env.kubectl_ns();

    let deploy = k.get_json(&["deployment", "web"]).await?;
    for (pointer, want) in [
        ("/kind", json!("Deployment")),
        ("/apiVersion", json!("apps/v1")),
        ("/metadata/generation", json!(1)),
        ("/spec/strategy/type", json!("RollingUpdate")),
        ("/spec/strategy/rollingUpdate/maxSurge", json!("25%")),
        ("/spec/strategy/rollingUpdate/maxUnavailable", json!("25%")),
        ("/spec/revisionHistoryLimit", json!(10)),
        ("/spec/progressDeadlineSeconds", json!(600)),
        ("/spec/template/spec/restartPolicy", json!("Always")),
        ("/spec/template/spec/dnsPolicy", json!("ClusterFirst")),
        (
            "/spec/template/spec/terminationGracePeriodSeconds",
            json!(30),
        ),
        (
            "/spec/template/spec/schedulerName",
            json!("default-scheduler"),
        ),
        ("/spec/template/spec/securityContext", json!({})),
        // A tagged image is pulled only if missing.
        (
            "/spec/template/spec/containers/0/imagePullPolicy",
            json!("IfNotPresent"),
        ),
        (
            "/spec/template/spec/containers/0/terminationMessagePath",
            json!("/dev/termination-log"),
        ),
        (
            "/spec/template/spec/containers/0/terminationMessagePolicy",
            json!("File"),
        ),
        (
            "/spec/template/spec/containers/0/ports/0/protocol",
            json!("TCP"),
        ),
    ] {
        expect_at(&deploy, pointer, want)?;
    }
    ensure!(
        deploy["metadata"]["uid"]
            .as_str()
            .is_some_and(|u| u.len() == 36),
        "uid: {}",
        deploy["metadata"]
    );

    let pod = k.get_json(&["pod", "solo"]).await?;
    for (pointer, want) in [
        ("/spec/restartPolicy", json!("Always")),
        ("/spec/dnsPolicy", json!("ClusterFirst")),
        ("/spec/terminationGracePeriodSeconds", json!(30)),
        ("/spec/enableServiceLinks", json!(true)),
        ("/spec/schedulerName", json!("default-scheduler")),
        // An untagged image means :latest, which is always pulled.
        ("/spec/containers/0/imagePullPolicy", json!("Always")),
        ("/status/phase", json!("Pending")),
        ("/status/qosClass", json!("BestEffort")),
    ] {
        expect_at(&pod, pointer, want)?;
    }

    let svc = k.get_json(&["service", "web"]).await?;
    for (pointer, want) in [
        ("/spec/type", json!("ClusterIP")),
        ("/spec/sessionAffinity", json!("None")),
        ("/spec/ports/0/protocol", json!("TCP")),
        ("/spec/ports/0/targetPort", json!(8080)),
        ("/spec/ipFamilies", json!(["IPv4"])),
        ("/spec/ipFamilyPolicy", json!("SingleStack")),
        ("/spec/internalTrafficPolicy", json!("Cluster")),
    ] {
        expect_at(&svc, pointer, want)?;
    }
    let ip = svc["spec"]["clusterIP"].as_str().context("clusterIP")?;
    ensure!(in_service_cidr(ip), "clusterIP {ip} outside 10.96.0.0/12");
    expect_at(&svc, "/spec/clusterIPs", json!([ip]))?;

    // YAML carries the same object.
    let yaml = k.ok(&["get", "deployment", "web", "-o", "yaml"]).await?;
    let from_yaml: Value = serde_yaml_ng::from_str(&yaml)?;
    ensure!(
        from_yaml["spec"] == deploy["spec"],
        "yaml and json differ:\n{yaml}"
    );
    assert_contains(&yaml, "kind: Deployment\n")?;

    let replicas = k
        .ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"])
        .await?;
    ensure!(replicas == "2", "jsonpath gave {replicas:?}");
    let images = k
        .ok(&[
            "get",
            "pods",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.spec.containers[0].image}{\"\\n\"}{end}",
        ])
        .await?;
    ensure!(images == "solo=busybox\n", "jsonpath range gave {images:?}");
    let names = k.ok(&["get", "deploy,svc,cm", "-o", "name"]).await?;
    ensure!(
        names == "deployment.apps/web\nservice/web\nconfigmap/settings\n",
        "-o name gave {names:?}"
    );
    let labels = Table::parse(&k.ok(&["get", "pods", "--show-labels"]).await?);
    labels.expect_headers("NAME READY STATUS RESTARTS AGE LABELS")?;
    labels.expect_row("solo", &[("LABELS", "app=solo,tier=backend")])?;
    let with_columns = Table::parse(
        &k.ok(&["get", "pods", "-L", "tier", "-L", "missing"])
            .await?,
    );
    with_columns.expect_headers("NAME READY STATUS RESTARTS AGE TIER MISSING")?;
    with_columns.expect_row("solo", &[("TIER", "backend"), ("MISSING", "")])?;
    let custom = k
        .ok(&[
            "get",
            "pods",
            "-o",
            "custom-columns=N:.metadata.name,P:.status.phase",
        ])
        .await?;
    ensure!(
        custom == "N      P\nsolo   Pending\n",
        "custom columns {custom:?}"
    );
    Ok(())
}

/// A `kind: List` manifest and a multi-document file with `create` and `apply`.
pub async fn list_and_multi_doc_manifests(env: Env) -> Result<()> {
    env.create_namespace().await?;
    let k = env.kubectl_ns();
    let list = r#"apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: from-list-a
  data: {a: "1"}
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: from-list-b
  data: {b: "2"}
"#;
    let out = k.create_yaml(list).await?.ok()?;
    ensure!(
        out.stdout == "configmap/from-list-a created\nconfigmap/from-list-b created\n",
        "{out}"
    );
    let multi = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: doc-one
data: {x: "1"}
---
# a comment-only document is skipped
---
apiVersion: v1
kind: Secret
metadata:
  name: doc-two
stringData:
  password: hunter2
"#;
    let out = k.apply_yaml(multi).await?.ok()?;
    ensure!(
        out.stdout == "configmap/doc-one created\nsecret/doc-two created\n",
        "{out}"
    );
    let out = k.apply_yaml(list).await?.ok()?;
    // Objects made by `create` have no last-applied annotation: apply warns and patches them.
    ensure!(
        out.stdout == "configmap/from-list-a configured\nconfigmap/from-list-b configured\n",
        "{out}"
    );
    assert_contains(
        &out.stderr,
        "missing the kubectl.kubernetes.io/last-applied-configuration annotation",
    )?;
    let secret = k.get_json(&["secret", "doc-two"]).await?;
    // stringData is write-only: merged into data as base64.
    expect_at(&secret, "/data/password", json!("aHVudGVyMg=="))?;
    expect_at(&secret, "/type", json!("Opaque"))?;
    ensure!(
        secret.get("stringData").is_none(),
        "stringData stored: {secret}"
    );
    // generateName: the server appends five random characters.
    let out = k
        .create_yaml("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: gen-\n")
        .await?
        .ok()?;
    let generated = out
        .stdout
        .strip_prefix("configmap/gen-")
        .and_then(|rest| rest.strip_suffix(" created\n"))
        .with_context(|| format!("generated name: {out}"))?;
    ensure!(
        generated.len() == 5
            && generated
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
        "generated suffix {generated:?}"
    );

    // A List with one invalid item: the valid one is created, the command fails.
    let mixed = r#"apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: good-item}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: Bad_Item}
"#;
    let out = k.create_yaml(mixed).await?.failed()?;
    ensure!(out.stdout == "configmap/good-item created\n", "{out}");
    assert_contains(&out.stderr, "The ConfigMap \"Bad_Item\" is invalid")?;

    let names = table_names(&k.ok(&["get", "cm"]).await?);
    for n in ["doc-one", "from-list-a", "from-list-b"] {
        ensure!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
    }
    Ok(())
}

/// Label selectors (=, !=, in, notin, exists, !exists) and field selectors.
pub async fn label_and_field_selectors(env: Env) -> Result<()> {
    env.create_namespace().await?;
    let k = env.kubectl_ns();
    let pods = r#"apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: p-a, labels: {app: a, env: prod}}
  spec: {containers: [{name: c, image: busybox}]}
- apiVersion: v1
  kind: Pod
  metadata: {name: p-b, labels: {app: b, env: dev}}
  spec: {containers: [{name: c, image: busybox}]}
- apiVersion: v1
  kind: Pod
  metadata: {name: p-c, labels: {app: c}}
  spec: {containers: [{name: c, image: busybox}], nodeName: node-1}
"#;
    k.create_yaml(pods).await?.ok()?;
    let cases: &[(&[&str], &[&str])] = &[
        (&["-l", "app=a"], &["p-a"]),
        (&["-l", "app==a"], &["p-a"]),
        (&["-l", "app!=a"], &["p-b", "p-c"]),
        (&["-l", "env in (prod,dev)"], &["p-a", "p-b"]),
        (&["-l", "env notin (prod)"], &["p-b", "p-c"]),
        (&["-l", "env"], &["p-a", "p-b"]),
        (&["-l", "!env"], &["p-c"]),
        (&["-l", "app in (a,c),env"], &["p-a"]),
        (&["--field-selector", "metadata.name=p-b"], &["p-b"]),
        (&["--field-selector", "metadata.name!=p-b"], &["p-a", "p-c"]),
        (&["--field-selector", "spec.nodeName=node-1"], &["p-c"]),
        (
            &["--field-selector", "status.phase=Pending"],
            &["p-a", "p-b", "p-c"],
        ),
        (
            &["-l", "env", "--field-selector", "metadata.name!=p-a"],
            &["p-b"],
        ),
    ];
    for (args, want) in cases {
        let mut full = vec!["get", "pods", "-o", "name"];
        full.extend_from_slice(args);
        let got = k.ok(&full).await?;
        let got: Vec<&str> = got.lines().collect();
        let want: Vec<String> = want.iter().map(|n| format!("pod/{n}")).collect();
        ensure!(got == want, "{args:?}: got {got:?}, want {want:?}");
    }
    let wide = Table::parse(&k.ok(&["get", "pods", "-o", "wide"]).await?);
    wide.expect_row("p-c", &[("NODE", "node-1")])?;
    wide.expect_row("p-a", &[("NODE", "<none>")])?;
    let none = k.run(&["get", "pods", "-l", "app=zzz"]).await?.ok()?;
    assert_contains(&none.stderr, "No resources found")?;
    let bad = k
        .fails(&["get", "pods", "--field-selector", "spec.bogus=x"])
        .await?;
    assert_contains(&bad.stderr, "field label not supported: spec.bogus")?;
    Ok(())
}

/// `-A` shows a NAMESPACE column across namespaces; `--chunk-size` pages the list.
pub async fn all_namespaces_and_chunking(env: Env) -> Result<()> {
    let other = env.other_ns("b");
    env.create_namespace().await?;
    env.kubectl.ok(&["create", "namespace", &other]).await?;
    let mark = format!("mark={}", env.ns);
    for ns in [env.ns.as_str(), other.as_str()] {
        for i in 0..3 {
            let name = format!("cm-{i}");
            env.kubectl
                .ok(&["create", "configmap", &name, "-n", ns])
                .await?;
            env.kubectl
                .ok(&["label", "configmap", &name, "-n", ns, &mark])
                .await?;
        }
    }
    let all = env.kubectl.ok(&["get", "cm", "-A", "-l", &mark]).await?;
    let table = Table::parse(&all);
    table.expect_headers("NAMESPACE NAME DATA AGE")?;
    let namespaces = table.column_values("NAMESPACE")?;
    ensure!(namespaces.len() == 6, "{all}");
    for ns in [&env.ns, &other] {
        ensure!(
            namespaces.iter().filter(|n| *n == ns).count() == 3,
            "3 rows for {ns}: {all}"
        );
    }
    // Chunked: kubectl asks for 2 at a time and follows continue tokens (visible at -v=6).
    let chunked = env
        .kubectl
        .run(&["get", "cm", "-A", "-l", &mark, "--chunk-size=2", "-v=6"])
        .await?
        .ok()?;
    let names: Vec<String> = chunked
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join("/"))
        .collect();
    ensure!(names.len() == 6, "chunked output:\n{chunked}");
    ensure!(
        chunked
            .stdout
            .lines()
            .filter(|l| l.starts_with("NAMESPACE"))
            .count()
            == 1,
        "one header across chunks:\n{}",
        chunked.stdout
    );
    ensure!(
        chunked.stderr.contains("limit=2") && chunked.stderr.contains("continue="),
        "kubectl did not page: {}",
        chunked.stderr
    );
    let in_ns = env
        .kubectl_ns()
        .ok(&["get", "cm", "-l", &mark, "--chunk-size=1", "-o", "name"])
        .await?;
    ensure!(
        in_ns == "configmap/cm-0\nconfigmap/cm-1\nconfigmap/cm-2\n",
        "{in_ns}"
    );
    Ok(())
}

/// Short names resolve through discovery: po, deploy, svc, cm, ns, rs, ep, no. (The objects come
/// from `apply -f` of the ordinary manifest: created, then unchanged.)
pub async fn short_names(env: Env) -> Result<()> {
    let manifest = app_manifest(&env.ns);
    let out = env.kubectl.apply_yaml(&manifest).await?.ok()?;
    let expected = format!(
        "namespace/{} created\nconfigmap/settings created\ndeployment.apps/web created\n\
         service/web created\npod/solo created\n",
        env.ns
    );
    ensure!(out.stdout == expected, "{out}");
    let out = env.kubectl.apply_yaml(&manifest).await?.ok()?;
    ensure!(
        out.stdout == expected.replace(" created", " unchanged"),
        "{out}"
    );
    let k = env.kubectl_ns();
    let names = k.ok(&["get", "po,deploy,svc,cm", "-o", "name"]).await?;
    ensure!(
        names == "pod/solo\ndeployment.apps/web\nservice/web\nconfigmap/settings\n",
        "{names}"
    );
    let ns = env
        .kubectl
        .ok(&["get", "ns", &env.ns, "-o", "name"])
        .await?;
    ensure!(ns == format!("namespace/{}\n", env.ns), "{ns}");
    for short in [
        "rs",
        "ep",
        "no",
        "sa",
        "ev",
        "deployments.apps",
        "deploy.v1.apps",
    ] {
        let out = k.run(&["get", short]).await?.ok()?;
        ensure!(
            out.stderr.is_empty() || out.stderr.contains("No resources found"),
            "get {short}: {out}"
        );
    }
    let ep = k.run(&["get", "endpoints"]).await?.ok()?;
    if !ep.stdout.is_empty() {
        Table::parse(&ep.stdout).expect_headers("NAME ENDPOINTS AGE")?;
    }
    Ok(())
}

/// Whether `ip` lies in the default service range 10.96.0.0/12 (10.96.0.0 - 10.111.255.255).
pub fn in_service_cidr(ip: &str) -> bool {
    let octets: Vec<u8> = ip.split('.').filter_map(|o| o.parse().ok()).collect();
    octets.len() == 4 && octets[0] == 10 && (96..=111).contains(&octets[1])
}
