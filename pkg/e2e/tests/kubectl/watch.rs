//! Watching: `kubectl get -w`, raw watch streams from a resourceVersion, and `kubectl wait` where
//! the API server alone can satisfy the condition.

use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use kubelite_e2e::{assert_contains, Env};
use serde_json::Value;

const LINE_TIMEOUT: Duration = Duration::from_secs(15);

fn pod(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: c\n    image: busybox\n"
    )
}

/// `get pods -w --output-watch-events` prints ADDED, MODIFIED and DELETED rows as they happen;
/// `get pod NAME -w` follows one object.
pub async fn get_watch(env: Env) -> Result<()> {
    env.create_namespace().await?;
    let k = env.kubectl_ns();
    k.create_yaml(&pod("pre")).await?.ok()?;
    let watch = k.spawn(&["get", "pods", "-w", "--output-watch-events"])?;
    // Seeing the listed pod means the list is done; the watch starts from the list's RV.
    let first = watch
        .wait_for_line(LINE_TIMEOUT, |l| l.contains("pre"))
        .await?;
    ensure!(first.starts_with("ADDED"), "{first}");
    ensure!(
        watch.stdout().starts_with("EVENT "),
        "header: {}",
        watch.stdout()
    );
    let named = k.spawn(&["get", "pod", "pre", "-w"])?;
    named
        .wait_for_line(LINE_TIMEOUT, |l| l.starts_with("pre "))
        .await?;

    k.create_yaml(&pod("w1")).await?.ok()?;
    let added = watch
        .wait_for_line(LINE_TIMEOUT, |l| {
            l.starts_with("ADDED") && l.contains(" w1 ")
        })
        .await?;
    assert_contains(&added, "Pending")?;
    k.ok(&["label", "pod", "w1", "seen=yes"]).await?;
    watch
        .wait_for_line(LINE_TIMEOUT, |l| {
            l.starts_with("MODIFIED") && l.contains(" w1 ")
        })
        .await?;
    k.ok(&["delete", "pod", "w1"]).await?;
    watch
        .wait_for_line(LINE_TIMEOUT, |l| {
            l.starts_with("DELETED") && l.contains(" w1 ")
        })
        .await?;
    let (out, _) = watch.kill().await?;
    ensure!(
        !out.lines()
            .any(|l| l.contains(" pre ") && !l.starts_with("ADDED")),
        "events for an untouched pod:\n{out}"
    );

    // The named watch sees only `pre`: its change, not w1's events.
    k.ok(&["label", "pod", "pre", "touched=yes"]).await?;
    named
        .wait_for_line(LINE_TIMEOUT, |l| l.starts_with("pre "))
        .await?;
    let count = |s: &str| s.lines().filter(|l| l.starts_with("pre ")).count();
    let seen = kubelite_e2e::wait_until(LINE_TIMEOUT, || async {
        Ok((count(&named.stdout()) >= 2).then_some(()))
    })
    .await;
    let (named_out, named_err) = named.kill().await?;
    ensure!(
        seen.is_ok(),
        "named watch missed the change:\n{named_out}\n{named_err}"
    );
    ensure!(
        !named_out.contains("w1"),
        "named watch saw w1:\n{named_out}"
    );
    Ok(())
}

