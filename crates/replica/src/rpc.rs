//! The bytes of the raft RPCs between validators: each openraft request and reply, and the
//! error a validator answers with. Decoders check every length and refuse trailing bytes.
//!
//! A reply frame is a tag byte, then `0`: the encoded reply, or `1`: the remote's error as
//! JSON (openraft's own error types; rare and small).

use openraft::SnapshotMeta;
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use crate::codec::{
    Reader, decode_entry, decode_vote, encode_entry, encode_log_id, encode_vote, put_bytes,
    read_log_id,
};
use crate::error::{Error, Result};
use crate::{LogId, NodeId, Peer, TypeConfig, Vote};

/// The most entries one AppendEntries may carry.
pub const MAX_ENTRIES: u64 = 1 << 20;

fn put_opt_log_id(out: &mut Vec<u8>, id: &Option<LogId>) {
    match id {
        None => out.push(0),
        Some(id) => {
            out.push(1);
            out.extend_from_slice(&encode_log_id(id));
        }
    }
}

fn read_opt_log_id(r: &mut Reader<'_>) -> Result<Option<LogId>> {
    match r.u8()? {
        0 => Ok(None),
        1 => Ok(Some(read_log_id(r)?)),
        b => Err(Error::Decode {
            what: r.what,
            reason: format!("optional log id flag {b}"),
        }),
    }
}

fn read_vote(r: &mut Reader<'_>) -> Result<Vote> {
    decode_vote(r.take(17)?)
}

fn read_bool(r: &mut Reader<'_>) -> Result<bool> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        b => Err(Error::Decode {
            what: r.what,
            reason: format!("flag {b}"),
        }),
    }
}

/// An AppendEntries request's bytes.
pub fn encode_append(req: &AppendEntriesRequest<TypeConfig>) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&encode_vote(&req.vote));
    put_opt_log_id(&mut out, &req.prev_log_id);
    put_opt_log_id(&mut out, &req.leader_commit);
    out.extend_from_slice(&(req.entries.len() as u32).to_le_bytes());
    for e in &req.entries {
        put_bytes(&mut out, &encode_entry(e));
    }
    out
}

/// Decodes [`encode_append`]'s bytes.
pub fn decode_append(bytes: &[u8]) -> Result<AppendEntriesRequest<TypeConfig>> {
    let mut r = Reader::new("append-entries request", bytes);
    let vote = read_vote(&mut r)?;
    let prev_log_id = read_opt_log_id(&mut r)?;
    let leader_commit = read_opt_log_id(&mut r)?;
    let n = r.len(MAX_ENTRIES, 4)?;
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        entries.push(decode_entry(r.bytes()?)?);
    }
    r.done()?;
    Ok(AppendEntriesRequest {
        vote,
        prev_log_id,
        entries,
        leader_commit,
    })
}

/// An AppendEntries reply's bytes.
pub fn encode_append_reply(resp: &AppendEntriesResponse<NodeId>) -> Vec<u8> {
    let mut out = Vec::new();
    match resp {
        AppendEntriesResponse::Success => out.push(0),
        AppendEntriesResponse::PartialSuccess(id) => {
            out.push(1);
            put_opt_log_id(&mut out, id);
        }
        AppendEntriesResponse::Conflict => out.push(2),
        AppendEntriesResponse::HigherVote(v) => {
            out.push(3);
            out.extend_from_slice(&encode_vote(v));
        }
    }
    out
}

/// Decodes [`encode_append_reply`]'s bytes.
pub fn decode_append_reply(bytes: &[u8]) -> Result<AppendEntriesResponse<NodeId>> {
    let mut r = Reader::new("append-entries reply", bytes);
    let resp = match r.u8()? {
        0 => AppendEntriesResponse::Success,
        1 => AppendEntriesResponse::PartialSuccess(read_opt_log_id(&mut r)?),
        2 => AppendEntriesResponse::Conflict,
        3 => AppendEntriesResponse::HigherVote(read_vote(&mut r)?),
        t => {
            return Err(Error::Decode {
                what: r.what,
                reason: format!("unknown tag {t}"),
            });
        }
    };
    r.done()?;
    Ok(resp)
}

