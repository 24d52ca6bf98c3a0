//! Yuma consensus against `spec/yuma.md`'s properties and the claims of subtensor's epoch
//! tests, in `f64`.

use bt_mechanism::Sparse;
use bt_mechanism::yuma::{YumaParams, consensus, epoch, weighted_median};
use proptest::prelude::*;

fn dense(rows: &[Vec<f64>]) -> Sparse<f64> {
    Sparse::from_dense(rows).expect("square")
}

fn run(
    stake: &[f64],
    w: &[Vec<f64>],
    prev: Option<&[Vec<f64>]>,
    p: YumaParams<f64>,
) -> bt_mechanism::YumaOutput<f64> {
    let n = stake.len();
    let prev = prev.map_or_else(|| Sparse::zeros(n), dense);
    epoch(stake, &dense(w), &prev, &p)
}

fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
}

#[test]
fn self_weight_alone_earns_no_incentive() {
    // Neuron 0 weighs only itself; 1, 2 and 3 weigh each other.
    let w = vec![
        vec![1.0, 0.0, 0.0, 0.0],
        vec![0.0, 0.0, 1.0, 1.0],
        vec![0.0, 1.0, 0.0, 1.0],
        vec![0.0, 1.0, 1.0, 0.0],
    ];
    let out = run(&[1.0, 1.0, 1.0, 1.0], &w, None, YumaParams::DEFAULT);
    assert_eq!(out.consensus[0], 0.0);
    assert_eq!(out.incentive[0], 0.0);
    assert_eq!(out.trust[0], 0.0, "an emptied row keeps nothing");
    assert_eq!(out.dividends[0], 0.0, "an emptied row earns no dividends");
    assert_eq!(out.emission[0], 0.0);
    let third = 1.0 / 3.0;
    assert!(
        close(&out.emission, &[0.0, third, third, third], 1e-12),
        "{:?}",
        out.emission
    );
    // A column only one of three equal stakes weighs has no consensus: nobody is paid for
    // it, and with no consensus anywhere emission falls back to stake.
    let lone = vec![
        vec![0.0, 1.0, 0.0],
        vec![0.0, 0.0, 1.0],
        vec![1.0, 0.0, 0.0],
    ];
    let out = run(&[1.0, 1.0, 1.0], &lone, None, YumaParams::DEFAULT);
    assert_eq!(out.consensus, vec![0.0; 3]);
    assert_eq!(out.emission, vec![third; 3]);
}

#[test]
fn zero_rows_and_no_weights_fall_back_to_stake() {
    let w = vec![vec![0.0; 3]; 3];
    let out = run(&[1.0, 3.0, 0.0], &w, None, YumaParams::DEFAULT);
    assert_eq!(out.incentive, vec![0.0; 3]);
    assert_eq!(out.dividends, vec![0.0; 3]);
    assert_eq!(out.consensus, vec![0.0; 3]);
    assert_eq!(
        out.emission,
        vec![0.25, 0.75, 0.0],
        "E = S when I + D sums to 0"
    );
    // Every row self-only: the same after step 2.
    let eye = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
    let out = run(&[1.0, 1.0], &eye, None, YumaParams::DEFAULT);
    assert_eq!(out.emission, vec![0.5, 0.5]);
    // And no stake at all: nothing.
    let out = run(&[0.0, 0.0], &eye, None, YumaParams::DEFAULT);
    assert_eq!(out.emission, vec![0.0, 0.0]);
}

#[test]
fn an_epoch_of_no_neurons_is_empty() {
    // A ledger's first Yuma epoch can come before anyone registers.
    let out = run(&[], &[], None, YumaParams::DEFAULT);
    assert!(out.emission.is_empty() && out.consensus.is_empty() && out.incentive.is_empty());
}

#[test]
fn an_empty_row_votes_zero_in_consensus() {
    // Rows 0 and 1 (60% of stake) give column 2 everything; row 3 (40%) is empty.
    let w = vec![
        vec![0.0, 0.0, 1.0, 0.0],
        vec![0.0, 0.0, 1.0, 0.0],
        vec![0.0; 4],
        vec![0.0; 4],
    ];
    let out = run(&[0.3, 0.3, 0.0, 0.4], &w, None, YumaParams::DEFAULT);
    assert_eq!(out.consensus[2], 1.0);
    // With kappa = 0.7 the 60% no longer make a quorum.
    let p = YumaParams::new(0.7, 0.9, 1.0).expect("valid");
    let out = run(&[0.3, 0.3, 0.0, 0.4], &w, None, p);
    assert_eq!(out.consensus[2], 0.0);
    assert_eq!(out.emission, vec![0.3, 0.3, 0.0, 0.4]);
}

