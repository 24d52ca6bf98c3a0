//! The ledger's invariants under random transaction sequences, where inflation goes, and
//! the fixed-point results against the mechanism crate's `f64`.

mod common;

use bt_keys::Keypair;
use bt_ledger::{
    Block, Call, Fixed, State, WEIGHT_ONE, apply, build_block, end_block, genesis_state, ranks,
    replay,
};
use bt_mechanism::adaptive::update_tau;
use bt_mechanism::rank::{inflation_step, rank_sparse};
use common::*;
use proptest::prelude::*;

#[test]
fn inflation_goes_to_the_owners_position() {
    let mut s = ledger();
    let (cold_a, cold_b) = (key(1), key(2));
    register(&mut s, &key(11), &cold_a);
    register(&mut s, &key(12), &cold_a);
    // Key 2 stakes on neuron 0; key 1 owns it but stakes on neuron 1 only.
    let t = tx(
        &s,
        &cold_b,
        Call::AddStake {
            hotkey: key(11).public(),
            amount: 10 * TAO,
        },
    );
    apply1(&mut s, &t).expect("stake");
    let t = tx(
        &s,
        &cold_a,
        Call::AddStake {
            hotkey: key(12).public(),
            amount: 10 * TAO,
        },
    );
    apply1(&mut s, &t).expect("stake");
    end_block(&mut s, 1);
    // Equal stakes, identity weights: R = (5, 5), so each neuron gets tau / sqrt(2).
    let each = (1e9 / 2f64.sqrt()).floor() as u64;
    let got0 = s.stake_of(&cold_a.public(), &key(11).public());
    assert!(got0.abs_diff(each) <= 1, "owner got {got0}, want {each}");
    assert_eq!(
        s.stake_of(&cold_b.public(), &key(11).public()),
        10 * TAO,
        "other stakers get none"
    );
    assert_eq!(s.neurons[0].stake, 10 * TAO + got0);
    assert_eq!(
        s.total_issuance(),
        u128::from(s.genesis_issuance + s.minted)
    );
}

#[test]
fn adaptive_tau_follows_the_mechanism() {
    let k1 = key(1);
    let params = "tau = 0.0\nepsilon = 1.0\nmax_neurons = 4\nblock_time_ms = 100\n\
                  [params.adaptive_tau]\nenabled = true\ntarget = 1.0\neta = 0.25";
    let mut s = genesis_state(&genesis_text(&[&k1], 100 * TAO, params)).expect("genesis");
    register(&mut s, &key(11), &k1);
    register(&mut s, &key(12), &k1);
    let t = tx(
        &s,
        &key(11),
        Call::SetWeights {
            row: vec![(0, 3), (1, 1)],
        },
    );
    apply1(&mut s, &t).expect("weights");
    let mut tau = 0.0;
    for h in 1..=4 {
        end_block(&mut s, h);
        // sparsity: trace (0.75 + 1) over the rest (0.25).
        tau = update_tau(tau, 0.25, 1.0, 1.75 / 0.25);
        assert!(
            (s.tau.to_f64() - tau).abs() < 1e-9,
            "block {h}: {} vs {tau}",
            s.tau
        );
    }
    // Sparsity 7 is above the target, so tau stays at its floor of zero.
    assert_eq!(s.tau, Fixed::ZERO);
}