/// A vote request's bytes.
pub fn encode_vote_request(req: &VoteRequest<NodeId>) -> Vec<u8> {
    let mut out = encode_vote(&req.vote).to_vec();
    put_opt_log_id(&mut out, &req.last_log_id);
    out
}

/// Decodes [`encode_vote_request`]'s bytes.
pub fn decode_vote_request(bytes: &[u8]) -> Result<VoteRequest<NodeId>> {
    let mut r = Reader::new("vote request", bytes);
    let vote = read_vote(&mut r)?;
    let last_log_id = read_opt_log_id(&mut r)?;
    r.done()?;
    Ok(VoteRequest { vote, last_log_id })
}

/// A vote reply's bytes.
pub fn encode_vote_reply(resp: &VoteResponse<NodeId>) -> Vec<u8> {
    let mut out = encode_vote(&resp.vote).to_vec();
    out.push(u8::from(resp.vote_granted));
    put_opt_log_id(&mut out, &resp.last_log_id);
    out
}

/// Decodes [`encode_vote_reply`]'s bytes.
pub fn decode_vote_reply(bytes: &[u8]) -> Result<VoteResponse<NodeId>> {
    let mut r = Reader::new("vote reply", bytes);
    let vote = read_vote(&mut r)?;
    let vote_granted = read_bool(&mut r)?;
    let last_log_id = read_opt_log_id(&mut r)?;
    r.done()?;
    Ok(VoteResponse {
        vote,
        vote_granted,
        last_log_id,
    })
}

/// A snapshot chunk's bytes: vote, meta (JSON), offset, data, done.
pub fn encode_snapshot_chunk(req: &InstallSnapshotRequest<TypeConfig>) -> Vec<u8> {
    let mut out = encode_vote(&req.vote).to_vec();
    put_bytes(&mut out, &serde_json::to_vec(&req.meta).unwrap_or_default());
    out.extend_from_slice(&req.offset.to_le_bytes());
    put_bytes(&mut out, &req.data);
    out.push(u8::from(req.done));
    out
}

/// Decodes [`encode_snapshot_chunk`]'s bytes.
pub fn decode_snapshot_chunk(bytes: &[u8]) -> Result<InstallSnapshotRequest<TypeConfig>> {
    let mut r = Reader::new("snapshot chunk", bytes);
    let vote = read_vote(&mut r)?;
    let meta: SnapshotMeta<NodeId, Peer> =
        serde_json::from_slice(r.bytes()?).map_err(|e| Error::Decode {
            what: "snapshot chunk",
            reason: format!("meta: {e}"),
        })?;
    let offset = r.u64()?;
    let data = r.bytes()?.to_vec();
    let done = read_bool(&mut r)?;
    r.done()?;
    Ok(InstallSnapshotRequest {
        vote,
        meta,
        offset,
        data,
        done,
    })
}

/// A snapshot chunk reply's bytes (the receiver's vote).
pub fn encode_snapshot_reply(resp: &InstallSnapshotResponse<NodeId>) -> Vec<u8> {
    encode_vote(&resp.vote).to_vec()
}

/// Decodes [`encode_snapshot_reply`]'s bytes.
pub fn decode_snapshot_reply(bytes: &[u8]) -> Result<InstallSnapshotResponse<NodeId>> {
    Ok(InstallSnapshotResponse {
        vote: decode_vote(bytes)?,
    })
}

/// A reply frame: `0` and the reply, or `1` and the remote's error as JSON.
pub fn reply_frame<T, E: serde::Serialize>(
    r: &std::result::Result<T, E>,
    encode: impl Fn(&T) -> Vec<u8>,
) -> Vec<u8> {
    match r {
        Ok(v) => {
            let mut out = vec![0];
            out.extend_from_slice(&encode(v));
            out
        }
        Err(e) => {
            let mut out = vec![1];
            out.extend_from_slice(&serde_json::to_vec(e).unwrap_or_default());
            out
        }
    }
}

