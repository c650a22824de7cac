//! One [`Strategy`] per built-in kind, plus a generic strategy (Name and Age columns only)
//! for kinds without their own, such as custom resources.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::resource::{builtin_resources, find_builtin, ResourceInfo};
use crate::strategy::{Column, Strategy};

pub(crate) mod common;
pub mod core;
pub mod endpoints;
pub mod event;
pub mod job;
pub mod pod;
mod podspec;
pub mod service;
pub mod workloads;

use workloads::{Workload, WorkloadStrategy};

/// The strategy of one built-in resource; the generic one for a resource this module does
/// not know.
fn make(info: &'static ResourceInfo) -> Arc<dyn Strategy> {
    match (info.group, info.plural) {
        ("", "namespaces") => Arc::new(core::NamespaceStrategy(info)),
        ("", "pods") => Arc::new(pod::PodStrategy(info)),
        ("", "nodes") => Arc::new(core::NodeStrategy(info)),
        ("", "services") => Arc::new(service::ServiceStrategy(info)),
        ("", "endpoints") => Arc::new(endpoints::EndpointsStrategy(info)),
        ("", "configmaps") => Arc::new(core::ConfigMapStrategy(info)),
        ("", "secrets") => Arc::new(core::SecretStrategy(info)),
        ("", "serviceaccounts") => Arc::new(core::ServiceAccountStrategy(info)),
        ("", "events") => Arc::new(event::EventStrategy {
            info,
            v1_events: false,
        }),
        ("events.k8s.io", "events") => Arc::new(event::EventStrategy {
            info,
            v1_events: true,
        }),
        ("", "replicationcontrollers") => Arc::new(WorkloadStrategy {
            info,
            kind: Workload::ReplicationController,
        }),
        ("apps", "deployments") => Arc::new(WorkloadStrategy {
            info,
            kind: Workload::Deployment,
        }),
        ("apps", "replicasets") => Arc::new(WorkloadStrategy {
            info,
            kind: Workload::ReplicaSet,
        }),
        ("apps", "daemonsets") => Arc::new(WorkloadStrategy {
            info,
            kind: Workload::DaemonSet,
        }),
        ("apps", "statefulsets") => Arc::new(WorkloadStrategy {
            info,
            kind: Workload::StatefulSet,
        }),
        ("batch", "jobs") => Arc::new(job::JobStrategy(info)),
        ("discovery.k8s.io", "endpointslices") => Arc::new(endpoints::EndpointSliceStrategy(info)),
        ("coordination.k8s.io", "leases") => Arc::new(core::LeaseStrategy(info)),
        _ => generic_strategy(info.clone()),
    }
}

/// One strategy per entry of [`builtin_resources`], in the same order.
pub fn builtin_strategies() -> Vec<Arc<dyn Strategy>> {
    builtin_resources().iter().map(make).collect()
}

/// The strategy of the built-in resource `group`/`version`/`plural`, if there is one.
pub fn strategy_for(group: &str, version: &str, plural: &str) -> Option<Arc<dyn Strategy>> {
    find_builtin(group, version, plural).map(make)
}

/// The part of upstream's `PrepareForUpdate` that needs the old object and that the generic
/// store cannot know: a Service keeps its allocated cluster IPs and node ports when an update
/// omits them, and a Namespace's `spec.finalizers` change only through `/finalize`. Call it
/// on main-resource updates before [`Strategy::default`] and validation. (A `prepare_update`
/// hook on [`Strategy`] would be the natural home; this keeps the trait unchanged.)
pub fn prepare_update(info: &ResourceInfo, new: &mut Value, old: &Value) {
    match (info.group, info.plural) {
        ("", "services") => service::keep_allocated(new, old),
        ("", "namespaces") => {
            let finalizers = old.pointer("/spec/finalizers").cloned();
            if let Some(spec) = common::path_mut(new, &["spec"]) {
                match finalizers {
                    Some(f) => {
                        spec.insert("finalizers".into(), f);
                    }
                    None => {
                        spec.remove("finalizers");
                    }
                }
            }
        }
        _ => {}
    }
}

/// A strategy with no defaults and no kind-specific validation, printing Name and Age, with
/// `metadata.generation` tracked on `spec` changes (as upstream does for custom resources).
pub fn generic_strategy(info: ResourceInfo) -> Arc<dyn Strategy> {
    Arc::new(GenericStrategy { info })
}

