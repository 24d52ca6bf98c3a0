//! One test per way the ledger refuses a transaction or a block, and that a refusal
//! changes nothing.

mod common;

use bt_keys::Signature;
use bt_ledger::{
    Block, Call, Error, Event, Hash, Transaction, WEIGHT_ONE, apply, build_block, end_block,
};
use common::*;

/// Applies `t` and expects an error; checks the state did not change.
fn refused(state: &mut bt_ledger::State, t: &Transaction) -> Error {
    let before = state.clone();
    let e = apply1(state, t).expect_err("must be refused");
    assert_eq!(*state, before, "a refused transaction changed the state");
    e
}

#[test]
fn bad_signature() {
    let mut s = ledger();
    let mut t = tx(
        &s,
        &key(1),
        Call::Transfer {
            to: key(2).public(),
            amount: 5,
        },
    );
    t.call = Call::Transfer {
        to: key(2).public(),
        amount: 50 * TAO,
    };
    assert_eq!(
        refused(&mut s, &t),
        Error::BadSignature {
            signer: key(1).public()
        }
    );
    // A valid signature by another key does not pass either.
    let other = Transaction::sign(&key(2), &s.genesis, 0, t.call.clone());
    t.signature = Signature::from_bytes(&other.signature.to_bytes()).expect("sig");
    assert!(matches!(refused(&mut s, &t), Error::BadSignature { .. }));
}

#[test]
fn stale_nonce() {
    let mut s = ledger();
    let t = tx(
        &s,
        &key(1),
        Call::Transfer {
            to: key(2).public(),
            amount: 5,
        },
    );
    apply1(&mut s, &t).expect("first use");
    assert_eq!(
        refused(&mut s, &t),
        Error::StaleNonce {
            account: key(1).public(),
            expected: 1,
            got: 0
        }
    );
}

#[test]
fn future_nonce() {
    let mut s = ledger();
    let t = Transaction::sign(
        &key(1),
        &s.genesis,
        7,
        Call::Transfer {
            to: key(2).public(),
            amount: 5,
        },
    );
    assert_eq!(
        refused(&mut s, &t),
        Error::FutureNonce {
            account: key(1).public(),
            expected: 0,
            got: 7
        }
    );
}

#[test]
fn unknown_account() {
    let mut s = ledger();
    let t = tx(
        &s,
        &key(9),
        Call::Transfer {
            to: key(2).public(),
            amount: 5,
        },
    );
    assert_eq!(
        refused(&mut s, &t),
        Error::UnknownAccount {
            account: key(9).public()
        }
    );
}

#[test]
fn unknown_uid() {
    let mut s = ledger();
    register(&mut s, &key(11), &key(1));
    let t = tx(
        &s,
        &key(11),
        Call::SetWeights {
            row: vec![(0, 5), (7, 1)],
        },
    );
    assert_eq!(refused(&mut s, &t), Error::UnknownUid { uid: 7, n: 1 });
}

#[test]
fn unknown_hotkey() {
    let mut s = ledger();
    let t = tx(
        &s,
        &key(1),
        Call::AddStake {
            hotkey: key(11).public(),
            amount: 5,
        },
    );
    assert_eq!(
        refused(&mut s, &t),
        Error::UnknownHotkey {
            hotkey: key(11).public()
        }
    );
    let t = tx(&s, &key(11), Call::SetWeights { row: vec![(0, 1)] });
    assert_eq!(
        refused(&mut s, &t),
        Error::UnknownHotkey {
            hotkey: key(11).public()
        }
    );
}

#[test]
fn insufficient_balance() {
    let mut s = ledger();
    let t = tx(
        &s,
        &key(1),
        Call::Transfer {
            to: key(2).public(),
            amount: 101 * TAO,
        },
    );
    assert_eq!(
        refused(&mut s, &t),
        Error::InsufficientBalance {
            account: key(1).public(),
            need: 101 * TAO,
            have: 100 * TAO
        }
    );
}

#[test]
fn insufficient_stake() {
    let mut s = ledger();
    register(&mut s, &key(11), &key(1));
    let add = tx(
        &s,
        &key(1),
        Call::AddStake {
            hotkey: key(11).public(),
            amount: 3 * TAO,
        },
    );
    apply1(&mut s, &add).expect("stakes");
    let t = tx(
        &s,
        &key(1),
        Call::RemoveStake {
            hotkey: key(11).public(),
            amount: 4 * TAO,
        },
    );
    assert_eq!(
        refused(&mut s, &t),
        Error::InsufficientStake {
            coldkey: key(1).public(),
            hotkey: key(11).public(),
            need: 4 * TAO,
            have: 3 * TAO
        }
    );
}

