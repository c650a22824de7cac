//! CustomResourceDefinition logic for the apiserver, without IO: everything needed to accept CRDs
//! and serve their custom resources, over `k8s-openapi`'s `apiextensions/v1` types and
//! `serde_json::Value`.
//!
//! What the apiserver calls when:
//! - **CRD create**: [`default_crd`] on the decoded JSON (singular, listKind, conversion
//!   strategy), decode into `CustomResourceDefinition`, [`prepare_crd_for_create`]
//!   (`status.storedVersions`), then [`validate_crd`]. **CRD update**: [`default_crd`], decode,
//!   [`prepare_crd_for_update`], then [`validate_crd_update`] (immutable group/plural, scope/kind
//!   once Established, stored versions). Map errors with [`invalid_message`] and
//!   [`FieldError::reason`]/[`FieldError::body`] into a 422 `Status`.
//! - **Serving a CRD version**: compile its `openAPIV3Schema` once with [`Schema::compile`] (regexes
//!   and CEL programs are compiled here; cache the `Schema`, it is `Send + Sync`, per CRD
//!   resourceVersion).
//! - **Custom resource create/update** (body decoded to `Value`): [`Schema::prune`] (returns the
//!   dropped paths for `unknown field` warnings), [`Schema::apply_defaults`], then
//!   [`Schema::validate`] and [`cel::validate_rules`] (pass the stored object as `old` on update).
//! - **Custom resource read** (get/list/watch from storage): [`Schema::apply_defaults`] (upstream
//!   defaults on read too).
//! - **Table output** (`kubectl get`): [`printer_columns`] and [`Column::cell`].
//! - **`/scale`**: [`scale::get_scale`] / [`scale::set_replicas`] with the version's
//!   `subresources.scale`.
//! - **Server-side apply**: [`Schema::at`] with [`Schema::list_type`], [`Schema::list_map_keys`],
//!   [`Schema::map_type`].
//! - **OpenAPI v3** (`kubectl explain`): [`openapi::components`] for the group-version document.
//!
//! Invariant: no IO, no clock (callers pass `now`), no dependency on other kubelite crates.

pub mod cel;
mod crd;
mod error;
mod format;
pub mod jsonpath;
mod names;
pub mod openapi;
mod printer;
mod prune;
pub mod scale;
mod schema;
mod structural;
mod validate;

pub use crd::{
    default_crd, prepare_crd_for_create, prepare_crd_for_update, storage_version, validate_crd,
    validate_crd_update,
};
pub use error::{invalid_message, ErrorKind, FieldError};
pub use printer::{printer_columns, Column};
pub use schema::{Additional, CompileError, Schema};
