//! /version, health, discovery content types, OpenAPI v2.

use crate::common::*;

#[tokio::test]
async fn version_health_discovery() {
    let api = Api::start().await;
    let (code, v) = api.get("/version").await;
    assert_eq!(code, 200);
    assert_eq!(v["gitVersion"], "v1.33.0");
    assert_eq!(v["minor"], "33");

    for p in ["/healthz", "/livez", "/readyz"] {
        let resp = api.http.get(api.url(p)).send().await.expect("health");
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(resp.text().await.expect("text"), "ok");
    }
    let text = api
        .http
        .get(api.url("/readyz?verbose"))
        .send()
        .await
        .expect("verbose")
        .text()
        .await
        .expect("text");
    assert!(
        text.contains("[+]ping ok") && text.ends_with("readyz check passed\n"),
        "{text}"
    );

    let accept =
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
    for p in ["/api", "/apis"] {
        let resp = api
            .http
            .get(api.url(p))
            .header("accept", accept)
            .send()
            .await
            .expect("discovery");
        assert_eq!(resp.status().as_u16(), 200);
        let ct = resp.headers()["content-type"]
            .to_str()
            .expect("ct")
            .to_string();
        assert_eq!(
            ct,
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        );
        let etag = resp.headers()["etag"].to_str().expect("etag").to_string();
        let again = api
            .http
            .get(api.url(p))
            .header("accept", accept)
            .header("if-none-match", &etag)
            .send()
            .await
            .expect("304");
        assert_eq!(again.status().as_u16(), 304);
    }
    let resp = api
        .http
        .get(api.url("/openapi/v2?timeout=32s"))
        .header(
            "accept",
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
        )
        .send()
        .await
        .expect("v2");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    );
    let (code, st) = api.get("/apis/nope.example.com/v1/things").await;
    assert_eq!(code, 404);
    assert_eq!(st["kind"], "Status");
    let metrics = api
        .http
        .get(api.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(metrics.status().as_u16(), 200);
}

/// kubectl 1.27-1.29 accept aggregated discovery only as v2beta1: they get that version (same
/// shape), not v2, which they would read as an empty resource list.
#[tokio::test]
async fn aggregated_discovery_answers_the_version_asked_for() {
    let api = Api::start().await;
    let cases = [
        (
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json",
            "v2beta1",
        ),
        (
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json",
            "v2",
        ),
    ];
    for (accept, version) in cases {
        for p in ["/api", "/apis"] {
            let resp = api
                .http
                .get(api.url(p))
                .header("accept", accept)
                .send()
                .await
                .expect("discovery");
            assert_eq!(resp.status().as_u16(), 200);
            assert_eq!(
                resp.headers()["content-type"],
                format!(
                    "application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"
                )
                .as_str(),
                "{p} for {accept}"
            );
            let doc: serde_json::Value = resp.json().await.expect("json");
            assert_eq!(doc["kind"], "APIGroupDiscoveryList");
            assert_eq!(doc["apiVersion"], format!("apidiscovery.k8s.io/{version}"));
            let items = doc["items"].as_array().expect("items");
            assert!(!items.is_empty(), "{p}: no groups");
        }
    }
    // Plain JSON still gets the legacy documents.
    let (code, legacy) = api.get("/api").await;
    assert_eq!(code, 200);
    assert_eq!(legacy["kind"], "APIVersions");
}
