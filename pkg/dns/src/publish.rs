//! Publishing this server as `kube-system/kube-dns`: a selector-less Service on the configured
//! ClusterIP, plus an Endpoints and an EndpointSlice pointing at this process, so the proxy
//! routes `ClusterIP:53` here the way it does for a CoreDNS Deployment.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tracing::{info, warn};

use crate::{Error, Result};

/// Namespace and name of the published Service (what kubelets put in pods' resolv.conf).
pub const NAMESPACE: &str = "kube-system";
/// The Service name.
pub const SERVICE: &str = "kube-dns";
/// Our EndpointSlice's name; one per published server.
pub const SLICE: &str = "kube-dns-kubelite";
/// The managed-by value that keeps the EndpointSlice controllers' hands off our slice.
const MANAGED_BY: &str = "kubelite-dns";

/// Where the DNS server is published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    /// The kube-dns Service's ClusterIP (must be inside the apiserver's service CIDR).
    pub cluster_ip: IpAddr,
    /// The address the proxy should send DNS traffic to (this server's reachable IP).
    pub advertise_ip: IpAddr,
    /// The port this server listens on at `advertise_ip`.
    pub port: u16,
}

fn ports(port: u16) -> Value {
    json!([
        {"name": "dns", "port": port, "protocol": "UDP"},
        {"name": "dns-tcp", "port": port, "protocol": "TCP"},
    ])
}

fn service_body(p: &Publish) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": SERVICE, "namespace": NAMESPACE, "labels": service_labels()},
        "spec": {
            "clusterIP": p.cluster_ip.to_string(),
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": p.port},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": p.port},
            ],
        },
    })
}

/// The labels kubeadm puts on kube-dns (tools and dashboards select on `k8s-app`).
fn service_labels() -> Value {
    json!({"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"})
}

fn endpoints_body(p: &Publish) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": SERVICE, "namespace": NAMESPACE, "labels": {"k8s-app": "kube-dns"}},
        "subsets": [{"addresses": [{"ip": p.advertise_ip.to_string()}], "ports": ports(p.port)}],
    })
}

fn slice_body(p: &Publish) -> Value {
    let family = if p.advertise_ip.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    };
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": SLICE, "namespace": NAMESPACE, "labels": {
            "kubernetes.io/service-name": SERVICE,
            "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
            "k8s-app": "kube-dns",
        }},
        "addressType": family,
        "endpoints": [{"addresses": [p.advertise_ip.to_string()],
            "conditions": {"ready": true, "serving": true, "terminating": false}}],
        "ports": ports(p.port),
    })
}

/// Creates or updates the Service, Endpoints and EndpointSlice. Idempotent; run again to repair
/// edits. An existing Service keeps its ClusterIP (immutable) and selector, with a warning.
pub async fn ensure(client: &kube::Client, p: &Publish) -> Result<()> {
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    match services.get_opt(SERVICE).await? {
        None => {
            create(&services, service_body(p)).await?;
            info!(cluster_ip = %p.cluster_ip, "created service kube-system/kube-dns");
        }
        Some(existing) => {
            let spec = existing.spec.unwrap_or_default();
            if spec.cluster_ip.as_deref() != Some(p.cluster_ip.to_string().as_str()) {
                warn!(existing = ?spec.cluster_ip, wanted = %p.cluster_ip,
                    "kube-dns service exists with another clusterIP; keeping it");
            }
            if spec.selector.is_some_and(|s| !s.is_empty()) {
                warn!("kube-dns service has a selector; its endpoints controller will fight ours");
            }
            let body = service_body(p);
            let patch = json!({"metadata": {"labels": body["metadata"]["labels"]},
                "spec": {"ports": body["spec"]["ports"]}});
            services
                .patch(SERVICE, &PatchParams::default(), &Patch::Merge(patch))
                .await?;
        }
    }
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), NAMESPACE);
    upsert(&endpoints, SERVICE, endpoints_body(p), &["subsets"]).await?;

    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    let body = slice_body(p);
    if let Some(existing) = slices.get_opt(SLICE).await? {
        // addressType is immutable: a family change needs a new slice.
        if existing.address_type != body["addressType"] {
            slices.delete(SLICE, &DeleteParams::default()).await?;
        }
    }
    upsert(&slices, SLICE, body, &["endpoints", "ports"]).await?;
    Ok(())
}

/// Takes this server out of rotation on shutdown: the slice goes, the Endpoints keep no
/// addresses. The Service stays, so its ClusterIP is not reallocated to someone else.
pub async fn withdraw(client: &kube::Client) -> Result<()> {
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    match slices.delete(SLICE, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), NAMESPACE);
    let patch = Patch::Merge(json!({"subsets": null}));
    match endpoints
        .patch(SERVICE, &PatchParams::default(), &patch)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn create<K>(api: &Api<K>, body: Value) -> Result<()>
where
    K: kube::Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(body).map_err(Error::Encode)?;
    api.create(&PostParams::default(), &obj).await?;
    Ok(())
}

/// Creates `name` from `body`, or merge-patches the listed top-level fields (and labels) of the
/// existing object (a merge patch replaces lists whole, which is what we want here).
async fn upsert<K>(api: &Api<K>, name: &str, body: Value, fields: &[&str]) -> Result<()>
where
    K: kube::Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    if api.get_opt(name).await?.is_none() {
        return create(api, body).await;
    }
    let mut patch = json!({"metadata": {"labels": body["metadata"]["labels"]}});
    for f in fields {
        patch[*f] = body[*f].clone();
    }
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is a test failure
mod tests {
    use super::*;

    #[test]
    fn bodies_decode_into_typed_objects() {
        let p = Publish {
            cluster_ip: "10.96.0.10".parse().unwrap(),
            advertise_ip: "127.0.0.1".parse().unwrap(),
            port: 5353,
        };
        let svc: Service = serde_json::from_value(service_body(&p)).unwrap();
        let spec = svc.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.10"));
        assert!(spec.selector.is_none());
        let ports: Vec<_> = spec
            .ports
            .unwrap()
            .into_iter()
            .map(|p| (p.name.unwrap(), p.port, p.protocol.unwrap()))
            .collect();
        assert_eq!(
            ports,
            [
                ("dns".into(), 53, "UDP".into()),
                ("dns-tcp".into(), 53, "TCP".into())
            ]
        );
        let slice: EndpointSlice = serde_json::from_value(slice_body(&p)).unwrap();
        assert_eq!(slice.address_type, "IPv4");
        assert_eq!(slice.endpoints[0].addresses, ["127.0.0.1"]);
        assert_eq!(slice.ports.unwrap()[0].port, Some(5353));
        let ep: Endpoints = serde_json::from_value(endpoints_body(&p)).unwrap();
        assert_eq!(
            ep.subsets.unwrap()[0].addresses.as_ref().unwrap()[0].ip,
            "127.0.0.1"
        );
    }
}
