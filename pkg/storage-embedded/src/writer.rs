//! The single writer thread: group commit of all pending writes in one fsynced redb transaction,
//! then acknowledgement and event publication; plus compaction (explicit and periodic).

use std::collections::{BTreeSet, VecDeque};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kubelite_storage::{Error, Event, EventKind, KeyValue, Revision};
use redb::{Database, Durability, ReadableTable, Table, WriteTransaction};
use tokio::sync::{oneshot, watch};
use tracing::{debug, warn};

use crate::schema::{
    encode_put, internal, Version, HISTORY, LATEST, META, META_COMPACTED, META_REVISION,
    PUT_HEADER, REVS, TOMBSTONE,
};
use crate::watch::Shared;

/// At most this many requests share one transaction, so a huge backlog still commits steadily.
const MAX_BATCH: usize = 2048;
/// ... and at most about this many value bytes.
const MAX_BATCH_BYTES: usize = 32 * 1024 * 1024;
/// Revisions forgotten per compaction transaction, so compaction never stalls writes for long.
const COMPACT_CHUNK: i64 = 2000;

/// One write.
pub(crate) enum Op {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
}

/// A request to the writer thread.
pub(crate) enum Msg {
    Write(Op, oneshot::Sender<Result<KeyValue, Error>>),
    Compact(Revision, oneshot::Sender<Result<(), Error>>),
}

/// The automatic compaction policy.
#[derive(Clone, Debug)]
pub(crate) struct Policy {
    pub keep_revisions: i64,
    pub keep_for: Duration,
    pub interval: Option<Duration>,
}

pub(crate) struct Writer {
    pub db: Arc<Database>,
    pub rx: Receiver<Msg>,
    pub shared: Arc<Shared>,
    pub head: watch::Sender<Revision>,
    pub policy: Policy,
    pub current: Revision,
    pub compacted: Revision,
    /// Cap of the wait for more writes before a commit ([`crate::Options::commit_linger`]).
    pub linger_max: Duration,
    /// A request that arrived while the previous batch committed: the next batch starts with
    /// it, and waits for more.
    pub carry: Option<Msg>,
    /// How long the previous commit took (the wait's length, under the cap).
    pub last_commit: Duration,
}

type Reply = oneshot::Sender<Result<KeyValue, Error>>;

