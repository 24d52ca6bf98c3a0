//! Fuzzes the ledger's decoders of bytes that arrive from others: transactions (submitted by
//! clients, carried in the raft log) and blocks (in the log and in snapshots). Nothing may
//! panic, and whatever decodes must encode back to the same bytes.
#![no_main]

use bt_ledger::{Block, Transaction};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tx) = Transaction::decode(data, 1 << 16) {
        assert_eq!(tx.encode(), data, "a transaction has one encoding");
    }
    if let Ok(b) = Block::decode(data, 1 << 16) {
        assert_eq!(
            Block::decode(&b.encode(), 1 << 16).expect("re-encoded block"),
            b
        );
    }
});
