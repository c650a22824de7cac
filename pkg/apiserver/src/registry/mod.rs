//! The generic store ("registry"): one code path for every kind over `Arc<dyn Storage>`, with the
//! per-kind [`Strategy`] hooks. Verbs live in one file each; this module holds what they share:
//! the request context, object (de)serialization and metadata helpers.

pub mod binding;
pub mod create;
pub mod delete;
pub mod events;
pub mod list;
pub mod subresources;
pub mod update;
pub mod watch;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use kubelite_api::resource::ResourceInfo;
use kubelite_api::strategy::Strategy;
use kubelite_storage::{KeyValue, Storage};
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::error::{ApiError, Result, Target};
use crate::metrics::Metrics;
use crate::services::Allocator;
use crate::watch_cache::WatchCache;

/// How often a write that lost a compare-and-swap race is retried before answering 409.
pub const MAX_ATTEMPTS: usize = 200;

/// Back off between conflict retries: none for the first few, then a short random pause so
/// many writers to one object do not starve each other.
pub async fn conflict_pause(attempt: usize) {
    if attempt < 3 {
        return;
    }
    let cap = (attempt as u64).min(20);
    let ms = rand::Rng::random_range(&mut rand::rng(), 1..=cap);
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

/// Shared state of every request: storage, watch caches, allocators.
pub struct Registry {
    /// Every read and write goes here; it is `write_marks` (a decorator over the backend).
    pub storage: Arc<dyn Storage>,
    /// The revisions of this server's last writes under marked prefixes (namespaces).
    pub write_marks: Arc<crate::write_marks::WriteMarks>,
    /// One watch cache per resource, keyed by storage prefix (custom resources add theirs
    /// while the server runs).
    pub caches: std::sync::RwLock<HashMap<String, Arc<WatchCache>>>,
    /// The resources served from CustomResourceDefinitions.
    pub crds: crate::crd::Dynamic,
    pub allocator: Allocator,
    /// Wakes the namespace-lifecycle task when a namespace starts terminating.
    pub namespace_kick: Arc<Notify>,
    /// The server deletes a terminating namespace's content itself (standalone use); when
    /// false, a namespace controller does and the server only removes the emptied namespace.
    pub namespace_content_deletion: bool,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    /// How often watches with `allowWatchBookmarks` get a BOOKMARK.
    pub bookmark_interval: std::time::Duration,
}

impl Registry {
    /// The watch cache of the resource stored under `prefix`.
    pub fn cache(&self, prefix: &str) -> Option<Arc<WatchCache>> {
        self.caches
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(prefix)
            .cloned()
    }

    /// Every served resource: the built-in ones, then the custom ones, in discovery order.
    pub fn resources(&self) -> Arc<Vec<ResourceInfo>> {
        self.crds.all_resources()
    }
}

/// What one request is about: the resource, its strategy, and the namespace from the URL.
#[derive(Clone)]
pub struct Ctx {
    pub info: &'static ResourceInfo,
    pub strategy: Arc<dyn Strategy>,
    /// `None` for cluster-scoped resources and all-namespaces lists.
    pub namespace: Option<String>,
    /// Stored objects may carry another version's apiVersion (custom resources with several
    /// versions, conversion None): answers rewrite it to this resource's.
    pub rewrite_api_version: bool,
}

impl Ctx {
    /// The context of the built-in `info`; `namespace` is dropped for cluster-scoped resources.
    pub fn new(info: &'static ResourceInfo, namespace: Option<String>) -> Self {
        Self::with_strategy(info, crate::model::strategy(info), namespace)
    }

    /// The context of a resource whose strategy is known (custom resources).
    pub fn with_strategy(
        info: &'static ResourceInfo,
        strategy: Arc<dyn Strategy>,
        namespace: Option<String>,
    ) -> Self {
        Self {
            info,
            strategy,
            namespace: if info.namespaced() { namespace } else { None },
            rewrite_api_version: false,
        }
    }

    /// The resource whose storage holds this one's objects (itself, except events.k8s.io
    /// Events, which live with the core ones).
    pub fn stored(&self) -> &'static ResourceInfo {
        events::storage_info(self.info)
    }

    /// Storage key of the object `name`.
    pub fn key(&self, name: &str) -> String {
        self.stored().key(self.namespace.as_deref(), name)
    }

    /// Storage prefix of the collection this request addresses.
    pub fn collection_prefix(&self) -> String {
        match &self.namespace {
            Some(ns) => self.stored().namespace_prefix(ns),
            None => self.stored().prefix(),
        }
    }

    /// The key of this resource's watch cache.
    pub fn cache_prefix(&self) -> String {
        self.stored().prefix()
    }

    /// A stored object as this resource shows it (converted for events.k8s.io).
    pub fn present(&self, stored: Value) -> Value {
        if events::is_events_api(self.info) {
            events::from_core(&stored)
        } else if self.rewrite_api_version {
            let mut obj = stored;
            if let Some(o) = obj.as_object_mut() {
                o.insert("apiVersion".into(), Value::String(self.info.api_version()));
            }
            obj
        } else {
            stored
        }
    }

    /// Whether this resource shows stored objects converted (events.k8s.io over core events).
    pub fn converts(&self) -> bool {
        self.rewrite_api_version || events::is_events_api(self.info)
    }

    /// Decode a stored object and show it as this resource.
    pub fn decode(&self, kv: &KeyValue) -> Result<Value> {
        Ok(self.present(decode_kv(kv)?))
    }

    /// Serialize this resource's object in its stored form.
    pub fn encode(&self, obj: &Value) -> Result<Bytes> {
        if events::is_events_api(self.info) {
            encode(&events::to_core(obj))
        } else {
            encode(obj)
        }
    }

    /// The error target for the object `name`.
    pub fn target(&self, name: &str) -> Target {
        Target::new(self.info, name)
    }
}

