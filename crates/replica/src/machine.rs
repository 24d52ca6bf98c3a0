//! The state machine: the chain's store, driven by the log's commands.

use std::io::Cursor;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use bt_chain::store::{BlockCommit, Store};
use bt_ledger::{Block, Hash, State};
use openraft::storage::RaftStateMachine;
use openraft::{
    EntryPayload, OptionalSend, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageIOError,
    StoredMembership,
};

use crate::codec::{Applied, Command, decode_log_id, encode_log_id};
use crate::error::{Error, Result};
use crate::{Entry, LogId, NodeId, Peer, StorageError, TypeConfig};

/// `meta` keys of the chain's store that the replica writes beside each change.
const APPLIED: &str = "raft_applied";
const MEMBERSHIP: &str = "raft_membership";

/// A snapshot kept in memory: its meta and bytes.
type Kept = (SnapshotMeta<NodeId, Peer>, Vec<u8>);

/// The replicated ledger's state machine over one validator's chain store. Clones share it.
#[derive(Clone, Debug)]
pub struct Machine {
    store: Arc<Store>,
    head: Arc<RwLock<Arc<State>>>,
    /// The last snapshot built or installed.
    snapshot: Arc<RwLock<Option<Kept>>>,
    /// The header of each block applied here.
    blocks: tokio::sync::broadcast::Sender<bt_ledger::Header>,
    /// The block this validator last built as leader, by header hash, with the state after
    /// it: when that block comes back committed, its state is not computed a second time.
    built: Arc<Mutex<Option<(Hash, State)>>>,
}

fn sm_read(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_state_machine(&e).into()
}

impl Machine {
    /// Opens (or, with `genesis`, creates) the chain store in `dir`, as `bt chain run` does.
    pub fn open(dir: &Path, genesis: Option<&State>) -> Result<Machine> {
        let (store, head) = Store::open(dir, genesis)?;
        Ok(Machine {
            store: Arc::new(store),
            head: Arc::new(RwLock::new(Arc::new(head))),
            snapshot: Arc::new(RwLock::new(None)),
            blocks: tokio::sync::broadcast::channel(1024).0,
            built: Arc::new(Mutex::new(None)),
        })
    }

    /// Keeps the state after a block this validator built as leader, for when the block is
    /// committed (a later one replaces it).
    pub(crate) fn remember_built(&self, header: Hash, state: State) {
        *self.built.lock().unwrap_or_else(|p| p.into_inner()) = Some((header, state));
    }

    fn take_built(&self, header: Hash) -> Option<State> {
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        match built.take() {
            Some((h, state)) if h == header => Some(state),
            other => {
                *built = other;
                None
            }
        }
    }

