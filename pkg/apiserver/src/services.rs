//! Service ClusterIP and NodePort allocation. Every allocated IP or port is a storage key
//! (`/registry/ranges/serviceips/<ip>`, `/registry/ranges/servicenodeports/<port>`) created with
//! the store's create, so two servers sharing a store never hand out the same one.

use std::net::Ipv4Addr;

use bytes::Bytes;
use rand::Rng;
use serde_json::{json, Value};

use crate::error::{ApiError, Result};
use crate::registry::{self, Ctx, Registry};
use kubelite_api::strategy::FieldCause;

const IP_PREFIX: &str = "/registry/ranges/serviceips/";
const PORT_PREFIX: &str = "/registry/ranges/servicenodeports/";
const RANDOM_ATTEMPTS: usize = 64;

/// The configured ranges.
#[derive(Clone, Debug)]
pub struct Allocator {
    base: u32,
    size: u32,
    cidr: String,
    ports: (u16, u16),
}

impl Allocator {
    /// `cidr` like `10.96.0.0/12`, ports like `(30000, 32767)`.
    pub fn new(cidr: &str, ports: (u16, u16)) -> std::result::Result<Self, String> {
        let (addr, bits) = cidr
            .split_once('/')
            .ok_or_else(|| format!("invalid CIDR {cidr:?}"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| format!("invalid CIDR {cidr:?}"))?;
        let bits: u32 = bits.parse().map_err(|_| format!("invalid CIDR {cidr:?}"))?;
        if !(8..=30).contains(&bits) {
            return Err(format!(
                "service CIDR {cidr:?} must have a prefix length between 8 and 30"
            ));
        }
        if ports.0 > ports.1 {
            return Err(format!("invalid node port range {}-{}", ports.0, ports.1));
        }
        let size = 1u32 << (32 - bits);
        let base = u32::from(addr) & !(size - 1);
        Ok(Self {
            base,
            size,
            cidr: cidr.to_string(),
            ports,
        })
    }

    /// The first usable IP: the `kubernetes` Service's ClusterIP.
    pub fn first_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        let n = u32::from(ip);
        n > self.base && n < self.base + self.size - 1
    }

    fn random_ip(&self) -> Ipv4Addr {
        // Skip the network address, the first IP (reserved for `kubernetes`) and broadcast.
        Ipv4Addr::from(self.base + rand::rng().random_range(2..self.size - 1))
    }
}

fn invalid(ctx: &Ctx, obj: &Value, field: String, value: Value, detail: String) -> ApiError {
    ApiError::invalid(
        ctx.info,
        registry::name_of(obj),
        vec![FieldCause::invalid(field, &value, detail)],
    )
}

fn owner(obj: &Value) -> Bytes {
    let ns = registry::meta_str(obj, "namespace").unwrap_or("");
    Bytes::from(format!("{ns}/{}", registry::name_of(obj)))
}

/// The Service an allocation is for, as an error target.
fn alloc_target(obj: &Value) -> crate::error::Target {
    crate::error::Target {
        group_resource: "services".into(),
        group: String::new(),
        kind: "services".into(),
        name: registry::name_of(obj).to_string(),
    }
}