#[test]
fn zero_amount() {
    let mut s = ledger();
    let t = tx(
        &s,
        &key(1),
        Call::Transfer {
            to: key(2).public(),
            amount: 0,
        },
    );
    assert_eq!(refused(&mut s, &t), Error::ZeroAmount);
}

#[test]
fn duplicate_uid_in_row() {
    let mut s = ledger();
    register(&mut s, &key(11), &key(1));
    let t = tx(
        &s,
        &key(11),
        Call::SetWeights {
            row: vec![(0, 5), (0, 1)],
        },
    );
    assert_eq!(refused(&mut s, &t), Error::DuplicateUid { uid: 0 });
}

#[test]
fn empty_row() {
    let mut s = ledger();
    register(&mut s, &key(11), &key(1));
    let t = tx(&s, &key(11), Call::SetWeights { row: vec![] });
    assert_eq!(refused(&mut s, &t), Error::EmptyRow);
}

#[test]
fn all_zero_row() {
    let mut s = ledger();
    register(&mut s, &key(11), &key(1));
    let t = tx(&s, &key(11), Call::SetWeights { row: vec![(0, 0)] });
    assert_eq!(refused(&mut s, &t), Error::ZeroRow);
}

#[test]
fn weight_change_beyond_epsilon() {
    let mut s = ledger();
    register(&mut s, &key(11), &key(1));
    register(&mut s, &key(12), &key(1));
    // From all-self to all-other is a distance of sqrt(2) >= 0.5.
    let t = tx(&s, &key(11), Call::SetWeights { row: vec![(1, 1)] });
    match refused(&mut s, &t) {
        Error::WeightChangeTooLarge {
            uid: 0,
            distance,
            epsilon,
        } => {
            assert!((distance - 2f64.sqrt()).abs() < 1e-9);
            assert_eq!(epsilon, 0.5);
        }
        e => panic!("unexpected {e:?}"),
    }
    // A step of 0.3 from (1, 0) to (0.7, 0.3) has distance 0.3 * sqrt(2) < 0.5: accepted,
    // and the row sums to exactly one.
    let t = tx(
        &s,
        &key(11),
        Call::SetWeights {
            row: vec![(0, 7), (1, 3)],
        },
    );
    assert_eq!(
        apply1(&mut s, &t).expect("small step"),
        Event::WeightsSet { uid: 0 }
    );
    let sum: u64 = s.neurons[0].row.iter().map(|&(_, w)| u64::from(w)).sum();
    assert_eq!(sum, u64::from(WEIGHT_ONE));
}

#[test]
fn second_weight_update_in_one_block() {
    let mut s = ledger();
    register(&mut s, &key(11), &key(1));
    register(&mut s, &key(12), &key(1));
    let t = tx(
        &s,
        &key(11),
        Call::SetWeights {
            row: vec![(0, 9), (1, 1)],
        },
    );
    apply1(&mut s, &t).expect("first update");
    let t = tx(
        &s,
        &key(11),
        Call::SetWeights {
            row: vec![(0, 8), (1, 2)],
        },
    );
    assert_eq!(
        refused(&mut s, &t),
        Error::DuplicateWeightUpdate { uid: 0, height: 1 }
    );
    // The next block accepts it.
    let mut next = s.clone();
    end_block(&mut next, 1);
    apply1(&mut next, &t).expect("next block");
    // A block builder defers it, with the signer's later transactions, instead of refusing.
    let first = tx(
        &ledger_with_two(),
        &key(11),
        Call::SetWeights {
            row: vec![(0, 9), (1, 1)],
        },
    );
    let base = ledger_with_two();
    let second = Transaction::sign(
        &key(11),
        &base.genesis,
        first.nonce + 1,
        Call::SetWeights {
            row: vec![(0, 8), (1, 2)],
        },
    );
    let third = Transaction::sign(
        &key(11),
        &base.genesis,
        first.nonce + 2,
        Call::UpdateEndpoint {
            endpoint: "127.0.0.1:3".parse().expect("addr"),
        },
    );
    let built = build_block(&base, vec![first.clone(), second, third], 0);
    assert_eq!(built.block.txs, vec![first]);
    assert_eq!(built.deferred, vec![1, 2]);
    assert!(built.rejected.is_empty());
}

fn ledger_with_two() -> bt_ledger::State {
    let mut s = ledger();
    register(&mut s, &key(11), &key(1));
    register(&mut s, &key(12), &key(1));
    s
}

