//! On-disk storage in redb: the genesis state, every block, the state after every block,
//! the pending pool and a transaction index.
//!
//! Tables:
//! - `meta`: `genesis` (the encoded genesis state), `next_seq` (the pending pool's counter).
//! - `blocks`: height -> encoded block.
//! - `states`: height -> encoded state after that block (0: genesis).
//! - `pending`: sequence number -> encoded transaction, in arrival order.
//! - `txs`: transaction id -> where it is (pending, included at a height, refused with why).
//!
//! Crash safety: every change is one redb write transaction, committed with redb's default
//! durability (fsync before `commit` returns). A block, the state after it, the removal of
//! its transactions from the pool and their index entries are one transaction, so after a
//! crash the database holds either all of a block or none of it, and every transaction that
//! was acknowledged (its pool commit returned) is still in the pool or in a block.

use std::path::Path;

use bt_ledger::{Block, Hash, State};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

pub use crate::client::TxStatus;
use crate::error::{Error, Result, db};

const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
const BLOCKS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("blocks");
const STATES: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("states");
const PENDING: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("pending");
const TXS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("txs");

/// The database file inside a data directory.
pub const DB_FILE: &str = "chain.redb";

/// How the transaction index stores a status.
impl TxStatus {
    fn encode(&self) -> Vec<u8> {
        match self {
            TxStatus::Unknown => vec![0],
            TxStatus::Pending => vec![1],
            TxStatus::Included(h) => {
                let mut v = vec![2];
                v.extend_from_slice(&h.to_le_bytes());
                v
            }
            TxStatus::Refused(why) => {
                let mut v = vec![3];
                v.extend_from_slice(why.as_bytes());
                v
            }
        }
    }

    fn decode(b: &[u8]) -> TxStatus {
        match b.split_first() {
            Some((1, _)) => TxStatus::Pending,
            Some((2, rest)) if rest.len() == 8 => {
                let mut a = [0u8; 8];
                a.copy_from_slice(rest);
                TxStatus::Included(u64::from_le_bytes(a))
            }
            Some((3, rest)) => TxStatus::Refused(String::from_utf8_lossy(rest).into_owned()),
            _ => TxStatus::Unknown,
        }
    }
}

/// A committed block and what it did to the pool.
#[derive(Debug)]
pub struct BlockCommit<'a> {
    /// The block.
    pub block: &'a Block,
    /// The encoded state after it.
    pub state: &'a [u8],
    /// Pool entries it consumed: included or refused.
    pub consumed: &'a [u64],
    /// Transactions refused while building it, with why.
    pub refused: &'a [(Hash, String)],
}

/// The node's database.
#[derive(Debug)]
pub struct Store {
    db: Database,
}

fn get_u64(t: &impl ReadableTable<&'static str, &'static [u8]>, key: &str) -> Result<Option<u64>> {
    Ok(t.get(key)
        .map_err(db)?
        .and_then(|g| <[u8; 8]>::try_from(g.value()).ok())
        .map(u64::from_le_bytes))
}

