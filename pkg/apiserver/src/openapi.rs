//! OpenAPI documents: the `/openapi/v3` root with content-hashed per-group-version documents,
//! and the `/openapi/v2` swagger 2.0 document (JSON, and protobuf in gnostic's messages) built
//! from the same operations and schemas (see `v2.rs`).
//!
//! What kubectl needs from v3 (see KUBECTL-WIRE.md): every PATCH operation tagged with an
//! `x-kubernetes-group-version-kind` object and a `fieldValidation` query parameter, so that
//! `--validate=strict` delegates validation to the server. PATCH bodies do not list
//! `application/strategic-merge-patch+json`: without published patch metadata kubectl must fall
//! back to its compiled-in strategic merge rules for built-ins. Component schemas for built-in
//! kinds are generated from the Kubernetes API types (openapi/components.json, with descriptions,
//! required fields and list/patch extensions) and tagged with their GVK for `kubectl explain`;
//! kinds without one (custom resources) get a skeleton with an open spec/status.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use kubelite_api::resource::{ResourceInfo, Subresource};
use prost::Message as _;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::discovery::subresource_kind;

pub mod gnostic;
mod schemas;
mod v2;
mod validate;

pub use schemas::schema_name;
use schemas::{
    add_kind_schemas, gvk, kind_schema, meta_schemas, referenced_schemas, schema_ref,
    DELETE_OPTIONS, PATCH, STATUS,
};
pub use validate::{strict_decoding_message, unknown_fields};

/// Content-Type for `/openapi/v2` (no `@`, which Go's mime parser rejects).
pub const V2_PROTOBUF_CONTENT_TYPE: &str =
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// The media type kubectl asks `/openapi/v2` for.
pub const V2_PROTOBUF_ACCEPT: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

/// The server version the documents advertise.
const VERSION: &str = "v1.33.0";

/// The `serverRelativeURL` path of a group version: `api/v1` or `apis/<group>/<version>`.
pub fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Every served group version's path, in table order.
fn gv_paths(resources: &[ResourceInfo]) -> Vec<String> {
    let mut paths: Vec<String> = Vec::new();
    for r in resources {
        let p = gv_path(r.group, r.version);
        if !paths.contains(&p) {
            paths.push(p);
        }
    }
    paths
}

/// The content hash of a document as served (hex sha256 of its compact JSON text).
pub fn doc_hash(doc: &Value) -> String {
    text_hash(&doc.to_string())
}

/// `/openapi/v3`: `{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=H"}, ...}}`.
pub fn v3_root(resources: &[ResourceInfo]) -> Value {
    V3Documents::build(resources).root
}

/// Every `/openapi/v3` document, built and hashed once. Building serialises about a megabyte,
/// so the router should keep one (e.g. in an `Arc`) and rebuild it only when the served
/// resources change (CRDs), rather than calling [`v3_root`]/[`v3_group_version`] per request.
///
/// It also carries the `/openapi/v2` document of the same resources, built on first use (see
/// [`V3Documents::v2`]), so that both are rebuilt together when the CRD set changes.
#[derive(Clone, Debug)]
pub struct V3Documents {
    root: Value,
    /// Group-version path → (content hash, serialised document).
    docs: std::collections::HashMap<String, (String, String)>,
    /// What the v2 document is built from.
    resources: Vec<ResourceInfo>,
    overrides: Map<String, Value>,
    v2: OnceLock<Arc<V2Document>>,
}

impl V3Documents {
    /// Build the root and every group version's document.
    pub fn build(resources: &[ResourceInfo]) -> Self {
        Self::build_with(resources, &Map::new())
    }

    /// [`V3Documents::build`] with component schemas that replace the skeletons of kinds
    /// without generated ones (custom resources: their CRD's schema), keyed by schema name.
    pub fn build_with(resources: &[ResourceInfo], overrides: &Map<String, Value>) -> Self {
        let mut paths = Map::new();
        let mut docs = std::collections::HashMap::new();
        for p in gv_paths(resources) {
            if let Some(doc) = v3_group_version_with(resources, &p, overrides) {
                let text = doc.to_string();
                let hash = text_hash(&text);
                let url = format!("/openapi/v3/{p}?hash={hash}");
                paths.insert(p.clone(), json!({"serverRelativeURL": url}));
                docs.insert(p, (hash, text));
            }
        }
        Self {
            root: json!({"paths": paths}),
            docs,
            resources: resources.to_vec(),
            overrides: overrides.clone(),
            v2: OnceLock::new(),
        }
    }

