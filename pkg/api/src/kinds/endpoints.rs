//! Endpoints (core/v1) and EndpointSlices (discovery.k8s.io/v1): defaults, the few
//! validation rules users hit, and their printer rows.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::common::{
    age_cell, age_col, arr, col, each_obj, field, int, name_cell, name_col, s, set_default,
};
use super::podspec::{port_num_errors, validate_protocol};
use crate::resource::ResourceInfo;
use crate::strategy::{Column, FieldCause, Strategy};

const IP_ERR: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";

/// Endpoints (core/v1).
pub struct EndpointsStrategy(pub(crate) &'static ResourceInfo);

impl Strategy for EndpointsStrategy {
    fn info(&self) -> &ResourceInfo {
        self.0
    }

    fn has_generation(&self) -> bool {
        false
    }

    fn default(&self, obj: &mut Value) {
        if let Some(root) = obj.as_object_mut() {
            each_obj(root, "subsets", |ss| {
                each_obj(ss, "ports", |p| set_default(p, "protocol", "TCP".into()))
            });
        }
    }

    fn validate_create(&self, obj: &Value) -> Vec<FieldCause> {
        let mut out = Vec::new();
        for (i, ss) in arr(obj, "/subsets").iter().enumerate() {
            for key in ["addresses", "notReadyAddresses"] {
                for (j, a) in arr(ss, &format!("/{key}")).iter().enumerate() {
                    let ip = s(a, "/ip");
                    if ip.parse::<IpAddr>().is_err() {
                        out.push(FieldCause::invalid(
                            format!("subsets[{i}].{key}[{j}].ip"),
                            &Value::from(ip),
                            IP_ERR,
                        ));
                    }
                }
            }
            for (j, p) in arr(ss, "/ports").iter().enumerate() {
                let pp = format!("subsets[{i}].ports[{j}]");
                for m in port_num_errors(int(p, "/port")) {
                    out.push(FieldCause::invalid(
                        format!("{pp}.port"),
                        &Value::from(int(p, "/port")),
                        m,
                    ));
                }
                validate_protocol(p, &pp, &mut out);
            }
        }
        out
    }

    fn spec_changed(&self, _new: &Value, _old: &Value) -> bool {
        false
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            name_col(),
            col("Endpoints", "string", "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according to the IPs they share. A single address with multiple ports, some of which are ready and some of which are not (because they come from different containers) will result in the address being displayed in different subsets for the different ports. No address will appear in both Addresses and NotReadyAddresses in the same subset. Sets of addresses and ports that comprise a service.", 0),
            age_col(),
        ]
    }

    fn row(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        vec![
            name_cell(obj),
            Value::from(format_endpoints(obj)),
            age_cell(obj, now),
        ]
    }

    fn field_value(&self, obj: &Value, name: &str) -> Option<String> {
        meta_field(obj, name)
    }
}

/// `metadata.name`/`metadata.namespace`, the only fields most kinds select on.
pub(crate) fn meta_field(obj: &Value, name: &str) -> Option<String> {
    match name {
        "metadata.name" => field(obj, "/metadata/name"),
        "metadata.namespace" => field(obj, "/metadata/namespace"),
        _ => None,
    }
}

