//! The resource table: what the server serves for each built-in kind (group, version, kind,
//! plural, scope, short names, categories, subresources) and how objects map to storage keys.

/// Where an object lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Namespaced,
    Cluster,
}

/// A subresource served under `<resource>/<name>/<sub>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subresource {
    /// e.g. `status`, `scale`, `binding`, `log`.
    pub name: &'static str,
    /// The kind the subresource takes and returns, as `(group, version, kind)`; `None` for
    /// streaming subresources (log, exec, attach, portforward) that have no object kind.
    pub kind: Option<(&'static str, &'static str, &'static str)>,
    /// Verbs as discovery advertises them.
    pub verbs: &'static [&'static str],
}

/// One served resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group, `""` for core.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// Lower-case plural, the URL segment (`deployments`).
    pub plural: &'static str,
    /// Lower-case singular (`deployment`).
    pub singular: &'static str,
    pub scope: Scope,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub verbs: &'static [&'static str],
    pub subresources: Vec<Subresource>,
}

/// The verbs of an ordinary read-write resource.
pub const STANDARD_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

impl ResourceInfo {
    /// `apiVersion` as it appears in objects: `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The list kind, e.g. `PodList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    pub fn namespaced(&self) -> bool {
        self.scope == Scope::Namespaced
    }

    pub fn subresource(&self, name: &str) -> Option<&Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    /// `group/resource` for the storage prefix and messages; the core group is omitted
    /// (`pods`, `deployments.apps`).
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The storage prefix of every object of this resource, ending in `/`:
    /// `/registry/<group-resource>/`. All namespaces' objects lie under it.
    pub fn prefix(&self) -> String {
        format!("/registry/{}/", self.group_resource())
    }

    /// The storage prefix of one namespace's objects (namespaced resources only).
    pub fn namespace_prefix(&self, namespace: &str) -> String {
        format!("{}{}/", self.prefix(), namespace)
    }

    /// The storage key of one object. `namespace` is ignored for cluster-scoped resources.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match (self.scope, namespace) {
            (Scope::Namespaced, Some(ns)) => format!("{}{}/{}", self.prefix(), ns, name),
            _ => format!("{}{}", self.prefix(), name),
        }
    }
}

fn status() -> Subresource {
    Subresource {
        name: "status",
        kind: None,
        verbs: STATUS_VERBS,
    }
}

fn scale() -> Subresource {
    Subresource {
        name: "scale",
        kind: Some(("autoscaling", "v1", "Scale")),
        verbs: STATUS_VERBS,
    }
}

fn stream(name: &'static str, verbs: &'static [&'static str]) -> Subresource {
    Subresource {
        name,
        kind: None,
        verbs,
    }
}

#[allow(clippy::too_many_arguments)]
fn res(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    scope: Scope,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    mut subresources: Vec<Subresource>,
) -> ResourceInfo {
    // Status subresources return the parent kind.
    for s in &mut subresources {
        if s.name == "status" {
            s.kind = Some((group, version, kind));
        }
    }
    let singular: &'static str = Box::leak(kind.to_ascii_lowercase().into_boxed_str());
    ResourceInfo {
        group,
        version,
        kind,
        plural,
        singular,
        scope,
        short_names,
        categories,
        verbs: STANDARD_VERBS,
        subresources,
    }
}

/// The names and scope of a custom resource (from its CustomResourceDefinition).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CustomNames {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub scope: Scope,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status: bool,
    pub scale: bool,
}

impl CustomNames {
    /// The served resource. The strings are leaked: a resource table entry lives as long as
    /// the process (callers build one per distinct CRD version, not per request).
    pub fn leak(&self) -> ResourceInfo {
        fn leak(s: &str) -> &'static str {
            Box::leak(s.to_string().into_boxed_str())
        }
        fn leak_all(v: &[String]) -> &'static [&'static str] {
            Box::leak(
                v.iter()
                    .map(|s| leak(s))
                    .collect::<Vec<_>>()
                    .into_boxed_slice(),
            )
        }
        let (group, version, kind) = (leak(&self.group), leak(&self.version), leak(&self.kind));
        let mut subresources = Vec::new();
        if self.status {
            subresources.push(Subresource {
                name: "status",
                kind: Some((group, version, kind)),
                verbs: STATUS_VERBS,
            });
        }
        if self.scale {
            subresources.push(scale());
        }
        ResourceInfo {
            group,
            version,
            kind,
            plural: leak(&self.plural),
            singular: leak(&self.singular),
            scope: self.scope,
            short_names: leak_all(&self.short_names),
            categories: leak_all(&self.categories),
            verbs: STANDARD_VERBS,
            subresources,
        }
    }
}