    /// The `/openapi/v2` document of the same resources, built (tens of milliseconds) on the
    /// first call and shared afterwards.
    pub fn v2(&self) -> Arc<V2Document> {
        self.v2
            .get_or_init(|| Arc::new(V2Document::build(&self.resources, &self.overrides)))
            .clone()
    }

    /// The `/openapi/v2` document if it was already built.
    pub fn v2_built(&self) -> Option<Arc<V2Document>> {
        self.v2.get().cloned()
    }

    /// The `/openapi/v3` document.
    pub fn root(&self) -> &Value {
        &self.root
    }

    /// A group version's document as JSON text (`api/v1`, `apis/apps/v1`; slashes trimmed).
    pub fn document(&self, path: &str) -> Option<&str> {
        self.docs
            .get(path.trim_matches('/'))
            .map(|(_, text)| text.as_str())
    }

    /// The content hash in the document's `serverRelativeURL`, usable as an ETag.
    pub fn hash(&self, path: &str) -> Option<&str> {
        self.docs
            .get(path.trim_matches('/'))
            .map(|(hash, _)| hash.as_str())
    }
}

fn text_hash(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// `/openapi/v3/<path>` where path is `api/v1` or `apis/<group>/<version>`; None when unknown.
pub fn v3_group_version(resources: &[ResourceInfo], path: &str) -> Option<Value> {
    v3_group_version_with(resources, path, &Map::new())
}

/// [`v3_group_version`] with schema overrides (see [`V3Documents::build_with`]).
pub fn v3_group_version_with(
    resources: &[ResourceInfo],
    path: &str,
    overrides: &Map<String, Value>,
) -> Option<Value> {
    let path = path.trim_matches('/');
    let members: Vec<&ResourceInfo> = resources
        .iter()
        .filter(|r| gv_path(r.group, r.version) == path)
        .collect();
    let first = members.first()?;
    let (paths, schemas) = paths_and_schemas(members.iter().copied(), overrides, Value::clone);
    let title = if first.group.is_empty() {
        "Kubernetes".to_string()
    } else {
        format!("Kubernetes {}", first.group)
    };
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": title, "version": VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// The operations of `resources` and every component schema they reference (kinds, their
/// subresource kinds, meta types). `overrides` are the published schemas of kinds without
/// generated ones (custom resources), keyed by schema name; `convert` puts one into this
/// document's dialect (as is for v3, swagger 2.0 for v2).
fn paths_and_schemas<'a>(
    resources: impl IntoIterator<Item = &'a ResourceInfo>,
    overrides: &Map<String, Value>,
    convert: impl Fn(&Value) -> Value,
) -> (Map<String, Value>, Map<String, Value>) {
    let mut paths = Map::new();
    let mut skeletons = Map::new();
    let mut kinds = Vec::new();
    for r in resources {
        resource_paths(r, &mut paths);
        add_kind_schemas(r, &mut skeletons);
        let name = schema_name(r.group, r.version, r.kind);
        if let Some(schema) = overrides.get(&name) {
            skeletons.insert(name.clone(), convert(schema));
        }
        kinds.push(name);
        for s in &r.subresources {
            let (g, v, k) = subresource_kind(r, s);
            if has_object_body(r, s) && (g != r.group || v != r.version || k != r.kind) {
                skeletons
                    .entry(schema_name(&g, &v, &k))
                    .or_insert_with(|| kind_schema(&g, &v, &k));
            }
        }
    }
    meta_schemas(&mut skeletons);
    let schemas = referenced_schemas(&paths, kinds, &skeletons);
    (paths, schemas)
}

/// `/openapi/v2` as JSON: the swagger 2.0 document of `resources` (every operation, with GVK
/// and `fieldValidation` on PATCH, and every schema they and the kinds reference).
pub fn v2_json(resources: &[ResourceInfo]) -> Value {
    v2::document(resources, &Map::new())
}

/// [`v2_json`] with the schemas of custom resources (see [`V3Documents::build_with`]).
pub fn v2_json_with(resources: &[ResourceInfo], overrides: &Map<String, Value>) -> Value {
    v2::document(resources, overrides)
}

/// The `/openapi/v2` document as served: JSON and gnostic protobuf, each with its ETag.
#[derive(Debug)]
pub struct V2Document {
    /// Compact JSON text.
    pub json: Bytes,
    /// Quoted hex sha256 of `json`.
    pub json_etag: String,
    /// `openapi.v2.Document` protobuf.
    pub protobuf: Bytes,
    /// Quoted hex sha256 of `protobuf`.
    pub protobuf_etag: String,
}

impl V2Document {
    /// Build and encode both forms.
    pub fn build(resources: &[ResourceInfo], overrides: &Map<String, Value>) -> Self {
        let start = std::time::Instant::now();
        let doc = v2::document(resources, overrides);
        let json = Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
        let json_done = start.elapsed();
        let protobuf = Bytes::from(gnostic::document(&doc).encode_to_vec());
        tracing::debug!(
            json_ms = json_done.as_secs_f64() * 1e3,
            protobuf_ms = (start.elapsed() - json_done).as_secs_f64() * 1e3,
            json_bytes = json.len(),
            protobuf_bytes = protobuf.len(),
            "built the /openapi/v2 document"
        );
        Self {
            json_etag: etag(&json),
            json,
            protobuf_etag: etag(&protobuf),
            protobuf,
        }
    }
}

/// The ETag of a body: its quoted hex sha256 (as discovery's).
pub fn etag(body: &[u8]) -> String {
    format!("\"{:x}\"", Sha256::digest(body))
}

fn base_path(r: &ResourceInfo) -> String {
    format!("/{}", gv_path(r.group, r.version))
}

fn collection_path(r: &ResourceInfo) -> String {
    if r.namespaced() {
        format!("{}/namespaces/{{namespace}}/{}", base_path(r), r.plural)
    } else {
        format!("{}/{}", base_path(r), r.plural)
    }
}

fn item_path(r: &ResourceInfo) -> String {
    format!("{}/{{name}}", collection_path(r))
}

/// Whether a subresource takes or returns an object (status, scale, binding, eviction) rather
/// than a stream (log, exec, attach, portforward) or a special verb (finalize).
fn has_object_body(r: &ResourceInfo, s: &Subresource) -> bool {
    s.name != "finalize" && (s.kind.is_some() || s.name == "status") && {
        let (_, _, k) = subresource_kind(r, s);
        !k.ends_with("Options")
    }
}

/// `createAppsV1NamespacedDeploymentScale`-style operation ids.
fn operation_id(verb: &str, r: &ResourceInfo, suffix: &str) -> String {
    let mut group = String::new();
    for part in r
        .group
        .split('.')
        .filter(|p| !p.is_empty() && *p != "k8s" && *p != "io")
    {
        group.push_str(&capitalize(part));
    }
    if group.is_empty() {
        group.push_str("Core");
    }
    let scope = if r.namespaced() { "Namespaced" } else { "" };
    format!(
        "{verb}{group}{}{scope}{}{}",
        capitalize(r.version),
        r.kind,
        capitalize(suffix)
    )
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn path_param(name: &str, description: &str) -> Value {
    json!({
        "name": name,
        "in": "path",
        "description": description,
        "required": true,
        "schema": {"type": "string", "uniqueItems": true},
    })
}

fn query_param(name: &str, ty: &str, description: &str) -> Value {
    json!({
        "name": name,
        "in": "query",
        "description": description,
        "schema": {"type": ty, "uniqueItems": true},
    })
}

fn pretty_param() -> Value {
    query_param(
        "pretty",
        "string",
        "If 'true', then the output is pretty printed.",
    )
}

/// dryRun, fieldManager and fieldValidation: the parameters of every write.
fn write_params() -> Vec<Value> {
    vec![
        query_param("dryRun", "string", "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed"),
        query_param("fieldManager", "string", "fieldManager is a name associated with the actor or entity that is making these changes."),
        query_param("fieldValidation", "string", "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore - Warn - Strict"),
    ]
}

fn list_params() -> Vec<Value> {
    vec![
        query_param("allowWatchBookmarks", "boolean", "allowWatchBookmarks requests watch events with type \"BOOKMARK\"."),
        query_param("continue", "string", "The continue option should be set when retrieving more results from the server."),
        query_param("fieldSelector", "string", "A selector to restrict the list of returned objects by their fields. Defaults to everything."),
        query_param("labelSelector", "string", "A selector to restrict the list of returned objects by their labels. Defaults to everything."),
        query_param("limit", "integer", "limit is a maximum number of responses to return for a list call."),
        query_param("resourceVersion", "string", "resourceVersion sets a constraint on what resource versions a request may be served from."),
        query_param("resourceVersionMatch", "string", "resourceVersionMatch determines how resourceVersion is applied to list calls."),
        query_param("sendInitialEvents", "boolean", "sendInitialEvents=true may be set together with watch=true."),
        query_param("timeoutSeconds", "integer", "Timeout for the list/watch call."),
        query_param("watch", "boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications."),
    ]
}

fn delete_params() -> Vec<Value> {
    vec![
        query_param("dryRun", "string", "When present, indicates that modifications should not be persisted."),
        query_param("gracePeriodSeconds", "integer", "The duration in seconds before the object should be deleted."),
        query_param("orphanDependents", "boolean", "Deprecated: please use the PropagationPolicy."),
        query_param("propagationPolicy", "string", "Whether and how garbage collection will be performed. Acceptable values are: 'Orphan', 'Background', 'Foreground'."),
    ]
}

fn json_content(schema: &str) -> Value {
    let s = schema_ref(schema);
    json!({
        "application/json": {"schema": s},
        "application/yaml": {"schema": s},
        "application/vnd.kubernetes.protobuf": {"schema": s},
    })
}

/// One operation. `body` is the request body schema, `response` the 200 schema.
#[allow(clippy::too_many_arguments)]
fn operation(
    action: &str,
    id: String,
    description: String,
    tag: &str,
    params: Vec<Value>,
    body: Option<Value>,
    response: &str,
    gvk: &Value,
) -> Value {
    let mut op = Map::new();
    op.insert("tags".into(), json!([tag]));
    op.insert("description".into(), Value::String(description));
    op.insert("operationId".into(), Value::String(id));
    if !params.is_empty() {
        op.insert("parameters".into(), Value::Array(params));
    }
    if let Some(body) = body {
        op.insert(
            "requestBody".into(),
            json!({"content": body, "required": true}),
        );
    }
    let mut responses = Map::new();
    responses.insert(
        "200".into(),
        json!({"description": "OK", "content": json_content(response)}),
    );
    if matches!(action, "post" | "put" | "patch") {
        responses.insert(
            "201".into(),
            json!({"description": "Created", "content": json_content(response)}),
        );
    }
    if action == "post" || action == "delete" {
        responses.insert(
            "202".into(),
            json!({"description": "Accepted", "content": json_content(response)}),
        );
    }
    responses.insert("401".into(), json!({"description": "Unauthorized"}));
    op.insert("responses".into(), Value::Object(responses));
    op.insert("x-kubernetes-action".into(), Value::from(action));
    op.insert("x-kubernetes-group-version-kind".into(), gvk.clone());
    Value::Object(op)
}

fn patch_body() -> Value {
    let s = schema_ref(PATCH);
    json!({
        "application/json-patch+json": {"schema": s},
        "application/merge-patch+json": {"schema": s},
        "application/apply-patch+yaml": {"schema": s},
    })
}

fn tag_of(r: &ResourceInfo) -> String {
    let group = if r.group.is_empty() {
        "core".to_string()
    } else {
        r.group.split('.').next().unwrap_or(r.group).to_string()
    };
    format!("{group}_{}", r.version)
}

/// The object and scope parameters of a path: `{namespace}` for namespaced resources.
fn scope_params(r: &ResourceInfo, with_name: bool, noun: &str) -> Vec<Value> {
    let mut params = Vec::new();
    if with_name {
        params.push(path_param("name", &format!("name of the {noun}")));
    }
    if r.namespaced() {
        params.push(path_param(
            "namespace",
            "object name and auth scope, such as for teams and projects",
        ));
    }
    params.push(pretty_param());
    params
}

fn resource_paths(r: &ResourceInfo, paths: &mut Map<String, Value>) {
    let tag = tag_of(r);
    let kind_schema = schema_name(r.group, r.version, r.kind);
    let list_schema = schema_name(r.group, r.version, &r.list_kind());
    let gvk = gvk(r.group, r.version, r.kind);
    let kind = r.kind;

    let mut collection = Map::new();
    collection.insert(
        "get".into(),
        operation(
            "list",
            operation_id("list", r, ""),
            format!("list or watch objects of kind {kind}"),
            &tag,
            list_params(),
            None,
            &list_schema,
            &gvk,
        ),
    );
    collection.insert(
        "post".into(),
        operation(
            "post",
            operation_id("create", r, ""),
            format!("create a {kind}"),
            &tag,
            write_params(),
            Some(json_content(&kind_schema)),
            &kind_schema,
            &gvk,
        ),
    );
    let mut dc_params = delete_params();
    dc_params.extend(
        list_params()
            .into_iter()
            .filter(|p| p["name"] != "allowWatchBookmarks" && p["name"] != "watch"),
    );
    collection.insert(
        "delete".into(),
        operation(
            "deletecollection",
            operation_id("deleteCollection", r, ""),
            format!("delete collection of {kind}"),
            &tag,
            dc_params,
            Some(json_content(DELETE_OPTIONS)),
            STATUS,
            &gvk,
        ),
    );
    collection.insert(
        "parameters".into(),
        Value::Array(scope_params(r, false, kind)),
    );
    paths.insert(collection_path(r), Value::Object(collection));

    let mut item = Map::new();
    item.insert(
        "get".into(),
        operation(
            "get",
            operation_id("read", r, ""),
            format!("read the specified {kind}"),
            &tag,
            Vec::new(),
            None,
            &kind_schema,
            &gvk,
        ),
    );
    item.insert(
        "put".into(),
        operation(
            "put",
            operation_id("replace", r, ""),
            format!("replace the specified {kind}"),
            &tag,
            write_params(),
            Some(json_content(&kind_schema)),
            &kind_schema,
            &gvk,
        ),
    );
    item.insert(
        "delete".into(),
        operation(
            "delete",
            operation_id("delete", r, ""),
            format!("delete a {kind}"),
            &tag,
            delete_params(),
            Some(json_content(DELETE_OPTIONS)),
            STATUS,
            &gvk,
        ),
    );
    let mut patch_params = write_params();
    patch_params.push(query_param("force", "boolean", "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people."));
    item.insert(
        "patch".into(),
        operation(
            "patch",
            operation_id("patch", r, ""),
            format!("partially update the specified {kind}"),
            &tag,
            patch_params.clone(),
            Some(patch_body()),
            &kind_schema,
            &gvk,
        ),
    );
    item.insert(
        "parameters".into(),
        Value::Array(scope_params(r, true, kind)),
    );
    paths.insert(item_path(r), Value::Object(item));

    if r.namespaced() {
        let all = format!("{}/{}", base_path(r), r.plural);
        let op = operation(
            "list",
            format!("{}ForAllNamespaces", operation_id("list", r, "")).replace("Namespaced", ""),
            format!("list or watch objects of kind {kind}"),
            &tag,
            list_params(),
            None,
            &list_schema,
            &gvk,
        );
        paths.insert(all, json!({"get": op, "parameters": [pretty_param()]}));
    }

    for s in r.subresources.iter().filter(|s| has_object_body(r, s)) {
        let (g, v, k) = subresource_kind(r, s);
        let sub_gvk = self::gvk(&g, &v, &k);
        let sub_schema = schema_name(&g, &v, &k);
        let path = format!("{}/{}", item_path(r), s.name);
        let noun = format!("{k} of {kind}");
        let mut ops = Map::new();
        let id_suffix = s.name;
        for verb in s.verbs {
            let (key, op) = match *verb {
                "get" => (
                    "get",
                    operation(
                        "get",
                        operation_id("read", r, id_suffix),
                        format!("read {} of the specified {kind}", s.name),
                        &tag,
                        Vec::new(),
                        None,
                        &sub_schema,
                        &sub_gvk,
                    ),
                ),
                "update" => (
                    "put",
                    operation(
                        "put",
                        operation_id("replace", r, id_suffix),
                        format!("replace {} of the specified {kind}", s.name),
                        &tag,
                        write_params(),
                        Some(json_content(&sub_schema)),
                        &sub_schema,
                        &sub_gvk,
                    ),
                ),
                "patch" => (
                    "patch",
                    operation(
                        "patch",
                        operation_id("patch", r, id_suffix),
                        format!("partially update {} of the specified {kind}", s.name),
                        &tag,
                        patch_params.clone(),
                        Some(patch_body()),
                        &sub_schema,
                        &sub_gvk,
                    ),
                ),
                "create" => (
                    "post",
                    operation(
                        "post",
                        operation_id("create", r, id_suffix),
                        format!("create {} of a {kind}", s.name),
                        &tag,
                        write_params(),
                        Some(json_content(&sub_schema)),
                        &sub_schema,
                        &sub_gvk,
                    ),
                ),
                _ => continue,
            };
            ops.insert(key.into(), op);
        }
        if ops.is_empty() {
            continue;
        }
        ops.insert(
            "parameters".into(),
            Value::Array(scope_params(r, true, &noun)),
        );
        paths.insert(path, Value::Object(ops));
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod v2_tests;
