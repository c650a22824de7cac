//! The Service strategy: defaults, validation, the update rule that keeps allocated values,
//! and the printer row. ClusterIP and nodePort allocation is the server's (stateful) job.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::common::{
    age_cell, age_col, arr, child, col, each_obj, field, format_labels, int, name_cell, name_col,
    path_mut, s, set_default,
};
use super::podspec::{port_name_errors, port_num_errors, validate_protocol};
use crate::meta::{dns1123_label_errors, dns1123_subdomain_errors};
use crate::resource::ResourceInfo;
use crate::strategy::{replace_status, Column, FieldCause, Strategy};

/// Services (core/v1).
pub struct ServiceStrategy(pub(crate) &'static ResourceInfo);

const IP_ERR: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";

impl Strategy for ServiceStrategy {
    fn info(&self) -> &ResourceInfo {
        self.0
    }

    fn reset_status(&self, obj: &mut Value) {
        replace_status(obj, json!({"loadBalancer": {}}));
    }

    fn has_generation(&self) -> bool {
        false
    }

    fn default(&self, obj: &mut Value) {
        let Some(spec) = path_mut(obj, &["spec"]) else {
            return;
        };
        set_default(spec, "type", "ClusterIP".into());
        set_default(spec, "sessionAffinity", "None".into());
        let ty = spec
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if spec.get("sessionAffinity").and_then(Value::as_str) == Some("ClientIP") {
            set_default(
                spec,
                "sessionAffinityConfig",
                json!({"clientIP": {"timeoutSeconds": 10800}}),
            );
        }
        each_obj(spec, "ports", |p| {
            set_default(p, "protocol", "TCP".into());
            let unset = match p.get("targetPort") {
                None | Some(Value::Null) => true,
                Some(Value::Number(n)) => n.as_i64() == Some(0),
                Some(Value::String(s)) => s.is_empty(),
                _ => false,
            };
            if unset {
                if let Some(port) = p.get("port").cloned() {
                    p.insert("targetPort".into(), port);
                }
            }
        });
        if ty == "NodePort" || ty == "LoadBalancer" {
            set_default(spec, "externalTrafficPolicy", "Cluster".into());
        }
        if ty == "LoadBalancer" {
            set_default(spec, "allocateLoadBalancerNodePorts", true.into());
        }
        if ty != "ExternalName" {
            set_default(spec, "internalTrafficPolicy", "Cluster".into());
            set_default(spec, "ipFamilyPolicy", "SingleStack".into());
            set_default(spec, "ipFamilies", json!(["IPv4"]));
            // clusterIP and clusterIPs[0] mirror each other (upstream normalizeClusterIPs).
            let ip = spec
                .get("clusterIP")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let first = spec
                .get("clusterIPs")
                .and_then(|v| v.get(0))
                .and_then(Value::as_str)
                .map(str::to_string);
            match (ip.is_empty(), first) {
                (false, None) => {
                    spec.insert("clusterIPs".into(), json!([ip]));
                }
                (true, Some(f)) => {
                    spec.insert("clusterIP".into(), f.into());
                }
                _ => {}
            }
        }
        if let Some(root) = obj.as_object_mut() {
            if let Some(status) = child(root, "status") {
                set_default(status, "loadBalancer", json!({}));
            }
        }
    }

    fn validate_create(&self, obj: &Value) -> Vec<FieldCause> {
        let mut out = Vec::new();
        let ty = s(obj, "/spec/type");
        if !matches!(
            ty,
            "" | "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
        ) {
            out.push(FieldCause::not_supported(
                "spec.type",
                &Value::from(ty),
                &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
            ));
        }
        let cluster_ip = s(obj, "/spec/clusterIP");
        let headless = cluster_ip == "None";
        let ports = arr(obj, "/spec/ports");
        if ports.is_empty() && !headless && ty != "ExternalName" {
            out.push(FieldCause::required("spec.ports"));
        }
        let mut names: Vec<&str> = Vec::new();
        let mut seen: Vec<(i64, &str)> = Vec::new();
        for (i, p) in ports.iter().enumerate() {
            let pp = format!("spec.ports[{i}]");
            let name = s(p, "/name");
            if ports.len() > 1 && name.is_empty() {
                out.push(FieldCause::required(format!("{pp}.name")));
            } else if !name.is_empty() {
                for m in dns1123_label_errors(name) {
                    out.push(FieldCause::invalid(
                        format!("{pp}.name"),
                        &Value::from(name),
                        m,
                    ));
                }
                if names.contains(&name) {
                    out.push(FieldCause::duplicate(
                        format!("{pp}.name"),
                        &Value::from(name),
                    ));
                }
                names.push(name);
            }
            let port = int(p, "/port");
            for m in port_num_errors(port) {
                out.push(FieldCause::invalid(
                    format!("{pp}.port"),
                    &Value::from(port),
                    m,
                ));
            }
            validate_protocol(p, &pp, &mut out);
            let proto = s(p, "/protocol");
            if seen.contains(&(port, proto)) {
                out.push(FieldCause::duplicate(
                    &pp,
                    &json!(format!("{{port: {port}, protocol: {proto}}}")),
                ));
            }
            seen.push((port, proto));
            match p.get("targetPort") {
                Some(Value::Number(n)) => {
                    let n = n.as_i64().unwrap_or(0);
                    for m in port_num_errors(n) {
                        out.push(FieldCause::invalid(
                            format!("{pp}.targetPort"),
                            &Value::from(n),
                            m,
                        ));
                    }
                }
                Some(Value::String(t)) => {
                    for m in port_name_errors(t) {
                        out.push(FieldCause::invalid(
                            format!("{pp}.targetPort"),
                            &Value::from(t.as_str()),
                            m,
                        ));
                    }
                }
                _ => {}
            }
            if int(p, "/nodePort") != 0 && (ty == "ClusterIP" || ty.is_empty()) {
                out.push(FieldCause::forbidden(
                    format!("{pp}.nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
        let affinity = s(obj, "/spec/sessionAffinity");
        if !matches!(affinity, "" | "None" | "ClientIP") {
            out.push(FieldCause::not_supported(
                "spec.sessionAffinity",
                &Value::from(affinity),
                &["ClientIP", "None"],
            ));
        }
        if ty == "ExternalName" {
            let name = s(obj, "/spec/externalName");
            if name.is_empty() {
                out.push(FieldCause::required("spec.externalName"));
            } else {
                for m in dns1123_subdomain_errors(name.trim_end_matches('.')) {
                    out.push(FieldCause::invalid(
                        "spec.externalName",
                        &Value::from(name),
                        m,
                    ));
                }
            }
        }
        for (i, ip) in arr(obj, "/spec/clusterIPs").iter().enumerate() {
            let text = ip.as_str().unwrap_or("");
            if text != "None" && !text.is_empty() && text.parse::<IpAddr>().is_err() {
                out.push(FieldCause::invalid(
                    format!("spec.clusterIPs[{i}]"),
                    ip,
                    IP_ERR,
                ));
            }
        }
        if !headless
            && !cluster_ip.is_empty()
            && cluster_ip.parse::<IpAddr>().is_err()
            && arr(obj, "/spec/clusterIPs").is_empty()
        {
            out.push(FieldCause::invalid(
                "spec.clusterIP",
                &Value::from(cluster_ip),
                IP_ERR,
            ));
        }
        let etp = s(obj, "/spec/externalTrafficPolicy");
        if !etp.is_empty() && ty != "NodePort" && ty != "LoadBalancer" {
            out.push(FieldCause::invalid(
                "spec.externalTrafficPolicy",
                &Value::from(etp),
                "may only be set when `type` is 'NodePort' or 'LoadBalancer'",
            ));
        }
        out
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldCause> {
        let mut out = self.validate_create(new);
        let (n, o) = (s(new, "/spec/clusterIP"), s(old, "/spec/clusterIP"));
        let external = |v: &Value| s(v, "/spec/type") == "ExternalName";
        if !external(new) && !external(old) && !o.is_empty() && !n.is_empty() && n != o {
            out.push(crate::kinds::common::invalid_raw(
                "spec.clusterIPs[0]",
                &format!("[]string{{{}}}", Value::from(n)),
                "may not change once set",
            ));
        }
        out
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            name_col(),
            col("Type", "string", "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer.", 0),
            col("Cluster-IP", "string", "clusterIP is the IP address of the service and is usually assigned randomly.", 0),
            col("External-IP", "string", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.", 0),
            col("Port(s)", "string", "The list of ports that are exposed by this service.", 0),
            age_col(),
            col("Selector", "string", "Route service traffic to pods with label keys and values matching this selector.", 1),
        ]
    }

    fn row(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let cluster_ip = arr(obj, "/spec/clusterIPs")
            .first()
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("<none>");
        let ports: Vec<String> = arr(obj, "/spec/ports")
            .iter()
            .map(|p| {
                let np = int(p, "/nodePort");
                let proto = s(p, "/protocol");
                if np > 0 {
                    format!("{}:{}/{}", int(p, "/port"), np, proto)
                } else {
                    format!("{}/{}", int(p, "/port"), proto)
                }
            })
            .collect();
        let ports = if ports.is_empty() {
            "<none>".to_string()
        } else {
            ports.join(",")
        };
        vec![
            name_cell(obj),
            Value::from(s(obj, "/spec/type")),
            Value::from(cluster_ip),
            Value::from(external_ip(obj)),
            Value::from(ports),
            age_cell(obj, now),
            Value::from(format_labels(obj.pointer("/spec/selector"))),
        ]
    }

    fn field_value(&self, obj: &Value, name: &str) -> Option<String> {
        match name {
            "metadata.name" => field(obj, "/metadata/name"),
            "metadata.namespace" => field(obj, "/metadata/namespace"),
            "spec.clusterIP" => field(obj, "/spec/clusterIP"),
            "spec.type" => field(obj, "/spec/type"),
            _ => None,
        }
    }
}

/// Upstream's `patchAllocatedValues`: an update that omits `clusterIP`/`clusterIPs`, a port's
/// `nodePort` or `healthCheckNodePort` keeps the values allocated before, as long as both
/// versions of the service need them.
pub(crate) fn keep_allocated(new: &mut Value, old: &Value) {
    let ty = |v: &Value| match s(v, "/spec/type") {
        "" => "ClusterIP".to_string(),
        t => t.to_string(),
    };
    let (new_ty, old_ty) = (ty(new), ty(old));
    let old_ports: Vec<Value> = arr(old, "/spec/ports").to_vec();
    let Some(spec) = path_mut(new, &["spec"]) else {
        return;
    };
    if new_ty != "ExternalName" && old_ty != "ExternalName" {
        for key in ["clusterIP", "clusterIPs"] {
            let empty = match spec.get(key) {
                None | Some(Value::Null) => true,
                Some(Value::String(s)) => s.is_empty(),
                Some(Value::Array(a)) => a.is_empty(),
                _ => false,
            };
            if let (true, Some(v)) = (empty, old.pointer(&format!("/spec/{key}"))) {
                spec.insert(key.into(), v.clone());
            }
        }
    }
    let needs_node_port = |t: &str| t == "NodePort" || t == "LoadBalancer";
    if needs_node_port(&new_ty) && needs_node_port(&old_ty) {
        let used: Vec<i64> = spec
            .get("ports")
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .map(|p| int(p, "/nodePort"))
                    .filter(|n| *n != 0)
                    .collect()
            })
            .unwrap_or_default();
        each_obj(spec, "ports", |p| {
            if p.get("nodePort").and_then(Value::as_i64).unwrap_or(0) != 0 {
                return;
            }
            let name = p.get("name").and_then(Value::as_str).unwrap_or("");
            let previous = old_ports
                .iter()
                .find(|o| s(o, "/name") == name)
                .map(|o| int(o, "/nodePort"))
                .filter(|n| *n != 0 && !used.contains(n));
            if let Some(n) = previous {
                p.insert("nodePort".into(), n.into());
            }
        });
        if int(old, "/spec/healthCheckNodePort") != 0
            && spec
                .get("healthCheckNodePort")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                == 0
            && spec.get("externalTrafficPolicy").and_then(Value::as_str) == Some("Local")
        {
            spec.insert(
                "healthCheckNodePort".into(),
                int(old, "/spec/healthCheckNodePort").into(),
            );
        }
    }
}

/// Upstream's `getServiceExternalIP` for server-side (always wide) tables.
fn external_ip(obj: &Value) -> String {
    let external: Vec<&str> = arr(obj, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match s(obj, "/spec/type") {
        "ClusterIP" | "NodePort" => {
            if external.is_empty() {
                "<none>".into()
            } else {
                external.join(",")
            }
        }
        "LoadBalancer" => {
            // Upstream collects ingress points into a sorted set, then appends externalIPs.
            let mut lb: Vec<&str> = arr(obj, "/status/loadBalancer/ingress")
                .iter()
                .map(|i| match s(i, "/ip") {
                    "" => s(i, "/hostname"),
                    ip => ip,
                })
                .filter(|v| !v.is_empty())
                .collect();
            lb.sort();
            lb.dedup();
            let lb = lb.join(",");
            match (external.is_empty(), lb.is_empty()) {
                (false, false) => format!("{},{}", lb, external.join(",")),
                (false, true) => external.join(","),
                (true, false) => lb,
                (true, true) => "<pending>".into(),
            }
        }
        "ExternalName" => s(obj, "/spec/externalName").to_string(),
        _ => "<unknown>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::strategy_for;
    use crate::meta::parse_time;
    use std::sync::Arc;

    fn strategy(group: &str, plural: &str) -> Arc<dyn Strategy> {
        strategy_for(group, "v1", plural).expect("strategy")
    }

    fn now() -> DateTime<Utc> {
        parse_time("2024-05-01T12:00:00Z").expect("now")
    }

    fn messages(causes: &[FieldCause]) -> Vec<String> {
        causes.iter().map(FieldCause::to_message).collect()
    }

    #[test]
    fn service_defaults() {
        let svc = strategy("", "services");
        let mut obj = json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}});
        svc.default(&mut obj);
        assert_eq!(
            obj["spec"],
            json!({"selector": {"app": "web"}, "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
                "type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
                "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]})
        );
        assert_eq!(obj["status"], json!({"loadBalancer": {}}));
        assert_eq!(svc.validate_create(&obj), vec![]);

        let mut np = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "ports": [{"port": 80, "targetPort": "http"}]}});
        svc.default(&mut np);
        assert_eq!(np["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(np["spec"]["clusterIPs"], json!(["10.96.0.10"]));
        assert_eq!(np["spec"]["ports"][0]["targetPort"], "http");
        assert!(!svc.has_generation());
    }

    #[test]
    fn service_validation() {
        let svc = strategy("", "services");
        let cases = [
            (json!({"spec": {"type": "ClusterIP"}}), vec!["spec.ports: Required value"]),
            (json!({"spec": {"clusterIP": "None"}}), vec![]),
            (
                json!({"spec": {"type": "Bogus", "ports": [{"port": 0, "protocol": "TCP"}, {"port": 80, "protocol": "TCP", "nodePort": 30000}]}}),
                vec![
                    "spec.type: Unsupported value: \"Bogus\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
                    "spec.ports[0].name: Required value",
                    "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                    "spec.ports[1].name: Required value",
                ],
            ),
            (
                json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30000}]}}),
                vec!["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"],
            ),
            (json!({"spec": {"type": "ExternalName"}}), vec!["spec.externalName: Required value"]),
        ];
        for (obj, want) in cases {
            assert_eq!(messages(&svc.validate_create(&obj)), want, "{obj}");
        }
        let old = json!({"spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80, "protocol": "TCP"}]}});
        let new = json!({"spec": {"clusterIP": "10.96.0.11", "ports": [{"port": 80, "protocol": "TCP"}]}});
        assert_eq!(
            messages(&svc.validate_update(&new, &old)),
            vec!["spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.11\"}: may not change once set"]
        );
    }

    #[test]
    fn service_rows() {
        let svc = strategy("", "services");
        let mut obj = json!({"metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:59:00Z"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "selector": {"app": "web"},
                "ports": [{"port": 80, "nodePort": 30080}, {"port": 443, "protocol": "TCP"}]}});
        svc.default(&mut obj);
        assert_eq!(
            svc.row(&obj, now()),
            vec![
                json!("web"),
                json!("NodePort"),
                json!("10.96.0.10"),
                json!("<none>"),
                json!("80:30080/TCP,443/TCP"),
                json!("60s"),
                json!("app=web")
            ]
        );
        let mut lb = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}});
        svc.default(&mut lb);
        let row = svc.row(&lb, now());
        assert_eq!(
            (row[2].clone(), row[3].clone(), row[6].clone()),
            (json!("<none>"), json!("<pending>"), json!("<none>"))
        );
        lb["status"]["loadBalancer"]["ingress"] = json!([{"ip": "1.2.3.4"}]);
        assert_eq!(svc.row(&lb, now())[3], "1.2.3.4");
        let ext = json!({"spec": {"type": "ExternalName", "externalName": "example.com"}});
        assert_eq!(svc.row(&ext, now())[3], "example.com");
        assert_eq!(
            svc.field_value(&obj, "spec.type").as_deref(),
            Some("NodePort")
        );
        let names: Vec<&str> = svc.columns().iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            vec![
                "Name",
                "Type",
                "Cluster-IP",
                "External-IP",
                "Port(s)",
                "Age",
                "Selector"
            ]
        );
    }

    #[test]
    fn updates_keep_allocated_values() {
        let old = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
            "ports": [{"name": "http", "port": 80, "nodePort": 30080}, {"name": "https", "port": 443, "nodePort": 30443}]}});
        let mut new = json!({"spec": {"type": "NodePort", "ports": [{"name": "http", "port": 8080}, {"name": "https", "port": 443, "nodePort": 31000}]}});
        keep_allocated(&mut new, &old);
        assert_eq!(new["spec"]["clusterIP"], "10.96.0.10");
        assert_eq!(new["spec"]["clusterIPs"], json!(["10.96.0.10"]));
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 30080);
        assert_eq!(new["spec"]["ports"][1]["nodePort"], 31000);
        let svc = strategy("", "services");
        svc.default(&mut new);
        assert_eq!(svc.validate_update(&new, &old), vec![]);

        let mut to_external =
            json!({"spec": {"type": "ExternalName", "externalName": "example.com"}});
        keep_allocated(&mut to_external, &old);
        assert!(to_external["spec"].get("clusterIP").is_none());
    }
}