async fn claim(reg: &Registry, key: String, obj: &Value) -> Result<bool> {
    match reg.storage.create(&key, owner(obj)).await {
        Ok(_) => Ok(true),
        Err(kubelite_storage::Error::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(ApiError::from_storage(e, alloc_target(obj))),
    }
}

fn wants_node_ports(obj: &Value) -> bool {
    matches!(
        obj.pointer("/spec/type").and_then(Value::as_str),
        Some("NodePort") | Some("LoadBalancer")
    )
}

/// Allocate what a new Service needs, writing the results into `obj`. Returns the claimed keys
/// (to release if the create fails). Other kinds: nothing.
pub async fn allocate(reg: &Registry, ctx: &Ctx, obj: &mut Value) -> Result<Vec<String>> {
    let mut claimed = Vec::new();
    if ctx.info.kind != "Service" || !ctx.info.group.is_empty() {
        return Ok(claimed);
    }
    match allocate_inner(reg, ctx, obj, &mut claimed).await {
        Ok(()) => Ok(claimed),
        Err(e) => {
            release_all(reg, &claimed).await;
            Err(e)
        }
    }
}

async fn allocate_inner(
    reg: &Registry,
    ctx: &Ctx,
    obj: &mut Value,
    claimed: &mut Vec<String>,
) -> Result<()> {
    let a = &reg.allocator;
    let svc_type = obj
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    if svc_type == "ExternalName" {
        return Ok(());
    }
    let requested = obj
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .or_else(|| obj.pointer("/spec/clusterIPs/0").and_then(Value::as_str))
        .unwrap_or("")
        .to_string();
    let ip = if requested == "None" {
        "None".to_string()
    } else if requested.is_empty() {
        let mut found = None;
        for _ in 0..RANDOM_ATTEMPTS {
            let ip = a.random_ip();
            let key = format!("{IP_PREFIX}{ip}");
            if claim(reg, key.clone(), obj).await? {
                claimed.push(key);
                found = Some(ip.to_string());
                break;
            }
        }
        found.ok_or_else(|| ApiError::internal("failed to allocate a service IP: range is full"))?
    } else {
        let parsed: Ipv4Addr = requested.parse().map_err(|_| {
            invalid(
                ctx,
                obj,
                "spec.clusterIPs[0]".into(),
                json!(requested),
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".into(),
            )
        })?;
        if !a.contains(parsed) {
            return Err(invalid(ctx, obj, "spec.clusterIPs[0]".into(), json!(requested),
                format!("failed to allocate IP {requested}: the provided IP ({requested}) is not in the valid range. The range of valid IPs is {}", a.cidr)));
        }
        let key = format!("{IP_PREFIX}{parsed}");
        if !claim(reg, key.clone(), obj).await? {
            return Err(invalid(
                ctx,
                obj,
                "spec.clusterIPs".into(),
                json!([requested]),
                format!("failed to allocate IP {requested}: provided IP is already allocated"),
            ));
        }
        claimed.push(key);
        requested.clone()
    };
    let spec = &mut obj["spec"];
    spec["clusterIP"] = json!(ip);
    spec["clusterIPs"] = json!([ip]);
    if ip != "None" || spec.get("ipFamilies").is_none() {
        spec["ipFamilies"] = json!(["IPv4"]);
    }
    if spec.get("ipFamilyPolicy").is_none() {
        spec["ipFamilyPolicy"] = json!("SingleStack");
    }
    if !wants_node_ports(obj) {
        return Ok(());
    }
    let count = obj
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    for i in 0..count {
        let given = obj
            .pointer(&format!("/spec/ports/{i}/nodePort"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let port = if given == 0 {
            let mut found = None;
            for _ in 0..RANDOM_ATTEMPTS {
                let p = rand::rng().random_range(a.ports.0..=a.ports.1);
                let key = format!("{PORT_PREFIX}{p}");
                if claim(reg, key.clone(), obj).await? {
                    claimed.push(key);
                    found = Some(p as i64);
                    break;
                }
            }
            found.ok_or_else(|| {
                ApiError::internal("failed to allocate a node port: range is full")
            })?
        } else {
            let field = format!("spec.ports[{i}].nodePort");
            if given < a.ports.0 as i64 || given > a.ports.1 as i64 {
                return Err(invalid(ctx, obj, field, json!(given), format!(
                    "provided port is not in the valid range. The range of valid ports is {}-{}", a.ports.0, a.ports.1)));
            }
            let key = format!("{PORT_PREFIX}{given}");
            if !claim(reg, key.clone(), obj).await? {
                return Err(invalid(
                    ctx,
                    obj,
                    field,
                    json!(given),
                    "provided port is already allocated".into(),
                ));
            }
            claimed.push(key);
            given
        };
        obj["spec"]["ports"][i]["nodePort"] = json!(port);
    }
    Ok(())
}

/// Dry-run check of a requested IP (nothing is claimed).
pub async fn check_for_dry_run(reg: &Registry, ctx: &Ctx, obj: &Value) -> Result<()> {
    if ctx.info.kind != "Service" {
        return Ok(());
    }
    if let Some(ip) = obj
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && *s != "None")
    {
        let taken = reg
            .storage
            .get(&format!("{IP_PREFIX}{ip}"))
            .await
            .map_err(|e| ApiError::from_storage(e, alloc_target(obj)))?;
        if taken.is_some() {
            return Err(invalid(
                ctx,
                obj,
                "spec.clusterIPs".into(),
                json!([ip]),
                format!("failed to allocate IP {ip}: provided IP is already allocated"),
            ));
        }
    }
    Ok(())
}

/// Release claimed keys (best effort: a leak only wastes an address).
pub async fn release_all(reg: &Registry, keys: &[String]) {
    for k in keys {
        if let Err(e) = reg.storage.delete(k, None).await {
            tracing::debug!(key = %k, error = %e, "release of allocation failed");
        }
    }
}

/// Release what a deleted Service held.
pub async fn release_for(reg: &Registry, ctx: &Ctx, obj: &Value) {
    if ctx.info.kind != "Service" || !ctx.info.group.is_empty() {
        return;
    }
    let mut keys = Vec::new();
    if let Some(ip) = obj
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && *s != "None")
    {
        keys.push(format!("{IP_PREFIX}{ip}"));
    }
    for p in obj
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(n) = p.get("nodePort").and_then(Value::as_i64) {
            keys.push(format!("{PORT_PREFIX}{n}"));
        }
    }
    release_all(reg, &keys).await;
}

