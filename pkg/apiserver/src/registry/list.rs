//! LIST: selectors, limit/continue pagination, resourceVersion/resourceVersionMatch semantics.
//! `resourceVersion=0` is served from the watch cache; everything else is a consistent read
//! from storage.

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Value};

use super::{Ctx, Params, Registry};
use crate::error::{ApiError, Result};
use crate::model::Selectors;
use crate::watch_cache::parse;

/// One page of a list. Items are shared with the watch cache when served from it.
#[derive(Debug, Default)]
pub struct Page {
    pub items: Vec<Arc<Value>>,
    /// Items still in their cached JSON form (lists without selectors from the watch cache),
    /// after `items`.
    pub raw: Vec<Bytes>,
    pub revision: i64,
    pub continue_token: Option<String>,
    pub remaining: Option<u64>,
}

impl Page {
    /// The `<Kind>List` object.
    pub fn to_list(&self, ctx: &Ctx) -> Value {
        let mut items: Vec<Value> = self.items.iter().map(|v| (**v).clone()).collect();
        items.extend(self.raw.iter().filter_map(|j| parse(j)));
        json!({
            "kind": ctx.info.list_kind(),
            "apiVersion": ctx.info.api_version(),
            "metadata": self.list_meta(),
            "items": items,
        })
    }

    /// The `<Kind>List` as JSON bytes, written straight from the items: parsed ones are
    /// serialised by reference, cached JSON is copied in as is.
    pub fn to_json(&self, ctx: &Ctx) -> Vec<u8> {
        let raw_len: usize = self.raw.iter().map(|j| j.len() + 1).sum();
        let mut out = Vec::with_capacity(raw_len + self.items.len() * 1024 + 256);
        let head = json!({
            "kind": ctx.info.list_kind(),
            "apiVersion": ctx.info.api_version(),
            "metadata": self.list_meta(),
        });
        // `head` serialises as `{...}`: reopen it to append the items.
        let _ = serde_json::to_writer(&mut out, &head);
        out.pop();
        out.extend_from_slice(b",\"items\":[");
        let mut first = true;
        for item in &self.items {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            let _ = serde_json::to_writer(&mut out, &**item);
        }
        for json in &self.raw {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            out.extend_from_slice(json);
        }
        out.extend_from_slice(b"]}");
        out
    }

    /// How many items the page holds.
    pub fn len(&self) -> usize {
        self.items.len() + self.raw.len()
    }

    /// Whether the page holds no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn list_meta(&self) -> Value {
        let mut meta = json!({"resourceVersion": self.revision.to_string()});
        if let Some(c) = &self.continue_token {
            meta["continue"] = json!(c);
        }
        if let Some(r) = self.remaining {
            meta["remainingItemCount"] = json!(r);
        }
        meta
    }
}

/// A stored object's JSON with `metadata.resourceVersion` = `rev` added as the first field of
/// its metadata, without parsing it. `None` when the bytes are not the plain form storage holds
/// (top-level `metadata` object, no resourceVersion yet): the caller decodes them instead.
/// Putting it first means the scan stops at the metadata key (after `apiVersion` and `kind`,
/// in objects as clients send them) instead of crossing `managedFields`, the longest part of
/// most metadata; JSON clients do not depend on key order (kubectl and kube-rs decode into maps
/// and structs).
pub fn stamp_rv(stored: &[u8], rev: i64) -> Option<Vec<u8>> {
    const KEY: &[u8] = b"\"metadata\"";
    if mentions_resource_version(stored) {
        return None;
    }
    let mut depth = 0usize;
    let mut in_str = false;
    let mut escaped = false;
    let mut i = 0;
    while i < stored.len() {
        let b = stored[i];
        if in_str {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_str = false;
            }
            i += 1;
            continue;
        }
        match b {
            b'"' => {
                // A top-level `"metadata"` followed by `:` is the key (a value string cannot be
                // followed by a colon).
                if depth == 1 && stored[i..].starts_with(KEY) {
                    let mut j = i + KEY.len();
                    while stored.get(j).is_some_and(u8::is_ascii_whitespace) {
                        j += 1;
                    }
                    if stored.get(j) == Some(&b':') {
                        j += 1;
                        while stored.get(j).is_some_and(u8::is_ascii_whitespace) {
                            j += 1;
                        }
                        if stored.get(j) != Some(&b'{') {
                            return None;
                        }
                        let open = j + 1;
                        let mut k = open;
                        while stored.get(k).is_some_and(u8::is_ascii_whitespace) {
                            k += 1;
                        }
                        let empty = stored.get(k) == Some(&b'}');
                        let field = format!(
                            "\"resourceVersion\":\"{rev}\"{}",
                            if empty { "" } else { "," }
                        );
                        let mut out = Vec::with_capacity(stored.len() + field.len());
                        out.extend_from_slice(&stored[..open]);
                        out.extend_from_slice(field.as_bytes());
                        out.extend_from_slice(&stored[open..]);
                        return Some(out);
                    }
                }
                in_str = true;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.checked_sub(1)?,
            _ => {}
        }
        i += 1;
    }
    None
}

