//! The compiled structural schema of one CRD version: built once from `JSONSchemaProps` (patterns
//! precompiled) and then used for validation, pruning, defaulting and list-type look-ups.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool, ValidationRule,
};
use regex::Regex;
use serde_json::Value;
use std::collections::BTreeMap;

/// Why a schema could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// A `pattern` is not a valid regular expression.
    #[error("{path}: invalid pattern {pattern:?}: {source}")]
    Pattern {
        /// Schema path of the pattern.
        path: String,
        /// The pattern as written.
        pattern: String,
        /// The regex error.
        source: Box<regex::Error>,
    },
}

/// `additionalProperties` of a schema node.
#[derive(Clone, Debug, Default)]
pub enum Additional {
    /// Not specified.
    #[default]
    Unset,
    /// `true` or `false`.
    Bool(bool),
    /// A schema every other property must satisfy (map values).
    Schema(Box<Schema>),
}

/// One compiled node of a structural schema.
#[derive(Clone, Debug, Default)]
pub struct Schema {
    pub(crate) type_: Option<String>,
    pub(crate) nullable: bool,
    pub(crate) format: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) int_or_string: bool,
    pub(crate) preserve_unknown_fields: bool,
    pub(crate) embedded_resource: bool,
    pub(crate) properties: BTreeMap<String, Schema>,
    pub(crate) additional: Additional,
    pub(crate) items: Option<Box<Schema>>,
    pub(crate) required: Vec<String>,
    pub(crate) enum_: Vec<Value>,
    pub(crate) minimum: Option<f64>,
    pub(crate) maximum: Option<f64>,
    pub(crate) exclusive_minimum: bool,
    pub(crate) exclusive_maximum: bool,
    pub(crate) multiple_of: Option<f64>,
    pub(crate) min_length: Option<i64>,
    pub(crate) max_length: Option<i64>,
    pub(crate) min_items: Option<i64>,
    pub(crate) max_items: Option<i64>,
    pub(crate) unique_items: bool,
    pub(crate) min_properties: Option<i64>,
    pub(crate) max_properties: Option<i64>,
    pub(crate) pattern: Option<(String, Regex)>,
    pub(crate) all_of: Vec<Schema>,
    pub(crate) any_of: Vec<Schema>,
    pub(crate) one_of: Vec<Schema>,
    pub(crate) not: Option<Box<Schema>>,
    pub(crate) default: Option<Value>,
    pub(crate) list_type: Option<String>,
    pub(crate) list_map_keys: Vec<String>,
    pub(crate) map_type: Option<String>,
    pub(crate) validations: Vec<ValidationRule>,
    pub(crate) compiled_rules: Vec<crate::cel::CompiledRule>,
}

impl Schema {
    /// Compiles a CRD version's `openAPIV3Schema`. Call once per CRD version and cache the result;
    /// a CRD that passed [`crate::validate_crd`] always compiles.
    pub fn compile(props: &JSONSchemaProps) -> Result<Schema, CompileError> {
        compile_at(props, "openAPIV3Schema")
    }

    /// The `type` (`object`, `array`, `string`, `integer`, `number`, `boolean`), if set.
    pub fn type_(&self) -> Option<&str> {
        self.type_.as_deref()
    }

    /// The schema of property or map value `key`: `properties[key]`, else a schema-valued
    /// `additionalProperties`.
    pub fn child(&self, key: &str) -> Option<&Schema> {
        self.properties.get(key).or(match &self.additional {
            Additional::Schema(s) => Some(s.as_ref()),
            _ => None,
        })
    }

    /// The schema of array items.
    pub fn items(&self) -> Option<&Schema> {
        self.items.as_deref()
    }

    /// Follows a path of property names / map keys (array levels are stepped through by
    /// passing `"[]"`) and returns the schema there.
    pub fn at(&self, path: &[&str]) -> Option<&Schema> {
        let mut cur = self;
        for seg in path {
            cur = if *seg == "[]" {
                cur.items()?
            } else {
                cur.child(seg)?
            };
        }
        Some(cur)
    }

    /// The node's `description`.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// `x-kubernetes-list-type` (`atomic`, `set`, `map`) for server-side apply.
    pub fn list_type(&self) -> Option<&str> {
        self.list_type.as_deref()
    }

    /// `x-kubernetes-list-map-keys` for `list-type: map`.
    pub fn list_map_keys(&self) -> &[String] {
        &self.list_map_keys
    }

    /// `x-kubernetes-map-type` (`granular`, `atomic`).
    pub fn map_type(&self) -> Option<&str> {
        self.map_type.as_deref()
    }

    /// `x-kubernetes-preserve-unknown-fields`.
    pub fn preserves_unknown_fields(&self) -> bool {
        self.preserve_unknown_fields
    }

    /// `x-kubernetes-embedded-resource`.
    pub fn is_embedded_resource(&self) -> bool {
        self.embedded_resource
    }

    /// `x-kubernetes-validations` of this node (evaluated by [`crate::cel`]).
    pub fn validation_rules(&self) -> &[ValidationRule] {
        &self.validations
    }

    /// Whether any node of the schema carries `x-kubernetes-validations`.
    pub fn has_validation_rules(&self) -> bool {
        !self.validations.is_empty()
            || self.properties.values().any(Schema::has_validation_rules)
            || matches!(&self.additional, Additional::Schema(s) if s.has_validation_rules())
            || self
                .items
                .as_ref()
                .is_some_and(|s| s.has_validation_rules())
    }
}