    /// The header of every block applied from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<bt_ledger::Header> {
        self.blocks.subscribe()
    }

    /// The state after the last applied block.
    pub fn head(&self) -> Arc<State> {
        self.head.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The chain's store (readers answer queries from it).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The last applied log id and the membership, as stored beside the last change.
    pub fn applied(&self) -> Result<(Option<LogId>, StoredMembership<NodeId, Peer>)> {
        let applied = self
            .store
            .get_meta(APPLIED)?
            .map(|b| decode_log_id(&b))
            .transpose()?;
        let membership = match self.store.get_meta(MEMBERSHIP)? {
            Some(b) => serde_json::from_slice(&b).map_err(|e| Error::Decode {
                what: "stored membership",
                reason: e.to_string(),
            })?,
            None => StoredMembership::default(),
        };
        Ok((applied, membership))
    }

    /// Applies one entry; its log id (and a new membership) are written in the same
    /// transaction as its change.
    pub fn apply_entry(&self, entry: &Entry) -> Result<Applied> {
        let id = encode_log_id(&entry.log_id);
        match &entry.payload {
            EntryPayload::Blank => {
                self.store.put_meta(&[(APPLIED, &id)])?;
                Ok(Applied::Nothing)
            }
            EntryPayload::Membership(m) => {
                let stored = StoredMembership::new(Some(entry.log_id), m.clone());
                let json = serde_json::to_vec(&stored).map_err(|e| Error::Decode {
                    what: "membership",
                    reason: e.to_string(),
                })?;
                self.store
                    .put_meta(&[(APPLIED, &id), (MEMBERSHIP, &json)])?;
                Ok(Applied::Nothing)
            }
            EntryPayload::Normal(Command::Submit { txs }) => {
                let fresh: Vec<(Hash, Vec<u8>)> =
                    txs.iter().map(|b| (Hash::of(b), b.clone())).collect();
                let added = self.store.add_pending_with(&fresh, &[(APPLIED, &id)])?;
                Ok(Applied::Submitted { added })
            }
            EntryPayload::Normal(Command::Block {
                block,
                consumed,
                refused,
            }) => {
                let head = self.head();
                let block = Block::decode(block, usize::MAX).map_err(|e| Error::Diverged {
                    height: head.height + 1,
                    source: e,
                })?;
                let height = block.header.height;
                if height != head.height + 1 || block.header.parent != head.head {
                    self.store.put_meta(&[(APPLIED, &id)])?;
                    return Ok(Applied::Stale { height });
                }
                let state = match self.take_built(block.header.hash()) {
                    // Built here on this very head: `apply` would compute the same state.
                    Some(state) => state,
                    None => {
                        bt_ledger::apply(&head, &block)
                            .map_err(|source| Error::Diverged { height, source })?
                            .0
                    }
                };
                let refused: Vec<(Hash, String)> = refused
                    .iter()
                    .map(|r| (Hash(r.hash), r.why.clone()))
                    .collect();
                self.store.commit_block_with(
                    &BlockCommit {
                        block: &block,
                        state: &state.encode(),
                        consumed,
                        refused: &refused,
                    },
                    &[(APPLIED, &id)],
                )?;
                *self.head.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(state);
                let _ = self.blocks.send(block.header);
                Ok(Applied::Block { height })
            }
        }
    }

    fn build(&self) -> Result<Snapshot<TypeConfig>> {
        // The dump is one read transaction: its applied id, membership and tables agree.
        let data = self.store.dump()?;
        let (last_log_id, last_membership) = self.applied()?;
        let snapshot_id = match last_log_id {
            Some(id) => format!(
                "{}-{}-{}",
                id.leader_id.term, id.leader_id.node_id, id.index
            ),
            None => "empty".to_string(),
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
            snapshot_id,
        };
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) =
            Some((meta.clone(), data.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }

    fn install(&self, meta: &SnapshotMeta<NodeId, Peer>, data: Vec<u8>) -> Result<()> {
        let membership = serde_json::to_vec(&meta.last_membership).map_err(|e| Error::Decode {
            what: "membership",
            reason: e.to_string(),
        })?;
        let applied = meta.last_log_id.map(|id| encode_log_id(&id));
        let mut extra: Vec<(&str, &[u8])> = vec![(MEMBERSHIP, &membership)];
        if let Some(a) = &applied {
            extra.push((APPLIED, a));
        }
        let head = self.store.restore(&data, &extra)?;
        *self.head.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(head);
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Some((meta.clone(), data));
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for Machine {
    async fn build_snapshot(&mut self) -> std::result::Result<Snapshot<TypeConfig>, StorageError> {
        self.build()
            .map_err(|e| StorageIOError::read_state_machine(&e).into())
    }
}

impl RaftStateMachine<TypeConfig> for Machine {
    type SnapshotBuilder = Machine;

    async fn applied_state(
        &mut self,
    ) -> std::result::Result<(Option<LogId>, StoredMembership<NodeId, Peer>), StorageError> {
        self.applied().map_err(sm_read)
    }

    async fn apply<I>(&mut self, entries: I) -> std::result::Result<Vec<Applied>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        // Applying a block verifies every signature on every core: on a multi-threaded
        // runtime, tell it this worker is busy so that heartbeats and votes keep moving.
        let multi = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        for entry in entries {
            let applied = if multi {
                tokio::task::block_in_place(|| self.apply_entry(&entry))
            } else {
                self.apply_entry(&entry)
            };
            match applied {
                Ok(a) => out.push(a),
                Err(e) => {
                    tracing::error!(index = entry.log_id.index, error = %e, "cannot apply; stopping");
                    return Err(StorageIOError::apply(entry.log_id, &e).into());
                }
            }
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Machine {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> std::result::Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Peer>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> std::result::Result<(), StorageError> {
        self.install(meta, snapshot.into_inner())
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e).into())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> std::result::Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self
            .snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .map(|(meta, data)| Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(data)),
            }))
    }
}
