//! An example operator written with `kube-runtime`'s `Controller`, run against kubelite: a
//! `Website` custom resource (replicas and a message) reconciled into a ConfigMap (the page),
//! a Deployment (busybox httpd serving it) and a Service, all owned by the Website.
//!
//! - [`crd`]: the `Website` type, derived with kube's `CustomResource` and schemars.
//! - [`controller`]: the reconciler (server-side apply of the children, status conditions, a
//!   finalizer, events) and [`run`], which drives it until a shutdown signal.
//!
//! The binary (`src/main.rs`) runs it against the cluster of the current kubeconfig
//! (`kubelite up` writes one); `tests/website.rs` runs it against `kubelite-envtest`.

pub mod controller;
pub mod crd;

pub use controller::{run, Error, Result, DIRECTORY, FIELD_MANAGER, FINALIZER};
pub use crd::{Website, WebsiteSpec, WebsiteStatus};
