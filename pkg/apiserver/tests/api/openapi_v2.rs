//! `/openapi/v2` end to end: content negotiation, ETags, the protobuf document kubectl decodes,
//! and the real kubectl using it for `explain --output=plaintext-openapiv2` and for the
//! client-side validation of `kind: List` manifests (built-in and custom kinds).

use kubelite_apiserver::openapi::gnostic::Document;
use prost::Message as _;
use serde_json::{json, Value};

use crate::common::*;
use crate::crd::wait_served;

const PROTOBUF_ACCEPT: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
const PROTOBUF_CONTENT_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
const GADGETS: &str = "/apis/v2test.example.com/v1/namespaces/default/gadgets";

/// A CRD with descriptions, so `explain` has something to print.
fn gadget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.v2test.example.com"},
        "spec": {
            "group": "v2test.example.com",
            "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": "A gadget of the v2 test.",
                    "properties": {"spec": {
                        "type": "object",
                        "description": "What the gadget should be.",
                        "properties": {
                            "size": {"type": "integer", "description": "How big the gadget is, in units."},
                            "port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                            "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        },
                    }},
                }},
            }],
        },
    })
}

async fn get_v2(api: &Api, accept: &str, etag: Option<&str>) -> reqwest::Response {
    let mut rb = api
        .http
        .get(api.url("/openapi/v2?timeout=32s"))
        .header("accept", accept);
    if let Some(tag) = etag {
        rb = rb.header("if-none-match", tag);
    }
    tokio::time::timeout(TIMEOUT, rb.send())
        .await
        .expect("request timed out")
        .expect("request")
}

