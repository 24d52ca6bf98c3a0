//! Shared helpers of the ledger's integration tests.
#![allow(dead_code)]

use bt_keys::Keypair;
use bt_ledger::{Call, Event, Result, State, Transaction, apply_tx, genesis_state};

/// A key from a small integer seed.
pub fn key(i: u8) -> Keypair {
    Keypair::from_mini_secret([i; 32])
}

/// 1 TAO in rao.
pub const TAO: u64 = 1_000_000_000;

/// Genesis text with the given accounts (each with `balance` rao) and parameters.
pub fn genesis_text(accounts: &[&Keypair], balance: u64, params: &str) -> String {
    let mut s = format!("[params]\n{params}\n");
    for k in accounts {
        s.push_str(&format!(
            "[[accounts]]\naddress = \"{}\"\nbalance = {balance}\n",
            k.public()
        ));
    }
    s
}

/// The default parameters of the tests.
pub const PARAMS: &str =
    "tau = 1.0\nepsilon = 0.5\nmax_neurons = 3\nblock_time_ms = 100\nmax_tx_bytes = 1024";

/// A ledger with keys 1 and 2 funded with 100 TAO each.
pub fn ledger() -> State {
    genesis_state(&genesis_text(&[&key(1), &key(2)], 100 * TAO, PARAMS)).expect("valid genesis")
}

/// Signs `call` from `k` with its next nonce.
pub fn tx(state: &State, k: &Keypair, call: Call) -> Transaction {
    Transaction::sign(k, &state.genesis, state.nonce(&k.public()), call)
}

/// Applies a transaction as part of the next block, verifying its signature.
pub fn apply1(state: &mut State, tx: &Transaction) -> Result<Event> {
    let h = state.height + 1;
    apply_tx(state, h, tx, false)
}

/// Registers hotkey `hot` owned by `cold`, returning its uid.
pub fn register(state: &mut State, hot: &Keypair, cold: &Keypair) -> u32 {
    let t = tx(
        state,
        hot,
        Call::Register {
            coldkey: cold.public(),
            endpoint: "127.0.0.1:1".parse().expect("addr"),
        },
    );
    match apply1(state, &t).expect("registers") {
        Event::Registered { uid, .. } => uid,
        e => panic!("unexpected event {e:?}"),
    }
}
