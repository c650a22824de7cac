//! The `Website` custom resource: what a user asks for (`spec`) and what the operator reports
//! (`status`), with the CRD generated from these types by kube's `CustomResource` derive.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A static web site: `replicas` busybox httpd pods serving `message` as `index.html`.
// Two printer columns of type string read to clippy as a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "examples.kubelite.dev",
    version = "v1alpha1",
    kind = "Website",
    namespaced,
    status = "WebsiteStatus",
    shortname = "ws",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas"
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Message", type_ = "string", json_path = ".spec.message"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct WebsiteSpec {
    /// How many pods serve the site.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,
    /// The page's text.
    #[schemars(length(min = 1, max = 4096))]
    pub message: String,
    /// Container image with a busybox `httpd` (default `kubelite/busybox:v1`, built by
    /// `hack/images`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

fn default_replicas() -> i32 {
    1
}

/// What the operator observed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebsiteStatus {
    /// The `metadata.generation` the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pods of the Deployment (the scale subresource's `statusReplicasPath`).
    #[serde(default)]
    pub replicas: i32,
    /// Available pods of the Deployment.
    #[serde(default)]
    pub available_replicas: i32,
    /// The URL of the site inside the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Conditions; `Ready` is `True` once every requested pod is available.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// A status condition in the shape of `metav1.Condition` (k8s-openapi's type has no schemars
/// derive without a feature that would rebuild it for the whole workspace).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Machine-readable CamelCase reason.
    pub reason: String,
    /// Human-readable details.
    #[serde(default)]
    pub message: String,
    /// When `status` last changed (RFC 3339).
    pub last_transition_time: String,
    /// The generation this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Website {
    /// The image to run.
    pub fn image(&self) -> &str {
        self.spec.image.as_deref().unwrap_or("kubelite/busybox:v1")
    }

    /// The condition of `type_`, if reported.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn crd_has_status_scale_and_columns() {
        let crd = Website::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("websites.examples.kubelite.dev")
        );
        let v = &crd.spec.versions[0];
        let sub = v.subresources.as_ref().expect("subresources");
        assert!(sub.status.is_some());
        let scale = sub.scale.as_ref().expect("scale");
        assert_eq!(scale.spec_replicas_path, ".spec.replicas");
        let cols: Vec<_> = v
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(cols, ["Replicas", "Ready", "Message", "Age"]);
    }
}
