//! The on-disk data model: redb table definitions, the version record encoding, opening and
//! validating a data dir, and mapping redb errors onto the storage contract's errors.

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use kubelite_storage::{Error, Revision};
use redb::{Database, ReadableDatabase, TableDefinition, TableHandle};

/// The database file inside the data dir.
pub(crate) const DB_FILE: &str = "kubelite.redb";

/// Bumped whenever the table layout or record encoding changes incompatibly.
pub(crate) const FORMAT_VERSION: i64 = 1;

/// `meta`: a few named counters (see the `META_*` keys).
pub(crate) const META: TableDefinition<&str, i64> = TableDefinition::new("kubelite_meta");
/// `latest`: every live key -> (create revision, mod revision). The value lives in `history`.
pub(crate) const LATEST: TableDefinition<&str, (i64, i64)> =
    TableDefinition::new("kubelite_latest");
/// `history`: (key, revision) -> version record (see [`Version`]): every version of every key
/// since the compaction point, tombstones included.
pub(crate) const HISTORY: TableDefinition<(&str, i64), &[u8]> =
    TableDefinition::new("kubelite_history");
/// `revs`: revision -> the key written at that revision; the event log for watch replay.
pub(crate) const REVS: TableDefinition<i64, &str> = TableDefinition::new("kubelite_revs");

pub(crate) const META_FORMAT: &str = "format_version";
pub(crate) const META_REVISION: &str = "revision";
pub(crate) const META_COMPACTED: &str = "compacted";

const TAG_PUT: u8 = 0;
const TAG_TOMBSTONE: u8 = 1;
/// Length of a put record's header: tag + create revision.
pub(crate) const PUT_HEADER: usize = 1 + 8;

/// One decoded `history` record.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Version<'a> {
    Put { create: Revision, value: &'a [u8] },
    Tombstone,
}

impl<'a> Version<'a> {
    pub(crate) fn decode(raw: &'a [u8]) -> Result<Self, Error> {
        match raw.split_first() {
            Some((&TAG_PUT, rest)) if rest.len() >= 8 => {
                let (create, value) = rest.split_at(8);
                let mut buf = [0u8; 8];
                buf.copy_from_slice(create);
                Ok(Version::Put {
                    create: i64::from_le_bytes(buf),
                    value,
                })
            }
            Some((&TAG_TOMBSTONE, [])) => Ok(Version::Tombstone),
            _ => Err(Error::Corrupt(format!(
                "undecodable history record of {} bytes",
                raw.len()
            ))),
        }
    }
}

/// Writes a put record into `out` (exactly `PUT_HEADER + value.len()` bytes).
pub(crate) fn encode_put(out: &mut [u8], create: Revision, value: &[u8]) {
    out[0] = TAG_PUT;
    out[1..PUT_HEADER].copy_from_slice(&create.to_le_bytes());
    out[PUT_HEADER..].copy_from_slice(value);
}

/// The tombstone record.
pub(crate) const TOMBSTONE: &[u8] = &[TAG_TOMBSTONE];

/// What a freshly opened store knows about its persisted state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Persisted {
    pub revision: Revision,
    pub compacted: Revision,
}

/// Opens (or creates) the database in `dir` and validates that it is ours.
pub(crate) fn open_db(
    dir: &Path,
    cache_bytes: usize,
    verify: bool,
) -> Result<(Database, Persisted), Error> {
    fs::create_dir_all(dir)
        .map_err(|e| Error::Internal(format!("create data dir {}: {e}", dir.display())))?;
    let path = dir.join(DB_FILE);
    // redb documents that a file corrupted outside redb may make an open panic: turn that into
    // the contract's Corrupt error instead of taking the process down.
    let opened = catch_unwind(AssertUnwindSafe(|| {
        redb::Builder::new()
            .set_cache_size(cache_bytes)
            .set_check_integrity_on_open(verify)
            .create(&path)
    }));
    let db = match opened {
        Ok(Ok(db)) => db,
        Ok(Err(e)) => return Err(map_open_error(&path, e)),
        Err(_) => {
            return Err(Error::Corrupt(format!(
                "{}: the database engine failed while reading the file",
                path.display()
            )))
        }
    };
    let persisted = catch_unwind(AssertUnwindSafe(|| validate_or_init(&db, &path)))
        .unwrap_or_else(|_| {
            Err(Error::Corrupt(format!(
                "{}: the database engine failed while reading the tables",
                path.display()
            )))
        })?;
    Ok((db, persisted))
}

fn map_open_error(path: &Path, e: redb::DatabaseError) -> Error {
    let p = path.display();
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => Error::Unavailable(format!(
            "{p} is already open (another process or store uses this data dir)"
        )),
        redb::DatabaseError::UpgradeRequired(v) => Error::Corrupt(format!(
            "{p} uses redb file format {v}, which this build cannot read"
        )),
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(msg)) => {
            Error::Corrupt(format!("{p} is not a readable redb database: {msg}"))
        }
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if io.kind() == std::io::ErrorKind::UnexpectedEof
                || io.kind() == std::io::ErrorKind::InvalidData =>
        {
            Error::Corrupt(format!("{p} is not a readable redb database: {io}"))
        }
        other => Error::Internal(format!("open {p}: {other}")),
    }
}