fn compile_at(p: &JSONSchemaProps, path: &str) -> Result<Schema, CompileError> {
    let pattern = match &p.pattern {
        Some(pat) => {
            let re = Regex::new(pat).map_err(|e| CompileError::Pattern {
                path: format!("{path}.pattern"),
                pattern: pat.clone(),
                source: Box::new(e),
            })?;
            Some((pat.clone(), re))
        }
        None => None,
    };
    let mut properties = BTreeMap::new();
    for (k, v) in p.properties.iter().flatten() {
        properties.insert(
            k.clone(),
            compile_at(v, &format!("{path}.properties[{k}]"))?,
        );
    }
    let additional = match &p.additional_properties {
        None => Additional::Unset,
        Some(JSONSchemaPropsOrBool::Bool(b)) => Additional::Bool(*b),
        Some(JSONSchemaPropsOrBool::Schema(s)) => Additional::Schema(Box::new(compile_at(
            s,
            &format!("{path}.additionalProperties"),
        )?)),
    };
    let items = match &p.items {
        Some(JSONSchemaPropsOrArray::Schema(s)) => {
            Some(Box::new(compile_at(s, &format!("{path}.items"))?))
        }
        // Tuple items are forbidden for CRDs; validation reports that, so ignore them here.
        Some(JSONSchemaPropsOrArray::Schemas(_)) | None => None,
    };
    let list =
        |v: &Option<Vec<JSONSchemaProps>>, name: &str| -> Result<Vec<Schema>, CompileError> {
            v.iter()
                .flatten()
                .enumerate()
                .map(|(i, s)| compile_at(s, &format!("{path}.{name}[{i}]")))
                .collect()
        };
    Ok(Schema {
        type_: p.type_.clone().filter(|t| !t.is_empty()),
        nullable: p.nullable.unwrap_or(false),
        format: p.format.clone().filter(|f| !f.is_empty()),
        description: p.description.clone(),
        int_or_string: p.x_kubernetes_int_or_string.unwrap_or(false),
        preserve_unknown_fields: p.x_kubernetes_preserve_unknown_fields.unwrap_or(false),
        embedded_resource: p.x_kubernetes_embedded_resource.unwrap_or(false),
        properties,
        additional,
        items,
        required: p.required.clone().unwrap_or_default(),
        enum_: p.enum_.iter().flatten().map(|j| j.0.clone()).collect(),
        minimum: p.minimum,
        maximum: p.maximum,
        exclusive_minimum: p.exclusive_minimum.unwrap_or(false),
        exclusive_maximum: p.exclusive_maximum.unwrap_or(false),
        multiple_of: p.multiple_of,
        min_length: p.min_length,
        max_length: p.max_length,
        min_items: p.min_items,
        max_items: p.max_items,
        unique_items: p.unique_items.unwrap_or(false),
        min_properties: p.min_properties,
        max_properties: p.max_properties,
        pattern,
        all_of: list(&p.all_of, "allOf")?,
        any_of: list(&p.any_of, "anyOf")?,
        one_of: list(&p.one_of, "oneOf")?,
        not: match &p.not {
            Some(n) => Some(Box::new(compile_at(n, &format!("{path}.not"))?)),
            None => None,
        },
        default: p.default.as_ref().map(|j| j.0.clone()),
        list_type: p.x_kubernetes_list_type.clone(),
        list_map_keys: p.x_kubernetes_list_map_keys.clone().unwrap_or_default(),
        map_type: p.x_kubernetes_map_type.clone(),
        validations: p.x_kubernetes_validations.clone().unwrap_or_default(),
        compiled_rules: crate::cel::compile_rules(
            p.x_kubernetes_validations.as_deref().unwrap_or_default(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn props(v: Value) -> JSONSchemaProps {
        serde_json::from_value(v).expect("schema json")
    }

    #[test]
    fn compiles_and_navigates() {
        let s = Schema::compile(&props(json!({
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {
                    "ports": {"type": "array", "x-kubernetes-list-type": "map",
                              "x-kubernetes-list-map-keys": ["port"],
                              "items": {"type": "object", "properties": {"port": {"type": "integer"}}}},
                    "labels": {"type": "object", "x-kubernetes-map-type": "atomic",
                               "additionalProperties": {"type": "string"}}
                }}
            }
        })))
        .expect("compile");
        let ports = s.at(&["spec", "ports"]).expect("ports");
        assert_eq!(ports.list_type(), Some("map"));
        assert_eq!(ports.list_map_keys(), ["port".to_string()]);
        assert_eq!(
            s.at(&["spec", "ports", "[]", "port"])
                .and_then(Schema::type_),
            Some("integer")
        );
        assert_eq!(
            s.at(&["spec", "labels"]).and_then(Schema::map_type),
            Some("atomic")
        );
        assert_eq!(
            s.at(&["spec", "labels", "anykey"]).and_then(Schema::type_),
            Some("string")
        );
        assert!(s.at(&["spec", "nope"]).is_none());
    }

    #[test]
    fn bad_pattern_is_an_error() {
        let err = Schema::compile(&props(json!({"type": "string", "pattern": "(["})))
            .expect_err("bad pattern");
        assert!(err.to_string().contains("openAPIV3Schema.pattern"));
    }
}
