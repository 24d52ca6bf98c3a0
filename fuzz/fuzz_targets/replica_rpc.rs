//! Fuzzes the decoders of every raft message a validator receives from another
//! (`bt_replica::rpc`): AppendEntries, votes, snapshot chunks, and reply frames carrying a
//! remote error. The first byte picks the decoder. Nothing may panic.
#![no_main]

use bt_replica::rpc::{
    AppendError, SnapshotError, decode_append, decode_append_reply, decode_reply_frame,
    decode_snapshot_chunk, decode_snapshot_reply, decode_vote_reply, decode_vote_request,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 7 {
        0 => drop(decode_append(rest)),
        1 => drop(decode_append_reply(rest)),
        2 => drop(decode_vote_request(rest)),
        3 => drop(decode_vote_reply(rest)),
        4 => drop(decode_snapshot_chunk(rest)),
        5 => drop(decode_snapshot_reply(rest)),
        _ => {
            drop(decode_reply_frame::<_, AppendError>(
                rest,
                decode_append_reply,
            ));
            drop(decode_reply_frame::<_, SnapshotError>(
                rest,
                decode_snapshot_reply,
            ));
        }
    }
});