/// Rows on the simplex (as the ledger stores them) and stakes in rao.
fn random_rows(n: usize, per_row: usize, seed: &[u32]) -> Vec<Vec<(u32, u32)>> {
    (0..n)
        .map(|i| {
            let raw: Vec<(u32, u32)> = (0..per_row.min(n))
                .map(|k| {
                    (
                        ((i + k * 7) % n) as u32,
                        seed[(i * 31 + k) % seed.len()] % 1000 + 1,
                    )
                })
                .collect();
            let mut raw = raw;
            raw.sort_unstable();
            raw.dedup_by_key(|p| p.0);
            bt_ledger::fixed::normalize_row(&raw).expect("positive")
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Tolerance (documented in docs/ledger.md): ranks within (n + 2) * 2^-32 TAO of the
    /// f64 result on the same rows and stakes; each neuron's inflation within
    /// 1e-6 * tau + 2^-30 TAO.
    #[test]
    fn fixed_point_matches_f64(
        n in 1usize..40,
        per_row in 1usize..8,
        seed in proptest::collection::vec(any::<u32>(), 64),
        stakes in proptest::collection::vec(1u64..1_000_000 * TAO, 40),
        tau in 0.001f64..100.0,
    ) {
        let rows = random_rows(n, per_row, &seed);
        let stake_rao = &stakes[..n];
        let s_fx: Vec<Fixed> = stake_rao.iter().map(|&r| Fixed::from_rao(r)).collect();
        let s_f64: Vec<f64> = stake_rao.iter().map(|&r| r as f64 / 1e9).collect();
        let r_fx = rank_sparse(&s_fx, rows.iter().map(|r| r.iter().map(|&(j, w)| (j as usize, Fixed::from_weight(w)))));
        let unit = f64::from(WEIGHT_ONE);
        let r_f64 = rank_sparse(&s_f64, rows.iter().map(|r| r.iter().map(move |&(j, w)| (j as usize, f64::from(w) / unit))));
        let tol_rank = (n as f64 + 2.0) / 2f64.powi(32);
        for (a, b) in r_fx.iter().zip(&r_f64) {
            prop_assert!((a.to_f64() - b).abs() <= tol_rank + 1e-15 * b.abs(), "rank {} vs {b}", a.to_f64());
        }
        let tau_fx = Fixed::from_f64(tau).expect("finite");
        let mut g_fx = s_fx.clone();
        inflation_step(&mut g_fx, &r_fx, tau_fx);
        let mut g_f64 = s_f64.clone();
        inflation_step(&mut g_f64, &r_f64, tau_fx.to_f64());
        for i in 0..n {
            let add_fx = (g_fx[i] - s_fx[i]).to_f64();
            let add_f64 = g_f64[i] - s_f64[i];
            prop_assert!((add_fx - add_f64).abs() <= 1e-6 * tau + 2f64.powi(-30), "mint {add_fx} vs {add_f64}");
        }
    }

    /// Random transaction sequences over a few keys, several blocks: issuance is genesis
    /// plus minted, rows sum to exactly one, positions add up to each neuron's stake, and
    /// replaying the blocks on the genesis gives the same state and hash.
    #[test]
    fn invariants_hold_under_random_sequences(
        ops in proptest::collection::vec((0u8..6, 0usize..4, 0usize..4, 0u64..40, any::<u32>()), 1..60),
        block_every in 3usize..12,
    ) {
        let colds: Vec<Keypair> = (1..=4).map(key).collect();
        let hots: Vec<Keypair> = (11..=14).map(key).collect();
        let params = "tau = 2.5\nepsilon = 0.8\nmax_neurons = 3\nblock_time_ms = 100\nmax_tx_bytes = 4096";
        let genesis = genesis_state(&genesis_text(&[&colds[0], &colds[1], &colds[2]], 50 * TAO, params)).expect("genesis");
        let mut state = genesis.clone();
        let mut blocks: Vec<Block> = Vec::new();
        let mut pending = Vec::new();
        // Nonces as the sender believes them: refused transactions still use one up, so
        // later ones can hit stale/future nonces too.
        let mut nonces = std::collections::HashMap::new();
        for (k, &(op, a, b, amount, r)) in ops.iter().enumerate() {
            let amount = amount * TAO / 4;
            let (signer, call) = match op {
                0 => (&colds[a], Call::Transfer { to: colds[b].public(), amount }),
                1 => (&colds[a], Call::AddStake { hotkey: hots[b].public(), amount }),
                2 => (&colds[a], Call::RemoveStake { hotkey: hots[b].public(), amount }),
                3 => (&hots[a], Call::Register { coldkey: colds[b].public(), endpoint: "127.0.0.1:1".parse().expect("addr") }),
                4 => (&hots[a], Call::UpdateEndpoint { endpoint: "127.0.0.1:2".parse().expect("addr") }),
                _ => (&hots[a], Call::SetWeights { row: vec![(r % 4, r % 7), (b as u32, 50 + r % 50), (a as u32, 200)] }),
            };
            let nonce = nonces.entry(signer.public()).or_insert(0u64);
            pending.push(bt_ledger::Transaction::sign(signer, &genesis.genesis, *nonce, call));
            if r % 5 != 0 {
                *nonce += 1;
            }
            if (k + 1) % block_every == 0 || k + 1 == ops.len() {
                let built = build_block(&state, std::mem::take(&mut pending), k as u64);
                state = built.state;
                blocks.push(built.block);
                // Resynchronise the senders with the ledger.
                for (key, n) in nonces.iter_mut() {
                    *n = state.nonce(key);
                }
                check(&state)?;
            }
        }
        let again = replay(&genesis, &blocks).expect("replays");
        prop_assert_eq!(again.hash(), state.hash());
        prop_assert_eq!(&again, &state);
        // Applying block by block checks each header's state hash.
        let mut s = genesis.clone();
        for b in &blocks {
            s = apply(&s, b).expect("applies").0;
            prop_assert_eq!(s.hash(), b.header.state_hash);
        }
        prop_assert_eq!(State::decode(&state.encode()).expect("decodes"), state);
    }
}

fn check(state: &State) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        state.total_issuance(),
        u128::from(state.genesis_issuance) + u128::from(state.minted)
    );
    for n in &state.neurons {
        let sum: u64 = n.row.iter().map(|&(_, w)| u64::from(w)).sum();
        prop_assert_eq!(sum, u64::from(WEIGHT_ONE));
        let staked: u64 = state
            .stakes
            .iter()
            .filter(|((_, h), _)| *h == n.hotkey)
            .map(|(_, &s)| s)
            .sum();
        prop_assert_eq!(staked, n.stake);
    }
    let r = ranks(state);
    prop_assert_eq!(r.len(), state.neurons.len());
    Ok(())
}

#[test]
fn parallel_rank_is_bit_identical_to_sequential() {
    // More rows than one parallel chunk, so the partial sums are really split.
    let n = 700;
    let seed: Vec<u32> = (0..97u32).map(|i| i.wrapping_mul(2_654_435_761)).collect();
    let rows = random_rows(n, 9, &seed);
    let stake: Vec<Fixed> = (0..n)
        .map(|i| Fixed::from_rao(1 + (i as u64 * 7_919_000_017) % (1 << 50)))
        .collect();
    let conv = |r: &Vec<(u32, u32)>| {
        r.iter()
            .map(|&(j, w)| (j as usize, Fixed::from_weight(w)))
            .collect::<Vec<_>>()
    };
    let seq = rank_sparse(&stake, rows.iter().map(conv));
    let par = bt_mechanism::rank::rank_sparse_par(&stake, &rows, conv);
    assert_eq!(seq, par);
}