/// Every built-in resource kubelite serves, in discovery order.
pub fn builtin_resources() -> &'static [ResourceInfo] {
    use std::sync::OnceLock;
    static TABLE: OnceLock<Vec<ResourceInfo>> = OnceLock::new();
    TABLE.get_or_init(|| {
        use Scope::*;
        const ALL: &[&str] = &["all"];
        vec![
            res(
                "",
                "v1",
                "Namespace",
                "namespaces",
                Cluster,
                &["ns"],
                &[],
                vec![status(), stream("finalize", &["update"])],
            ),
            res(
                "",
                "v1",
                "Pod",
                "pods",
                Namespaced,
                &["po"],
                ALL,
                vec![
                    status(),
                    Subresource {
                        name: "binding",
                        kind: Some(("", "v1", "Binding")),
                        verbs: &["create"],
                    },
                    Subresource {
                        name: "eviction",
                        kind: Some(("policy", "v1", "Eviction")),
                        verbs: &["create"],
                    },
                    stream("log", &["get"]),
                    stream("exec", &["create", "get"]),
                    stream("attach", &["create", "get"]),
                    stream("portforward", &["create", "get"]),
                ],
            ),
            res(
                "",
                "v1",
                "Node",
                "nodes",
                Cluster,
                &["no"],
                &[],
                vec![status()],
            ),
            res(
                "",
                "v1",
                "Service",
                "services",
                Namespaced,
                &["svc"],
                ALL,
                vec![status()],
            ),
            res(
                "",
                "v1",
                "Endpoints",
                "endpoints",
                Namespaced,
                &["ep"],
                &[],
                vec![],
            ),
            res(
                "",
                "v1",
                "ConfigMap",
                "configmaps",
                Namespaced,
                &["cm"],
                &[],
                vec![],
            ),
            res("", "v1", "Secret", "secrets", Namespaced, &[], &[], vec![]),
            res(
                "",
                "v1",
                "ServiceAccount",
                "serviceaccounts",
                Namespaced,
                &["sa"],
                &[],
                vec![],
            ),
            res(
                "",
                "v1",
                "Event",
                "events",
                Namespaced,
                &["ev"],
                &[],
                vec![],
            ),
            res(
                "",
                "v1",
                "ReplicationController",
                "replicationcontrollers",
                Namespaced,
                &["rc"],
                ALL,
                vec![status(), scale()],
            ),
            res(
                "apps",
                "v1",
                "Deployment",
                "deployments",
                Namespaced,
                &["deploy"],
                ALL,
                vec![status(), scale()],
            ),
            res(
                "apps",
                "v1",
                "ReplicaSet",
                "replicasets",
                Namespaced,
                &["rs"],
                ALL,
                vec![status(), scale()],
            ),
            res(
                "apps",
                "v1",
                "DaemonSet",
                "daemonsets",
                Namespaced,
                &["ds"],
                ALL,
                vec![status()],
            ),
            res(
                "apps",
                "v1",
                "StatefulSet",
                "statefulsets",
                Namespaced,
                &["sts"],
                ALL,
                vec![status(), scale()],
            ),
            res(
                "batch",
                "v1",
                "Job",
                "jobs",
                Namespaced,
                &[],
                ALL,
                vec![status()],
            ),
            res(
                "discovery.k8s.io",
                "v1",
                "EndpointSlice",
                "endpointslices",
                Namespaced,
                &[],
                &[],
                vec![],
            ),
            res(
                "coordination.k8s.io",
                "v1",
                "Lease",
                "leases",
                Namespaced,
                &[],
                &[],
                vec![],
            ),
            res(
                "events.k8s.io",
                "v1",
                "Event",
                "events",
                Namespaced,
                &["ev"],
                &[],
                vec![],
            ),
            res(
                "apiextensions.k8s.io",
                "v1",
                "CustomResourceDefinition",
                "customresourcedefinitions",
                Cluster,
                &["crd", "crds"],
                &["api-extensions"],
                vec![status()],
            ),
        ]
    })
}

/// Look a built-in resource up by group, version and plural.
pub fn find_builtin(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    builtin_resources()
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_prefixes() {
        let pods = find_builtin("", "v1", "pods").expect("pods");
        assert_eq!(
            pods.key(Some("default"), "web"),
            "/registry/pods/default/web"
        );
        assert!(pods
            .key(Some("default"), "web")
            .starts_with(&pods.namespace_prefix("default")));
        let deploy = find_builtin("apps", "v1", "deployments").expect("deployments");
        assert_eq!(deploy.prefix(), "/registry/deployments.apps/");
        assert_eq!(deploy.api_version(), "apps/v1");
        let nodes = find_builtin("", "v1", "nodes").expect("nodes");
        assert_eq!(nodes.key(Some("ignored"), "n1"), "/registry/nodes/n1");
        assert_eq!(
            deploy.subresource("status").and_then(|s| s.kind),
            Some(("apps", "v1", "Deployment"))
        );
    }
}