#[test]
fn a_majority_sets_consensus_and_the_minority_is_clipped() {
    // Validators 0, 1 (60% of stake) give server 4 a weight of 0.2, validator 2 (40%) 0.8.
    let w = vec![
        vec![0.0, 0.0, 0.0, 0.8, 0.2],
        vec![0.0, 0.0, 0.0, 0.8, 0.2],
        vec![0.0, 0.0, 0.0, 0.2, 0.8],
        vec![0.0; 5],
        vec![0.0; 5],
    ];
    let out = run(&[0.3, 0.3, 0.4, 0.0, 0.0], &w, None, YumaParams::DEFAULT);
    assert!((out.consensus[4] - 0.2).abs() < 1e-15);
    assert!((out.consensus[3] - 0.8).abs() < 1e-15);
    // The minority's 0.8 on server 4 is clipped to 0.2 (and its 0.2 on 3 kept): trust 0.4.
    assert!((out.trust[2] - 0.4).abs() < 1e-12, "{:?}", out.trust);
    assert!((out.trust[0] - 1.0).abs() < 1e-12);
    // Incentive from the clipped weights: column 3 gets 0.6*0.8 + 0.4*0.2, column 4 0.2.
    let r3 = 0.6 * 0.8 + 0.4 * 0.2;
    let want = [0.0, 0.0, 0.0, r3 / (r3 + 0.2), 0.2 / (r3 + 0.2)];
    assert!(close(&out.incentive, &want, 1e-12), "{:?}", out.incentive);
}

#[test]
fn ties_resolve_as_the_quickselect_does() {
    // Equal stakes split between two values: the kappa = 0.5 quantile is the upper one,
    // because the stake below it (0.5) is not above the minority 0.5.
    assert_eq!(weighted_median(0.5, &[(0.2, 0.5), (0.8, 0.5)]), 0.8);
    assert_eq!(weighted_median(0.5, &[(0.8, 0.5), (0.2, 0.5)]), 0.8);
    // Equal scores: the value itself, whatever the stakes.
    assert_eq!(weighted_median(0.5, &[(0.3, 0.1), (0.3, 0.9)]), 0.3);
    // kappa = 1 (minority 0): the smallest score with stake; kappa = 0: the largest.
    let c = [(0.1, 0.25), (0.4, 0.25), (0.2, 0.25), (0.3, 0.25)];
    assert_eq!(weighted_median(0.0, &c), 0.1);
    assert_eq!(weighted_median(1.0, &c), 0.4);
    assert_eq!(weighted_median::<f64>(0.5, &[]), 0.0);
}

#[test]
fn a_column_everyone_agrees_on_is_not_clipped() {
    let w = vec![
        vec![0.0, 0.5, 0.5],
        vec![0.5, 0.0, 0.5],
        vec![0.5, 0.5, 0.0],
    ];
    let out = run(&[1.0, 2.0, 3.0], &w, None, YumaParams::DEFAULT);
    // Column 2: rows 0 and 1 say 0.5, row 2 (its own diagonal) is masked to 0.
    // Column-wise agreement holds for the rows that weigh it; check a plain case too.
    let agree = vec![vec![0.0, 1.0], vec![0.0, 1.0]];
    let a = run(&[1.0, 1.0], &agree, None, YumaParams::DEFAULT);
    assert_eq!(a.consensus, vec![0.0, 1.0]);
    assert_eq!(a.trust, vec![1.0, 0.0]);
    assert!(out.emission.iter().all(|&e| e >= 0.0));
}

#[test]
fn bonds_move_toward_the_new_bonds_by_a() {
    let w = vec![
        vec![0.0, 1.0, 0.0],
        vec![0.0, 0.0, 1.0],
        vec![1.0, 0.0, 0.0],
    ];
    let prev = vec![
        vec![0.0, 0.0, 1.0],
        vec![1.0, 0.0, 0.0],
        vec![0.0, 1.0, 0.0],
    ];
    let s = [1.0, 1.0, 1.0];
    // Each column has one weigher, so no consensus: with beta = 0 the bonds still follow
    // the weights (Wb = W). a = 1: the bonds are exactly dB (each column's only holder).
    let p1 = YumaParams::new(0.5, 0.0, 0.0).expect("valid");
    let out = run(&s, &w, Some(&prev), p1);
    assert_eq!(out.bonds.to_dense(), w);
    // a = 0.1: 10% toward dB, then column-normalised (columns already sum to 1).
    let p = YumaParams::new(0.5, 0.9, 0.0).expect("valid");
    let out = run(&s, &w, Some(&prev), p);
    let b = out.bonds.to_dense();
    for i in 0..3 {
        for j in 0..3 {
            let want = 0.1 * w[i][j] + 0.9 * prev[i][j];
            assert!((b[i][j] - want).abs() < 1e-12, "({i},{j})");
        }
    }
    // a = 0 keeps the previous bonds.
    let p0 = YumaParams::new(0.5, 1.0, 0.0).expect("valid");
    assert_eq!(run(&s, &w, Some(&prev), p0).bonds.to_dense(), prev);
    // beta = 1 with no consensus: the clipped weights are all zero, so dB is zero and the
    // bonds only decay (then column-normalisation restores them).
    let out = run(&s, &w, Some(&prev), YumaParams::DEFAULT);
    assert_eq!(out.bonds.to_dense(), prev);
}

