//! Fuzzes the decoders of what a validator stores and replays: log entries, commands, votes
//! and log ids (`bt_replica::codec`). Nothing may panic, and whatever decodes must encode back
//! to bytes that decode to the same value.
#![no_main]

use bt_replica::codec::{
    Command, decode_entry, decode_log_id, decode_vote, encode_entry, encode_log_id, encode_vote,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = decode_entry(data) {
        let again = decode_entry(&encode_entry(&e)).expect("re-encoded entry decodes");
        assert_eq!(again.log_id, e.log_id);
        assert_eq!(format!("{:?}", again.payload), format!("{:?}", e.payload));
    }
    if let Ok(c) = Command::decode(data) {
        assert_eq!(Command::decode(&c.encode()).expect("re-encoded command"), c);
    }
    if let Ok(v) = decode_vote(data) {
        assert_eq!(decode_vote(&encode_vote(&v)).expect("re-encoded vote"), v);
    }
    if let Ok(id) = decode_log_id(data) {
        assert_eq!(
            decode_log_id(&encode_log_id(&id)).expect("re-encoded id"),
            id
        );
    }
});
