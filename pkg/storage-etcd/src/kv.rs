//! Reads and guarded writes: each write is one etcd transaction whose compare is the contract's
//! precondition, so a failed precondition never writes and the else branch reports why.

use bytes::Bytes;
use etcd_client::{
    Compare, CompareOp, DeleteOptions, GetOptions, Txn, TxnOp, TxnOpResponse, TxnResponse,
};
use kubelite_storage::{
    Error, KeyValue, ListOptions, ListResult, Result, Revision, MAX_VALUE_BYTES,
};

use crate::errors::{call, Failure};
use crate::{prefix_end, Inner};

impl Inner {
    pub(crate) async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let resp = call(self.timeout, self.kv.clone().get(self.full_key(key), None))
            .await
            .map_err(Failure::into_error)?;
        resp.kvs().first().map(|kv| self.convert(kv)).transpose()
    }

    pub(crate) async fn current_revision(&self) -> Result<Revision> {
        // Any linearizable read carries the store revision in its header.
        let opts = GetOptions::new().with_count_only();
        let resp = call(
            self.timeout,
            self.kv.clone().get(self.full_key("/"), Some(opts)),
        )
        .await
        .map_err(Failure::into_error)?;
        header_revision(resp.header())
    }

    pub(crate) async fn count(&self, prefix: &str) -> Result<u64> {
        let (start, end) = self.range(prefix);
        let opts = GetOptions::new().with_range(end).with_count_only();
        let resp = call(self.timeout, self.kv.clone().get(start, Some(opts)))
            .await
            .map_err(Failure::into_error)?;
        u64::try_from(resp.count()).map_err(|_| Error::Internal("etcd: negative count".into()))
    }

    pub(crate) async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let (mut start, end) = self.range(prefix);
        if let Some(after) = &opts.continue_after {
            if !after.starts_with(prefix) {
                return Err(Error::InvalidContinue(format!(
                    "{after:?} does not lie under {prefix:?}"
                )));
            }
            // The smallest key strictly after `after`.
            start = self.full_key(after);
            start.push(0);
        }
        let at = opts.revision.filter(|r| *r > 0);
        let limit = opts.limit.filter(|l| *l > 0);
        let mut get = GetOptions::new().with_range(end);
        if let Some(rev) = at {
            get = get.with_revision(rev);
        }
        if let Some(limit) = limit {
            get = get.with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        let resp = match call(self.timeout, self.kv.clone().get(start, Some(get))).await {
            Ok(resp) => resp,
            Err(f) => return Err(self.revision_error(f, at.unwrap_or(0)).await),
        };
        let items = resp
            .kvs()
            .iter()
            .map(|kv| self.convert(kv))
            .collect::<Result<Vec<_>>>()?;
        let revision = match at {
            Some(rev) => rev,
            None => header_revision(resp.header())?,
        };
        // `count` is the size of the whole requested range, unaffected by the limit.
        let (continue_key, remaining) = if resp.more() {
            let rest = u64::try_from(resp.count())
                .unwrap_or(0)
                .saturating_sub(items.len() as u64);
            (items.last().map(|kv| kv.key.clone()), Some(rest))
        } else {
            (None, None)
        };
        Ok(ListResult {
            items,
            revision,
            continue_key,
            remaining,
        })
    }

    pub(crate) async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        check_size(key, &value)?;
        let k = self.full_key(key);
        let txn = Txn::new()
            .when([Compare::create_revision(k.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(k, value.to_vec(), None)]);
        let resp = self.txn(key, value.len(), txn).await?;
        if !resp.succeeded() {
            return Err(Error::AlreadyExists {
                key: key.to_string(),
            });
        }
        let rev = header_revision(resp.header())?;
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision: rev,
            mod_revision: rev,
        })
    }

    pub(crate) async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
    ) -> Result<KeyValue> {
        check_size(key, &value)?;
        let k = self.full_key(key);
        // `version > 0` keeps an update from creating a missing key (whose mod revision is 0).
        let txn = Txn::new()
            .when([
                Compare::version(k.clone(), CompareOp::Greater, 0),
                Compare::mod_revision(k.clone(), CompareOp::Equal, expected),
            ])
            .and_then([
                TxnOp::put(k.clone(), value.to_vec(), None),
                // Reads in a txn see its own writes: this yields the create revision cheaply.
                TxnOp::get(k.clone(), Some(GetOptions::new().with_keys_only())),
            ])
            .or_else([TxnOp::get(k, None)]);
        let resp = self.txn(key, value.len(), txn).await?;
        if !resp.succeeded() {
            return Err(self.guard_failed(key, expected, &resp)?);
        }
        let rev = header_revision(resp.header())?;
        let create_revision = match first_range_kv(&resp) {
            Some(kv) => kv.create_revision(),
            None => {
                return Err(Error::Internal(
                    "etcd: updated key vanished in its txn".into(),
                ))
            }
        };
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision,
            mod_revision: rev,
        })
    }

    pub(crate) async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let k = self.full_key(key);
        let mut compares = vec![Compare::version(k.clone(), CompareOp::Greater, 0)];
        if let Some(rev) = expected {
            compares.push(Compare::mod_revision(k.clone(), CompareOp::Equal, rev));
        }
        let txn = Txn::new()
            .when(compares)
            .and_then([TxnOp::delete(
                k.clone(),
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(k, None)]);
        let resp = self.txn(key, 0, txn).await?;
        if !resp.succeeded() {
            return Err(self.guard_failed(key, expected.unwrap_or(0), &resp)?);
        }
        let rev = header_revision(resp.header())?;
        let prev = resp.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Delete(d) => d.prev_kvs().first().cloned(),
            _ => None,
        });
        let prev =
            prev.ok_or_else(|| Error::Internal("etcd: delete returned no previous value".into()))?;
        let mut kv = self.convert(&prev)?;
        kv.mod_revision = rev;
        Ok(kv)
    }

    /// Runs a write txn of a `size`-byte value; etcd refusing it as too large becomes
    /// [`Error::TooLarge`] for `key`.
    async fn txn(&self, key: &str, size: usize, txn: Txn) -> Result<TxnResponse> {
        match call(self.timeout, self.kv.clone().txn(txn)).await {
            Ok(resp) => Ok(resp),
            Err(Failure::TooLarge) => Err(Error::TooLarge {
                key: key.to_string(),
                size,
                limit: MAX_VALUE_BYTES,
            }),
            Err(f) => Err(f.into_error()),
        }
    }

    /// The error for a txn whose guard failed: its else branch read the key's current state.
    fn guard_failed(&self, key: &str, expected: Revision, resp: &TxnResponse) -> Result<Error> {
        match first_range_kv(resp) {
            None => Ok(Error::NotFound {
                key: key.to_string(),
            }),
            Some(kv) => Ok(Error::Conflict {
                key: key.to_string(),
                expected,
                current: Some(Box::new(self.convert(&kv)?)),
            }),
        }
    }

    /// The etcd range `[start, end)` holding every key under `prefix`.
    fn range(&self, prefix: &str) -> (Vec<u8>, Vec<u8>) {
        let start = self.full_key(prefix);
        let end = prefix_end(&start);
        // etcd rejects an empty key; "\0" is the smallest non-empty one.
        let start = if start.is_empty() { vec![0] } else { start };
        (start, end)
    }

    /// Turns a failed read at `requested` into the contract's revision errors.
    pub(crate) async fn revision_error(&self, f: Failure, requested: Revision) -> Error {
        match f {
            Failure::Compacted => match self.compacted_revision().await {
                Ok(compacted) => Error::Compacted {
                    requested,
                    compacted,
                },
                Err(e) => e,
            },
            Failure::FutureRevision => match self.current_revision().await {
                Ok(current) => Error::FutureRevision { requested, current },
                Err(e) => e,
            },
            other => other.into_error(),
        }
    }
}

/// The first key-value read by a txn's range op (success or else branch).
fn first_range_kv(resp: &TxnResponse) -> Option<etcd_client::KeyValue> {
    resp.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(g) => g.kvs().first().cloned(),
        _ => None,
    })
}

/// The store revision of a response; etcd always sends a header.
pub(crate) fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Result<Revision> {
    header
        .map(|h| h.revision())
        .ok_or_else(|| Error::Internal("etcd: response without header".into()))
}

/// Refuses values over the contract's limit before anything is sent.
fn check_size(key: &str, value: &Bytes) -> Result<()> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(Error::TooLarge {
            key: key.to_string(),
            size: value.len(),
            limit: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_values_are_refused_locally() {
        let big = Bytes::from(vec![0u8; MAX_VALUE_BYTES + 1]);
        match check_size("/k", &big) {
            Err(Error::TooLarge { size, limit, .. }) => {
                assert_eq!(size, MAX_VALUE_BYTES + 1);
                assert_eq!(limit, MAX_VALUE_BYTES);
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert!(check_size("/k", &Bytes::from(vec![0u8; MAX_VALUE_BYTES])).is_ok());
    }
}