/// Query parameters, first value wins except where noted.
#[derive(Clone, Debug, Default)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// The first value of query parameter `k`.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    /// Whether query parameter `k` is `true` or `1`.
    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true") | Some("1"))
    }

    /// `dryRun=All` (any non-empty value is treated as All; upstream rejects others).
    pub fn dry_run(&self) -> bool {
        self.get("dryRun").is_some_and(|v| !v.is_empty())
    }

    /// Carry the request's `User-Agent` along (under a key no client uses), so writes
    /// without `?fieldManager=` can name their manager after the client, as upstream does.
    pub fn with_user_agent(mut self, user_agent: Option<&str>) -> Self {
        if let Some(ua) = user_agent {
            self.0.push((USER_AGENT_PARAM.into(), ua.into()));
        }
        self
    }

    /// The field manager of a write: `?fieldManager=`, else upstream's `prefixFromUserAgent`:
    /// the user agent before its first `/` (`kubectl/v1.33.0 (linux/amd64) ...` is
    /// `kubectl`), printable characters only, at most 128 bytes.
    pub fn field_manager(&self) -> String {
        if let Some(m) = self.get("fieldManager").filter(|m| !m.is_empty()) {
            return m.to_string();
        }
        let ua = self.get(USER_AGENT_PARAM).unwrap_or("");
        let prefix = ua.split('/').next().unwrap_or("");
        let mut out = String::new();
        for c in prefix.chars().filter(|c| !c.is_control()) {
            if out.len() + c.len_utf8() > FIELD_MANAGER_MAX_LEN {
                break;
            }
            out.push(c);
        }
        out
    }
}

/// The [`Params`] key [`Params::with_user_agent`] stores the user agent under. A client that
/// spells it in its query (`%00user-agent`) only renames its own manager, which
/// `?fieldManager=` can do anyway.
pub const USER_AGENT_PARAM: &str = "\u{0}user-agent";

/// Upstream's `FieldManagerMaxLength`.
const FIELD_MANAGER_MAX_LEN: usize = 128;

/// A successful answer: code, object, `Warning` headers. The object is held as a value, as
/// JSON, or both (then the same object).
#[derive(Debug)]
pub struct Reply {
    pub code: u16,
    /// The object as a value; `None` when only `encoded` holds it.
    body: Option<Value>,
    pub warnings: Vec<String>,
    /// The object already encoded as JSON (the stored bytes with their resourceVersion), so
    /// the answer need not serialize it again.
    encoded: Option<Bytes>,
}

