//! Checks on a CRD version's `openAPIV3Schema` at CRD create/update: the OpenAPI features CRDs
//! forbid and the structural-schema rules (types everywhere, junctors carry only value
//! validations, metadata only name/generateName), with upstream's messages.

use crate::error::{FieldError, Path};
use crate::schema::Schema;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};

/// Where a node sits, which decides the wording of the "type required" error.
#[derive(Clone, Copy, PartialEq)]
enum Ctx {
    Root,
    Property,
    Items,
    AdditionalProperties,
}

/// All problems with one version's schema; `path` is `spec.versions[i].schema.openAPIV3Schema`.
pub(crate) fn validate_schema(props: &JSONSchemaProps, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let p = Path::new(path);
    if props.type_.as_deref() != Some("object") {
        errs.push(FieldError::invalid(
            p.child("type").as_str(),
            props.type_.clone().unwrap_or_default(),
            "must be object at the root",
        ));
    }
    for (flag, name) in [
        (props.nullable, "nullable"),
        (
            props.x_kubernetes_int_or_string,
            "x-kubernetes-int-or-string",
        ),
        (
            props.x_kubernetes_embedded_resource,
            "x-kubernetes-embedded-resource",
        ),
    ] {
        if flag == Some(true) {
            errs.push(FieldError::invalid(
                p.child(name).as_str(),
                true,
                "must be false at the root",
            ));
        }
    }
    if let Some(meta) = props.properties.as_ref().and_then(|m| m.get("metadata")) {
        errs.extend(validate_metadata(
            meta,
            &p.child("properties").key("metadata"),
        ));
    }
    node(props, &p, Ctx::Root, &mut errs);
    errs
}

fn validate_metadata(meta: &JSONSchemaProps, p: &Path) -> Vec<FieldError> {
    let only_name = JSONSchemaProps {
        type_: meta.type_.clone(),
        properties: meta.properties.clone(),
        ..Default::default()
    };
    let mut errs = Vec::new();
    let props_ok = meta
        .properties
        .iter()
        .flatten()
        .all(|(k, _)| k == "name" || k == "generateName");
    if *meta != only_name || !props_ok || meta.type_.as_deref() != Some("object") {
        errs.push(FieldError::forbidden(
            p.as_str(),
            "must not specify anything other than name and generateName, but metadata is implicitly specified",
        ));
    }
    for (k, v) in meta.properties.iter().flatten() {
        if (k == "name" || k == "generateName") && v.type_.as_deref() != Some("string") {
            errs.push(FieldError::forbidden(
                p.child("properties").key(k).child("type").as_str(),
                "must be string",
            ));
        }
    }
    errs
}