#[test]
fn oversized_transaction() {
    let mut s = ledger();
    register(&mut s, &key(11), &key(1));
    let t = tx(
        &s,
        &key(11),
        Call::SetWeights {
            row: vec![(0, 1); 200],
        },
    );
    let size = t.encoded_len();
    assert_eq!(
        refused(&mut s, &t),
        Error::OversizedTransaction { size, max: 1024 }
    );
    assert_eq!(
        Transaction::decode(&t.encode(), 1024),
        Err(Error::OversizedTransaction { size, max: 1024 })
    );
}

#[test]
fn register_beyond_max_neurons() {
    let mut s = ledger();
    for i in 0..3 {
        register(&mut s, &key(11 + i), &key(1));
    }
    let t = tx(
        &s,
        &key(20),
        Call::Register {
            coldkey: key(1).public(),
            endpoint: "127.0.0.1:1".parse().expect("addr"),
        },
    );
    assert_eq!(refused(&mut s, &t), Error::TooManyNeurons { max: 3 });
}

#[test]
fn register_twice() {
    let mut s = ledger();
    register(&mut s, &key(11), &key(1));
    let t = tx(
        &s,
        &key(11),
        Call::Register {
            coldkey: key(2).public(),
            endpoint: "127.0.0.1:2".parse().expect("addr"),
        },
    );
    assert_eq!(
        refused(&mut s, &t),
        Error::HotkeyAlreadyRegistered {
            hotkey: key(11).public(),
            uid: 0
        }
    );
}

#[test]
fn malformed_encoding() {
    let s = ledger();
    let t = tx(
        &s,
        &key(1),
        Call::Transfer {
            to: key(2).public(),
            amount: 5,
        },
    );
    let mut bytes = t.encode();
    bytes.push(0);
    assert!(matches!(
        Transaction::decode(&bytes, 1024),
        Err(Error::Malformed {
            what: "transaction",
            ..
        })
    ));
    assert!(matches!(
        Block::decode(&[1, 2, 3], 1024),
        Err(Error::Malformed { .. })
    ));
    assert!(matches!(
        bt_ledger::State::decode(&[0; 10]),
        Err(Error::Malformed { .. })
    ));
}

fn one_block() -> (bt_ledger::State, Block) {
    let s = ledger();
    let t = tx(
        &s,
        &key(1),
        Call::Transfer {
            to: key(2).public(),
            amount: 5,
        },
    );
    let built = build_block(&s, vec![t], 0);
    assert!(built.rejected.is_empty());
    (s, built.block)
}

#[test]
fn block_at_wrong_height() {
    let (s, mut b) = one_block();
    b.header.height = 5;
    assert_eq!(
        apply(&s, &b).expect_err("refused"),
        Error::WrongHeight {
            expected_prev: 0,
            got: 5
        }
    );
}

#[test]
fn block_with_wrong_parent() {
    let (s, mut b) = one_block();
    b.header.parent = Hash::of(b"elsewhere");
    assert!(matches!(
        apply(&s, &b),
        Err(Error::WrongParent { height: 1, .. })
    ));
}

#[test]
fn block_with_wrong_tx_root() {
    let (s, mut b) = one_block();
    b.txs.clear();
    assert!(matches!(
        apply(&s, &b),
        Err(Error::TxRootMismatch { height: 1, .. })
    ));
}

#[test]
fn block_with_wrong_state_hash() {
    let (s, mut b) = one_block();
    b.header.state_hash = Hash::of(b"lie");
    assert!(matches!(
        apply(&s, &b),
        Err(Error::StateHashMismatch { height: 1, .. })
    ));
}

#[test]
fn block_with_a_refused_transaction() {
    let (s, mut b) = one_block();
    // The same transfer twice: the second has a stale nonce.
    b.txs.push(b.txs[0].clone());
    b.header.tx_root = bt_ledger::block::tx_root(&b.txs);
    match apply(&s, &b) {
        Err(Error::InBlock {
            height: 1,
            index: 1,
            source,
        }) => {
            assert!(matches!(*source, Error::StaleNonce { .. }));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn build_block_leaves_out_refused_transactions() {
    let s = ledger();
    let good = tx(
        &s,
        &key(1),
        Call::Transfer {
            to: key(2).public(),
            amount: 5,
        },
    );
    let mut forged = tx(
        &s,
        &key(2),
        Call::Transfer {
            to: key(1).public(),
            amount: 5,
        },
    );
    forged.nonce = 0;
    forged.call = Call::Transfer {
        to: key(1).public(),
        amount: 6,
    };
    let built = build_block(&s, vec![good.clone(), good.clone(), forged], 0);
    assert_eq!(built.block.txs, vec![good]);
    assert_eq!(built.rejected.len(), 2);
    assert!(matches!(built.rejected[0].1, Error::StaleNonce { .. }));
    assert!(matches!(built.rejected[1].1, Error::BadSignature { .. }));
}
