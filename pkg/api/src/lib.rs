//! The Kubernetes API model without IO: the resource table, one strategy per kind, metadata
//! rules, label and field selectors, patch application, and printer columns. Everything here is
//! a pure function over `serde_json::Value` (typed with `k8s-openapi` inside where it helps), so
//! the apiserver's generic store stays kind-agnostic and all of it is unit-testable.

pub mod apply;
pub mod kinds;
pub mod meta;
pub mod patch;
pub mod resource;
pub mod selector;
pub mod strategy;