impl Writer {
    /// Runs until every store handle (sender) is gone.
    pub(crate) fn run(mut self) {
        // (when, revision) samples for the time-based part of the compaction policy.
        let mut samples: VecDeque<(Instant, Revision)> = VecDeque::new();
        let mut target = self.compacted;
        let interval = self.policy.interval.unwrap_or(Duration::from_secs(3600));
        let mut next_tick = Instant::now() + interval;
        loop {
            let wait = if target > self.compacted {
                Duration::ZERO
            } else {
                next_tick.saturating_duration_since(Instant::now())
            };
            // A request that came in during the last commit starts the next batch at once.
            let next = match self.carry.take() {
                Some(first) => Ok((first, self.last_commit.min(self.linger_max))),
                None => self
                    .rx
                    .recv_timeout(wait)
                    .map(|first| (first, Duration::ZERO)),
            };
            match next {
                Ok((first, linger)) => self.batch(first, linger),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let now = Instant::now();
            if now >= next_tick {
                next_tick = now + interval;
                if self.policy.interval.is_some() {
                    samples.push_back((now, self.current));
                    target = target.max(auto_target(
                        &self.policy,
                        self.current,
                        self.compacted,
                        &mut samples,
                        now,
                    ));
                }
            }
            if target > self.compacted {
                let end = target.min(self.compacted + COMPACT_CHUNK);
                if let Err(e) = self.compact_chunk(end) {
                    warn!(error = %e, "automatic compaction failed");
                    target = self.compacted;
                }
            }
        }
        debug!(revision = self.current, "storage writer stopped");
    }

    /// Drains everything pending (up to the batch limits), waits `linger` and drains again
    /// when it is not zero, commits the writes once, answers.
    fn batch(&mut self, first: Msg, linger: Duration) {
        let mut writes: Vec<(Op, Reply)> = Vec::new();
        let mut compacts = Vec::new();
        let mut bytes = 0usize;
        let mut next = Some(first);
        let mut lingered = linger.is_zero();
        loop {
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Write(op, reply) => {
                        bytes += match &op {
                            Op::Create { value, .. } | Op::Update { value, .. } => value.len(),
                            Op::Delete { .. } => 0,
                        };
                        writes.push((op, reply));
                    }
                    Msg::Compact(rev, reply) => compacts.push((rev, reply)),
                }
                if writes.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                    next = self.rx.try_recv().ok();
                }
            }
            if lingered || writes.len() >= MAX_BATCH || bytes >= MAX_BATCH_BYTES {
                break;
            }
            // One sleep, then one more drain: a wake-up per batch, not per request.
            lingered = true;
            std::thread::sleep(linger);
            next = self.rx.try_recv().ok();
        }
        if !writes.is_empty() {
            let started = Instant::now();
            self.commit_writes(writes);
            self.last_commit = started.elapsed();
            if !self.linger_max.is_zero() {
                // Whoever wrote while we committed is likely not alone.
                self.carry = self.rx.try_recv().ok();
            }
        }
        for (rev, reply) in compacts {
            let _ = reply.send(self.compact_to(rev));
        }
    }

    fn commit_writes(&mut self, writes: Vec<(Op, Reply)>) {
        let mut outcomes: Vec<Result<Arc<Event>, Error>> = Vec::with_capacity(writes.len());
        let (ops, replies): (Vec<Op>, Vec<Reply>) = writes.into_iter().unzip();
        let committed = self.apply_all(ops, &mut outcomes);
        match committed {
            Ok(rev) => {
                let events: Vec<Arc<Event>> = outcomes
                    .iter()
                    .filter_map(|o| o.as_ref().ok().cloned())
                    .collect();
                self.current = rev;
                self.shared.publish(events, rev);
                self.head.send_replace(rev);
                for (outcome, reply) in outcomes.into_iter().zip(replies) {
                    let _ = reply.send(outcome.map(|ev| ev.kv.clone()));
                }
            }
            Err(e) => {
                warn!(error = %e, "storage write transaction failed");
                for reply in replies {
                    let _ = reply.send(Err(Error::Internal(format!(
                        "write transaction failed: {e}"
                    ))));
                }
            }
        }
    }

    /// Applies `ops` in order in one transaction with consecutive revisions. A request that
    /// fails its precondition writes nothing and only fails itself; an engine error fails all.
    fn apply_all(
        &self,
        ops: Vec<Op>,
        outcomes: &mut Vec<Result<Arc<Event>, Error>>,
    ) -> Result<Revision, Error> {
        let mut tx = self.db.begin_write().map_err(internal)?;
        tx.set_durability(Durability::Immediate).map_err(internal)?;
        let mut rev = self.current;
        {
            let mut t = Tables::open(&tx)?;
            for op in ops {
                match t.apply(op, rev + 1)? {
                    Ok(ev) => {
                        rev += 1;
                        outcomes.push(Ok(Arc::new(ev)));
                    }
                    Err(e) => outcomes.push(Err(e)),
                }
            }
            if rev != self.current {
                t.meta.insert(META_REVISION, rev).map_err(internal)?;
            }
        }
        tx.commit().map_err(internal)?;
        Ok(rev)
    }

    /// Explicit compaction to `rev`, in chunks.
    fn compact_to(&mut self, rev: Revision) -> Result<(), Error> {
        if rev > self.current {
            return Err(Error::FutureRevision {
                requested: rev,
                current: self.current,
            });
        }
        while self.compacted < rev {
            let end = rev.min(self.compacted + COMPACT_CHUNK);
            self.compact_chunk(end)?;
        }
        Ok(())
    }

    /// Moves the compaction point to `to`: forgets the event log before it and every version
    /// that no read at `to` or later, nor any event at `to` or later, can need: per key all
    /// versions before `to` except the newest one, which is kept when it is a put.
    fn compact_chunk(&mut self, to: Revision) -> Result<(), Error> {
        let from = self.compacted;
        let tx = self.db.begin_write().map_err(internal)?;
        {
            let mut revs = tx.open_table(REVS).map_err(internal)?;
            let mut history = tx.open_table(HISTORY).map_err(internal)?;
            let mut meta = tx.open_table(META).map_err(internal)?;
            let mut keys = BTreeSet::new();
            for entry in revs.range(from..to).map_err(internal)? {
                let (_, k) = entry.map_err(internal)?;
                keys.insert(k.value().to_string());
            }
            revs.retain_in(from..to, |_, _| false).map_err(internal)?;
            for key in &keys {
                let k = key.as_str();
                let newest = match history
                    .range((k, i64::MIN)..(k, to))
                    .map_err(internal)?
                    .next_back()
                {
                    Some(entry) => {
                        let (kg, vg) = entry.map_err(internal)?;
                        let is_put = matches!(Version::decode(vg.value())?, Version::Put { .. });
                        Some((kg.value().1, is_put))
                    }
                    None => None,
                };
                let keep_from = match newest {
                    Some((r, true)) => r,
                    Some((_, false)) => to,
                    None => continue,
                };
                history
                    .retain_in((k, i64::MIN)..(k, keep_from), |_, _| false)
                    .map_err(internal)?;
            }
            meta.insert(META_COMPACTED, to).map_err(internal)?;
        }
        tx.commit().map_err(internal)?;
        self.compacted = to;
        self.shared.set_compacted(to);
        debug!(compacted = to, "compacted storage history");
        Ok(())
    }
}

