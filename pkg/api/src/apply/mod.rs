//! Server-side apply with structured-merge-diff semantics, without IO: field sets and their
//! `FieldsV1` encoding ([`FieldSet`]), per-kind list and map types ([`TypeInfo`]), merging an
//! applied configuration into the live object with ownership and conflicts ([`apply`]), and
//! the ownership bookkeeping of every other write ([`update_managed_fields`], and
//! [`created_managed_fields_json`] for the common create in one walk, written as JSON).
//!
//! The apiserver reads the live object's entries with [`ManagedFields::from_object`], calls
//! [`apply`] or [`update_managed_fields`], and writes the result back with
//! [`ManagedFields::write_to_object`].

mod compare;
mod created;
mod fieldset;
mod managed;
mod merge;
mod ops;
#[cfg(test)]
mod tests;
mod typeinfo;
mod walk;

pub use created::created_managed_fields_json;
pub use fieldset::{FieldSet, Path, PathElement};
pub use managed::{stripped_fields, ManagedFields, ManagedFieldsEntry, Operation};
pub use ops::{
    apply, field_set, update_managed_fields, Conflict, Conflicts, Writer, BEFORE_FIRST_APPLY,
};
pub use typeinfo::{ListKey, ListType, MapType, SchemaResolver, TypeInfo};

/// Why `metadata.managedFields` could not be decoded. Upstream answers a request that sets
/// invalid managed fields with 400; stored garbage is reset instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldsError {
    /// A `fieldsV1` tree that is not valid.
    #[error("invalid fieldsV1: {0}")]
    InvalidFieldsV1(String),
    /// An entry that is not a valid `ManagedFieldsEntry`.
    #[error("invalid managedFields entry: {0}")]
    InvalidEntry(String),
    /// Two entries for the same writer.
    #[error("duplicate managedFields entry for {0}")]
    DuplicateManager(String),
}

/// Why an apply failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// 409 Conflict: other managers own fields the configuration changes (retry with force).
    /// The Status carries one `FieldManagerConflict` cause per conflict
    /// ([`Conflicts::causes`]).
    #[error("{0}")]
    Conflicts(Conflicts),
    /// 422 Invalid: the configuration does not fit the schema (an associative-list item
    /// without its key, duplicate keys, `metadata.managedFields` set).
    #[error("{0}")]
    Invalid(String),
}

impl ApplyError {
    /// The HTTP status code upstream answers with.
    pub fn code(&self) -> u16 {
        match self {
            ApplyError::Conflicts(_) => 409,
            ApplyError::Invalid(_) => 422,
        }
    }
}
