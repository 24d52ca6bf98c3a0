//! The raft log, the vote and the committed log id, in `raft.redb`.
//!
//! Tables: `log` (index -> entry bytes, [`crate::codec::encode_entry`]) and `meta` (`vote`,
//! `committed`, `purged`: the last purged log id). Every change is one redb write
//! transaction committed with redb's default durability (fsync before `commit` returns), and
//! `append` reports the flush to openraft only after that commit.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader, StorageIOError};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::codec::{
    decode_entry, decode_log_id, decode_vote, encode_entry, encode_log_id, encode_vote,
};
use crate::error::{Error, Result, db};
use crate::{Entry, LogId, StorageError, TypeConfig, Vote};

const LOG: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");

/// The raft log's file inside a data directory.
pub const LOG_FILE: &str = "raft.redb";

/// The raft log and vote of one validator. Clones share the database.
#[derive(Clone, Debug)]
pub struct LogStore {
    db: Arc<Database>,
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_logs(&e).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_logs(&e).into()
}

impl LogStore {
    /// A handle to the database that does not keep it open: it upgrades while any clone of
    /// this store is alive (and so the file's lock held).
    pub(crate) fn open_handle(&self) -> std::sync::Weak<Database> {
        Arc::downgrade(&self.db)
    }

    /// Opens (or creates) `raft.redb` in `dir`. A file another process holds open is
    /// [`Error::Locked`].
    pub fn open(dir: &Path) -> Result<LogStore> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let database = Database::create(dir.join(LOG_FILE)).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => Error::Locked {
                dir: dir.to_path_buf(),
            },
            e => db(e),
        })?;
        let w = database.begin_write().map_err(db)?;
        w.open_table(LOG).map_err(db)?;
        w.open_table(META).map_err(db)?;
        w.commit().map_err(db)?;
        Ok(LogStore {
            db: Arc::new(database),
        })
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let r = self.db.begin_read().map_err(db)?;
        let t = r.open_table(META).map_err(db)?;
        Ok(t.get(key).map_err(db)?.map(|g| g.value().to_vec()))
    }

    fn put_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        let w = self.db.begin_write().map_err(db)?;
        w.open_table(META)
            .map_err(db)?
            .insert(key, value)
            .map_err(db)?;
        w.commit().map_err(db)
    }

    fn log_id_meta(&self, key: &str) -> Result<Option<LogId>> {
        self.meta(key)?.map(|b| decode_log_id(&b)).transpose()
    }

    /// The entries with indices in `range`, in order.
    pub fn entries(&self, range: impl RangeBounds<u64>) -> Result<Vec<Entry>> {
        let r = self.db.begin_read().map_err(db)?;
        let t = r.open_table(LOG).map_err(db)?;
        let start = range.start_bound().cloned();
        let end = range.end_bound().cloned();
        let mut out = Vec::new();
        for item in t.range::<u64>((start, end)).map_err(db)? {
            let (k, v) = item.map_err(db)?;
            let e = decode_entry(v.value())?;
            if e.log_id.index != k.value() {
                return Err(Error::Decode {
                    what: "log entry",
                    reason: format!("stored at index {} but says {}", k.value(), e.log_id.index),
                });
            }
            out.push(e);
        }
        Ok(out)
    }

    /// The last entry's log id (or the last purged one when the log is empty), and the last
    /// purged.
    pub fn state(&self) -> Result<(Option<LogId>, Option<LogId>)> {
        let purged = self.log_id_meta("purged")?;
        let r = self.db.begin_read().map_err(db)?;
        let t = r.open_table(LOG).map_err(db)?;
        let last = match t.last().map_err(db)? {
            Some((_, v)) => Some(decode_entry(v.value())?.log_id),
            None => purged,
        };
        Ok((last, purged))
    }

    /// Appends entries in one durable commit (an entry at an index already held replaces
    /// it, as raft's conflict rule wants after a truncate).
    pub fn append_all(&self, entries: impl IntoIterator<Item = Entry>) -> Result<()> {
        let w = self.db.begin_write().map_err(db)?;
        {
            let mut t = w.open_table(LOG).map_err(db)?;
            for e in entries {
                t.insert(e.log_id.index, encode_entry(&e).as_slice())
                    .map_err(db)?;
            }
        }
        w.commit().map_err(db)
    }

    /// Removes the entries at `from` and after.
    pub fn truncate_from(&self, from: u64) -> Result<()> {
        let w = self.db.begin_write().map_err(db)?;
        {
            let mut t = w.open_table(LOG).map_err(db)?;
            t.retain_in::<u64, _>(from.., |_, _| false).map_err(db)?;
        }
        w.commit().map_err(db)
    }

    /// Removes the entries up to and including `upto`, and remembers it as purged.
    pub fn purge_upto(&self, upto: &LogId) -> Result<()> {
        let w = self.db.begin_write().map_err(db)?;
        {
            let mut t = w.open_table(LOG).map_err(db)?;
            t.retain_in::<u64, _>(..=upto.index, |_, _| false)
                .map_err(db)?;
            w.open_table(META)
                .map_err(db)?
                .insert("purged", encode_log_id(upto).as_slice())
                .map_err(db)?;
        }
        w.commit().map_err(db)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> std::result::Result<Vec<Entry>, StorageError> {
        let start: Bound<u64> = range.start_bound().cloned();
        let end: Bound<u64> = range.end_bound().cloned();
        self.entries((start, end)).map_err(read_err)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> std::result::Result<LogState<TypeConfig>, StorageError> {
        let (last_log_id, last_purged_log_id) = self.state().map_err(read_err)?;
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> std::result::Result<(), StorageError> {
        self.put_meta("vote", &encode_vote(vote))
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> std::result::Result<Option<Vote>, StorageError> {
        self.meta("vote")
            .and_then(|b| b.map(|b| decode_vote(&b)).transpose())
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId>,
    ) -> std::result::Result<(), StorageError> {
        match committed {
            Some(id) => self.put_meta("committed", &encode_log_id(&id)),
            None => Ok(()),
        }
        .map_err(write_err)
    }

    async fn read_committed(&mut self) -> std::result::Result<Option<LogId>, StorageError> {
        self.log_id_meta("committed").map_err(read_err)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> std::result::Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // The commit is durable when it returns: only then is the flush reported.
        match self.append_all(entries) {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> std::result::Result<(), StorageError> {
        self.truncate_from(log_id.index).map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> std::result::Result<(), StorageError> {
        self.purge_upto(&log_id).map_err(write_err)
    }
}