/// The tables one write transaction touches.
struct Tables<'t> {
    meta: Table<'t, &'static str, i64>,
    latest: Table<'t, &'static str, (i64, i64)>,
    history: Table<'t, (&'static str, i64), &'static [u8]>,
    revs: Table<'t, i64, &'static str>,
}

impl<'t> Tables<'t> {
    fn open(tx: &'t WriteTransaction) -> Result<Self, Error> {
        Ok(Tables {
            meta: tx.open_table(META).map_err(internal)?,
            latest: tx.open_table(LATEST).map_err(internal)?,
            history: tx.open_table(HISTORY).map_err(internal)?,
            revs: tx.open_table(REVS).map_err(internal)?,
        })
    }

    /// The current state of `key`, if it exists.
    fn current(&self, key: &str) -> Result<Option<KeyValue>, Error> {
        let Some((create, modr)) = self.latest.get(key).map_err(internal)?.map(|g| g.value())
        else {
            return Ok(None);
        };
        let guard = self
            .history
            .get((key, modr))
            .map_err(internal)?
            .ok_or_else(|| Error::Corrupt(format!("version {modr} of {key:?} is missing")))?;
        match Version::decode(guard.value())? {
            Version::Put { value, .. } => Ok(Some(KeyValue {
                key: key.to_string(),
                value: Bytes::copy_from_slice(value),
                create_revision: create,
                mod_revision: modr,
            })),
            Version::Tombstone => Err(Error::Corrupt(format!(
                "live key {key:?} points at a tombstone at revision {modr}"
            ))),
        }
    }

    fn put(
        &mut self,
        key: &str,
        create: Revision,
        rev: Revision,
        value: &[u8],
    ) -> Result<(), Error> {
        self.latest.insert(key, (create, rev)).map_err(internal)?;
        let mut slot = self
            .history
            .insert_reserve((key, rev), PUT_HEADER + value.len())
            .map_err(internal)?;
        encode_put(slot.as_mut(), create, value);
        drop(slot);
        self.revs.insert(rev, key).map_err(internal)?;
        Ok(())
    }

    /// Applies one op at revision `rev`. Outer error: the engine failed (abort the batch);
    /// inner error: the op's precondition failed (nothing written).
    fn apply(&mut self, op: Op, rev: Revision) -> Result<Result<Event, Error>, Error> {
        match op {
            Op::Create { key, value } => {
                if self.latest.get(key.as_str()).map_err(internal)?.is_some() {
                    return Ok(Err(Error::AlreadyExists { key }));
                }
                self.put(&key, rev, rev, &value)?;
                Ok(Ok(Event {
                    kind: EventKind::Create,
                    kv: KeyValue {
                        key,
                        value,
                        create_revision: rev,
                        mod_revision: rev,
                    },
                    prev: None,
                }))
            }
            Op::Update {
                key,
                value,
                expected,
            } => {
                let Some(prev) = self.current(&key)? else {
                    return Ok(Err(Error::NotFound { key }));
                };
                if prev.mod_revision != expected {
                    return Ok(Err(conflict(key, expected, prev)));
                }
                self.put(&key, prev.create_revision, rev, &value)?;
                Ok(Ok(Event {
                    kind: EventKind::Update,
                    kv: KeyValue {
                        key,
                        value,
                        create_revision: prev.create_revision,
                        mod_revision: rev,
                    },
                    prev: Some(prev),
                }))
            }
            Op::Delete { key, expected } => {
                let Some(prev) = self.current(&key)? else {
                    return Ok(Err(Error::NotFound { key }));
                };
                if let Some(e) = expected.filter(|e| *e != prev.mod_revision) {
                    return Ok(Err(conflict(key, e, prev)));
                }
                self.latest.remove(key.as_str()).map_err(internal)?;
                self.history
                    .insert((key.as_str(), rev), TOMBSTONE)
                    .map_err(internal)?;
                self.revs.insert(rev, key.as_str()).map_err(internal)?;
                let mut kv = prev.clone();
                kv.mod_revision = rev;
                Ok(Ok(Event {
                    kind: EventKind::Delete,
                    kv,
                    prev: Some(prev),
                }))
            }
        }
    }
}