fn host_port(ip: &str, port: i64) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// Upstream's `formatEndpoints`: up to three `ip:port`, then ` + N more...`.
fn format_endpoints(obj: &Value) -> String {
    let subsets = arr(obj, "/subsets");
    if subsets.is_empty() {
        return "<none>".into();
    }
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for ss in subsets {
        let addrs = arr(ss, "/addresses");
        let ports = arr(ss, "/ports");
        if ports.is_empty() {
            count += addrs.len();
            for a in addrs {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(s(a, "/ip").to_string());
            }
            continue;
        }
        for p in ports {
            count += addrs.len();
            for a in addrs {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(host_port(s(a, "/ip"), int(p, "/port")));
            }
        }
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

/// EndpointSlices (discovery.k8s.io/v1).
pub struct EndpointSliceStrategy(pub(crate) &'static ResourceInfo);

impl Strategy for EndpointSliceStrategy {
    fn info(&self) -> &ResourceInfo {
        self.0
    }

    fn default(&self, obj: &mut Value) {
        if let Some(root) = obj.as_object_mut() {
            each_obj(root, "ports", |p| {
                set_default(p, "protocol", "TCP".into());
                set_default(p, "name", "".into());
            });
        }
    }

    /// Upstream bumps an EndpointSlice's generation when its endpoints, ports or address
    /// type change (it has no `spec`).
    fn spec_changed(&self, new: &Value, old: &Value) -> bool {
        ["endpoints", "ports", "addressType"]
            .iter()
            .any(|k| new.get(*k) != old.get(*k))
    }

    fn validate_create(&self, obj: &Value) -> Vec<FieldCause> {
        let mut out = Vec::new();
        match s(obj, "/addressType") {
            "" => out.push(FieldCause::required("addressType")),
            "IPv4" | "IPv6" | "FQDN" => {}
            other => out.push(FieldCause::not_supported(
                "addressType",
                &Value::from(other),
                &["FQDN", "IPv4", "IPv6"],
            )),
        }
        for (i, e) in arr(obj, "/endpoints").iter().enumerate() {
            let addrs = arr(e, "/addresses");
            if addrs.is_empty() {
                out.push(FieldCause::required(format!("endpoints[{i}].addresses")));
            } else if addrs.len() > 100 {
                out.push(crate::meta::too_long(
                    &format!("endpoints[{i}].addresses"),
                    100,
                ));
            }
        }
        for (i, p) in arr(obj, "/ports").iter().enumerate() {
            if let Some(n) = p.get("port").and_then(Value::as_i64) {
                for m in port_num_errors(n) {
                    out.push(FieldCause::invalid(
                        format!("ports[{i}].port"),
                        &Value::from(n),
                        m,
                    ));
                }
            }
        }
        out
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldCause> {
        let mut out = self.validate_create(new);
        super::common::immutable(new, old, "/addressType", "addressType", &mut out);
        out
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            name_col(),
            col("AddressType", "string", "addressType specifies the type of address carried by this EndpointSlice. All addresses in this slice must be the same type. This field is immutable after creation.", 0),
            col("Ports", "string", "ports specifies the list of network ports exposed by each endpoint in this slice.", 0),
            col("Endpoints", "string", "endpoints is a list of unique endpoints in this slice.", 0),
            age_col(),
        ]
    }

    fn row(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let ports: Vec<String> = arr(obj, "/ports")
            .iter()
            .map(|p| match p.get("port").and_then(Value::as_i64) {
                Some(n) => n.to_string(),
                None => p
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("*")
                    .to_string(),
            })
            .collect();
        let addrs: Vec<String> = arr(obj, "/endpoints")
            .iter()
            .flat_map(|e| {
                arr(e, "/addresses")
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
            })
            .collect();
        vec![
            name_cell(obj),
            Value::from(s(obj, "/addressType")),
            Value::from(list_with_more(&ports)),
            Value::from(list_with_more(&addrs)),
            age_cell(obj, now),
        ]
    }

    fn field_value(&self, obj: &Value, name: &str) -> Option<String> {
        meta_field(obj, name)
    }
}

/// Upstream's `listWithMoreString` with a maximum of three: `<unset>` when empty.
fn list_with_more(items: &[String]) -> String {
    const MAX: usize = 3;
    if items.is_empty() {
        return "<unset>".into();
    }
    let shown = items[..items.len().min(MAX)].join(",");
    if items.len() > MAX {
        format!("{shown} + {} more...", items.len() - MAX)
    } else {
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::strategy_for;
    use crate::meta::parse_time;
    use serde_json::json;
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
    fn endpoints_rows() {
        let ep = strategy("", "endpoints");
        let obj = json!({"metadata": {"name": "web"}, "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
            "ports": [{"port": 80}, {"port": 443}]}]});
        assert_eq!(
            ep.row(&obj, now())[1],
            "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more..."
        );
        assert_eq!(
            ep.row(&json!({"metadata": {"name": "x"}}), now())[1],
            "<none>"
        );
        let mut d = obj.clone();
        ep.default(&mut d);
        assert_eq!(d["subsets"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(ep.validate_create(&d), vec![]);
        assert!(!ep.has_generation());
    }

    #[test]
    fn endpoint_slices() {
        let es = strategy("discovery.k8s.io", "endpointslices");
        let mut obj = json!({"metadata": {"name": "web-abc"}, "addressType": "IPv4",
            "ports": [{"port": 80}], "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}]});
        es.default(&mut obj);
        assert_eq!(
            obj["ports"][0],
            json!({"port": 80, "protocol": "TCP", "name": ""})
        );
        assert_eq!(es.validate_create(&obj), vec![]);
        assert_eq!(
            es.row(&obj, now())[1..4].to_vec(),
            vec![json!("IPv4"), json!("80"), json!("10.0.0.1,10.0.0.2")]
        );
        assert_eq!(
            messages(&es.validate_create(&json!({"endpoints": [{}]}))),
            vec![
                "addressType: Required value",
                "endpoints[0].addresses: Required value"
            ]
        );
        assert_eq!(es.row(&json!({}), now())[2], "<unset>");
        let mut moved = obj.clone();
        moved["endpoints"] = json!([]);
        assert!(es.spec_changed(&moved, &obj));
        assert!(!es.spec_changed(&obj, &obj));
    }
}