impl Reply {
    /// `code` with `body` and `warnings`.
    pub fn new(code: u16, body: Value, warnings: Vec<String>) -> Self {
        Self {
            code,
            body: Some(body),
            warnings,
            encoded: None,
        }
    }

    /// 200 with `body` and no warnings.
    pub fn ok(body: Value) -> Self {
        Self::new(200, body, Vec::new())
    }

    /// The object as a value, decoded from its JSON when only that holds it.
    pub fn into_value(self) -> Result<Value> {
        match (self.body, self.encoded) {
            (Some(v), _) => Ok(v),
            (None, Some(json)) => serde_json::from_slice(&json)
                .map_err(|e| ApiError::internal(format!("decoding an answer: {e}"))),
            (None, None) => Err(ApiError::internal("an answer without an object")),
        }
    }

    /// The object as JSON, encoded here unless it already is.
    pub fn json(&self) -> Result<Bytes> {
        match (&self.encoded, &self.body) {
            (Some(json), _) => Ok(json.clone()),
            (None, Some(v)) => serde_json::to_vec(v)
                .map(Bytes::from)
                .map_err(|e| ApiError::internal(format!("encoding an answer: {e}"))),
            (None, None) => Err(ApiError::internal("an answer without an object")),
        }
    }
}

/// The answer to a write that stored `encoded` (the encoding of `obj`, without
/// resourceVersion) as `kv`: `obj` with its new resourceVersion, and the same JSON spliced
/// from the stored bytes so the answer is not serialized twice. Kinds whose stored form is
/// converted on read are decoded instead.
pub fn stored_reply(
    ctx: &Ctx,
    code: u16,
    mut obj: Value,
    encoded: &Bytes,
    kv: &KeyValue,
    warnings: Vec<String>,
) -> Result<Reply> {
    if ctx.converts() {
        return Ok(Reply::new(code, ctx.decode(kv)?, warnings));
    }
    set_rv(&mut obj, kv.mod_revision);
    let encoded = list::stamp_rv(encoded, kv.mod_revision).map(Bytes::from);
    Ok(Reply {
        code,
        body: Some(obj),
        warnings,
        encoded,
    })
}

/// The answer to a write that stored `encoded` as `kv`, as JSON only: the stored bytes with
/// their resourceVersion (decoded when they cannot be stamped, or when the kind's stored form
/// is converted on read).
pub fn stored_json_reply(
    ctx: &Ctx,
    code: u16,
    encoded: &Bytes,
    kv: &KeyValue,
    warnings: Vec<String>,
) -> Result<Reply> {
    let stamped = if ctx.converts() {
        None
    } else {
        list::stamp_rv(encoded, kv.mod_revision)
    };
    match stamped {
        Some(json) => Ok(Reply {
            code,
            body: None,
            warnings,
            encoded: Some(Bytes::from(json)),
        }),
        None => Ok(Reply::new(code, ctx.decode(kv)?, warnings)),
    }
}

/// Decode a stored object and stamp its resourceVersion.
pub fn decode_kv(kv: &KeyValue) -> Result<Value> {
    let mut v: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("corrupt object at {}: {e}", kv.key)))?;
    set_rv(&mut v, kv.mod_revision);
    Ok(v)
}

/// Serialize for storage; the resourceVersion is never stored (it is the mod revision).
pub fn encode(obj: &Value) -> Result<Bytes> {
    let strip = obj
        .get("metadata")
        .and_then(Value::as_object)
        .is_some_and(|m| m.contains_key("resourceVersion") || m.contains_key("selfLink"));
    // Copy only when something must be stripped: creates have already dropped both fields.
    let encoded = if strip {
        let mut obj = obj.clone();
        if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            m.remove("selfLink");
        }
        serde_json::to_vec(&obj)
    } else {
        serde_json::to_vec(obj)
    };
    encoded
        .map(Bytes::from)
        .map_err(|e| ApiError::internal(format!("encoding object: {e}")))
}

