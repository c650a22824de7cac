//! API discovery for the controllers that act on every resource (namespace deletion, garbage
//! collection): the preferred version of every group, tolerating groups that fail to answer so
//! one broken aggregated API does not stop the rest (upstream's ErrGroupDiscoveryFailed).

use futures::future::join_all;
use kube::api::ApiResource;
use kube::core::GroupVersion;
use kube::discovery::{verbs, ApiCapabilities, Scope};

use crate::Result;

/// What one discovery pass found.
#[derive(Clone, Debug, Default)]
pub struct Discovered {
    /// Every top-level resource (no subresources) of each group's preferred version.
    pub resources: Vec<(ApiResource, ApiCapabilities)>,
    /// Group versions whose resource list could not be read, with the error.
    pub failed: Vec<(String, String)>,
}

impl Discovered {
    /// Namespaced resources that support every verb in `needed`.
    pub fn namespaced_with(&self, needed: &[&str]) -> Vec<(ApiResource, ApiCapabilities)> {
        self.resources
            .iter()
            .filter(|(_, caps)| caps.scope == Scope::Namespaced)
            .filter(|(_, caps)| needed.iter().all(|v| caps.supports_operation(v)))
            .cloned()
            .collect()
    }

    /// Resources of any scope the garbage collector can track (list + watch + delete).
    pub fn collectable(&self) -> Vec<(ApiResource, ApiCapabilities)> {
        self.resources
            .iter()
            .filter(|(_, c)| {
                [verbs::LIST, verbs::WATCH, verbs::DELETE]
                    .iter()
                    .all(|v| c.supports_operation(v))
            })
            .cloned()
            .collect()
    }

    /// Upstream's ErrGroupDiscoveryFailed text, if any group failed.
    pub fn failure_message(&self) -> Option<String> {
        if self.failed.is_empty() {
            return None;
        }
        let groups: Vec<String> = self
            .failed
            .iter()
            .map(|(gv, err)| format!("{gv}: {err}"))
            .collect();
        Some(format!(
            "unable to retrieve the complete list of server APIs: {}",
            groups.join(", ")
        ))
    }
}

/// Discovers the preferred version of every group. Fails only when the group lists themselves
/// cannot be read; a group whose resources cannot be read is reported in
/// [`Discovered::failed`].
pub async fn discover(client: &kube::Client) -> Result<Discovered> {
    let mut gvs = Vec::new();
    let core = client.list_core_api_versions().await?;
    if let Some(v) = core.versions.first() {
        gvs.push(GroupVersion::gv("", v));
    }
    for g in client.list_api_groups().await?.groups {
        let version = g
            .preferred_version
            .map(|p| p.version)
            .or_else(|| g.versions.first().map(|v| v.version.clone()));
        if let Some(v) = version {
            gvs.push(GroupVersion::gv(&g.name, &v));
        }
    }
    let answers = join_all(
        gvs.iter()
            .map(|gv| kube::discovery::pinned_group(client, gv)),
    )
    .await;
    let mut out = Discovered::default();
    for (gv, answer) in gvs.iter().zip(answers) {
        match answer {
            Ok(group) => out.resources.extend(group.recommended_resources()),
            Err(err) => out.failed.push((gv.api_version(), err.to_string())),
        }
    }
    Ok(out)
}

/// `resource.group` (or just `resource` for the core group), as upstream's GroupResource prints.
pub fn group_resource(ar: &ApiResource) -> String {
    if ar.group.is_empty() {
        ar.plural.clone()
    } else {
        format!("{}.{}", ar.plural, ar.group)
    }
}