/// Parses a raw watch body: one JSON event per line.
fn events(body: &str) -> Result<Vec<(String, String)>> {
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let e: Value = serde_json::from_str(l).with_context(|| format!("event line {l}"))?;
            Ok((
                e["type"].as_str().unwrap_or_default().to_string(),
                e["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ))
        })
        .collect()
}

/// `get --raw '...?watch=true&resourceVersion=RV&timeoutSeconds=3'` replays exactly the changes
/// after RV and ends when the server's timeout closes the stream.
pub async fn raw_watch_events(env: Env) -> Result<()> {
    env.create_namespace().await?;
    let k = env.kubectl_ns();
    k.ok(&["create", "configmap", "a"]).await?;
    let base = format!("/api/v1/namespaces/{}/configmaps", env.ns);
    let list: Value = serde_json::from_str(&k.ok(&["get", "--raw", &base]).await?)?;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .context("list resourceVersion")?
        .to_string();
    k.ok(&["create", "configmap", "b"]).await?;
    k.ok(&["label", "configmap", "b", "x=1"]).await?;
    k.ok(&["delete", "configmap", "a"]).await?;

    let started = std::time::Instant::now();
    let body = k
        .ok(&[
            "get",
            "--raw",
            &format!("{base}?watch=true&resourceVersion={rv}&timeoutSeconds=3"),
        ])
        .await?;
    let elapsed = started.elapsed();
    let got = events(&body)?;
    let want = [("ADDED", "b"), ("MODIFIED", "b"), ("DELETED", "a")];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(t, n)| (t.to_string(), n.to_string()))
        .collect();
    ensure!(got == want, "events after {rv}: {got:?}\n{body}");
    ensure!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(10),
        "timeoutSeconds=3 closed after {elapsed:?}"
    );
    let first: Value = serde_json::from_str(body.lines().next().unwrap_or_default())?;
    ensure!(
        first["object"]["kind"] == "ConfigMap" && first["object"]["apiVersion"] == "v1",
        "event objects carry kind and apiVersion: {first}"
    );

    // With bookmarks allowed the same changes arrive; bookmarks (sent at the server's
    // discretion) carry only the kind and a resourceVersion no older than the start.
    let body = k
        .ok(&[
            "get",
            "--raw",
            &format!(
                "{base}?watch=true&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=2"
            ),
        ])
        .await?;
    let all = events(&body)?;
    let changes: Vec<(String, String)> = all
        .iter()
        .filter(|(t, _)| t != "BOOKMARK")
        .cloned()
        .collect();
    ensure!(changes == want, "events with bookmarks allowed: {body}");
    // A client resumes from a bookmark's RV, so it may never be older than what was delivered.
    let mut seen: u64 = rv.parse()?;
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        let e: Value = serde_json::from_str(line)?;
        let o = &e["object"];
        let at: u64 = o["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .parse()?;
        if e["type"] == "BOOKMARK" {
            ensure!(
                o["kind"] == "ConfigMap" && o["apiVersion"] == "v1",
                "bookmark {line}"
            );
            ensure!(at >= seen, "bookmark at {at} after an event at {seen}");
            ensure!(
                o.get("data").is_none(),
                "bookmark carries the object: {line}"
            );
        }
        seen = seen.max(at);
    }

    // From RV 0: the current state as synthetic ADDED events, then nothing (no changes).
    let body = k
        .ok(&[
            "get",
            "--raw",
            &format!("{base}?watch=true&resourceVersion=0&timeoutSeconds=1"),
        ])
        .await?;
    ensure!(
        events(&body)? == [("ADDED".to_string(), "b".to_string())],
        "{body}"
    );

    // Selectors filter the stream; a MODIFIED that leaves the selection is a DELETED.
    let body = k
        .ok(&[
            "get",
            "--raw",
            &format!("{base}?watch=true&resourceVersion={rv}&labelSelector=x%3D1&timeoutSeconds=1"),
        ])
        .await?;
    ensure!(
        events(&body)? == [("ADDED".to_string(), "b".to_string())],
        "label-selected watch: {body}"
    );
    let body = k
        .ok(&[
            "get",
            "--raw",
            &format!("{base}?watch=true&resourceVersion={rv}&fieldSelector=metadata.name%3Da&timeoutSeconds=1"),
        ])
        .await?;
    ensure!(
        events(&body)? == [("DELETED".to_string(), "a".to_string())],
        "field-selected watch: {body}"
    );
    Ok(())
}

/// `kubectl wait` for delete, a jsonpath value and a condition set through /status.
pub async fn wait_for_delete_and_jsonpath(env: Env) -> Result<()> {
    env.create_namespace().await?;
    let k = env.kubectl_ns();
    let bound =
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bound\nspec:\n  nodeName: node-1\n  \
                 containers:\n  - name: c\n    image: busybox\n";
    k.create_yaml(bound).await?.ok()?;
    k.ok(&["delete", "pod", "bound", "--wait=false"]).await?;
    // -v=6 logs each request once answered: seeing the watch means kubectl is waiting on it.
    let mut waiter = k.spawn(&["wait", "--for=delete", "pod/bound", "--timeout=20s", "-v=6"])?;
    waiter
        .wait_for_stderr_line(LINE_TIMEOUT, |l| l.contains("watch=true"))
        .await?;
    ensure!(
        waiter.try_exit_code()?.is_none(),
        "wait returned while the pod is terminating: {}",
        waiter.stdout()
    );
    k.ok(&["delete", "pod", "bound", "--grace-period=0", "--force"])
        .await?;
    let code = waiter.wait_exit(LINE_TIMEOUT).await?;
    ensure!(
        code == Some(0),
        "wait --for=delete exited {code:?}: {}",
        waiter.stderr()
    );
    assert_contains(&waiter.stdout(), "pod/bound condition met")?;

    k.ok(&["create", "configmap", "flag", "--from-literal=ready=no"])
        .await?;
    let mut waiter = k.spawn(&[
        "wait",
        "--for=jsonpath={.data.ready}=yes",
        "configmap/flag",
        "--timeout=20s",
    ])?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    k.ok(&[
        "patch",
        "cm",
        "flag",
        "--type=merge",
        "-p",
        r#"{"data":{"ready":"yes"}}"#,
    ])
    .await?;
    let code = waiter.wait_exit(LINE_TIMEOUT).await?;
    ensure!(
        code == Some(0),
        "wait --for=jsonpath exited {code:?}: {}",
        waiter.stderr()
    );
    assert_contains(&waiter.stdout(), "configmap/flag condition met")?;

    k.create_yaml(&pod("cond")).await?.ok()?;
    let out = k
        .fails(&["wait", "--for=condition=Ready", "pod/cond", "--timeout=1s"])
        .await?;
    assert_contains(
        &out.stderr,
        "timed out waiting for the condition on pods/cond",
    )?;
    let mut waiter = k.spawn(&["wait", "--for=condition=ready", "pod/cond", "--timeout=20s"])?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = k
        .ok(&[
            "patch",
            "pod",
            "cond",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#,
        ])
        .await?;
    ensure!(out == "pod/cond patched\n", "{out}");
    let code = waiter.wait_exit(LINE_TIMEOUT).await?;
    ensure!(
        code == Some(0),
        "wait --for=condition exited {code:?}: {}",
        waiter.stderr()
    );
    assert_contains(&waiter.stdout(), "pod/cond condition met")?;
    Ok(())
}