/// [`encode`] of a new object whose `metadata.managedFields` is the JSON text `managed`
/// (from [`crate::model::track_create`]): the list is copied into the bytes rather than built
/// as a value. It goes where `obj`'s `managedFields` placeholder is, or last in `metadata`
/// (where the map would put a new key), so the bytes equal encoding the object with the list
/// as a value.
pub fn encode_with_managed(obj: &Value, managed: &[u8]) -> Result<Bytes> {
    let Value::Object(root) = obj else {
        return Err(ApiError::internal("object is not a map"));
    };
    let fail = |e: serde_json::Error| ApiError::internal(format!("encoding object: {e}"));
    let mut out = Vec::with_capacity(2048 + managed.len());
    out.push(b'{');
    for (i, (k, v)) in root.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, k).map_err(fail)?;
        out.push(b':');
        match v {
            Value::Object(meta) if k == "metadata" => write_meta(&mut out, meta, managed)?,
            _ => serde_json::to_writer(&mut out, v).map_err(fail)?,
        }
    }
    out.push(b'}');
    Ok(Bytes::from(out))
}

/// `metadata` for [`encode_with_managed`]: never-stored fields left out, as [`encode`] does.
fn write_meta(
    out: &mut Vec<u8>,
    meta: &serde_json::Map<String, Value>,
    managed: &[u8],
) -> Result<()> {
    let fail = |e: serde_json::Error| ApiError::internal(format!("encoding object: {e}"));
    out.push(b'{');
    let mut first = true;
    let mut placed = false;
    let stored = meta
        .iter()
        .filter(|(k, _)| *k != "resourceVersion" && *k != "selfLink");
    for (k, v) in stored {
        if !first {
            out.push(b',');
        }
        first = false;
        serde_json::to_writer(&mut *out, k).map_err(fail)?;
        out.push(b':');
        if k == "managedFields" {
            out.extend_from_slice(managed);
            placed = true;
        } else {
            serde_json::to_writer(&mut *out, v).map_err(fail)?;
        }
    }
    if !placed {
        if !first {
            out.push(b',');
        }
        out.extend_from_slice(b"\"managedFields\":");
        out.extend_from_slice(managed);
    }
    out.push(b'}');
    Ok(())
}

/// Stamp `metadata.resourceVersion`.
pub fn set_rv(obj: &mut Value, rev: i64) {
    if let Some(m) = meta_mut(obj) {
        m.insert("resourceVersion".into(), json!(rev.to_string()));
    }
}

/// `metadata` as a mutable map, created when missing.
pub fn meta_mut(obj: &mut Value) -> Option<&mut serde_json::Map<String, Value>> {
    let o = obj.as_object_mut()?;
    let m = o.entry("metadata").or_insert_with(|| json!({}));
    if !m.is_object() {
        *m = json!({});
    }
    m.as_object_mut()
}

/// A string field of `metadata`.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// `metadata.name`, or `""`.
pub fn name_of(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or("")
}

/// Current time as upstream's RFC 3339 seconds (`2026-01-01T00:00:00Z`).
pub fn now_rfc3339() -> String {
    // Formatting is most of the cost and the text changes once a second: each thread keeps
    // the last second it formatted (creates, binds and deletes all stamp a time).
    thread_local! {
        static LAST: std::cell::RefCell<(i64, String)> = const {
            std::cell::RefCell::new((i64::MIN, String::new()))
        };
    }
    let now = chrono::Utc::now();
    let secs = now.timestamp();
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != secs {
            *last = (secs, now.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        }
        last.1.clone()
    })
}

/// The time `secs` seconds from now, RFC 3339 seconds.
pub fn time_in(secs: i64) -> String {
    // Absurd grace periods are clamped rather than overflowing the clock.
    let now = chrono::Utc::now();
    let later = chrono::Duration::try_seconds(secs.clamp(0, 100 * 365 * 86400))
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(now);
    later.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Check `apiVersion`/`kind` of a body against the endpoint, filling them when absent.
pub fn check_type(expected_api_version: &str, expected_kind: &str, obj: &mut Value) -> Result<()> {
    let Some(o) = obj.as_object_mut() else {
        return Err(ApiError::bad_request(
            "the request body is not a JSON object",
        ));
    };
    match o.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            o.insert("apiVersion".into(), json!(expected_api_version));
        }
        Some(v) if v == expected_api_version => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({expected_api_version})"
            )))
        }
    }
    match o.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            o.insert("kind".into(), json!(expected_kind));
        }
        Some(k) if k == expected_kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({expected_kind})"
            )))
        }
    }
    Ok(())
}

