//! The bytes of what the replicated ledger stores and sends: commands, log entries, log ids
//! and votes. Every decoder checks each length against what follows and a limit, and refuses
//! trailing bytes, with a typed [`Error`].
//!
//! Integers are little-endian. A log id is `term u64 | leader u64 | index u64`; an entry is its
//! log id, a kind byte (0 blank, 1 command, 2 membership) and the payload (a command as
//! [`Command::encode`] writes it, a membership as `u32` length and JSON).
//!
//! # Example
//! ```
//! use bt_replica::codec::{Command, Refused};
//! let c = Command::Block { block: vec![1, 2, 3], consumed: vec![7], refused: vec![] };
//! assert_eq!(Command::decode(&c.encode())?, c);
//! assert!(Command::decode(&[9]).is_err());
//! # Ok::<(), bt_replica::Error>(())
//! ```

use openraft::{CommittedLeaderId, EntryPayload, Membership};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::{Entry, LogId, NodeId, Peer, TypeConfig, Vote};

/// The most bytes one command, entry or membership may declare.
pub const MAX_ENTRY_BYTES: u64 = 256 << 20;

/// The most transactions one command may carry.
pub const MAX_TXS: u64 = 1 << 20;

/// What the leader puts in the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Submissions the leader accepted, in arrival order (its group commit): each an encoded,
    /// signature-checked transaction. Applying adds the new ones to the pending pool.
    Submit {
        /// The encoded transactions.
        txs: Vec<Vec<u8>>,
    },
    /// A block the leader built from the pool. Applying checks it against the replica's own
    /// state (height, parent, signatures, state hash) and commits it.
    Block {
        /// The encoded block.
        block: Vec<u8>,
        /// The pool entries it consumed (included or refused), by sequence number.
        consumed: Vec<u64>,
        /// The transactions refused while building it.
        refused: Vec<Refused>,
    },
}

/// A transaction the leader refused while building a block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    /// Its id.
    pub hash: [u8; 32],
    /// Why.
    pub why: String,
}

/// What applying an entry did, as the leader answers the client that proposed it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    /// A blank or membership entry.
    #[default]
    Nothing,
    /// Submissions: how many were new to the pool.
    Submitted {
        /// New pool entries.
        added: usize,
    },
    /// A block, now the head.
    Block {
        /// Its height.
        height: u64,
    },
    /// A block built on a head that is no longer the head (a leader that lost its place
    /// proposed it before the entries of the term before were applied): skipped, on every
    /// replica alike.
    Stale {
        /// Its height.
        height: u64,
    },
}

/// Reads fields off a byte string, naming `what` in its errors.
pub(crate) struct Reader<'a> {
    pub(crate) what: &'static str,
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(what: &'static str, bytes: &'a [u8]) -> Reader<'a> {
        Reader { what, rest: bytes }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.rest.len() < n {
            return Err(Error::Decode {
                what: self.what,
                reason: format!("truncated: {n} bytes wanted, {} left", self.rest.len()),
            });
        }
        let (a, b) = self.rest.split_at(n);
        self.rest = b;
        Ok(a)
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    /// A count or length, at most `max` and (each item being at least `unit` bytes) no more
    /// than the bytes left could hold.
    pub(crate) fn len(&mut self, max: u64, unit: u64) -> Result<usize> {
        let n = u64::from(self.u32()?);
        let room = self.rest.len() as u64 / unit.max(1);
        if n > max || n > room {
            return Err(Error::TooLarge {
                what: self.what,
                len: n,
                max: max.min(room),
            });
        }
        Ok(n as usize)
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.len(MAX_ENTRY_BYTES, 1)?;
        self.take(n)
    }

    pub(crate) fn done(&self) -> Result<()> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(Error::Decode {
                what: self.what,
                reason: format!("{} trailing bytes", self.rest.len()),
            })
        }
    }
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

