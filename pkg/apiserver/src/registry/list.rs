//! LIST: selectors, limit/continue pagination, resourceVersion/resourceVersionMatch semantics.
//! `resourceVersion=0` is served from the watch cache; everything else is a consistent read
//! from storage.

use base64::Engine;
use serde_json::{json, Value};

use super::{Ctx, Params, Registry};
use crate::error::{ApiError, Result};
use crate::model::Selectors;

/// One page of a list.
#[derive(Debug, Default)]
pub struct Page {
    pub items: Vec<Value>,
    pub revision: i64,
    pub continue_token: Option<String>,
    pub remaining: Option<u64>,
}

impl Page {
    /// The `<Kind>List` object.
    pub fn to_list(&self, ctx: &Ctx) -> Value {
        let mut meta = json!({"resourceVersion": self.revision.to_string()});
        if let Some(c) = &self.continue_token {
            meta["continue"] = json!(c);
        }
        if let Some(r) = self.remaining {
            meta["remainingItemCount"] = json!(r);
        }
        json!({
            "kind": ctx.info.list_kind(),
            "apiVersion": ctx.info.api_version(),
            "metadata": meta,
            "items": self.items,
        })
    }
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
        if let Some(cache) = reg.caches.get(&ctx.cache_prefix()) {
            let (objs, revision) = cache.snapshot(&prefix);
            let items = objs
                .into_iter()
                .map(|o| ctx.present((*o).clone()))
                .filter(|o| selectors.matches(o, strategy))
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
            limit: (limit > 0).then_some(limit.saturating_sub(page.items.len()).max(1)),
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
        for kv in &res.items {
            let obj = ctx.decode(kv)?;
            if selectors.matches(&obj, strategy) {
                page.items.push(obj);
            }
        }
        match res.continue_key {
            Some(k) if limit > 0 && page.items.len() < limit => after = Some(k),
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
    fn continue_roundtrip() {
        let t = encode_continue(42, "default/web-1");
        assert_eq!(
            decode_continue(&t).expect("decode"),
            (42, "default/web-1".to_string())
        );
        assert!(decode_continue("not-base64!").is_err());
    }
}
