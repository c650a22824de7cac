//! The default plugins, one per file, each with a pure core and table-driven tests.

pub mod balanced_allocation;
pub mod image_locality;
pub mod inter_pod_affinity;
pub mod least_allocated;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod taint_toleration;

#[cfg(test)]
pub(crate) mod testutil {
    //! Builders shared by the plugin tests.
    use crate::labels::Labels;
    use crate::nodeinfo::NodeInfo;
    use crate::podinfo::PodInfo;
    use k8s_openapi::api::core::v1::Pod;

    pub fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    pub fn node(name: &str, l: &[(&str, &str)]) -> NodeInfo {
        let mut n = NodeInfo::with_allocatable(name, 4000, 8 << 30, 110);
        n.labels = labels(l);
        n
    }

    /// A PodInfo from a pod written as JSON (spec fields as upstream YAML would have them).
    pub fn pod(json: serde_json::Value) -> PodInfo {
        let mut v = serde_json::json!({"metadata": {"name": "p", "namespace": "default"}});
        if let (Some(obj), Some(extra)) = (v.as_object_mut(), json.as_object()) {
            for (k, val) in extra {
                if k == "metadata" {
                    if let (Some(m), Some(em)) = (obj["metadata"].as_object_mut(), val.as_object())
                    {
                        for (mk, mv) in em {
                            m.insert(mk.clone(), mv.clone());
                        }
                    }
                } else {
                    obj.insert(k.clone(), val.clone());
                }
            }
        }
        if v.get("spec").is_none() {
            v["spec"] = serde_json::json!({"containers": [{"name": "c"}]});
        }
        if v["spec"].get("containers").is_none() {
            v["spec"]["containers"] = serde_json::json!([{"name": "c"}]);
        }
        let p: Pod = serde_json::from_value(v).expect("valid pod json");
        PodInfo::from_pod(&p)
    }
}