/// The revision the policy allows compacting to: older than both the last `keep_revisions`
/// revisions and everything written within `keep_for`. `samples` are (when, current revision)
/// pairs taken at each tick, oldest first; those no longer needed are dropped.
fn auto_target(
    policy: &Policy,
    current: Revision,
    compacted: Revision,
    samples: &mut VecDeque<(Instant, Revision)>,
    now: Instant,
) -> Revision {
    let by_count = current - policy.keep_revisions.max(0);
    let Some(cutoff) = now.checked_sub(policy.keep_for) else {
        return compacted;
    };
    // The newest sample taken at or before the cutoff: its revision was current then, so the
    // state as of it must stay readable.
    while samples.len() > 1 && samples[1].0 <= cutoff {
        samples.pop_front();
    }
    match samples.front() {
        Some(&(t, r)) if t <= cutoff => by_count.min(r),
        _ => compacted,
    }
}

fn conflict(key: String, expected: Revision, current: KeyValue) -> Error {
    Error::Conflict {
        key,
        expected,
        current: Some(Box::new(current)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(keep_revisions: i64, keep_for: u64) -> Policy {
        Policy {
            keep_revisions,
            keep_for: Duration::from_secs(keep_for),
            interval: Some(Duration::from_secs(60)),
        }
    }

    #[test]
    fn count_bound_applies_when_time_allows() {
        let now = Instant::now() + Duration::from_secs(1000);
        let mut samples = VecDeque::from([(now, 500)]);
        assert_eq!(auto_target(&policy(100, 0), 500, 0, &mut samples, now), 400);
    }

    #[test]
    fn time_bound_keeps_recent_history() {
        let t0 = Instant::now() + Duration::from_secs(1000);
        let mut samples = VecDeque::from([
            (t0, 1_000),
            (t0 + Duration::from_secs(60), 50_000),
            (t0 + Duration::from_secs(120), 90_000),
        ]);
        // At t0+150 with 100 s kept, the newest sample at or before t0+50 is the first one.
        let now = t0 + Duration::from_secs(150);
        assert_eq!(
            auto_target(&policy(10, 100), 100_000, 0, &mut samples, now),
            1_000
        );
        assert_eq!(samples.len(), 3);
        // 50 s later the second sample is old enough: the first is dropped.
        let now = t0 + Duration::from_secs(200);
        assert_eq!(
            auto_target(&policy(10, 100), 100_000, 0, &mut samples, now),
            50_000
        );
        assert_eq!(samples.front().map(|s| s.1), Some(50_000));
        // Once every sample is old enough only the newest one is kept.
        let now = t0 + Duration::from_secs(1000);
        assert_eq!(
            auto_target(&policy(10, 100), 100_000, 0, &mut samples, now),
            90_000
        );
        assert_eq!(samples.len(), 1);
    }

    #[test]
    fn nothing_old_enough_means_no_compaction() {
        let now = Instant::now() + Duration::from_secs(1000);
        let mut samples = VecDeque::from([(now - Duration::from_secs(10), 7)]);
        assert_eq!(auto_target(&policy(0, 300), 100, 3, &mut samples, now), 3);
        assert_eq!(
            auto_target(&policy(0, 300), 100, 3, &mut VecDeque::new(), now),
            3
        );
    }

    #[test]
    fn count_bound_can_be_the_tighter_one() {
        let now = Instant::now() + Duration::from_secs(1000);
        let mut samples = VecDeque::from([(now - Duration::from_secs(400), 990)]);
        assert_eq!(
            auto_target(&policy(50, 300), 1_000, 0, &mut samples, now),
            950
        );
    }
}