struct GenericStrategy {
    info: ResourceInfo,
}

impl Strategy for GenericStrategy {
    fn info(&self) -> &ResourceInfo {
        &self.info
    }

    fn columns(&self) -> Vec<Column> {
        vec![common::name_col(), common::age_col()]
    }

    fn row(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        vec![common::name_cell(obj), common::age_cell(obj, now)]
    }

    fn field_value(&self, obj: &Value, name: &str) -> Option<String> {
        endpoints::meta_field(obj, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Scope;
    use serde_json::json;

    #[test]
    fn one_strategy_per_builtin() {
        let all = builtin_strategies();
        assert_eq!(all.len(), builtin_resources().len());
        for (s, info) in all.iter().zip(builtin_resources()) {
            assert_eq!(s.info(), info);
        }
        assert!(strategy_for("", "v1", "widgets").is_none());
        assert_eq!(
            strategy_for("apps", "v1", "deployments").map(|s| s.info().kind),
            Some("Deployment")
        );
    }

    #[test]
    fn rows_align_with_columns_even_for_empty_objects() {
        let now = crate::meta::parse_time("2024-05-01T12:00:00Z").expect("now");
        for s in builtin_strategies() {
            let cols = s.columns();
            let name_cols: Vec<&Column> = cols.iter().filter(|c| c.format == "name").collect();
            assert_eq!(name_cols.len(), 1, "{}", s.info().plural);
            assert_eq!(name_cols[0].name, "Name");
            let mut obj = json!({"metadata": {"name": "x", "namespace": "default", "uid": "u"}});
            assert_eq!(s.row(&obj, now).len(), cols.len(), "{}", s.info().plural);
            s.default(&mut obj);
            let once = obj.clone();
            s.default(&mut obj);
            assert_eq!(
                obj,
                once,
                "default() of {} is not idempotent",
                s.info().plural
            );
            assert_eq!(s.row(&obj, now).len(), cols.len(), "{}", s.info().plural);
            assert_eq!(
                s.field_value(&obj, "metadata.name").as_deref(),
                Some("x"),
                "{}",
                s.info().plural
            );
            assert_eq!(s.field_value(&obj, "no.such.field"), None);
            // Strategies must tolerate garbage without panicking.
            let mut junk = json!({"spec": 5, "status": "x", "metadata": []});
            s.default(&mut junk);
            let _ = s.validate_create(&junk);
            let _ = s.validate_update(&junk, &json!(null));
            let _ = s.row(&junk, now);
        }
    }

    #[test]
    fn create_resets_status_per_kind() {
        let claimed = json!({"phase": "Running", "qosClass": "Guaranteed", "replicas": 3});
        let reset = |group: &str, plural: &str| {
            let s = strategy_for(group, "v1", plural).expect(plural);
            let mut obj = json!({"metadata": {"name": "x"}, "status": claimed.clone()});
            s.reset_status(&mut obj);
            obj.get("status").cloned()
        };
        assert_eq!(reset("", "pods"), Some(json!({"phase": "Pending"})));
        assert_eq!(reset("", "namespaces"), Some(json!({"phase": "Active"})));
        assert_eq!(reset("", "services"), Some(json!({"loadBalancer": {}})));
        assert_eq!(reset("apps", "deployments"), Some(json!({})));
        assert_eq!(reset("batch", "jobs"), Some(json!({})));
        // Kubelets register nodes with their status; kinds without a status subresource keep
        // whatever the body holds.
        assert_eq!(reset("", "nodes"), Some(claimed.clone()));
        assert_eq!(reset("", "configmaps"), Some(claimed.clone()));
        // Not an object: nothing to reset, and no panic.
        for s in builtin_strategies() {
            let mut junk = json!([1, 2]);
            s.reset_status(&mut junk);
            assert_eq!(junk, json!([1, 2]), "{}", s.info().plural);
        }
    }

    #[test]
    fn generation_tracking_matches_upstream() {
        let tracked: Vec<&str> = builtin_strategies()
            .iter()
            .filter(|s| s.has_generation())
            .map(|s| s.info().plural)
            .collect();
        assert_eq!(
            tracked,
            vec![
                "pods",
                "replicationcontrollers",
                "deployments",
                "replicasets",
                "daemonsets",
                "statefulsets",
                "jobs",
                "endpointslices",
                "customresourcedefinitions"
            ]
        );
    }

    /// Defaulted objects must still be valid typed objects (field names and value types).
    #[test]
    fn defaulted_objects_deserialize_as_k8s_openapi_types() {
        use k8s_openapi::api::{apps::v1 as apps, batch::v1 as batch, core::v1 as core};
        let template = json!({"metadata": {"labels": {"app": "w"}}, "spec": {"containers": [{"name": "c", "image": "i",
            "ports": [{"containerPort": 80}], "livenessProbe": {"httpGet": {"port": 80}}}],
            "volumes": [{"name": "v", "secret": {"secretName": "s"}}, {"name": "e"}]}});
        let workload = json!({"metadata": {"name": "w", "namespace": "d", "uid": "u"},
            "spec": {"selector": {"matchLabels": {"app": "w"}}, "template": template}});
        let defaulted = |group: &str, plural: &str, obj: &Value| {
            let mut o = obj.clone();
            strategy_for(group, "v1", plural)
                .expect("strategy")
                .default(&mut o);
            o
        };
        let pod = json!({"metadata": {"name": "p"}, "spec": template["spec"].clone()});
        serde_json::from_value::<core::Pod>(defaulted("", "pods", &pod)).expect("pod");
        serde_json::from_value::<apps::Deployment>(defaulted("apps", "deployments", &workload))
            .expect("deployment");
        serde_json::from_value::<apps::DaemonSet>(defaulted("apps", "daemonsets", &workload))
            .expect("daemonset");
        serde_json::from_value::<apps::StatefulSet>(defaulted("apps", "statefulsets", &workload))
            .expect("statefulset");
        serde_json::from_value::<batch::Job>(defaulted("batch", "jobs", &workload)).expect("job");
        let svc = json!({"metadata": {"name": "s"}, "spec": {"type": "LoadBalancer", "sessionAffinity": "ClientIP", "ports": [{"port": 80}]}});
        serde_json::from_value::<core::Service>(defaulted("", "services", &svc)).expect("service");
        serde_json::from_value::<core::Namespace>(defaulted(
            "",
            "namespaces",
            &json!({"metadata": {"name": "n"}}),
        ))
        .expect("namespace");
        let secret = json!({"metadata": {"name": "s"}, "stringData": {"a": "b"}});
        serde_json::from_value::<core::Secret>(defaulted("", "secrets", &secret)).expect("secret");
    }

    #[test]
    fn prepare_update_keeps_namespace_finalizers() {
        let ns = find_builtin("", "v1", "namespaces").expect("namespaces");
        let old = json!({"spec": {"finalizers": ["kubernetes"]}});
        let mut new = json!({"spec": {"finalizers": []}});
        prepare_update(ns, &mut new, &old);
        assert_eq!(new["spec"]["finalizers"], json!(["kubernetes"]));
        let pods = find_builtin("", "v1", "pods").expect("pods");
        let mut pod = json!({"spec": {"nodeName": "a"}});
        prepare_update(pods, &mut pod, &json!({}));
        assert_eq!(pod, json!({"spec": {"nodeName": "a"}}));
    }

    #[test]
    fn generic_strategy_prints_name_and_age() {
        let info = ResourceInfo {
            group: "example.com",
            version: "v1",
            kind: "Widget",
            plural: "widgets",
            singular: "widget",
            scope: Scope::Namespaced,
            short_names: &[],
            categories: &[],
            verbs: crate::resource::STANDARD_VERBS,
            subresources: vec![],
        };
        let s = generic_strategy(info);
        let names: Vec<&str> = s.columns().iter().map(|c| c.name).collect();
        assert_eq!(names, vec!["Name", "Age"]);
        let now = crate::meta::parse_time("2024-05-01T12:00:00Z").expect("now");
        let obj = json!({"metadata": {"name": "w", "creationTimestamp": "2024-05-01T11:00:00Z"}, "spec": {"a": 1}});
        assert_eq!(s.row(&obj, now), vec![json!("w"), json!("60m")]);
        assert!(s.has_generation());
        assert!(s.spec_changed(&json!({"spec": {"a": 2}}), &obj));
    }
}