/// What a reply frame holds.
#[derive(Debug)]
pub enum Reply<T, E> {
    /// The reply.
    Ok(T),
    /// The remote's raft error.
    Remote(E),
}

/// Decodes a reply frame with `decode` for the reply.
pub fn decode_reply_frame<T, E: serde::de::DeserializeOwned>(
    bytes: &[u8],
    decode: impl Fn(&[u8]) -> Result<T>,
) -> Result<Reply<T, E>> {
    match bytes.split_first() {
        Some((0, rest)) => Ok(Reply::Ok(decode(rest)?)),
        Some((1, rest)) => serde_json::from_slice(rest)
            .map(Reply::Remote)
            .map_err(|e| Error::Decode {
                what: "raft error reply",
                reason: e.to_string(),
            }),
        Some((t, _)) => Err(Error::Decode {
            what: "raft reply",
            reason: format!("unknown tag {t}"),
        }),
        None => Err(Error::Decode {
            what: "raft reply",
            reason: "empty".into(),
        }),
    }
}

/// The error types each RPC's reply may carry.
pub type AppendError = RaftError<NodeId>;
/// See [`AppendError`].
pub type VoteError = RaftError<NodeId>;
/// See [`AppendError`].
pub type SnapshotError = RaftError<NodeId, InstallSnapshotError>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Command;
    use openraft::{CommittedLeaderId, EntryPayload, Vote as RaftVote};

    fn id(i: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(2, 1), i)
    }

    #[test]
    fn every_request_and_reply_round_trips_and_refuses_truncation() {
        let append = AppendEntriesRequest::<TypeConfig> {
            vote: RaftVote::new_committed(2, 1),
            prev_log_id: Some(id(4)),
            entries: vec![crate::Entry {
                log_id: id(5),
                payload: EntryPayload::Normal(Command::Submit {
                    txs: vec![vec![1, 2, 3]],
                }),
            }],
            leader_commit: Some(id(3)),
        };
        let bytes = encode_append(&append);
        let back = decode_append(&bytes).expect("append");
        assert_eq!(format!("{back:?}"), format!("{append:?}"));
        for cut in 0..bytes.len() {
            assert!(decode_append(&bytes[..cut]).is_err(), "cut {cut}");
        }
        for reply in [
            AppendEntriesResponse::Success,
            AppendEntriesResponse::PartialSuccess(Some(id(9))),
            AppendEntriesResponse::PartialSuccess(None),
            AppendEntriesResponse::Conflict,
            AppendEntriesResponse::HigherVote(RaftVote::new(7, 3)),
        ] {
            let b = encode_append_reply(&reply);
            assert_eq!(decode_append_reply(&b).expect("reply"), reply);
        }
        let vote = VoteRequest {
            vote: RaftVote::new(3, 2),
            last_log_id: None,
        };
        assert_eq!(
            decode_vote_request(&encode_vote_request(&vote)).expect("vote"),
            vote
        );
        let reply = VoteResponse {
            vote: RaftVote::new(3, 2),
            vote_granted: true,
            last_log_id: Some(id(1)),
        };
        assert_eq!(
            decode_vote_reply(&encode_vote_reply(&reply)).expect("vote reply"),
            reply
        );
        let mut bad = encode_vote_reply(&reply);
        bad[17] = 5;
        assert!(decode_vote_reply(&bad).is_err());
    }

    #[test]
    fn error_frames_carry_the_remotes_error() {
        let e: std::result::Result<(), VoteError> =
            Err(RaftError::Fatal(openraft::error::Fatal::Stopped));
        let frame = reply_frame(&e, |_| Vec::new());
        match decode_reply_frame::<(), VoteError>(&frame, |_| Ok(())).expect("frame") {
            Reply::Remote(RaftError::Fatal(openraft::error::Fatal::Stopped)) => {}
            other => panic!("{other:?}"),
        }
        assert!(decode_reply_frame::<(), VoteError>(&[], |_| Ok(())).is_err());
        assert!(decode_reply_frame::<(), VoteError>(&[4], |_| Ok(())).is_err());
    }
}