impl Command {
    /// Its bytes: a tag (0 submit, 1 block), then the fields, each list as a `u32` count.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Command::Submit { txs } => {
                out.push(0);
                out.extend_from_slice(&(txs.len() as u32).to_le_bytes());
                for tx in txs {
                    put_bytes(out, tx);
                }
            }
            Command::Block {
                block,
                consumed,
                refused,
            } => {
                out.push(1);
                put_bytes(out, block);
                out.extend_from_slice(&(consumed.len() as u32).to_le_bytes());
                for seq in consumed {
                    out.extend_from_slice(&seq.to_le_bytes());
                }
                out.extend_from_slice(&(refused.len() as u32).to_le_bytes());
                for r in refused {
                    out.extend_from_slice(&r.hash);
                    put_bytes(out, r.why.as_bytes());
                }
            }
        }
    }

    /// Decodes [`Command::encode`]'s bytes.
    pub fn decode(bytes: &[u8]) -> Result<Command> {
        let mut r = Reader::new("command", bytes);
        let c = Command::read(&mut r)?;
        r.done()?;
        Ok(c)
    }

    fn read(r: &mut Reader<'_>) -> Result<Command> {
        match r.u8()? {
            0 => {
                let n = r.len(MAX_TXS, 4)?;
                let mut txs = Vec::with_capacity(n);
                for _ in 0..n {
                    txs.push(r.bytes()?.to_vec());
                }
                Ok(Command::Submit { txs })
            }
            1 => {
                let block = r.bytes()?.to_vec();
                let n = r.len(MAX_TXS, 8)?;
                let mut consumed = Vec::with_capacity(n);
                for _ in 0..n {
                    consumed.push(r.u64()?);
                }
                let n = r.len(MAX_TXS, 36)?;
                let mut refused = Vec::with_capacity(n);
                for _ in 0..n {
                    let mut hash = [0u8; 32];
                    hash.copy_from_slice(r.take(32)?);
                    let why = std::str::from_utf8(r.bytes()?)
                        .map_err(|e| Error::Decode {
                            what: r.what,
                            reason: format!("refusal reason is not UTF-8: {e}"),
                        })?
                        .to_string();
                    refused.push(Refused { hash, why });
                }
                Ok(Command::Block {
                    block,
                    consumed,
                    refused,
                })
            }
            tag => Err(Error::Decode {
                what: r.what,
                reason: format!("unknown command tag {tag}"),
            }),
        }
    }
}

/// A log id's 24 bytes: term, leader, index.
pub fn encode_log_id(id: &LogId) -> [u8; 24] {
    let mut out = [0u8; 24];
    out[..8].copy_from_slice(&id.leader_id.term.to_le_bytes());
    out[8..16].copy_from_slice(&id.leader_id.node_id.to_le_bytes());
    out[16..].copy_from_slice(&id.index.to_le_bytes());
    out
}

pub(crate) fn read_log_id(r: &mut Reader<'_>) -> Result<LogId> {
    let term = r.u64()?;
    let node: NodeId = r.u64()?;
    let index = r.u64()?;
    Ok(LogId::new(CommittedLeaderId::new(term, node), index))
}

/// Decodes [`encode_log_id`]'s bytes.
pub fn decode_log_id(bytes: &[u8]) -> Result<LogId> {
    let mut r = Reader::new("log id", bytes);
    let id = read_log_id(&mut r)?;
    r.done()?;
    Ok(id)
}

/// A vote's 17 bytes: term, node, committed (0 or 1).
pub fn encode_vote(v: &Vote) -> [u8; 17] {
    let mut out = [0u8; 17];
    out[..8].copy_from_slice(&v.leader_id.term.to_le_bytes());
    out[8..16].copy_from_slice(&v.leader_id.node_id.to_le_bytes());
    out[16] = u8::from(v.committed);
    out
}

/// Decodes [`encode_vote`]'s bytes.
pub fn decode_vote(bytes: &[u8]) -> Result<Vote> {
    let mut r = Reader::new("vote", bytes);
    let term = r.u64()?;
    let node = r.u64()?;
    let committed = match r.u8()? {
        0 => false,
        1 => true,
        b => {
            return Err(Error::Decode {
                what: "vote",
                reason: format!("committed flag {b}"),
            });
        }
    };
    r.done()?;
    let mut v = Vote::new(term, node);
    if committed {
        v.commit();
    }
    Ok(v)
}

/// A membership as JSON (it is small and rare).
pub fn encode_membership(m: &Membership<NodeId, Peer>) -> Vec<u8> {
    serde_json::to_vec(m).unwrap_or_default()
}

