//! The three mechanisms on the ledger: who is paid for a self-only row, Yuma's epochs and
//! bonds in the state and its hash, replay, and fixed point against the mechanism's `f64`.

mod common;

use bt_ledger::{Call, Event, Fixed, State, apply, build_block, end_block, genesis_state};
use bt_mechanism::yuma::{self, YumaParams};
use bt_mechanism::{Mechanism, Sparse};
use common::*;

/// A ledger under `mechanism` with four neurons: 0 (10 TAO) keeps its row on itself, 1, 2
/// and 3 (20 TAO each) weigh each other, and 3 also weighs 0.
fn network(mechanism: &str, tempo: u64) -> State {
    let params = format!(
        "tau = 1.0\nepsilon = 2.0\nmax_neurons = 8\nblock_time_ms = 100\n\
         mechanism = \"{mechanism}\"\ntempo = {tempo}"
    );
    let mut s = genesis_state(&genesis_text(&[&key(1)], 100 * TAO, &params)).expect("genesis");
    for h in 11..15 {
        register(&mut s, &key(h), &key(1));
        let t = tx(
            &s,
            &key(1),
            Call::AddStake {
                hotkey: key(h).public(),
                amount: if h == 11 { 10 * TAO } else { 20 * TAO },
            },
        );
        apply1(&mut s, &t).expect("stake");
    }
    for (hot, row) in [
        (12, vec![(2, 1), (3, 1)]),
        (13, vec![(1, 1), (3, 1)]),
        (14, vec![(1, 1), (2, 1), (0, 1)]),
    ] {
        let t = tx(&s, &key(hot), Call::SetWeights { row });
        apply1(&mut s, &t).expect("weights");
    }
    s
}

fn gained(before: &State, after: &State, uid: usize) -> u64 {
    after.neurons[uid].stake - before.neurons[uid].stake
}

#[test]
fn a_self_only_row_earns_under_paper_and_not_under_the_others() {
    let paper = network("paper", 10);
    let mut p = paper.clone();
    end_block(&mut p, 1);
    assert!(gained(&paper, &p, 0) > 0, "paper pays the self-weight");

    let no_self = network("paper_no_self", 10);
    let mut q = no_self.clone();
    end_block(&mut q, 1);
    let q0 = gained(&no_self, &q, 0);
    // Neuron 0 only gets what neuron 3 gives it.
    assert!(q0 < gained(&no_self, &q, 1), "{q0}");
    assert!(q.neurons[0].rank < p.neurons[0].rank);

    let yuma = network("yuma", 1);
    let mut y = yuma.clone();
    let events = end_block(&mut y, 1);
    let n0 = &y.neurons[0];
    assert_eq!(
        n0.incentive,
        Fixed::ZERO,
        "only neuron 3 weighs it: consensus 0"
    );
    assert_eq!(n0.consensus, Fixed::ZERO);
    assert_eq!(n0.dividends, Fixed::ZERO);
    assert_eq!(
        gained(&yuma, &y, 0),
        0,
        "a self-only row earns nothing under yuma"
    );
    assert!(y.neurons[1].incentive > Fixed::ZERO);
    let minted: u64 = (1..4).map(|i| gained(&yuma, &y, i)).sum();
    assert!(minted > 999_999_990 && minted <= 1_000_000_000, "{minted}");
    assert!(matches!(events[0], Event::Minted { total, .. } if total == minted));
    assert_eq!(y.minted, minted);
    assert_eq!(
        y.total_issuance(),
        u128::from(y.genesis_issuance + y.minted)
    );
}

#[test]
fn yuma_mints_tau_times_tempo_once_per_epoch() {
    let s0 = network("yuma", 3);
    let mut s = s0.clone();
    for h in 1..=2 {
        let events = end_block(&mut s, h);
        assert!(events.iter().all(|e| !matches!(e, Event::Minted { .. })));
        assert_eq!(s.minted, 0);
    }
    end_block(&mut s, 3);
    assert!(
        s.minted > 3 * TAO - 10 && s.minted <= 3 * TAO,
        "{}",
        s.minted
    );
    assert!(!s.neurons[1].bonds.is_empty());
    let sum: Fixed = s
        .neurons
        .iter()
        .map(|n| n.emission)
        .fold(Fixed::ZERO, |a, b| a + b);
    assert!((sum.to_f64() - 1.0).abs() < 1e-8);
}

#[test]
fn bonds_are_in_the_state_hash_and_replay() {
    let genesis = network("yuma", 2);
    let mut state = genesis.clone();
    let mut blocks = Vec::new();
    for _ in 0..5 {
        let built = build_block(&state, Vec::new(), 0);
        blocks.push(built.block.clone());
        state = built.state;
    }
    // Replaying the blocks reproduces every state hash (apply checks the header's).
    let mut again = genesis.clone();
    for b in &blocks {
        again = apply(&again, b).expect("replays").0;
    }
    assert_eq!(again, state);
    let decoded = State::decode(&state.encode()).expect("decodes");
    assert_eq!(decoded, state);
    // A different bond is a different state.
    let mut tampered = state.clone();
    let (uid, b) = tampered.neurons[1].bonds[0];
    tampered.neurons[1].bonds[0] = (uid, b + Fixed::from_bits(1));
    assert_ne!(tampered.hash(), state.hash());
}

#[test]
fn fixed_point_epoch_matches_f64() {
    let mut s = network("yuma", 1);
    for h in 1..=3 {
        end_block(&mut s, h);
    }
    let n = s.neurons.len();
    let stake: Vec<f64> = s.neurons.iter().map(|x| x.stake as f64 / 1e9).collect();
    let w = Sparse::from_rows(
        n,
        s.neurons.iter().map(|x| {
            x.row
                .iter()
                .map(|&(j, w)| (j as usize, f64::from(w) / f64::from(1u32 << 31)))
                .collect::<Vec<_>>()
        }),
    )
    .expect("rows");
    let b = Sparse::from_rows(
        n,
        s.neurons.iter().map(|x| {
            x.bonds
                .iter()
                .map(|&(j, b)| (j as usize, b.to_f64()))
                .collect::<Vec<_>>()
        }),
    )
    .expect("bonds");
    let want = yuma::epoch(&stake, &w, &b, &YumaParams::DEFAULT);
    let got = bt_ledger::apply::yuma_epoch(&s);
    for (name, g, w) in [
        ("consensus", &got.consensus, &want.consensus),
        ("trust", &got.trust, &want.trust),
        ("incentive", &got.incentive, &want.incentive),
        ("dividends", &got.dividends, &want.dividends),
        ("emission", &got.emission, &want.emission),
    ] {
        for (a, b) in g.iter().zip(w.iter()) {
            assert!((a.to_f64() - b).abs() < 1e-7, "{name}: {a:?} vs {b}");
        }
    }
    let gb = got.bonds.to_dense();
    let wb = want.bonds.to_dense();
    for i in 0..n {
        for j in 0..n {
            assert!((gb[i][j].to_f64() - wb[i][j]).abs() < 1e-7);
        }
    }
    assert_eq!(s.params.mechanism, Mechanism::Yuma);
}