fn node(s: &JSONSchemaProps, p: &Path, ctx: Ctx, errs: &mut Vec<FieldError>) {
    unsupported(s, p, errs);
    let int_or_string = s.x_kubernetes_int_or_string == Some(true);
    let preserve = s.x_kubernetes_preserve_unknown_fields == Some(true);
    let ty = s.type_.as_deref().filter(|t| !t.is_empty());
    match ty {
        None if !int_or_string && !preserve => {
            let msg = match ctx {
                Ctx::Root => "must not be empty at the root",
                Ctx::Property => "must not be empty for specified object fields",
                Ctx::Items => "must not be empty for specified array items",
                Ctx::AdditionalProperties => "must not be empty for specified additionalProperties",
            };
            errs.push(FieldError::required(p.child("type").as_str(), msg));
        }
        Some(t) if int_or_string => errs.push(FieldError::invalid(
            p.child("type").as_str(),
            t,
            "must be empty if x-kubernetes-int-or-string is true",
        )),
        Some(t) if !["object", "array", "string", "integer", "number", "boolean"].contains(&t) => {
            if t == "null" {
                errs.push(FieldError::forbidden(
                    p.child("type").as_str(),
                    "type cannot be set to null",
                ));
            } else {
                errs.push(FieldError::not_supported(
                    p.child("type").as_str(),
                    t,
                    &["array", "boolean", "integer", "number", "object", "string"]
                        .map(String::from),
                ));
            }
        }
        _ => {}
    }
    if s.x_kubernetes_preserve_unknown_fields == Some(false) {
        errs.push(FieldError::invalid(
            p.child("x-kubernetes-preserve-unknown-fields").as_str(),
            false,
            "must be true or undefined",
        ));
    }
    if s.x_kubernetes_embedded_resource == Some(true) {
        if ty != Some("object") {
            errs.push(FieldError::invalid(
                p.child("type").as_str(),
                ty.unwrap_or_default(),
                "must be object if x-kubernetes-embedded-resource is true",
            ));
        }
        if s.properties.as_ref().is_none_or(|m| m.is_empty()) && !preserve {
            errs.push(FieldError::required(
                p.child("properties").as_str(),
                "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
            ));
        }
    }
    if ty == Some("array") && s.items.is_none() {
        errs.push(FieldError::required(
            p.child("items").as_str(),
            "must be specified",
        ));
    }
    list_and_map_type(s, ty, p, errs);
    if let Some(pat) = &s.pattern {
        if let Err(e) = regex::Regex::new(pat) {
            errs.push(FieldError::invalid(
                p.child("pattern").as_str(),
                pat.as_str(),
                format!("must be a valid regular expression, but isn't: {e}"),
            ));
        }
    }
    if let Some(d) = &s.default {
        check_default(s, &d.0, p, errs);
    }
    for (i, r) in s.x_kubernetes_validations.iter().flatten().enumerate() {
        if let Some(e) = crate::cel::compile_error(&r.rule) {
            errs.push(FieldError::invalid(
                p.child("x-kubernetes-validations")
                    .index(i)
                    .child("rule")
                    .as_str(),
                r.rule.as_str(),
                format!("compilation failed: {e}"),
            ));
        }
        let Some(m) = r.message_expression.as_deref() else {
            continue;
        };
        let path = p.child("x-kubernetes-validations").index(i);
        if m.trim().is_empty() {
            errs.push(FieldError::required(
                path.child("messageExpression").as_str(),
                "messageExpression must be non-empty if specified",
            ));
        } else if let Some(e) = crate::cel::compile_error(m) {
            errs.push(FieldError::invalid(
                path.child("messageExpression").as_str(),
                m,
                format!("messageExpression compilation failed: {e}"),
            ));
        }
    }
    match &s.additional_properties {
        Some(JSONSchemaPropsOrBool::Bool(false)) => errs.push(FieldError::forbidden(
            p.child("additionalProperties").as_str(),
            "additionalProperties cannot be set to false",
        )),
        Some(JSONSchemaPropsOrBool::Schema(a)) => {
            if s.properties.as_ref().is_some_and(|m| !m.is_empty()) {
                errs.push(FieldError::forbidden(
                    p.child("additionalProperties").as_str(),
                    "additionalProperties and properties are mutual exclusive",
                ));
            }
            node(
                a,
                &p.child("additionalProperties"),
                Ctx::AdditionalProperties,
                errs,
            );
        }
        _ => {}
    }
    for (k, v) in s.properties.iter().flatten() {
        node(v, &p.child("properties").key(k), Ctx::Property, errs);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = &s.items {
        node(items, &p.child("items"), Ctx::Items, errs);
    }
    for (name, list) in [
        ("allOf", &s.all_of),
        ("anyOf", &s.any_of),
        ("oneOf", &s.one_of),
    ] {
        for (i, sub) in list.iter().flatten().enumerate() {
            if int_or_string && is_int_or_string_alternative(sub) {
                continue;
            }
            value_validation(sub, &p.child(name).index(i), errs);
        }
    }
    if let Some(n) = &s.not {
        value_validation(n, &p.child("not"), errs);
    }
}

/// With `x-kubernetes-int-or-string`, upstream allows `anyOf: [{type: integer}, {type: string}]`
/// (also nested in `allOf`) although junctors otherwise may not carry types.
fn is_int_or_string_alternative(s: &JSONSchemaProps) -> bool {
    let bare = |t: &str| {
        *s == JSONSchemaProps {
            type_: Some(t.to_string()),
            ..Default::default()
        }
    };
    bare("integer")
        || bare("string")
        || s.any_of.as_ref().is_some_and(|alts| {
            alts.iter().all(|a| {
                a.type_
                    .as_deref()
                    .is_some_and(|t| t == "integer" || t == "string")
                    && *a
                        == JSONSchemaProps {
                            type_: a.type_.clone(),
                            ..Default::default()
                        }
            })
        })
}

/// OpenAPI features CRD schemas never support, anywhere.
fn unsupported(s: &JSONSchemaProps, p: &Path, errs: &mut Vec<FieldError>) {
    let checks = [
        (s.id.is_some(), "id", "id is not supported"),
        (
            s.additional_items.is_some(),
            "additionalItems",
            "additionalItems is not supported",
        ),
        (
            s.pattern_properties.as_ref().is_some_and(|m| !m.is_empty()),
            "patternProperties",
            "patternProperties is not supported",
        ),
        (
            s.definitions.as_ref().is_some_and(|m| !m.is_empty()),
            "definitions",
            "definitions is not supported",
        ),
        (
            s.dependencies.is_some(),
            "dependencies",
            "dependencies is not supported",
        ),
        (s.ref_path.is_some(), "$ref", "$ref is not supported"),
        (
            matches!(s.items, Some(JSONSchemaPropsOrArray::Schemas(_))),
            "items",
            "items must be a schema object and not an array",
        ),
        (
            s.unique_items == Some(true),
            "uniqueItems",
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ),
    ];
    for (bad, field, msg) in checks {
        if bad {
            errs.push(FieldError::forbidden(p.child(field).as_str(), msg));
        }
    }
}

fn list_and_map_type(s: &JSONSchemaProps, ty: Option<&str>, p: &Path, errs: &mut Vec<FieldError>) {
    if let Some(lt) = &s.x_kubernetes_list_type {
        let lp = p.child("x-kubernetes-list-type");
        if !["atomic", "set", "map"].contains(&lt.as_str()) {
            errs.push(FieldError::not_supported(
                lp.as_str(),
                lt.as_str(),
                &["atomic", "set", "map"].map(String::from),
            ));
        } else if ty != Some("array") {
            errs.push(FieldError::invalid(
                lp.as_str(),
                lt.as_str(),
                "must only be used on type array",
            ));
        }
        if lt == "map"
            && s.x_kubernetes_list_map_keys
                .as_ref()
                .is_none_or(Vec::is_empty)
        {
            errs.push(FieldError::required(
                p.child("x-kubernetes-list-map-keys").as_str(),
                "must not be empty if x-kubernetes-list-type is map",
            ));
        }
    }
    if s.x_kubernetes_list_map_keys
        .as_ref()
        .is_some_and(|k| !k.is_empty())
        && s.x_kubernetes_list_type.as_deref() != Some("map")
    {
        errs.push(FieldError::forbidden(
            p.child("x-kubernetes-list-map-keys").as_str(),
            "must only be set if x-kubernetes-list-type is map",
        ));
    }
    if let Some(mt) = &s.x_kubernetes_map_type {
        if !["granular", "atomic"].contains(&mt.as_str()) {
            errs.push(FieldError::not_supported(
                p.child("x-kubernetes-map-type").as_str(),
                mt.as_str(),
                &["granular", "atomic"].map(String::from),
            ));
        }
    }
}

/// A default must itself be valid against the node it sits on.
fn check_default(
    s: &JSONSchemaProps,
    default: &serde_json::Value,
    p: &Path,
    errs: &mut Vec<FieldError>,
) {
    let Ok(compiled) = Schema::compile(s) else {
        return; // the pattern error is reported on its own
    };
    let dp = p.child("default");
    for e in compiled.accepts(default, dp.as_str()) {
        errs.push(e);
    }
}

/// Inside `allOf`/`anyOf`/`oneOf`/`not` only value validations are structural.
fn value_validation(s: &JSONSchemaProps, p: &Path, errs: &mut Vec<FieldError>) {
    unsupported(s, p, errs);
    let empty_msg = "must be empty to be structural";
    let undefined_msg = "must be undefined to be structural";
    let false_msg = "must be false to be structural";
    let checks: [(bool, &str, &str); 11] = [
        (
            s.type_.as_ref().is_some_and(|t| !t.is_empty()),
            "type",
            empty_msg,
        ),
        (
            s.description.as_ref().is_some_and(|t| !t.is_empty()),
            "description",
            empty_msg,
        ),
        (
            s.title.as_ref().is_some_and(|t| !t.is_empty()),
            "title",
            empty_msg,
        ),
        (s.default.is_some(), "default", undefined_msg),
        (
            s.additional_properties.is_some(),
            "additionalProperties",
            undefined_msg,
        ),
        (s.nullable == Some(true), "nullable", false_msg),
        (
            s.x_kubernetes_preserve_unknown_fields.is_some(),
            "x-kubernetes-preserve-unknown-fields",
            false_msg,
        ),
        (
            s.x_kubernetes_embedded_resource.is_some(),
            "x-kubernetes-embedded-resource",
            false_msg,
        ),
        (
            s.x_kubernetes_int_or_string.is_some(),
            "x-kubernetes-int-or-string",
            false_msg,
        ),
        (
            s.x_kubernetes_list_type.is_some(),
            "x-kubernetes-list-type",
            undefined_msg,
        ),
        (
            s.x_kubernetes_map_type.is_some(),
            "x-kubernetes-map-type",
            undefined_msg,
        ),
    ];
    for (bad, field, msg) in checks {
        if bad {
            errs.push(FieldError::forbidden(p.child(field).as_str(), msg));
        }
    }
    for (k, v) in s.properties.iter().flatten() {
        value_validation(v, &p.child("properties").key(k), errs);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = &s.items {
        value_validation(items, &p.child("items"), errs);
    }
    for (name, list) in [
        ("allOf", &s.all_of),
        ("anyOf", &s.any_of),
        ("oneOf", &s.one_of),
    ] {
        for (i, sub) in list.iter().flatten().enumerate() {
            value_validation(sub, &p.child(name).index(i), errs);
        }
    }
    if let Some(n) = &s.not {
        value_validation(n, &p.child("not"), errs);
    }
}