#[test]
fn subtensor_test_bonds_figures() {
    let n = 8;
    let stake = [0.1, 0.2, 0.3, 0.4, 0.0, 0.0, 0.0, 0.0];
    let mut w = vec![vec![0.0; n]; n];
    w[0][0] = 1.0;
    for row in w.iter_mut().take(4).skip(1) {
        row[4..8].copy_from_slice(&[0.1, 0.2, 0.3, 0.4]);
    }
    let mut prev = vec![vec![0.0; n]; n];
    for (i, row) in prev.iter_mut().enumerate().take(4) {
        for x in row.iter_mut().skip(4) {
            *x = (i + 1) as f64;
        }
    }
    let out = run(&stake, &w, Some(&prev), YumaParams::DEFAULT);
    let d = [0.09, 0.20222, 0.30333, 0.40444, 0.0, 0.0, 0.0, 0.0];
    let e = [0.045, 0.10111, 0.15167, 0.20222, 0.05, 0.1, 0.15, 0.2];
    assert!(close(&out.dividends, &d, 5e-6), "{:?}", out.dividends);
    assert!(close(&out.emission, &e, 5e-6), "{:?}", out.emission);
}

#[test]
fn sparse_consensus_equals_the_dense_quickselect() {
    // Middle candidate non-zero and zero, ties, zero stakes.
    let w = vec![
        vec![0.0, 0.3, 0.3, 0.4],
        vec![0.5, 0.0, 0.5, 0.0],
        vec![0.0, 0.3, 0.0, 0.7],
        vec![0.2, 0.2, 0.6, 0.0],
    ];
    let s = [0.25, 0.0, 0.5, 0.25];
    let got = consensus(&s, &dense(&w), 0.5);
    assert_eq!(got, dense_consensus(&s, &w, 0.5));
}

/// The quickselect over every positive-stake row of each column, zeros included.
fn dense_consensus(stake: &[f64], w: &[Vec<f64>], kappa: f64) -> Vec<f64> {
    let rows: Vec<usize> = (0..stake.len()).filter(|&i| stake[i] > 0.0).collect();
    let total: f64 = rows.iter().map(|&i| stake[i]).sum();
    (0..stake.len())
        .map(|j| {
            let cand: Vec<(f64, f64)> = rows.iter().map(|&i| (w[i][j], stake[i] / total)).collect();
            weighted_median(1.0 - kappa, &cand)
        })
        .collect()
}

/// Stake, weights, previous bonds and kappa.
type State = (Vec<f64>, Vec<Vec<f64>>, Vec<Vec<f64>>, f64);

fn arb_state() -> impl Strategy<Value = State> {
    (1usize..10).prop_flat_map(|n| {
        (
            proptest::collection::vec(prop_oneof![Just(0.0), 0.0f64..10.0], n),
            proptest::collection::vec(
                proptest::collection::vec(
                    prop_oneof![2 => Just(0.0), 1 => Just(0.25), 3 => 0.0f64..1.0],
                    n,
                ),
                n,
            ),
            proptest::collection::vec(
                proptest::collection::vec(prop_oneof![Just(0.0), 0.0f64..1.0], n),
                n,
            ),
            0.0f64..=1.0,
        )
    })
}

