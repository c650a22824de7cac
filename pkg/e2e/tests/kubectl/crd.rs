//! CustomResourceDefinitions through the real kubectl: apply, `wait --for=condition=Established`,
//! api-resources, printer columns, defaults and pruning, validation messages, `scale`, `explain`,
//! and deleting the definition with its objects.

use std::time::Duration;

use anyhow::{ensure, Result};
use kubelite_e2e::{wait_until, Env, Table};

/// The CRD name depends on the backend so both suites can run against their own servers
/// without clashing if they ever share one.
fn crd_yaml(group: &str) -> String {
    format!(
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.{group}
spec:
  group: {group}
  scope: Namespaced
  names:
    plural: crontabs
    singular: crontab
    kind: CronTab
    shortNames: [ct]
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            description: The desired schedule.
            properties:
              cronSpec:
                type: string
                pattern: '^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){{4}}$'
                description: When to run, in cron syntax.
              image:
                type: string
                default: busybox
              replicas:
                type: integer
                minimum: 1
                maximum: 10
          status:
            type: object
            properties:
              replicas: {{type: integer}}
              labelSelector: {{type: string}}
    subresources:
      status: {{}}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.labelSelector
    additionalPrinterColumns:
    - name: Spec
      type: string
      jsonPath: .spec.cronSpec
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
"#
    )
}

fn crontab(group: &str, name: &str, spec: &str, replicas: i64) -> String {
    format!(
        "apiVersion: {group}/v1\nkind: CronTab\nmetadata:\n  name: {name}\nspec:\n  cronSpec: \"{spec}\"\n  replicas: {replicas}\n  unknownField: dropped\n"
    )
}

/// The whole CRD lifecycle as a kubectl user sees it.
pub async fn crd_lifecycle(env: Env) -> Result<()> {
    env.create_namespace().await?;
    let group = format!("{}.example.com", env.backend.name());
    let crd = format!("crontabs.{group}");
    let k = &env.kubectl;
    let out = k.apply_yaml(&crd_yaml(&group)).await?.ok()?;
    ensure!(
        out.stdout == format!("customresourcedefinition.apiextensions.k8s.io/{crd} created\n"),
        "{out}"
    );
    let out = k
        .ok(&[
            "wait",
            "--for=condition=Established",
            &format!("crd/{crd}"),
            "--timeout=20s",
        ])
        .await?;
    ensure!(out.contains("condition met"), "{out}");

    // Discovery: the new resource is there on the next invocation.
    let out = k
        .ok(&["api-resources", &format!("--api-group={group}")])
        .await?;
    let t = Table::parse(&out);
    t.expect_headers("NAME SHORTNAMES APIVERSION NAMESPACED KIND")?;
    ensure!(t.column_values("NAME")? == ["crontabs"], "{out}");
    ensure!(t.column_values("SHORTNAMES")? == ["ct"], "{out}");

    // Create: unknown fields pruned (with a warning under the default strict validation),
    // defaults applied.
    let kn = env.kubectl_ns();
    let out = kn
        .apply_yaml(&crontab(&group, "nightly", "0 3 * * *", 2))
        .await?;
    ensure!(!out.success() || out.stdout.contains("created"), "{out}");
    if !out.success() {
        // Strict validation refuses the unknown field, as upstream does for CRs.
        ensure!(
            out.stderr.contains("unknown field \"spec.unknownField\""),
            "{out}"
        );
        let out = kn
            .run_with_stdin(
                &["apply", "--validate=false", "-f", "-"],
                Some(&crontab(&group, "nightly", "0 3 * * *", 2)),
            )
            .await?
            .ok()?;
        ensure!(out.stdout.contains("created"), "{out}");
    }
    let obj = kn.get_json(&["crontab", "nightly"]).await?;
    ensure!(obj["spec"]["image"] == "busybox", "default: {obj}");
    ensure!(obj["spec"].get("unknownField").is_none(), "pruned: {obj}");

    // Printer columns, also through the short name.
    let t = Table::parse(&kn.ok(&["get", "ct"]).await?);
    t.expect_headers("NAME SPEC REPLICAS AGE")?;
    ensure!(t.column_values("SPEC")? == ["0 3 * * *"], "{t:?}");
    ensure!(t.column_values("REPLICAS")? == ["2"], "{t:?}");

    // Validation errors name the field like upstream.
    let out = kn
        .run_with_stdin(
            &["apply", "--validate=false", "-f", "-"],
            Some(&crontab(&group, "bad", "whenever", 20)),
        )
        .await?
        .failed()?;
    ensure!(
        out.stderr
            .contains("spec.cronSpec: Invalid value: \"whenever\""),
        "{out}"
    );
    ensure!(
        out.stderr.contains("spec.replicas: Invalid value: 20: spec.replicas in body should be less than or equal to 10"),
        "{out}"
    );

    // Scale subresource.
    let out = kn
        .ok(&["scale", "crontab", "nightly", "--replicas=5"])
        .await?;
    ensure!(out == format!("crontab.{group}/nightly scaled\n"), "{out}");
    let replicas = kn
        .ok(&[
            "get",
            "crontab",
            "nightly",
            "-o",
            "jsonpath={.spec.replicas}",
        ])
        .await?;
    ensure!(replicas == "5", "{replicas}");

    // explain reads the CRD's schema from OpenAPI v3.
    let out = kn.ok(&["explain", "crontab.spec.cronSpec"]).await?;
    ensure!(out.contains("When to run, in cron syntax."), "{out}");

    // Deleting the CRD deletes its objects, then the definition, then the resource type.
    k.ok(&["delete", "crd", &crd, "--timeout=30s"]).await?;
    let out = k.fails(&["get", "crd", &crd]).await?;
    ensure!(out.stderr.contains("NotFound"), "{out}");
    wait_until(Duration::from_secs(20), || async {
        let out = kn.run(&["get", "crontabs"]).await?;
        // A fresh discovery says the type is gone; a cached one gets a 404 on the list.
        let gone = out
            .stderr
            .contains("the server doesn't have a resource type")
            || out
                .stderr
                .contains("the server could not find the requested resource");
        Ok((!out.success() && gone).then_some(()))
    })
    .await?;
    Ok(())
}
