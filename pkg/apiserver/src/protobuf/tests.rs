//! Tests for protobuf body decoding: bodies captured from kubectl 1.33, objects encoded here
//! with the `k8s-pb` prost types, and garbage.

use super::*;
use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message as _;
use serde_json::json;

/// A body captured from `kubectl create ...` (see tests/fixtures/protobuf).
fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/protobuf/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn decoded(name: &str) -> Value {
    decode(&fixture(&format!("{name}.pb"))).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Wrap an object's protobuf in the `k8s\0` + runtime.Unknown envelope, as client-go does.
fn frame(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut body = MAGIC.to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

#[test]
fn kubectl_create_configmap() {
    assert_eq!(
        decoded("configmap"),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "b", "empty": ""}})
    );
}

#[test]
fn kubectl_create_deployment_matches_kubectl_json() {
    // kubectl 1.27 sent the same object as JSON (without the `-- sleep 10` command).
    let mut want: Value =
        serde_json::from_slice(&fixture("deployment_kubectl127.json")).expect("fixture json");
    want["metadata"]
        .as_object_mut()
        .expect("meta")
        .remove("creationTimestamp");
    want["spec"]["template"]["metadata"]
        .as_object_mut()
        .expect("meta")
        .remove("creationTimestamp");
    want["spec"]["template"]["spec"]["containers"][0]["command"] = json!(["sleep", "10"]);
    let got = decoded("deployment");
    assert_eq!(got, want);
    // Key order as JSON clients send it: apiVersion and kind first, then metadata.
    let keys: Vec<&String> = got.as_object().expect("object").keys().collect();
    assert_eq!(keys[..3], ["apiVersion", "kind", "metadata"]);
    let typed: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(got).expect("typed");
    assert_eq!(typed.spec.and_then(|s| s.replicas), Some(3));
}

#[test]
fn kubectl_create_deployment_keeps_zero_replicas() {
    let got = decoded("deployment_zero");
    assert_eq!(got["spec"]["replicas"], 0);
    assert_eq!(got["status"], json!({}));
    assert!(got["spec"]["template"]["spec"]
        .get("restartPolicy")
        .is_none());
}

#[test]
fn kubectl_create_other_kinds() {
    assert_eq!(
        decoded("namespace"),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}, "spec": {}, "status": {}})
    );
    assert_eq!(
        decoded("secret_generic"),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1"}, "data": {"password": "aHVudGVyMg=="}, "type": "Opaque"})
    );
    let docker = decoded("secret_docker");
    assert_eq!(docker["type"], "kubernetes.io/dockerconfigjson");
    assert!(docker["data"][".dockerconfigjson"].is_string());
    assert_eq!(
        decoded("service_clusterip"),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                "selector": {"app": "web"},
                "type": "ClusterIP",
            },
            "status": {"loadBalancer": {}},
        })
    );
    assert_eq!(
        decoded("service_nodeport")["spec"]["ports"][0]["nodePort"],
        30080
    );
    let ext = decoded("service_externalname");
    assert_eq!(ext["spec"]["externalName"], "example.com");
    assert_eq!(ext["spec"]["type"], "ExternalName");
    assert_eq!(
        decoded("serviceaccount"),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa1"}})
    );
    let lb = decoded("service_loadbalancer");
    assert_eq!(lb["spec"]["type"], "LoadBalancer");
    assert_eq!(
        lb["spec"]["ports"][0],
        json!({"name": "443-8443", "protocol": "TCP", "port": 443, "targetPort": 8443})
    );
    let cron = decoded("cronjob");
    assert_eq!(cron["spec"]["schedule"], "*/5 * * * *");
    let job_template = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(job_template["containers"][0]["command"], json!(["date"]));
    assert_eq!(job_template["restartPolicy"], "OnFailure");
    let job = decoded("job");
    assert_eq!(job["apiVersion"], "batch/v1");
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["command"],
        json!(["echo", "hi"])
    );
}