/// Decodes [`encode_membership`]'s bytes.
pub fn decode_membership(bytes: &[u8]) -> Result<Membership<NodeId, Peer>> {
    serde_json::from_slice(bytes).map_err(|e| Error::Decode {
        what: "membership",
        reason: e.to_string(),
    })
}

/// A log entry's bytes.
pub fn encode_entry(e: &Entry) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    out.extend_from_slice(&encode_log_id(&e.log_id));
    match &e.payload {
        EntryPayload::Blank => out.push(0),
        EntryPayload::Normal(c) => {
            out.push(1);
            c.encode_into(&mut out);
        }
        EntryPayload::Membership(m) => {
            out.push(2);
            put_bytes(&mut out, &encode_membership(m));
        }
    }
    out
}

/// Decodes [`encode_entry`]'s bytes.
pub fn decode_entry(bytes: &[u8]) -> Result<Entry> {
    let mut r = Reader::new("log entry", bytes);
    let log_id = read_log_id(&mut r)?;
    let payload: EntryPayload<TypeConfig> = match r.u8()? {
        0 => EntryPayload::Blank,
        1 => EntryPayload::Normal(Command::read(&mut r)?),
        2 => EntryPayload::Membership(decode_membership(r.bytes()?)?),
        kind => {
            return Err(Error::Decode {
                what: "log entry",
                reason: format!("unknown kind {kind}"),
            });
        }
    };
    r.done()?;
    Ok(Entry { log_id, payload })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn entries() -> Vec<Entry> {
        let id = |i| LogId::new(CommittedLeaderId::new(3, 2), i);
        let nodes: BTreeMap<NodeId, Peer> = [(
            1,
            Peer {
                raft: "127.0.0.1:1".into(),
                api: "127.0.0.1:2".into(),
            },
        )]
        .into();
        vec![
            Entry {
                log_id: id(1),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: id(2),
                payload: EntryPayload::Normal(Command::Submit {
                    txs: vec![vec![1, 2], vec![], vec![9; 300]],
                }),
            },
            Entry {
                log_id: id(3),
                payload: EntryPayload::Normal(Command::Block {
                    block: vec![5; 40],
                    consumed: vec![0, 1, 7],
                    refused: vec![Refused {
                        hash: [4; 32],
                        why: "stale nonce".into(),
                    }],
                }),
            },
            Entry {
                log_id: id(4),
                payload: EntryPayload::Membership(Membership::new(
                    vec![BTreeSet::from([1])],
                    nodes,
                )),
            },
        ]
    }

    #[test]
    fn entries_round_trip() {
        for e in entries() {
            let bytes = encode_entry(&e);
            let back = decode_entry(&bytes).expect("decodes");
            assert_eq!(back.log_id, e.log_id);
            assert_eq!(format!("{:?}", back.payload), format!("{:?}", e.payload));
        }
    }

    #[test]
    fn every_truncation_and_trailing_byte_is_refused() {
        for e in entries() {
            let bytes = encode_entry(&e);
            for cut in 0..bytes.len() {
                assert!(decode_entry(&bytes[..cut]).is_err(), "cut at {cut}");
            }
            let mut long = bytes.clone();
            long.push(0);
            assert!(matches!(
                decode_entry(&long),
                Err(Error::Decode { reason, .. }) if reason.contains("trailing")
            ));
        }
    }

    #[test]
    fn a_huge_declared_count_is_refused_before_allocating() {
        let mut b = vec![0u8];
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Command::decode(&b),
            Err(Error::TooLarge {
                what: "command",
                ..
            })
        ));
        assert!(matches!(
            Command::decode(&[7]),
            Err(Error::Decode { reason, .. }) if reason.contains("tag 7")
        ));
    }

    #[test]
    fn votes_and_log_ids_round_trip_and_refuse_bad_flags() {
        let mut v = Vote::new(9, 4);
        assert_eq!(decode_vote(&encode_vote(&v)).expect("vote"), v);
        v.commit();
        assert_eq!(decode_vote(&encode_vote(&v)).expect("vote"), v);
        let mut bad = encode_vote(&v);
        bad[16] = 2;
        assert!(decode_vote(&bad).is_err());
        let id = LogId::new(CommittedLeaderId::new(5, 1), 77);
        assert_eq!(decode_log_id(&encode_log_id(&id)).expect("id"), id);
        assert!(decode_log_id(&[0; 23]).is_err());
    }
}