/// Check the body's namespace against the URL's, filling it when absent (namespaced kinds), or
/// clearing it (cluster-scoped kinds).
pub fn check_namespace(ctx: &Ctx, obj: &mut Value) -> Result<()> {
    let Some(m) = meta_mut(obj) else {
        return Err(ApiError::bad_request("metadata must be an object"));
    };
    match &ctx.namespace {
        Some(ns) => match m.get("namespace").and_then(Value::as_str) {
            None | Some("") => {
                m.insert("namespace".into(), json!(ns));
            }
            Some(n) if n == ns => {}
            Some(_) => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ))
            }
        },
        None => {
            m.remove("namespace");
        }
    }
    Ok(())
}

/// Read one object, 404 when absent.
pub async fn get_kv(reg: &Registry, ctx: &Ctx, name: &str) -> Result<(KeyValue, Value)> {
    let started = std::time::Instant::now();
    let res = reg.storage.get(&ctx.key(name)).await;
    reg.metrics.observe_storage("get", started.elapsed());
    match res.map_err(|e| ApiError::from_storage(e, ctx.target(name)))? {
        Some(kv) => {
            let v = ctx.decode(&kv)?;
            Ok((kv, v))
        }
        None => Err(ApiError::not_found(ctx.target(name))),
    }
}

/// GET one object.
pub async fn get(reg: &Registry, ctx: &Ctx, name: &str) -> Result<Reply> {
    let (_, v) = get_kv(reg, ctx, name).await?;
    Ok(Reply::ok(v))
}

/// Object equality ignoring the resourceVersion: how no-op writes are detected. Compares in
/// place (no copy of either object), order-insensitively like `Value`'s own equality.
pub fn same_object(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter().all(|(k, va)| match y.get(k) {
                    Some(vb) if k == "metadata" => same_ignoring_rv(va, vb),
                    Some(vb) => va == vb,
                    None => false,
                })
        }
        _ => a == b,
    }
}

/// Equality of two `metadata` values, ignoring `resourceVersion` when both are maps.
fn same_ignoring_rv(a: &Value, b: &Value) -> bool {
    const RV: &str = "resourceVersion";
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let len =
                |m: &serde_json::Map<String, Value>| m.len() - usize::from(m.contains_key(RV));
            len(x) == len(y)
                && x.iter()
                    .filter(|(k, _)| *k != RV)
                    .all(|(k, v)| y.get(k) == Some(v))
        }
        _ => a == b,
    }
}

/// Turn strategy + metadata validation causes into a 422.
pub fn ensure_valid(
    ctx: &Ctx,
    obj: &Value,
    mut causes: Vec<kubelite_api::strategy::FieldCause>,
) -> Result<()> {
    if causes.is_empty() {
        return Ok(());
    }
    causes.dedup();
    Err(ApiError::invalid(ctx.info, name_of(obj), causes))
}