/// A deployment exercising inline structs, IntOrString, Quantity, Time, maps and nesting.
fn rich_deployment() -> apps::Deployment {
    let labels: std::collections::BTreeMap<String, String> =
        [("app".to_string(), "web".to_string())].into();
    let quantity = |q: &str| Quantity { string: s(q) };
    let container = core::Container {
        name: s("web"),
        image: s("nginx:1.27"),
        args: vec!["--port".into(), "8080".into()],
        ports: vec![core::ContainerPort {
            name: s("http"),
            container_port: Some(8080),
            protocol: s("TCP"),
            ..Default::default()
        }],
        env: vec![
            core::EnvVar {
                name: s("PLAIN"),
                value: s("1"),
                value_from: None,
            },
            core::EnvVar {
                name: s("FROM_CM"),
                value: None,
                value_from: Some(core::EnvVarSource {
                    config_map_key_ref: Some(core::ConfigMapKeySelector {
                        local_object_reference: Some(core::LocalObjectReference {
                            name: s("settings"),
                        }),
                        key: s("level"),
                        optional: Some(false),
                    }),
                    ..Default::default()
                }),
            },
        ],
        resources: Some(core::ResourceRequirements {
            limits: [("memory".to_string(), quantity("128Mi"))].into(),
            requests: [("cpu".to_string(), quantity("100m"))].into(),
            ..Default::default()
        }),
        readiness_probe: Some(core::Probe {
            handler: Some(core::ProbeHandler {
                http_get: Some(core::HttpGetAction {
                    path: s("/healthz"),
                    port: Some(IntOrString {
                        r#type: Some(1),
                        int_val: Some(0),
                        str_val: s("http"),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            period_seconds: Some(5),
            ..Default::default()
        }),
        volume_mounts: vec![core::VolumeMount {
            name: s("config"),
            mount_path: s("/etc/web"),
            read_only: Some(true),
            ..Default::default()
        }],
        security_context: Some(core::SecurityContext {
            run_as_user: Some(0),
            privileged: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    };
    apps::Deployment {
        metadata: Some(meta::ObjectMeta {
            name: s("web"),
            namespace: s("default"),
            labels: labels.clone(),
            annotations: [("note".to_string(), "hello".to_string())].into(),
            creation_timestamp: Some(meta::Time {
                seconds: Some(1_700_000_000),
                nanos: Some(0),
            }),
            generate_name: s(""),
            generation: Some(0),
            ..Default::default()
        }),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(2),
            selector: Some(meta::LabelSelector {
                match_labels: labels.clone(),
                match_expressions: vec![meta::LabelSelectorRequirement {
                    key: s("tier"),
                    operator: s("In"),
                    values: vec!["front".into()],
                }],
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    labels,
                    ..Default::default()
                }),
                spec: Some(core::PodSpec {
                    containers: vec![container],
                    volumes: vec![core::Volume {
                        name: s("config"),
                        volume_source: Some(core::VolumeSource {
                            config_map: Some(core::ConfigMapVolumeSource {
                                local_object_reference: Some(core::LocalObjectReference {
                                    name: s("settings"),
                                }),
                                default_mode: Some(0o644),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                    }],
                    restart_policy: s(""),
                    termination_grace_period_seconds: Some(0),
                    tolerations: vec![core::Toleration {
                        key: s("node.kubernetes.io/not-ready"),
                        operator: s("Exists"),
                        effect: s("NoExecute"),
                        toleration_seconds: Some(300),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: s("RollingUpdate"),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString {
                        r#type: Some(0),
                        int_val: Some(0),
                        str_val: s(""),
                    }),
                    max_surge: Some(IntOrString {
                        r#type: Some(1),
                        int_val: Some(0),
                        str_val: s("25%"),
                    }),
                }),
            }),
            ..Default::default()
        }),
        status: None,
    }
}

#[test]
fn rich_deployment_decodes_every_field() {
    let body = frame("apps/v1", "Deployment", rich_deployment().encode_to_vec());
    let got = decode(&body).expect("decode");
    let meta = &got["metadata"];
    assert_eq!(meta["creationTimestamp"], "2023-11-14T22:13:20Z");
    assert_eq!(meta["annotations"], json!({"note": "hello"}));
    assert!(
        meta.get("generateName").is_none(),
        "empty strings are dropped"
    );
    assert!(
        meta.get("generation").is_none(),
        "zero non-pointer ints are dropped"
    );
    let spec = &got["spec"];
    assert_eq!(
        spec["selector"]["matchExpressions"],
        json!([{"key": "tier", "operator": "In", "values": ["front"]}])
    );
    assert_eq!(
        spec["strategy"]["rollingUpdate"],
        json!({"maxUnavailable": 0, "maxSurge": "25%"})
    );
    let pod = &spec["template"]["spec"];
    assert!(pod.get("restartPolicy").is_none());
    assert_eq!(pod["terminationGracePeriodSeconds"], 0);
    assert_eq!(
        pod["volumes"],
        json!([{"name": "config", "configMap": {"name": "settings", "defaultMode": 420}}])
    );
    assert_eq!(pod["tolerations"][0]["tolerationSeconds"], 300);
    let c = &pod["containers"][0];
    assert_eq!(c["args"], json!(["--port", "8080"]));
    assert_eq!(
        c["ports"],
        json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}])
    );
    assert_eq!(c["env"][0], json!({"name": "PLAIN", "value": "1"}));
    assert_eq!(
        c["env"][1]["valueFrom"],
        json!({"configMapKeyRef": {"name": "settings", "key": "level", "optional": false}})
    );
    assert_eq!(
        c["resources"],
        json!({"limits": {"memory": "128Mi"}, "requests": {"cpu": "100m"}})
    );
    assert_eq!(
        c["readinessProbe"],
        json!({"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5})
    );
    assert_eq!(
        c["volumeMounts"],
        json!([{"name": "config", "readOnly": true, "mountPath": "/etc/web"}])
    );
    assert_eq!(
        c["securityContext"],
        json!({"privileged": false, "runAsUser": 0})
    );
    // The JSON is a valid k8s-openapi Deployment (names and shapes all recognised).
    let typed: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(got).expect("typed");
    let pod = typed.spec.and_then(|s| s.template.spec).expect("pod spec");
    assert_eq!(pod.containers[0].image.as_deref(), Some("nginx:1.27"));
}

#[test]
fn pod_and_secret_bytes() {
    let pod = core::Pod {
        metadata: Some(meta::ObjectMeta {
            name: s("p"),
            ..Default::default()
        }),
        spec: Some(core::PodSpec {
            containers: vec![core::Container {
                name: s("c"),
                image: s("busybox"),
                ..Default::default()
            }],
            node_name: s("n1"),
            ..Default::default()
        }),
        status: None,
    };
    let got = decode(&frame("v1", "Pod", pod.encode_to_vec())).expect("pod");
    assert_eq!(got["spec"]["nodeName"], "n1");
    let secret = core::Secret {
        metadata: Some(meta::ObjectMeta {
            name: s("tls"),
            ..Default::default()
        }),
        data: [
            ("tls.key".to_string(), vec![0u8, 255, 1]),
            ("empty".to_string(), Vec::new()),
        ]
        .into(),
        r#type: s("kubernetes.io/tls"),
        immutable: Some(false),
        ..Default::default()
    };
    let got = decode(&frame("v1", "Secret", secret.encode_to_vec())).expect("secret");
    assert_eq!(got["data"], json!({"empty": "", "tls.key": "AP8B"}));
    assert_eq!(got["immutable"], false);
}

#[test]
fn drain_eviction_keeps_zero_grace_period() {
    // `kubectl drain --grace-period=0` posts this to pods/<name>/eviction.
    let eviction = k8s_pb::api::policy::v1::Eviction {
        metadata: Some(meta::ObjectMeta {
            name: s("web-1"),
            namespace: s("default"),
            ..Default::default()
        }),
        delete_options: Some(meta::DeleteOptions {
            grace_period_seconds: Some(0),
            dry_run: vec!["All".into()],
            ..Default::default()
        }),
    };
    let got = decode(&frame("policy/v1", "Eviction", eviction.encode_to_vec())).expect("eviction");
    assert_eq!(
        got,
        json!({
            "apiVersion": "policy/v1", "kind": "Eviction",
            "metadata": {"name": "web-1", "namespace": "default"},
            "deleteOptions": {"gracePeriodSeconds": 0, "dryRun": ["All"]},
        })
    );
}

#[test]
fn unknown_kind_is_415() {
    let body = frame("example.com/v1", "Widget", Vec::new());
    let err = decode(&body).expect_err("unknown kind");
    assert_eq!(err.status_code(), 415);
    assert_eq!(
        err.to_string(),
        "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml"
    );
    assert!(decode_to_json(&body).is_err());
    assert!(supports("apps/v1", "Deployment"));
    assert!(!supports("example.com/v1", "Widget"));
}

#[test]
fn json_body_and_wrong_magic_are_rejected() {
    let err = decode(&fixture("deployment_kubectl127.json")).expect_err("json is not protobuf");
    assert_eq!(err, DecodeError::BadMagic);
    assert_eq!(err.status_code(), 400);
    assert_eq!(decode(b""), Err(DecodeError::BadMagic));
    assert_eq!(decode(b"k8s"), Err(DecodeError::BadMagic));
}

#[test]
fn compressed_envelope_is_rejected() {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: s("v1"),
            kind: s("ConfigMap"),
        }),
        raw: Some(Vec::new()),
        content_encoding: s("gzip"),
        content_type: None,
    };
    let mut body = MAGIC.to_vec();
    body.extend(unknown.encode_to_vec());
    assert!(matches!(
        decode(&body),
        Err(DecodeError::ContentEncoding(_))
    ));
}

#[test]
fn truncated_bodies_never_panic() {
    let body = fixture("deployment.pb");
    for len in 0..body.len() {
        // Any prefix either decodes (cut at a field boundary) or errors; it must not panic.
        let _ = decode(&body[..len]);
    }
    assert!(decode(&body[..body.len() - 3]).is_err());
}

#[test]
fn random_and_mutated_bytes_never_panic() {
    // A small deterministic generator: no extra dependency, reproducible failures.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let base = frame("apps/v1", "Deployment", rich_deployment().encode_to_vec());
    let mut errors = 0;
    for round in 0..3000 {
        let body: Vec<u8> = if round % 2 == 0 {
            let len = (next() % 300) as usize;
            let mut b = MAGIC.to_vec();
            b.extend((0..len).map(|_| next() as u8));
            b
        } else {
            let mut b = base.clone();
            for _ in 0..1 + next() % 4 {
                let i = 4 + (next() as usize) % (b.len() - 4);
                b[i] = next() as u8;
            }
            b
        };
        if decode(&body).is_err() {
            errors += 1;
        }
    }
    assert!(errors > 0, "garbage should mostly fail to decode");
}

#[test]
fn nesting_depth_is_bounded() {
    // No served kind is recursive, but the decoder still refuses to recurse without bound.
    let err = wire::decode_message(schema::MESSAGES, 0, &[], 65).expect_err("too deep");
    assert!(matches!(err, DecodeError::Malformed(_)));
    assert!(wire::decode_message(schema::MESSAGES, 0, &[], 64).is_ok());
}