/// On update, allocated values the client left out are carried over from the stored Service.
pub fn keep_allocations(ctx: &Ctx, old: &Value, new: &mut Value) {
    if ctx.info.kind != "Service" || !ctx.info.group.is_empty() {
        return;
    }
    for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
        let missing = new
            .pointer(&format!("/spec/{f}"))
            .is_none_or(|v| v.is_null() || v == "");
        if missing {
            if let Some(v) = old.pointer(&format!("/spec/{f}")) {
                new["spec"][f] = v.clone();
            }
        }
    }
    if !wants_node_ports(new) {
        // Like upstream's dropTypeDependentFields: leaving NodePort/LoadBalancer drops the
        // node ports and the traffic policy the client did not change itself.
        if let Some(ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
            for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                p.remove("nodePort");
            }
        }
        if wants_node_ports(old) {
            for f in ["externalTrafficPolicy", "healthCheckNodePort"] {
                if new.pointer(&format!("/spec/{f}")) == old.pointer(&format!("/spec/{f}")) {
                    if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
                        spec.remove(f);
                    }
                }
            }
        }
        return;
    }
    let old_ports = old
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut() {
            if p.get("nodePort")
                .is_some_and(|n| n.as_i64().unwrap_or(0) != 0)
            {
                continue;
            }
            let matching = old_ports
                .iter()
                .find(|o| o.get("port") == p.get("port") && o.get("protocol") == p.get("protocol"));
            if let Some(n) = matching.and_then(|o| o.get("nodePort")) {
                p["nodePort"] = n.clone();
            }
        }
    }
}

fn node_ports(obj: &Value) -> Vec<i64> {
    obj.pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("nodePort").and_then(Value::as_i64))
        .filter(|n| *n != 0)
        .collect()
}

