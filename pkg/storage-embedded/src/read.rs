//! The read paths: get, list (latest or at an older revision), count, and rebuilding events
//! from the `revs` and `history` tables for watch replay. Every call reads one redb snapshot, so
//! its answer is consistent as of one revision.

use std::ops::Bound;

use bytes::Bytes;
use kubelite_storage::{Error, Event, EventKind, KeyValue, ListOptions, ListResult, Revision};
use redb::{Database, ReadOnlyTable, ReadableDatabase};

use crate::schema::{
    internal, Version, HISTORY, LATEST, META, META_COMPACTED, META_REVISION, REVS,
};

type History = ReadOnlyTable<(&'static str, i64), &'static [u8]>;

/// The latest state of `key`.
pub(crate) fn get(db: &Database, key: &str) -> Result<Option<KeyValue>, Error> {
    let rtx = db.begin_read().map_err(internal)?;
    let latest = rtx.open_table(LATEST).map_err(internal)?;
    let Some((create, modr)) = latest.get(key).map_err(internal)?.map(|g| g.value()) else {
        return Ok(None);
    };
    let history = rtx.open_table(HISTORY).map_err(internal)?;
    version_at(&history, key, modr).map(|kv| {
        debug_assert_eq!(kv.create_revision, create);
        Some(kv)
    })
}

/// The put stored at exactly (key, rev); anything else means the tables disagree.
fn version_at(history: &History, key: &str, rev: Revision) -> Result<KeyValue, Error> {
    let guard = history
        .get((key, rev))
        .map_err(internal)?
        .ok_or_else(|| Error::Corrupt(format!("version {rev} of {key:?} is missing")))?;
    match Version::decode(guard.value())? {
        Version::Put { create, value } => Ok(KeyValue {
            key: key.to_string(),
            value: Bytes::copy_from_slice(value),
            create_revision: create,
            mod_revision: rev,
        }),
        Version::Tombstone => Err(Error::Corrupt(format!(
            "live key {key:?} points at a tombstone at revision {rev}"
        ))),
    }
}

/// The newest version of `key` strictly before `rev` (the previous state for an event).
fn version_before(history: &History, key: &str, rev: Revision) -> Result<KeyValue, Error> {
    let mut range = history
        .range((key, i64::MIN)..(key, rev))
        .map_err(internal)?;
    let Some(entry) = range.next_back() else {
        return Err(Error::Corrupt(format!(
            "no version of {key:?} before revision {rev}"
        )));
    };
    let (k, v) = entry.map_err(internal)?;
    match Version::decode(v.value())? {
        Version::Put { create, value } => Ok(KeyValue {
            key: key.to_string(),
            value: Bytes::copy_from_slice(value),
            create_revision: create,
            mod_revision: k.value().1,
        }),
        Version::Tombstone => Err(Error::Corrupt(format!(
            "version of {key:?} before revision {rev} is a tombstone"
        ))),
    }
}

fn meta(rtx: &redb::ReadTransaction) -> Result<(Revision, Revision), Error> {
    let meta = rtx.open_table(META).map_err(internal)?;
    let get = |k: &str| -> Result<i64, Error> {
        meta.get(k)
            .map_err(internal)?
            .map(|g| g.value())
            .ok_or_else(|| Error::Corrupt(format!("meta {k} is missing")))
    };
    Ok((get(META_REVISION)?, get(META_COMPACTED)?))
}

/// The latest committed revision, read from the database rather than the in-memory counter.
pub(crate) fn committed_revision(db: &Database) -> Result<Revision, Error> {
    let rtx = db.begin_read().map_err(internal)?;
    Ok(meta(&rtx)?.0)
}

/// How many keys currently lie under `prefix`.
pub(crate) fn count(db: &Database, prefix: &str) -> Result<u64, Error> {
    let rtx = db.begin_read().map_err(internal)?;
    let latest = rtx.open_table(LATEST).map_err(internal)?;
    let mut n = 0u64;
    for entry in latest.range::<&str>(prefix..).map_err(internal)? {
        let (k, _) = entry.map_err(internal)?;
        if !k.value().starts_with(prefix) {
            break;
        }
        n += 1;
    }
    Ok(n)
}

/// One page of the keys under `prefix`, per [`kubelite_storage::Storage::list`].
pub(crate) fn list(db: &Database, prefix: &str, opts: ListOptions) -> Result<ListResult, Error> {
    if let Some(c) = &opts.continue_after {
        if !c.starts_with(prefix) {
            return Err(Error::InvalidContinue(format!(
                "{c:?} does not lie under {prefix:?}"
            )));
        }
    }
    let rtx = db.begin_read().map_err(internal)?;
    let (current, compacted) = meta(&rtx)?;
    let at = match opts.revision {
        None => current,
        Some(r) if r > current => {
            return Err(Error::FutureRevision {
                requested: r,
                current,
            })
        }
        Some(r) if r < compacted => {
            return Err(Error::Compacted {
                requested: r,
                compacted,
            })
        }
        Some(r) => r,
    };
    let limit = opts.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
    let history = rtx.open_table(HISTORY).map_err(internal)?;
    let cont = opts.continue_after.as_deref();
    let mut items = Vec::new();
    let mut remaining = 0u64;
    if at == current {
        // The latest state: walk the `latest` index, no history needed.
        let latest = rtx.open_table(LATEST).map_err(internal)?;
        let start = match cont {
            Some(c) => Bound::Excluded(c),
            None => Bound::Included(prefix),
        };
        for entry in latest
            .range::<&str>((start, Bound::Unbounded))
            .map_err(internal)?
        {
            let (k, v) = entry.map_err(internal)?;
            let key = k.value();
            if !key.starts_with(prefix) {
                break;
            }
            if items.len() < limit {
                items.push(version_at(&history, key, v.value().1)?);
            } else {
                remaining += 1;
            }
        }
    } else {
        scan_at(&history, prefix, cont, at, |key, found| {
            if items.len() < limit {
                if let Some((create, modr, value)) = found {
                    items.push(KeyValue {
                        key: key.to_string(),
                        value: Bytes::copy_from_slice(value),
                        create_revision: create,
                        mod_revision: modr,
                    });
                }
            } else if found.is_some() {
                remaining += 1;
            }
        })?;
    }
    let more = remaining > 0;
    Ok(ListResult {
        continue_key: more
            .then(|| items.last().map(|kv| kv.key.clone()))
            .flatten(),
        remaining: more.then_some(remaining),
        items,
        revision: at,
    })
}

/// Visits every key under `prefix` (after `cont`) in order with its newest version at or before
/// `at`, as (create, mod, value) or None when the key did not exist then. One seek per key, so
/// the cost follows the number of keys, not the number of versions kept.
fn scan_at(
    history: &History,
    prefix: &str,
    cont: Option<&str>,
    at: Revision,
    mut visit: impl FnMut(&str, Option<(Revision, Revision, &[u8])>),
) -> Result<(), Error> {
    let mut after: Option<String> = cont.map(str::to_string);
    loop {
        let key = {
            let lower = match &after {
                Some(k) => Bound::Excluded((k.as_str(), i64::MAX)),
                None => Bound::Included((prefix, i64::MIN)),
            };
            let mut range = history
                .range::<(&str, i64)>((lower, Bound::Unbounded))
                .map_err(internal)?;
            match range.next() {
                None => return Ok(()),
                Some(entry) => entry.map_err(internal)?.0.value().0.to_string(),
            }
        };
        if !key.starts_with(prefix) {
            return Ok(());
        }
        let newest = history
            .range((key.as_str(), i64::MIN)..=(key.as_str(), at))
            .map_err(internal)?
            .next_back();
        match newest {
            Some(entry) => {
                let (k, v) = entry.map_err(internal)?;
                match Version::decode(v.value())? {
                    Version::Put { create, value } => {
                        visit(&key, Some((create, k.value().1, value)))
                    }
                    Version::Tombstone => visit(&key, None),
                }
            }
            None => visit(&key, None),
        }
        after = Some(key);
    }
}

/// The events under `prefix` with revisions in `(after, upto]`, reading at most `max`
/// revisions and stopping once about `max_bytes` of values were collected; returns them and the
/// last revision read (the watcher's new cursor).
pub(crate) fn replay(
    db: &Database,
    prefix: &str,
    after: Revision,
    upto: Revision,
    max: usize,
    max_bytes: usize,
) -> Result<(Vec<Event>, Revision), Error> {
    let rtx = db.begin_read().map_err(internal)?;
    let (_, compacted) = meta(&rtx)?;
    if after + 1 < compacted {
        return Err(Error::Compacted {
            requested: after + 1,
            compacted,
        });
    }
    let revs = rtx.open_table(REVS).map_err(internal)?;
    let history = rtx.open_table(HISTORY).map_err(internal)?;
    let mut events = Vec::new();
    let mut bytes = 0usize;
    let mut cursor = after;
    for entry in revs.range((after + 1)..=upto).map_err(internal)?.take(max) {
        let (r, k) = entry.map_err(internal)?;
        let rev = r.value();
        // Revisions are dense: a hole means the log lost an entry.
        if rev != cursor + 1 {
            return Err(Error::Corrupt(format!(
                "event log jumps from revision {cursor} to {rev}"
            )));
        }
        cursor = rev;
        let key = k.value();
        if key.starts_with(prefix) {
            let ev = event_at(&history, key, rev)?;
            bytes += ev.kv.value.len() + ev.prev.as_ref().map_or(0, |p| p.value.len());
            events.push(ev);
            if bytes >= max_bytes {
                break;
            }
        }
    }
    if cursor == after && upto > after {
        return Err(Error::Corrupt(format!(
            "event log has no revision {} (current is at least {upto})",
            after + 1
        )));
    }
    Ok((events, cursor))
}

/// Rebuilds the event for the write of `key` at `rev`. The kind follows from the record: a
/// tombstone is a delete, a put whose create revision is its own revision a create.
fn event_at(history: &History, key: &str, rev: Revision) -> Result<Event, Error> {
    let guard = history
        .get((key, rev))
        .map_err(internal)?
        .ok_or_else(|| Error::Corrupt(format!("version {rev} of {key:?} is missing")))?;
    match Version::decode(guard.value())? {
        Version::Put { create, value } => {
            let kv = KeyValue {
                key: key.to_string(),
                value: Bytes::copy_from_slice(value),
                create_revision: create,
                mod_revision: rev,
            };
            if create == rev {
                Ok(Event {
                    kind: EventKind::Create,
                    kv,
                    prev: None,
                })
            } else {
                Ok(Event {
                    kind: EventKind::Update,
                    kv,
                    prev: Some(version_before(history, key, rev)?),
                })
            }
        }
        Version::Tombstone => {
            let prev = version_before(history, key, rev)?;
            let mut kv = prev.clone();
            kv.mod_revision = rev;
            Ok(Event {
                kind: EventKind::Delete,
                kv,
                prev: Some(prev),
            })
        }
    }
}
