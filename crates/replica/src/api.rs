//! A validator's ledger API ([`bt_chain::Backend`]): queries read its own store; a
//! submission is checked as the single node checks it, then, on the leader, joins the next
//! group commit (one `Submit` log entry for every submission waiting) and is acknowledged once
//! that entry is committed; a follower forwards it to the leader's API.

use std::collections::BTreeMap;
use std::sync::Arc;

use bt_chain::TxStatus;
use bt_chain::proto::Replication;
use bt_ledger::{Hash, Header, State, Transaction};
use openraft::Raft;
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot};

use crate::codec::Command;
use crate::error::Error;
use crate::replica::write;
use crate::{Machine, NodeId, Peer, TypeConfig};

/// Submissions that may wait for the next group commit.
const QUEUE: usize = 65_536;
/// The most submissions in one `Submit` entry.
const MAX_GROUP: usize = 8_192;
/// `Submit` entries proposed and not yet committed, at most: raft pipelines them, and the
/// submissions that arrive meanwhile gather into the next.
const IN_FLIGHT: usize = 2;

struct Waiting {
    bytes: Vec<u8>,
    hash: Hash,
    reply: oneshot::Sender<bt_chain::Result<Hash>>,
}

/// The API side of a validator.
pub(crate) struct ReplicaBackend {
    id: NodeId,
    raft: Raft<TypeConfig>,
    machine: Machine,
    members: BTreeMap<NodeId, Peer>,
    queue: mpsc::Sender<Waiting>,
    max_pending: u64,
    /// The connection to the leader's API that a follower forwards through, kept between
    /// submissions (its address says which leader it reaches).
    forward: tokio::sync::Mutex<Option<bt_chain::Client>>,
}

impl ReplicaBackend {
    /// The backend, and the group-commit task to spawn.
    pub(crate) fn new(
        id: NodeId,
        raft: Raft<TypeConfig>,
        machine: Machine,
        members: BTreeMap<NodeId, Peer>,
        max_pending: u64,
    ) -> (
        ReplicaBackend,
        impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let (queue, rx) = mpsc::channel(QUEUE);
        let task = group_commit(raft.clone(), rx);
        (
            ReplicaBackend {
                id,
                raft,
                machine,
                members,
                queue,
                max_pending,
                forward: tokio::sync::Mutex::new(None),
            },
            task,
        )
    }

    /// A connection to the leader's API at `url`: the kept one if it reaches `url`.
    async fn forwarder(&self, url: &str) -> bt_chain::Result<bt_chain::Client> {
        let mut kept = self.forward.lock().await;
        if let Some(c) = kept.as_ref().filter(|c| c.url() == url) {
            return Ok(c.clone());
        }
        let c = bt_chain::Client::connect(url).await?;
        *kept = Some(c.clone());
        Ok(c)
    }

    fn leader(&self) -> Option<(NodeId, Option<&Peer>)> {
        let leader = self.raft.metrics().borrow().current_leader?;
        Some((leader, self.members.get(&leader)))
    }
}

/// A replica error as the API's.
fn chain_error(e: Error) -> bt_chain::Error {
    match e {
        Error::NotLeader { .. } => bt_chain::Error::NoLeader,
        Error::Chain(c) => c,
        e => bt_chain::Error::NotStored {
            reason: e.to_string(),
        },
    }
}

/// Takes every submission waiting, proposes them as one entry, answers each once it is
/// committed. At most [`IN_FLIGHT`] entries are on their way at once: whatever arrives
/// meanwhile waits for the next group (one entry per submission made every entry pay its own
/// disk writes on every validator, and a submission waited behind all of them).
async fn group_commit(raft: Raft<TypeConfig>, mut rx: mpsc::Receiver<Waiting>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(w) => group.push(w),
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let txs = group.iter().map(|w| w.bytes.clone()).collect();
            // A leader deposed meanwhile answers "no leader" (clients retry, or ask another
            // validator); any other failure says why it was not stored.
            let failed = write(&raft, Command::Submit { txs })
                .await
                .err()
                .map(|e| (matches!(e, Error::NotLeader { .. }), e.to_string()));
            drop(slot);
            for w in group {
                let _ = w.reply.send(match &failed {
                    None => Ok(w.hash),
                    Some((true, _)) => Err(bt_chain::Error::NoLeader),
                    Some((false, reason)) => Err(bt_chain::Error::NotStored {
                        reason: reason.clone(),
                    }),
                });
            }
        });
    }
}

#[tonic::async_trait]
impl bt_chain::Backend for ReplicaBackend {
    fn head(&self) -> Arc<State> {
        self.machine.head()
    }

    fn store(&self) -> bt_chain::Result<Arc<bt_chain::Store>> {
        Ok(self.machine.store().clone())
    }

    fn subscribe(&self) -> broadcast::Receiver<Header> {
        self.machine.subscribe()
    }

    fn pending(&self) -> u64 {
        self.machine.store().pending_len().unwrap_or(0)
    }

    async fn submit(&self, tx: Transaction, bytes: Vec<u8>) -> bt_chain::Result<Hash> {
        let hash = Hash::of(&bytes);
        let store = self.machine.store();
        // The single node's checks, against this validator's copy.
        match store.tx_status(&hash)? {
            TxStatus::Pending | TxStatus::Included(_) => return Ok(hash),
            TxStatus::Refused(reason) => return Err(bt_chain::Error::Refused { reason }),
            TxStatus::Unknown => {}
        }
        let expected = self.machine.head().nonce(&tx.signer);
        if tx.nonce < expected {
            return Err(bt_ledger::Error::StaleNonce {
                account: tx.signer,
                expected,
                got: tx.nonce,
            }
            .into());
        }
        if store.pending_len()? >= self.max_pending {
            return Err(bt_chain::Error::PoolFull {
                max: self.max_pending as usize,
            });
        }
        match self.leader() {
            Some((leader, _)) if leader == self.id => {
                let (reply, rx) = oneshot::channel();
                self.queue
                    .try_send(Waiting { bytes, hash, reply })
                    .map_err(|_| bt_chain::Error::PoolFull { max: QUEUE })?;
                rx.await.map_err(|_| bt_chain::Error::Stopped)?
            }
            Some((_, Some(peer))) => {
                // A follower forwards to the leader's API.
                let mut c = self.forwarder(&format!("http://{}", peer.api)).await?;
                let answer = c.submit_bytes(bytes).await;
                if let Err(bt_chain::Error::Unreachable { .. }) = answer {
                    *self.forward.lock().await = None;
                }
                answer
            }
            _ => Err(chain_error(Error::NotLeader {
                leader: None,
                api: None,
            })),
        }
    }

    fn replication(&self) -> Option<Replication> {
        let m = self.raft.metrics().borrow().clone();
        Some(Replication {
            id: self.id,
            role: crate::replica::role(m.state).to_string(),
            term: m.current_term,
            leader: m.current_leader,
            leader_api: m
                .current_leader
                .and_then(|l| self.members.get(&l))
                .map(|p| p.api.clone())
                .unwrap_or_default(),
            applied_index: m.last_applied.map(|l| l.index),
            last_log_index: m.last_log_index,
        })
    }
}