/// A database with no tables at all is new (or was created but never initialised, e.g. a crash
/// right after creation): initialise it. One with our meta table must carry our format version.
/// Anything else was written by someone else and is refused, never reset.
fn validate_or_init(db: &Database, path: &Path) -> Result<Persisted, Error> {
    let p = path.display();
    let rtx = db.begin_read().map_err(internal)?;
    let tables: Vec<String> = rtx
        .list_tables()
        .map_err(internal)?
        .map(|t| t.name().to_string())
        .collect();
    let multimaps = rtx.list_multimap_tables().map_err(internal)?.count();
    drop(rtx);
    if tables.is_empty() && multimaps == 0 {
        return init(db);
    }
    if !tables.iter().any(|t| t == META.name()) {
        return Err(Error::Corrupt(format!(
            "{p} is a redb database but not a kubelite store (tables: {})",
            tables.join(", ")
        )));
    }
    let rtx = db.begin_read().map_err(internal)?;
    let meta = rtx
        .open_table(META)
        .map_err(|e| Error::Corrupt(format!("{p}: meta table: {e}")))?;
    let get = |k: &str| -> Result<Option<i64>, Error> {
        Ok(meta
            .get(k)
            .map_err(|e| Error::Corrupt(format!("{p}: meta {k}: {e}")))?
            .map(|g| g.value()))
    };
    let format = get(META_FORMAT)?
        .ok_or_else(|| Error::Corrupt(format!("{p}: no format version in the meta table")))?;
    if format != FORMAT_VERSION {
        return Err(Error::Corrupt(format!(
            "{p} has store format version {format}, this build reads only version {FORMAT_VERSION}"
        )));
    }
    let revision = get(META_REVISION)?
        .ok_or_else(|| Error::Corrupt(format!("{p}: no revision in the meta table")))?;
    let compacted = get(META_COMPACTED)?
        .ok_or_else(|| Error::Corrupt(format!("{p}: no compaction point in the meta table")))?;
    if revision < 0 || compacted < 0 || compacted > revision + 1 {
        return Err(Error::Corrupt(format!(
            "{p}: inconsistent meta (revision {revision}, compacted {compacted})"
        )));
    }
    // The data tables must exist with our types; a mismatch is someone else's file.
    rtx.open_table(LATEST)
        .map_err(|e| Error::Corrupt(format!("{p}: latest table: {e}")))?;
    rtx.open_table(HISTORY)
        .map_err(|e| Error::Corrupt(format!("{p}: history table: {e}")))?;
    rtx.open_table(REVS)
        .map_err(|e| Error::Corrupt(format!("{p}: revs table: {e}")))?;
    Ok(Persisted {
        revision,
        compacted,
    })
}

fn init(db: &Database) -> Result<Persisted, Error> {
    let tx = db.begin_write().map_err(internal)?;
    {
        let mut meta = tx.open_table(META).map_err(internal)?;
        meta.insert(META_FORMAT, FORMAT_VERSION).map_err(internal)?;
        meta.insert(META_REVISION, 0).map_err(internal)?;
        meta.insert(META_COMPACTED, 0).map_err(internal)?;
        tx.open_table(LATEST).map_err(internal)?;
        tx.open_table(HISTORY).map_err(internal)?;
        tx.open_table(REVS).map_err(internal)?;
    }
    tx.commit().map_err(internal)?;
    Ok(Persisted {
        revision: 0,
        compacted: 0,
    })
}

/// Maps any redb error to [`Error::Internal`]; corruption found while reading is [`Error::Corrupt`].
pub(crate) fn internal(e: impl Into<redb::Error>) -> Error {
    match e.into() {
        redb::Error::Corrupted(msg) => Error::Corrupt(msg),
        redb::Error::DatabaseClosed => Error::Unavailable("the store is closed".into()),
        other => Error::Internal(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_record_round_trips() {
        let mut buf = vec![0u8; PUT_HEADER + 3];
        encode_put(&mut buf, 42, b"abc");
        assert_eq!(
            Version::decode(&buf).expect("decode"),
            Version::Put {
                create: 42,
                value: b"abc"
            }
        );
        let mut empty = vec![0u8; PUT_HEADER];
        encode_put(&mut empty, -1, b"");
        assert_eq!(
            Version::decode(&empty).expect("decode"),
            Version::Put {
                create: -1,
                value: b""
            }
        );
    }

    #[test]
    fn tombstone_and_garbage() {
        assert_eq!(
            Version::decode(TOMBSTONE).expect("decode"),
            Version::Tombstone
        );
        for bad in [
            &[][..],
            &[0, 1, 2][..],
            &[1, 0][..],
            &[7, 0, 0, 0, 0, 0, 0, 0, 0][..],
        ] {
            assert!(
                matches!(Version::decode(bad), Err(Error::Corrupt(_))),
                "{bad:?}"
            );
        }
    }
}