/// Output with runs of whitespace collapsed: explain wraps descriptions at 80 columns.
fn flat(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn has_definition(doc: &Document, name: &str) -> bool {
    doc.definitions
        .as_ref()
        .is_some_and(|d| d.additional_properties.iter().any(|s| s.name == name))
}

#[tokio::test]
async fn serves_protobuf_and_json_with_etags() {
    let api = Api::start().await;

    let resp = get_v2(&api, PROTOBUF_ACCEPT, None).await;
    assert_eq!(resp.status().as_u16(), 200);
    let header = |r: &reqwest::Response, h: &str| {
        r.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(header(&resp, "content-type"), PROTOBUF_CONTENT_TYPE);
    let etag = header(&resp, "etag");
    assert!(etag.starts_with('"') && etag.len() > 60, "{etag}");
    let body = resp.bytes().await.expect("body");
    let doc = Document::decode(body.as_ref()).expect("gnostic document");
    assert_eq!(doc.swagger, "2.0");
    assert!(has_definition(&doc, "io.k8s.api.core.v1.Pod"));
    assert!(has_definition(&doc, "io.k8s.api.apps.v1.Deployment"));
    // Round trip through the prost types.
    assert_eq!(doc.encode_to_vec(), body.as_ref());

    let resp = get_v2(&api, PROTOBUF_ACCEPT, Some(&etag)).await;
    assert_eq!(resp.status().as_u16(), 304);

    let resp = get_v2(&api, "application/json", None).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(header(&resp, "content-type"), "application/json");
    assert_ne!(header(&resp, "etag"), etag);
    let json: Value = resp.json().await.expect("json");
    assert_eq!(json["swagger"], "2.0");
    assert_eq!(
        json["definitions"]["io.k8s.api.core.v1.Pod"]["x-kubernetes-group-version-kind"],
        json!([{"group": "", "kind": "Pod", "version": "v1"}])
    );
    assert_eq!(get_v2(&api, "*/*", None).await.status().as_u16(), 200);
    assert_eq!(get_v2(&api, "text/html", None).await.status().as_u16(), 406);

    // A new CRD changes the document (and its ETag).
    let (code, body) = api.post(CRDS, gadget_crd()).await;
    assert_eq!(code, 201, "{body}");
    wait_served(&api, GADGETS).await;
    let resp = get_v2(&api, PROTOBUF_ACCEPT, Some(&etag)).await;
    assert_eq!(resp.status().as_u16(), 200);
    let doc = Document::decode(resp.bytes().await.expect("body").as_ref()).expect("decodes");
    assert!(has_definition(&doc, "com.example.v2test.v1.Gadget"));
    assert!(has_definition(&doc, "com.example.v2test.v1.GadgetList"));
}

#[tokio::test]
async fn kubectl_explain_and_list_validation_use_v2() {
    let api = Api::start().await;
    let cache = tempfile::tempdir().expect("cache dir");

    let (code, out, err) = kubectl(
        &api,
        cache.path(),
        &[
            "explain",
            "--output=plaintext-openapiv2",
            "pods.spec.containers",
        ],
        None,
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        flat(&out).contains("List of containers belonging to the pod."),
        "{out}"
    );
    assert!(
        flat(&out).contains("A single application container"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with("image") && l.contains("<string>")),
        "{out}"
    );

    // A valid List of built-in kinds passes client-side validation and is created.
    let valid = r#"apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: v2-valid
  data:
    a: "1"
- apiVersion: v1
  kind: Pod
  metadata:
    name: v2-pod
    creationTimestamp: null
  spec:
    containers:
    - name: c
      image: busybox
      ports:
      - containerPort: 80
"#;
    let (code, out, err) = kubectl(&api, cache.path(), &["apply", "-f", "-"], Some(valid)).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("configmap/v2-valid created"), "{out}");
    assert!(out.contains("pod/v2-pod created"), "{out}");

    // An unknown field, nested or at the top, fails before anything is sent.
    let invalid = r#"apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: v2-invalid
  datta:
    a: "1"
- apiVersion: v1
  kind: Pod
  metadata:
    name: v2-bad-pod
  spec:
    containers:
    - name: c
      imagex: busybox
"#;
    let (code, out, err) = kubectl(&api, cache.path(), &["apply", "-f", "-"], Some(invalid)).await;
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("error validating data"), "{err}");
    assert!(
        err.contains(r#"unknown field "datta" in io.k8s.api.core.v1.ConfigMap"#),
        "{err}"
    );
    assert!(
        err.contains(r#"unknown field "imagex" in io.k8s.api.core.v1.Container"#),
        "{err}"
    );
    assert!(err.contains("--validate=false"), "{err}");
    let (code, _) = api
        .get("/api/v1/namespaces/default/configmaps/v2-invalid")
        .await;
    assert_eq!(code, 404, "nothing was created");

    // Custom kinds: explain and validation from the CRD's schema.
    let (code, body) = api.post(CRDS, gadget_crd()).await;
    assert_eq!(code, 201, "{body}");
    wait_served(&api, GADGETS).await;
    let cache = tempfile::tempdir().expect("fresh discovery cache");
    let (code, out, err) = kubectl(
        &api,
        cache.path(),
        &[
            "explain",
            "--output=plaintext-openapiv2",
            "gadgets.spec.size",
        ],
        None,
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        flat(&out).contains("How big the gadget is, in units."),
        "{out}"
    );
    let (code, out, err) = kubectl(
        &api,
        cache.path(),
        &["explain", "--output=plaintext-openapiv2", "gadgets"],
        None,
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(flat(&out).contains("A gadget of the v2 test."), "{out}");

    let gadgets = |extra_line: &str| {
        format!(
            r#"apiVersion: v1
kind: List
items:
- apiVersion: v2test.example.com/v1
  kind: Gadget
  metadata:
    name: g1
  spec:
    size: 3
    port: http
{extra_line}    extra:
      anything: [1, 2]
"#
        )
    };
    let (code, out, err) = kubectl(
        &api,
        cache.path(),
        &["apply", "-f", "-"],
        Some(&gadgets("    colour: blue\n")),
    )
    .await;
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains(r#"unknown field "colour""#), "{err}");
    assert!(err.contains("--validate=false"), "{err}");
    let (code, out, err) = kubectl(
        &api,
        cache.path(),
        &["apply", "-f", "-"],
        Some(&gadgets("")),
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("gadget.v2test.example.com/g1 created"),
        "{out}"
    );
    let (code, g) = api.get(&format!("{GADGETS}/g1")).await;
    assert_eq!(code, 200, "{g}");
    assert_eq!(g["spec"]["size"], 3);
}
