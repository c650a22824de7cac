//! core/v1 and events.k8s.io/v1 Events: one storage, two representations, as upstream.

use serde_json::json;

use crate::common::{rv, Api};

const CORE: &str = "/api/v1/namespaces/default/events";
const EVENTS_API: &str = "/apis/events.k8s.io/v1/namespaces/default/events";

#[tokio::test]
async fn both_event_apis_share_one_storage() {
    let api = Api::start().await;
    let (code, list) = api.get(CORE).await;
    assert_eq!(code, 200, "{list}");
    let from = rv(&list);
    let mut core_watch = api
        .watch(&format!("{CORE}?watch=true&resourceVersion={from}"))
        .await;
    let mut api_watch = api
        .watch(&format!("{EVENTS_API}?watch=true&resourceVersion={from}"))
        .await;

    let core_ev = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "c.1"},
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
        "reason": "Pulled", "message": "image pulled", "type": "Normal", "count": 2,
        "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:05Z",
        "source": {"component": "kubelet", "host": "n1"}});
    let (code, created) = api.post(CORE, core_ev).await;
    assert_eq!(code, 201, "{created}");
    let new_ev = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e.1"},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "regarding": {"kind": "Pod", "name": "p", "namespace": "default"},
        "reason": "Scheduled", "note": "assigned default/p to n1", "type": "Normal",
        "action": "Binding", "reportingController": "default-scheduler", "reportingInstance": "s-1"});
    let (code, created) = api.post(EVENTS_API, new_ev).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["apiVersion"], "events.k8s.io/v1");
    assert_eq!(created["note"], "assigned default/p to n1");
    assert!(created.get("message").is_none(), "{created}");

    // Each object reads through the other API, converted.
    let (code, c) = api.get(&format!("{EVENTS_API}/c.1")).await;
    assert_eq!(code, 200, "{c}");
    assert_eq!(c["apiVersion"], "events.k8s.io/v1");
    assert_eq!(c["note"], "image pulled");
    assert_eq!(c["regarding"]["name"], "p");
    assert_eq!(c["deprecatedCount"], 2);
    assert_eq!(c["deprecatedSource"]["host"], "n1");
    assert_eq!(c["deprecatedLastTimestamp"], "2026-01-01T00:00:05Z");
    let (code, e) = api.get(&format!("{CORE}/e.1")).await;
    assert_eq!(code, 200, "{e}");
    assert_eq!(e["apiVersion"], "v1");
    assert_eq!(e["message"], "assigned default/p to n1");
    assert_eq!(e["involvedObject"]["kind"], "Pod");
    assert_eq!(e["reportingComponent"], "default-scheduler");
    assert_eq!(e["reportingInstance"], "s-1");
    assert_eq!(
        e["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );

    // Both lists show both events, each in its own form.
    for (path, version, text_field) in [
        (CORE, "v1", "message"),
        (EVENTS_API, "events.k8s.io/v1", "note"),
    ] {
        let (code, l) = api.get(path).await;
        assert_eq!(code, 200, "{l}");
        let items = l["items"].as_array().expect("items");
        assert_eq!(items.len(), 2, "{l}");
        for it in items {
            assert_eq!(it["apiVersion"], version);
            assert!(it[text_field].is_string(), "{it}");
        }
        let (_, l) = api.get(&format!("{path}?resourceVersion=0")).await;
        assert_eq!(l["items"].as_array().map(Vec::len), Some(2), "{l}");
    }

    // Both watches see both creations.
    for (w, version) in [
        (&mut core_watch, "v1"),
        (&mut api_watch, "events.k8s.io/v1"),
    ] {
        let mut names = Vec::new();
        for _ in 0..2 {
            let ev = w.next().await.expect("event");
            assert_eq!(ev["type"], "ADDED", "{ev}");
            assert_eq!(ev["object"]["apiVersion"], version);
            names.push(
                ev["object"]["metadata"]["name"]
                    .as_str()
                    .expect("name")
                    .to_string(),
            );
        }
        assert_eq!(names, ["c.1", "e.1"]);
    }

    // A write through one API shows through the other; a delete removes it from both.
    let (code, patched) = api
        .patch(
            &format!("{CORE}/e.1"),
            "application/merge-patch+json",
            json!({"message": "rescheduled"}),
        )
        .await;
    assert_eq!(code, 200, "{patched}");
    let (_, e) = api.get(&format!("{EVENTS_API}/e.1")).await;
    assert_eq!(e["note"], "rescheduled");
    assert_eq!(e["action"], "Binding");
    let ev = api_watch.next().await.expect("modified");
    assert_eq!(ev["type"], "MODIFIED");
    assert_eq!(ev["object"]["note"], "rescheduled");
    let (code, _) = api.delete(&format!("{EVENTS_API}/c.1"), None).await;
    assert_eq!(code, 200);
    let (code, _) = api.get(&format!("{CORE}/c.1")).await;
    assert_eq!(code, 404);
    // The core watch saw the patch (made through the core API) first.
    let ev = core_watch.next().await.expect("modified");
    assert_eq!(ev["type"], "MODIFIED", "{ev}");
    assert_eq!(ev["object"]["message"], "rescheduled");
    let ev = core_watch.next().await.expect("deleted");
    assert_eq!(ev["type"], "DELETED", "{ev}");
    assert_eq!(ev["object"]["metadata"]["name"], "c.1");
}