proptest! {
    #[test]
    fn emission_sums_to_one_and_nothing_is_negative((s, w, prev, kappa) in arb_state(), bma in 0.0f64..=1.0, beta in 0.0f64..=1.0) {
        let p = YumaParams::new(kappa, bma, beta).expect("valid");
        let out = run(&s, &w, Some(&prev), p);
        let total: f64 = out.emission.iter().sum();
        if s.iter().any(|&x| x > 0.0) {
            prop_assert!((total - 1.0).abs() < 1e-9, "sum {total}");
        } else {
            prop_assert_eq!(total, 0.0);
        }
        for v in [&out.emission, &out.incentive, &out.dividends, &out.consensus, &out.trust, &out.rank] {
            prop_assert!(v.iter().all(|&x| x >= 0.0 && x.is_finite()));
        }
        prop_assert!(out.trust.iter().all(|&t| t <= 1.0 + 1e-12));
        prop_assert!(out.bonds.to_dense().iter().flatten().all(|&b| (0.0..=1.0 + 1e-12).contains(&b)));
        // Clipping never raises a weight above its column's consensus.
        prop_assert_eq!(&out.consensus, &dense_consensus(&out.stake, &normalised(&w), kappa));
    }
}

/// The spec's steps 1-9 written out densely: the reference the sparse epoch must match.
fn dense_epoch(
    stake: &[f64],
    w: &[Vec<f64>],
    prev: &[Vec<f64>],
    p: &YumaParams<f64>,
) -> Vec<Vec<f64>> {
    let n = stake.len();
    let total: f64 = stake.iter().sum();
    let s: Vec<f64> = stake
        .iter()
        .map(|x| if total > 0.0 { x / total } else { *x })
        .collect();
    let w = normalised(w);
    let c = dense_consensus(&s, &w, p.kappa);
    let wc: Vec<Vec<f64>> = w
        .iter()
        .map(|r| r.iter().zip(&c).map(|(x, c)| x.min(*c)).collect())
        .collect();
    let trust: Vec<f64> = wc.iter().map(|r| r.iter().sum()).collect();
    let norm = |v: Vec<f64>| {
        let t: f64 = v.iter().sum();
        if t > 0.0 {
            v.iter().map(|x| x / t).collect()
        } else {
            v
        }
    };
    let incentive = norm(
        (0..n)
            .map(|j| (0..n).map(|i| s[i] * wc[i][j]).sum())
            .collect(),
    );
    let colnorm = |m: Vec<Vec<f64>>| -> Vec<Vec<f64>> {
        let sums: Vec<f64> = (0..n).map(|j| (0..n).map(|i| m[i][j]).sum()).collect();
        m.iter()
            .map(|r| {
                r.iter()
                    .zip(&sums)
                    .map(|(x, t)| if *t > 0.0 { x / t } else { 0.0 })
                    .collect()
            })
            .collect()
    };
    let db = colnorm(
        (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| s[i] * (w[i][j] + p.bonds_penalty * (wc[i][j] - w[i][j])))
                    .collect()
            })
            .collect(),
    );
    let pb = colnorm(prev.to_vec());
    let a = 1.0 - p.bonds_moving_average;
    let b = colnorm(
        (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| a * db[i][j] + (1.0 - a) * pb[i][j])
                    .collect()
            })
            .collect(),
    );
    let dividends = norm(
        (0..n)
            .map(|i| (0..n).map(|j| b[i][j] * incentive[j]).sum())
            .collect(),
    );
    let sum: Vec<f64> = incentive
        .iter()
        .zip(&dividends)
        .map(|(x, d)| x + d)
        .collect();
    let emission = if sum.iter().sum::<f64>() > 0.0 {
        norm(sum)
    } else {
        s.clone()
    };
    let mut out = vec![c, trust, incentive, dividends, emission];
    out.extend(b);
    out
}

proptest! {
    #[test]
    fn sparse_epoch_equals_the_dense_reference((s, w, prev, kappa) in arb_state(), bma in 0.0f64..=1.0, beta in 0.0f64..=1.0) {
        let p = YumaParams::new(kappa, bma, beta).expect("valid");
        let out = run(&s, &w, Some(&prev), p);
        let want = dense_epoch(&s, &w, &prev, &p);
        let mut got = vec![out.consensus, out.trust, out.incentive, out.dividends, out.emission];
        got.extend(out.bonds.to_dense());
        for (g, w) in got.iter().zip(&want) {
            prop_assert!(close(g, w, 1e-12), "{g:?} vs {w:?}");
        }
    }
}

/// Step 2 in `f64`: diagonal zeroed, rows normalised.
fn normalised(w: &[Vec<f64>]) -> Vec<Vec<f64>> {
    w.iter()
        .enumerate()
        .map(|(i, r)| {
            let sum: f64 = r
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, x)| x)
                .sum();
            r.iter()
                .enumerate()
                .map(|(j, &x)| {
                    if j == i || sum == 0.0 {
                        0.0
                    } else {
                        x * (1.0 / sum)
                    }
                })
                .collect()
        })
        .collect()
}
