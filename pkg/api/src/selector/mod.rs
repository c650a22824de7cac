//! Label and field selectors, parsed and matched as upstream apimachinery does
//! (`k8s.io/apimachinery/pkg/labels` and `pkg/fields`), including its error messages, so a
//! bad `?labelSelector=` or `?fieldSelector=` gets the same 400 text a real apiserver sends.

mod fields;
mod labels;
mod parser;
mod validation;

pub use fields::{escape_field_value, FieldOp, FieldRequirement, FieldSelector};
pub use labels::{LabelOp, LabelRequirement, LabelSelector};

/// A selector that could not be parsed or converted. `Display` is the message the server puts
/// into its 400 `BadRequest` Status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);