/// On update: claim node ports a Service newly needs (type changed to NodePort/LoadBalancer,
/// ports added) and drop node ports from one that no longer wants them. Returns the claimed
/// keys (released by the caller if the write fails).
pub async fn allocate_on_update(
    reg: &Registry,
    ctx: &Ctx,
    old: &Value,
    new: &mut Value,
) -> Result<Vec<String>> {
    let mut claimed = Vec::new();
    if ctx.info.kind != "Service" || !ctx.info.group.is_empty() {
        return Ok(claimed);
    }
    if !wants_node_ports(new) {
        return Ok(claimed);
    }
    let held = node_ports(old);
    let a = &reg.allocator;
    let count = new
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    for i in 0..count {
        let given = new
            .pointer(&format!("/spec/ports/{i}/nodePort"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if given != 0 && held.contains(&given) {
            continue;
        }
        let port = if given == 0 {
            let mut found = None;
            for _ in 0..RANDOM_ATTEMPTS {
                let p = rand::rng().random_range(a.ports.0..=a.ports.1);
                let key = format!("{PORT_PREFIX}{p}");
                if claim(reg, key.clone(), new).await? {
                    claimed.push(key);
                    found = Some(p as i64);
                    break;
                }
            }
            found
        } else {
            let key = format!("{PORT_PREFIX}{given}");
            let in_range = given >= a.ports.0 as i64 && given <= a.ports.1 as i64;
            if in_range && claim(reg, key.clone(), new).await? {
                claimed.push(key);
                Some(given)
            } else {
                None
            }
        };
        let Some(port) = port else {
            release_all(reg, &claimed).await;
            return Err(invalid(
                ctx,
                new,
                format!("spec.ports[{i}].nodePort"),
                json!(given),
                "provided port is already allocated".into(),
            ));
        };
        new["spec"]["ports"][i]["nodePort"] = json!(port);
    }
    Ok(claimed)
}

/// After a successful update: release node ports the old Service held and the new one does not.
pub async fn release_dropped(reg: &Registry, ctx: &Ctx, old: &Value, new: &Value) {
    if ctx.info.kind != "Service" || !ctx.info.group.is_empty() {
        return;
    }
    let keep = node_ports(new);
    let dropped: Vec<String> = node_ports(old)
        .into_iter()
        .filter(|p| !keep.contains(p))
        .map(|p| format!("{PORT_PREFIX}{p}"))
        .collect();
    release_all(reg, &dropped).await;
}

/// Create the `kubernetes` Service (first IP of the range, 443 → the server's port) and its
/// Endpoints (127.0.0.1) in `default`, keeping the endpoint port current across restarts.
pub async fn bootstrap(reg: &Registry, port: u16) -> Result<()> {
    let svc_info = kubelite_api::resource::find_builtin("", "v1", "services")
        .ok_or_else(|| ApiError::internal("no services resource"))?;
    let ep_info = kubelite_api::resource::find_builtin("", "v1", "endpoints")
        .ok_or_else(|| ApiError::internal("no endpoints resource"))?;
    let params = registry::Params::default();
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": reg.allocator.first_ip().to_string(), "sessionAffinity": "None",
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
    });
    let ctx = Ctx::new(svc_info, Some("default".into()));
    match registry::create::create(reg, &ctx, &params, svc).await {
        Ok(_) => {}
        Err(e) if e.code == 409 || e.reason == "Invalid" => {}
        Err(e) => return Err(e),
    }
    let ep = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    });
    create_or_replace(reg, ep_info, ep).await?;
    // The EndpointSlice upstream's apiserver maintains next to the Endpoints.
    let slice_info =
        kubelite_api::resource::find_builtin("discovery.k8s.io", "v1", "endpointslices")
            .ok_or_else(|| ApiError::internal("no endpointslices resource"))?;
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "kubernetes",
                                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    create_or_replace(reg, slice_info, slice).await
}

/// Create `obj` in `default`, or replace the stored one (a restart may change the port).
async fn create_or_replace(
    reg: &Registry,
    info: &'static kubelite_api::resource::ResourceInfo,
    obj: Value,
) -> Result<()> {
    let params = registry::Params::default();
    let ctx = Ctx::new(info, Some("default".into()));
    let name = registry::name_of(&obj).to_string();
    match registry::create::create(reg, &ctx, &params, obj.clone()).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => {
            registry::update::update(reg, &ctx, &name, registry::update::Part::Main, &params, obj)
                .await
                .map(|_| ())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let a = Allocator::new("10.96.0.0/12", (30000, 32767)).expect("alloc");
        assert_eq!(a.first_ip().to_string(), "10.96.0.1");
        assert!(a.contains("10.100.3.4".parse().expect("ip")));
        assert!(!a.contains("10.112.0.1".parse().expect("ip")));
        for _ in 0..100 {
            let ip = a.random_ip();
            assert!(a.contains(ip) && ip != a.first_ip());
        }
        assert!(Allocator::new("10.96.0.0", (1, 2)).is_err());
    }
}