impl Store {
    /// Opens (or creates) the database in `dir`. With `genesis`, a new database starts from
    /// it and an existing one must belong to the same chain. Returns the store and the
    /// state at its last committed block.
    ///
    /// Without a genesis nothing is created: a missing directory is [`Error::NoDataDir`], a
    /// directory without a database [`Error::NoChain`]. A database that another process
    /// holds open (a running node) is [`Error::Locked`].
    pub fn open(dir: &Path, genesis: Option<&State>) -> Result<(Store, State)> {
        if genesis.is_none() && !dir.exists() {
            return Err(Error::NoDataDir {
                dir: dir.to_path_buf(),
            });
        }
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(DB_FILE);
        let exists = path.exists();
        if !exists && genesis.is_none() {
            return Err(Error::NoChain {
                dir: dir.to_path_buf(),
            });
        }
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => Error::Locked {
                dir: dir.to_path_buf(),
            },
            e => db(e),
        })?;
        let store = Store { db };
        let stored = store.genesis()?;
        match (stored, genesis) {
            (Some(s), Some(g)) if s.genesis != g.genesis => {
                return Err(Error::GenesisMismatch {
                    stored: s.genesis,
                    given: g.genesis,
                });
            }
            (Some(_), _) => {}
            (None, Some(g)) => store.init(g)?,
            (None, None) => {
                return Err(Error::NoChain {
                    dir: dir.to_path_buf(),
                });
            }
        }
        let head = store.head_state()?;
        Ok((store, head))
    }

    fn init(&self, genesis: &State) -> Result<()> {
        let w = self.db.begin_write().map_err(db)?;
        {
            let mut meta = w.open_table(META).map_err(db)?;
            let bytes = genesis.encode();
            meta.insert("genesis", bytes.as_slice()).map_err(db)?;
            meta.insert("next_seq", 0u64.to_le_bytes().as_slice())
                .map_err(db)?;
            let mut states = w.open_table(STATES).map_err(db)?;
            states.insert(0, bytes.as_slice()).map_err(db)?;
            w.open_table(BLOCKS).map_err(db)?;
            w.open_table(PENDING).map_err(db)?;
            w.open_table(TXS).map_err(db)?;
        }
        w.commit().map_err(db)
    }

    /// The genesis state, if the database has a chain.
    pub fn genesis(&self) -> Result<Option<State>> {
        let r = self.db.begin_read().map_err(db)?;
        let meta = match r.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(db(e)),
        };
        match meta.get("genesis").map_err(db)? {
            Some(g) => Ok(Some(State::decode(g.value())?)),
            None => Ok(None),
        }
    }

    /// The height of the last committed block.
    pub fn height(&self) -> Result<u64> {
        let r = self.db.begin_read().map_err(db)?;
        let states = r.open_table(STATES).map_err(db)?;
        Ok(states.last().map_err(db)?.map_or(0, |(k, _)| k.value()))
    }

    /// The state after the last committed block.
    pub fn head_state(&self) -> Result<State> {
        let r = self.db.begin_read().map_err(db)?;
        let states = r.open_table(STATES).map_err(db)?;
        let (h, bytes) = states.last().map_err(db)?.ok_or(Error::Corrupt {
            height: 0,
            reason: "no genesis state".into(),
        })?;
        let state = State::decode(bytes.value())?;
        if state.height != h.value() {
            return Err(Error::Corrupt {
                height: h.value(),
                reason: format!("state says {}", state.height),
            });
        }
        Ok(state)
    }

    /// The encoded state after block `height`.
    pub fn state_bytes(&self, height: u64) -> Result<Option<Vec<u8>>> {
        let r = self.db.begin_read().map_err(db)?;
        let states = r.open_table(STATES).map_err(db)?;
        Ok(states.get(height).map_err(db)?.map(|g| g.value().to_vec()))
    }

    /// The state after block `height`.
    pub fn state_at(&self, height: u64) -> Result<Option<State>> {
        self.state_bytes(height)?
            .map(|b| State::decode(&b).map_err(Error::from))
            .transpose()
    }

    /// The encoded block at `height`.
    pub fn block_bytes(&self, height: u64) -> Result<Option<Vec<u8>>> {
        let r = self.db.begin_read().map_err(db)?;
        let blocks = r.open_table(BLOCKS).map_err(db)?;
        Ok(blocks.get(height).map_err(db)?.map(|g| g.value().to_vec()))
    }

    /// The block at `height`.
    pub fn block(&self, height: u64) -> Result<Option<Block>> {
        self.block_bytes(height)?
            .map(|b| Block::decode(&b, usize::MAX).map_err(Error::from))
            .transpose()
    }

    /// Where a transaction is.
    pub fn tx_status(&self, hash: &Hash) -> Result<TxStatus> {
        let r = self.db.begin_read().map_err(db)?;
        let txs = r.open_table(TXS).map_err(db)?;
        Ok(txs
            .get(hash.0.as_slice())
            .map_err(db)?
            .map_or(TxStatus::Unknown, |g| TxStatus::decode(g.value())))
    }

    /// Adds transactions to the pending pool in one durable commit; skips those already
    /// known. Returns how many were new.
    pub fn add_pending(&self, txs: &[(Hash, Vec<u8>)]) -> Result<usize> {
        self.add_pending_with(txs, &[])
    }

    /// [`Store::add_pending`], writing `extra` into `meta` in the same transaction (a
    /// replica's last applied log entry).
    pub fn add_pending_with(
        &self,
        txs: &[(Hash, Vec<u8>)],
        extra: &[(&str, &[u8])],
    ) -> Result<usize> {
        let w = self.db.begin_write().map_err(db)?;
        let mut added = 0;
        {
            let mut meta = w.open_table(META).map_err(db)?;
            for (k, v) in extra {
                meta.insert(*k, *v).map_err(db)?;
            }
            let mut seq = get_u64(&meta, "next_seq")?.unwrap_or(0);
            let mut pending = w.open_table(PENDING).map_err(db)?;
            let mut index = w.open_table(TXS).map_err(db)?;
            for (hash, bytes) in txs {
                if index.get(hash.0.as_slice()).map_err(db)?.is_some() {
                    continue;
                }
                pending.insert(seq, bytes.as_slice()).map_err(db)?;
                index
                    .insert(hash.0.as_slice(), TxStatus::Pending.encode().as_slice())
                    .map_err(db)?;
                seq += 1;
                added += 1;
            }
            meta.insert("next_seq", seq.to_le_bytes().as_slice())
                .map_err(db)?;
        }
        w.commit().map_err(db)?;
        Ok(added)
    }

    /// Up to `max` pending transactions in arrival order: `(sequence, bytes)`.
    pub fn pending(&self, max: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        let r = self.db.begin_read().map_err(db)?;
        let pending = r.open_table(PENDING).map_err(db)?;
        let mut out = Vec::new();
        for item in pending.iter().map_err(db)?.take(max) {
            let (k, v) = item.map_err(db)?;
            out.push((k.value(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// The number of pending transactions.
    pub fn pending_len(&self) -> Result<u64> {
        let r = self.db.begin_read().map_err(db)?;
        let pending = r.open_table(PENDING).map_err(db)?;
        pending.len().map_err(db)
    }

    /// Commits a block atomically: the block, the state after it, the pool entries it
    /// consumed, and the index entries of its included and refused transactions.
    pub fn commit_block(&self, c: &BlockCommit<'_>) -> Result<()> {
        self.commit_block_with(c, &[])
    }

    /// [`Store::commit_block`], writing `extra` into `meta` in the same transaction (a
    /// replica's last applied log entry).
    pub fn commit_block_with(&self, c: &BlockCommit<'_>, extra: &[(&str, &[u8])]) -> Result<()> {
        let height = c.block.header.height;
        let w = self.db.begin_write().map_err(db)?;
        {
            let mut meta = w.open_table(META).map_err(db)?;
            for (k, v) in extra {
                meta.insert(*k, *v).map_err(db)?;
            }
            let mut blocks = w.open_table(BLOCKS).map_err(db)?;
            if blocks.get(height).map_err(db)?.is_some() {
                return Err(Error::Corrupt {
                    height,
                    reason: "block already committed".into(),
                });
            }
            blocks
                .insert(height, c.block.encode().as_slice())
                .map_err(db)?;
            let mut states = w.open_table(STATES).map_err(db)?;
            states.insert(height, c.state).map_err(db)?;
            let mut pending = w.open_table(PENDING).map_err(db)?;
            for seq in c.consumed {
                pending.remove(*seq).map_err(db)?;
            }
            let mut index = w.open_table(TXS).map_err(db)?;
            let included = TxStatus::Included(height).encode();
            for tx in &c.block.txs {
                index
                    .insert(tx.hash().0.as_slice(), included.as_slice())
                    .map_err(db)?;
            }
            for (hash, why) in c.refused {
                index
                    .insert(
                        hash.0.as_slice(),
                        TxStatus::Refused(why.clone()).encode().as_slice(),
                    )
                    .map_err(db)?;
            }
        }
        w.commit().map_err(db)
    }

    /// Writes `entries` into `meta` in one durable commit.
    pub fn put_meta(&self, entries: &[(&str, &[u8])]) -> Result<()> {
        let w = self.db.begin_write().map_err(db)?;
        {
            let mut meta = w.open_table(META).map_err(db)?;
            for (k, v) in entries {
                meta.insert(*k, *v).map_err(db)?;
            }
        }
        w.commit().map_err(db)
    }

    /// A value of `meta`.
    pub fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let r = self.db.begin_read().map_err(db)?;
        let meta = r.open_table(META).map_err(db)?;
        Ok(meta.get(key).map_err(db)?.map(|g| g.value().to_vec()))
    }

    /// Every table, as one byte string ([`Store::restore`] reads it): a replica's snapshot.
    ///
    /// Layout: for each table in a fixed order, a `u64` count of entries, then each entry as
    /// a `u32` key length, the key, a `u32` value length, the value (integers little-endian,
    /// integer keys as 8 bytes).
    pub fn dump(&self) -> Result<Vec<u8>> {
        let r = self.db.begin_read().map_err(db)?;
        let mut out = Vec::new();
        fn put(out: &mut Vec<u8>, k: &[u8], v: &[u8]) {
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(k);
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(v);
        }
        {
            let t = r.open_table(META).map_err(db)?;
            out.extend_from_slice(&t.len().map_err(db)?.to_le_bytes());
            for item in t.iter().map_err(db)? {
                let (k, v) = item.map_err(db)?;
                put(&mut out, k.value().as_bytes(), v.value());
            }
        }
        for table in [BLOCKS, STATES, PENDING] {
            let t = r.open_table(table).map_err(db)?;
            out.extend_from_slice(&t.len().map_err(db)?.to_le_bytes());
            for item in t.iter().map_err(db)? {
                let (k, v) = item.map_err(db)?;
                put(&mut out, &k.value().to_le_bytes(), v.value());
            }
        }
        {
            let t = r.open_table(TXS).map_err(db)?;
            out.extend_from_slice(&t.len().map_err(db)?.to_le_bytes());
            for item in t.iter().map_err(db)? {
                let (k, v) = item.map_err(db)?;
                put(&mut out, k.value(), v.value());
            }
        }
        Ok(out)
    }

    /// Replaces every table with those of a [`Store::dump`], in one durable commit; then
    /// writes `extra` into `meta`. A dump of another chain (another genesis), or one that does
    /// not parse, is refused and nothing changes. Returns the state after its last block.
    pub fn restore(&self, dump: &[u8], extra: &[(&str, &[u8])]) -> Result<State> {
        let bad = |reason: &str| Error::Corrupt {
            height: 0,
            reason: format!("snapshot: {reason}"),
        };
        fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            (rest.len() >= n).then(|| {
                let (a, b) = rest.split_at(n);
                *rest = b;
                a
            })
        }
        fn len(rest: &mut &[u8], n: usize) -> Option<u64> {
            let b = take(rest, n)?;
            let mut a = [0u8; 8];
            a[..n].copy_from_slice(b);
            Some(u64::from_le_bytes(a))
        }
        let mut tables: Vec<Vec<(&[u8], &[u8])>> = Vec::with_capacity(5);
        let mut rest = dump;
        for _ in 0..5 {
            let count = len(&mut rest, 8).ok_or_else(|| bad("truncated"))?;
            let mut entries = Vec::new();
            for _ in 0..count {
                let (k, v) = (|| {
                    let kl = len(&mut rest, 4)? as usize;
                    let k = take(&mut rest, kl)?;
                    let vl = len(&mut rest, 4)? as usize;
                    Some((k, take(&mut rest, vl)?))
                })()
                .ok_or_else(|| bad("truncated"))?;
                entries.push((k, v));
            }
            tables.push(entries);
        }
        if !rest.is_empty() {
            return Err(bad("trailing bytes"));
        }
        let int = |k: &[u8]| -> Result<u64> {
            Ok(u64::from_le_bytes(
                k.try_into().map_err(|_| bad("integer key"))?,
            ))
        };
        let genesis = tables[0]
            .iter()
            .find(|(k, _)| *k == b"genesis")
            .map(|(_, v)| State::decode(v))
            .transpose()?
            .ok_or_else(|| bad("no genesis"))?;
        if let Some(mine) = self.genesis()?
            && mine.genesis != genesis.genesis
        {
            return Err(Error::GenesisMismatch {
                stored: mine.genesis,
                given: genesis.genesis,
            });
        }
        let w = self.db.begin_write().map_err(db)?;
        {
            let mut meta = w.open_table(META).map_err(db)?;
            meta.retain(|_, _| false).map_err(db)?;
            for (k, v) in &tables[0] {
                let k = std::str::from_utf8(k).map_err(|_| bad("meta key"))?;
                meta.insert(k, *v).map_err(db)?;
            }
            for (k, v) in extra {
                meta.insert(*k, *v).map_err(db)?;
            }
            for (i, table) in [BLOCKS, STATES, PENDING].into_iter().enumerate() {
                let mut t = w.open_table(table).map_err(db)?;
                t.retain(|_, _| false).map_err(db)?;
                for (k, v) in &tables[1 + i] {
                    t.insert(int(k)?, *v).map_err(db)?;
                }
            }
            let mut t = w.open_table(TXS).map_err(db)?;
            t.retain(|_, _| false).map_err(db)?;
            for (k, v) in &tables[4] {
                t.insert(*k, *v).map_err(db)?;
            }
        }
        w.commit().map_err(db)?;
        self.head_state()
    }
}
