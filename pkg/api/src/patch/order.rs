//! List ordering for strategic merge patch: upstream's `normalizeElementOrder` (patched items
//! in patch order, server-only items in live order, interleaved) and the `$setElementOrder`
//! consistency check.

use serde_json::Value;

use super::go_format::{bad_arg_type, go_fmt, no_merge_key};
use super::strategic::{DIRECTIVE, SET_ELEMENT_ORDER};
use super::PatchError;

type Result<T, E = PatchError> = std::result::Result<T, E>;

/// Upstream `validatePatchWithSetOrderList`: the patch list's items (ignoring deletions) must
/// appear in the order list, in the same relative order.
pub(super) fn validate_against_order(
    patch: &[Value],
    order: &[Value],
    merge_key: Option<&str>,
) -> Result<()> {
    if patch.is_empty() || order.is_empty() {
        return Ok(());
    }
    let items: Vec<&Value> = match merge_key {
        Some(_) => {
            let mut kept = Vec::new();
            for v in patch {
                let Value::Object(m) = v else {
                    return Err(PatchError::Internal(bad_arg_type(
                        "map[string]interface {}",
                        v,
                    )));
                };
                if m.get(DIRECTIVE).and_then(Value::as_str) != Some("delete") {
                    kept.push(v);
                }
            }
            kept
        }
        None => patch.iter().collect(),
    };
    let (mut pi, mut oi) = (0, 0);
    while pi < items.len() && oi < order.len() {
        if items[pi].get(DIRECTIVE).is_some() {
            pi += 1;
            continue;
        }
        if merge_key_equal(items[pi], &order[oi], merge_key)? {
            pi += 1;
        }
        oi += 1;
    }
    if pi < items.len() {
        return Err(PatchError::Internal(format!(
            "The order in patch list:\n{}\n doesn't match {SET_ELEMENT_ORDER} list:\n{}\n",
            go_fmt(&Value::Array(patch.to_vec())),
            go_fmt(&Value::Array(order.to_vec()))
        )));
    }
    Ok(())
}

fn merge_key_equal(left: &Value, right: &Value, merge_key: Option<&str>) -> Result<bool> {
    let Some(key) = merge_key else {
        return Ok(left == right);
    };
    let lookup = |v: &Value| -> Result<Value> {
        let Value::Object(m) = v else {
            return Err(PatchError::Internal(bad_arg_type(
                "map[string]interface {}",
                v,
            )));
        };
        m.get(key)
            .cloned()
            .ok_or_else(|| PatchError::Internal(no_merge_key(m, key)))
    };
    Ok(lookup(left)? == lookup(right)?)
}

/// Where `item` sits in `list`, comparing merge-key values (or whole values for primitives).
fn index_of(list: &[Value], item: &Value, merge_key: Option<&str>) -> Option<usize> {
    match merge_key {
        Some(k) => {
            let wanted = item.get(k);
            list.iter().position(|v| v.get(k) == wanted)
        }
        None => list.iter().position(|v| v == item),
    }
}

/// Splits `merged` into the items present in `by` and the rest.
pub(super) fn partition(
    merged: Vec<Value>,
    by: &[Value],
    merge_key: Option<&str>,
) -> (Vec<Value>, Vec<Value>) {
    merged
        .into_iter()
        .partition(|v| index_of(by, v, merge_key).is_some())
}

/// Upstream `normalizeElementOrder`: sort the patched items by `patch_order` and the
/// server-only items by `server_order`, then interleave them, keeping each server-only item in
/// front of the first patched item that follows it in the live list.
pub(super) fn normalize_order(
    mut patched: Vec<Value>,
    mut server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: Option<&str>,
) -> Vec<Value> {
    patched.sort_by_key(|v| index_of(patch_order, v, merge_key).unwrap_or(usize::MAX));
    server_only.sort_by_key(|v| index_of(server_order, v, merge_key).unwrap_or(usize::MAX));
    let mut out = Vec::with_capacity(patched.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = patched.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!(
                (index_of(server_order, l, merge_key), index_of(server_order, r, merge_key)),
                (Some(li), Some(ri)) if li < ri
            ),
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}