/// Remove empty `labels`, `annotations`, `finalizers`, `ownerReferences` and `managedFields`
/// from `metadata`: upstream's types omit empty maps and lists, so `{}` and an absent field are
/// the same object (a label removal that empties the map leaves no `labels: {}`, and a patch
/// that only adds `annotations: {}` is a no-op).
pub fn drop_empty_metadata(obj: &mut Value) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    for field in [
        "labels",
        "annotations",
        "finalizers",
        "ownerReferences",
        "managedFields",
    ] {
        let empty = match meta.get(field) {
            Some(Value::Object(m)) => m.is_empty(),
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Null) => true,
            _ => false,
        };
        if empty {
            meta.remove(field);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_rfc3339_seconds_and_current() {
        let before = chrono::Utc::now().timestamp();
        let a = now_rfc3339();
        let b = now_rfc3339();
        let after = chrono::Utc::now().timestamp();
        let t = chrono::DateTime::parse_from_rfc3339(&a)
            .expect("RFC 3339")
            .timestamp();
        assert!(before <= t && t <= after, "{a} outside [{before}, {after}]");
        assert!(a.ends_with('Z') && a.len() == 20, "{a}");
        assert!(b >= a);
    }

    #[test]
    fn type_checks() {
        let mut v = json!({"metadata": {"name": "a"}});
        check_type("apps/v1", "Deployment", &mut v).expect("fills");
        assert_eq!(v["kind"], "Deployment");
        let mut w = json!({"apiVersion": "v1", "kind": "Pod"});
        let err = check_type("apps/v1", "Deployment", &mut w).expect_err("mismatch");
        assert_eq!(err.code, 400);
    }

    #[test]
    fn field_manager_from_param_or_user_agent() {
        let p = Params(vec![("fieldManager".into(), "mine".into())])
            .with_user_agent(Some("kubectl/v1.33.0 (linux/amd64) kubernetes/abc"));
        assert_eq!(p.field_manager(), "mine");
        let p = Params::default().with_user_agent(Some("kubectl/v1.33.0 (linux/amd64)"));
        assert_eq!(p.field_manager(), "kubectl");
        let long = format!("{}\u{7}/x", "a".repeat(200));
        let p = Params::default().with_user_agent(Some(&long));
        assert_eq!(p.field_manager(), "a".repeat(128));
        assert_eq!(Params::default().field_manager(), "");
    }

    #[test]
    fn same_object_ignores_only_the_resource_version() {
        let a = json!({"kind": "Pod", "metadata": {"name": "a", "resourceVersion": "5", "labels": {"x": "1"}}, "spec": {"n": 1}});
        let reordered = json!({"spec": {"n": 1}, "metadata": {"labels": {"x": "1"}, "name": "a"}, "kind": "Pod"});
        assert!(same_object(&a, &reordered));
        assert!(same_object(&reordered, &a));
        let mut other_rv = a.clone();
        other_rv["metadata"]["resourceVersion"] = json!("6");
        assert!(same_object(&a, &other_rv));
        let cases = [
            json!({"kind": "Pod", "metadata": {"name": "a", "resourceVersion": "5", "labels": {"x": "2"}}, "spec": {"n": 1}}),
            json!({"kind": "Pod", "metadata": {"name": "a", "resourceVersion": "5", "labels": {"x": "1"}}, "spec": {"n": 2}}),
            json!({"kind": "Pod", "metadata": {"name": "a", "labels": {"x": "1"}, "uid": "u"}, "spec": {"n": 1}}),
            json!({"kind": "Pod", "metadata": {"name": "a", "resourceVersion": "5", "labels": {"x": "1"}}}),
            json!({"kind": "Pod", "metadata": "x", "spec": {"n": 1}}),
        ];
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            v
        };
        for c in &cases {
            assert!(!same_object(&a, c), "{c}");
            assert!(!same_object(c, &a), "{c}");
            // The copying definition this replaces agrees.
            assert_eq!(same_object(&a, c), strip(&a) == strip(c));
        }
        assert!(same_object(&json!("x"), &json!("x")));
    }

    #[test]
    fn rv_is_not_stored() {
        let v = json!({"metadata": {"name": "a", "resourceVersion": "5"}});
        let b = encode(&v).expect("encode");
        assert!(!String::from_utf8_lossy(&b).contains("resourceVersion"));
    }

    #[test]
    fn spliced_managed_fields_equal_encoding_the_value() {
        let list = json!([{"manager": "m", "operation": "Update", "apiVersion": "v1",
            "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:x\"y": {}}}}]);
        let managed = serde_json::to_vec(&list).expect("encode");
        let objects = [
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "labels": {"k": "v"}},
                "spec": {"x\"y": "\u{1}", "n": [1, 2.5, null, true]}}),
            // metadata last, and not first among the object's keys
            json!({"kind": "ConfigMap", "data": {"managedFields": "x"}, "metadata": {"name": "b"}}),
            // a client's list is replaced in place; stored-never fields are left out
            json!({"metadata": {"managedFields": [], "name": "c", "resourceVersion": "3", "selfLink": "/x"}}),
        ];
        for obj in objects {
            let got = encode_with_managed(&obj, &managed).expect("spliced");
            let mut want = obj.clone();
            if let Some(m) = meta_mut(&mut want) {
                m.insert("managedFields".into(), list.clone());
            }
            assert_eq!(got, encode(&want).expect("encode"), "{obj}");
        }
    }
}