/// Whether `"resourceVersion"` occurs anywhere in `json`. Every stored reply and watch event
/// is stamped, so every object is scanned whole: memchr's SIMD substring search (a byte loop
/// anchored on the rare `V` was 3-4% of the server's CPU under creates).
fn mentions_resource_version(json: &[u8]) -> bool {
    static NEEDLE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"resourceVersion\""));
    NEEDLE.find(json).is_some()
}

/// Encode a continue token as upstream does: base64 of `{"v","rv","start"}`, where `start` is
/// the key (relative to the collection prefix) to continue from.
pub fn encode_continue(rv: i64, relative_last_key: &str) -> String {
    let token =
        json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("{relative_last_key}\u{0}")});
    base64::engine::general_purpose::STANDARD.encode(token.to_string())
}

/// Decode a continue token into (revision, relative key to continue after).
pub fn decode_continue(token: &str) -> Result<(i64, String)> {
    let bad = || {
        ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(token))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if v.get("v").and_then(Value::as_str) != Some("meta.k8s.io/v1") {
        return Err(bad());
    }
    let rv = v
        .get("rv")
        .and_then(Value::as_i64)
        .filter(|rv| *rv > 0)
        .ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    let start = start.strip_suffix('\u{0}').unwrap_or(start);
    if start.contains("..") || start.starts_with('/') {
        return Err(bad());
    }
    Ok((rv, start.to_string()))
}

fn parse_rv(s: &str) -> Result<i64> {
    s.parse::<i64>()
        .map_err(|_| ApiError::bad_request(format!("invalid resource version: {s:?}")))
}

/// LIST the collection `ctx` addresses.
pub async fn list(reg: &Registry, ctx: &Ctx, params: &Params) -> Result<Page> {
    let strategy = ctx.strategy.as_ref();
    let selectors = Selectors::parse(
        params.get("labelSelector"),
        params.get("fieldSelector"),
        strategy,
    )?;
    let limit = match params.get("limit") {
        Some(l) if !l.is_empty() => l
            .parse::<usize>()
            .map_err(|_| ApiError::bad_request("invalid limit"))?,
        _ => 0,
    };
    let rv = params.get("resourceVersion").filter(|s| !s.is_empty());
    let rv_match = params.get("resourceVersionMatch").filter(|s| !s.is_empty());
    let cont = params.get("continue").filter(|s| !s.is_empty());
    if cont.is_some() && rv.is_some_and(|r| r != "0") {
        return Err(ApiError::bad_request(
            "specifying resource version is not allowed when using continue",
        ));
    }
    if rv_match.is_some() && rv.is_none() {
        return Err(ApiError::bad_request(
            "resourceVersionMatch is forbidden unless resourceVersion is provided",
        ));
    }
    let prefix = ctx.collection_prefix();

    // RV=0 ("any"): from the watch cache, unpaged.
    if rv == Some("0") && cont.is_none() {
        if let Some(cache) = reg.cache(&ctx.cache_prefix()) {
            let (objs, revision) = cache.snapshot(&prefix);
            if selectors.is_empty() && !ctx.converts() {
                return Ok(Page {
                    raw: objs,
                    revision,
                    ..Default::default()
                });
            }
            let items = objs
                .iter()
                .filter_map(|j| parse(j))
                .map(|o| ctx.present(o))
                .filter(|o| selectors.matches(o, strategy))
                .map(Arc::new)
                .collect();
            return Ok(Page {
                items,
                revision,
                ..Default::default()
            });
        }
    }

    let (mut revision, mut after) = match cont {
        Some(token) => {
            let (rv, start) = decode_continue(token)?;
            (Some(rv), Some(format!("{prefix}{start}")))
        }
        None => (None, None),
    };
    if let Some(r) = rv.filter(|r| *r != "0") {
        let n = parse_rv(r)?;
        let exact = rv_match == Some("Exact") || (rv_match.is_none() && limit > 0);
        if exact {
            revision = Some(n);
        }
    }

    let mut page = Page::default();
    loop {
        let opts = kubelite_storage::ListOptions {
            revision,
            limit: (limit > 0).then_some(limit.saturating_sub(page.len()).max(1)),
            continue_after: after.clone(),
        };
        let started = std::time::Instant::now();
        let res = reg.storage.list(&prefix, opts).await;
        reg.metrics.observe_storage("list", started.elapsed());
        let res = res.map_err(|e| {
            if cont.is_some() {
                ApiError::from_storage_continue(e, ctx.target(""))
            } else {
                ApiError::from_storage(e, ctx.target(""))
            }
        })?;
        revision = Some(res.revision);
        page.revision = res.revision;
        let raw = selectors.is_empty() && !ctx.converts();
        for kv in &res.items {
            if raw {
                // No selector to evaluate: copy the stored JSON with its resourceVersion
                // spliced in rather than parse and re-serialise every object.
                let json = match stamp_rv(&kv.value, kv.mod_revision) {
                    Some(json) => json,
                    None => serde_json::to_vec(&ctx.decode(kv)?)
                        .map_err(|e| ApiError::internal(format!("encoding object: {e}")))?,
                };
                page.raw.push(Bytes::from(json));
                continue;
            }
            let obj = ctx.decode(kv)?;
            if selectors.matches(&obj, strategy) {
                page.items.push(Arc::new(obj));
            }
        }
        match res.continue_key {
            Some(k) if limit > 0 && page.len() < limit => after = Some(k),
            Some(k) => {
                let relative = k.strip_prefix(&prefix).unwrap_or(&k).to_string();
                page.continue_token = Some(encode_continue(res.revision, &relative));
                if selectors.is_empty() {
                    page.remaining = res.remaining;
                }
                break;
            }
            None => break,
        }
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_rv_matches_decoding() {
        let cases = [
            json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "a", "labels": {"metadata": "x"}}, "spec": {"s": "q\"}{"}}),
            json!({"kind": "Pod", "apiVersion": "v1", "spec": {"metadata": {"n": 1}}, "metadata": {}}),
            json!({"data": ["\\", "metadata"], "metadata": {"annotations": {"a": "\"metadata\":{"}}}),
            json!({"spec": {"x": [{"metadata": {}}]}, "metadata": {"name": "late", "managedFields": [{"f:metadata": {}}]}}),
        ];
        for c in cases {
            let stored = serde_json::to_vec(&c).expect("encode");
            let stamped = stamp_rv(&stored, 42).expect("stamped");
            let got: Value = serde_json::from_slice(&stamped).expect("valid json");
            let mut want = c.clone();
            crate::registry::set_rv(&mut want, 42);
            assert_eq!(got, want);
        }
        for (text, want) in [
            (&br#"{"resourceVersion":"1"}"#[..], true),
            (br#"resourceVersion""#, false),
            (br#""resourceVersion"#, false),
            (br#"{"a":"resourceVersion"}"#, true),
            (br#"{"fieldsV1":{"V":"xresourceVersion"}}"#, false),
            (b"", false),
        ] {
            assert_eq!(
                mentions_resource_version(text),
                want,
                "{}",
                String::from_utf8_lossy(text)
            );
            assert_eq!(
                mentions_resource_version(text),
                text.windows(17).any(|w| w == b"\"resourceVersion\""),
            );
        }
        // Not the plain stored form: the caller decodes.
        assert_eq!(stamp_rv(br#"{"kind":"Pod"}"#, 1), None);
        assert_eq!(stamp_rv(br#"{"metadata":"x"}"#, 1), None);
        assert_eq!(
            stamp_rv(br#"{"metadata":{"resourceVersion":"3"}}"#, 1),
            None
        );
        assert_eq!(
            stamp_rv(br#"{"metadata": { } }"#, 7).as_deref(),
            Some(&br#"{"metadata": {"resourceVersion":"7" } }"#[..])
        );
        assert_eq!(
            stamp_rv(br#"{"kind":"Pod","metadata":{"name":"a"}}"#, 7).as_deref(),
            Some(&br#"{"kind":"Pod","metadata":{"resourceVersion":"7","name":"a"}}"#[..])
        );
    }

    #[test]
    fn json_list_splices_cached_items() {
        let info = kubelite_api::resource::find_builtin("", "v1", "pods").expect("pods");
        let ctx = Ctx::new(info, Some("default".into()));
        let a = json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "a"}});
        let b = json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "b"}});
        let page = Page {
            items: vec![Arc::new(a.clone())],
            raw: vec![Bytes::from(serde_json::to_vec(&b).expect("encode"))],
            revision: 9,
            continue_token: Some("tok".into()),
            remaining: None,
        };
        let body: Value = serde_json::from_slice(&page.to_json(&ctx)).expect("valid json");
        assert_eq!(body, page.to_list(&ctx));
        assert_eq!(body["kind"], "PodList");
        assert_eq!(body["metadata"]["resourceVersion"], "9");
        assert_eq!(body["metadata"]["continue"], "tok");
        assert_eq!(body["items"], json!([a, b]));
        let empty: Value =
            serde_json::from_slice(&Page::default().to_json(&ctx)).expect("valid json");
        assert_eq!(empty["items"], json!([]));
    }

    #[test]
    fn continue_roundtrip() {
        let t = encode_continue(42, "default/web-1");
        assert_eq!(
            decode_continue(&t).expect("decode"),
            (42, "default/web-1".to_string())
        );
        assert!(decode_continue("not-base64!").is_err());
    }
}
