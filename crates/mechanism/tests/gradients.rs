//! Every analytic gradient against central finite differences on random instances, and the
//! game's repeatability.

#![allow(clippy::unwrap_used, clippy::needless_range_loop)]

use bt_mechanism::mask::mask_row;
use bt_mechanism::matrix::{Hessians, Matrix};
use bt_mechanism::payoff::{self, RowInput, RowScratch};
use bt_mechanism::rank::{rank, rank_into};
use bt_mechanism::simplex::on_simplex;
use bt_mechanism::{Game, GameParams};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

struct Instance {
    stake: Vec<f64>,
    w0: Matrix,
    w: Matrix,
    h: Hessians,
}

/// A small random instance: PSD Hessians `B B^T`, simplex rows, positive stake.
fn instance(n: usize, seed: u64) -> Instance {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut full = vec![0.0; n * n * n];
    for i in 0..n {
        let b: Vec<f64> = (0..n * n).map(|_| rng.random_range(-1.0..1.0)).collect();
        for j in 0..n {
            for k in 0..n {
                full[i * n * n + j * n + k] = (0..n).map(|l| b[j * n + l] * b[k * n + l]).sum();
            }
        }
    }
    let simplex = |rng: &mut ChaCha8Rng| {
        let mut m = Matrix::zeros(n);
        for i in 0..n {
            let row: Vec<f64> = (0..n).map(|_| rng.random_range(0.05..1.0)).collect();
            let s: f64 = row.iter().sum();
            for (j, x) in row.iter().enumerate() {
                m.set(i, j, x / s);
            }
        }
        m
    };
    let w0 = simplex(&mut rng);
    let w = simplex(&mut rng);
    let stake = (0..n).map(|_| rng.random_range(0.5..2.0)).collect();
    Instance {
        stake,
        w0,
        w,
        h: Hessians::from_full(n, &full).unwrap(),
    }
}

const T: f64 = 0.3;

fn m0(inst: &Instance) -> Matrix {
    let n = inst.w0.n();
    let mu0 = rank(&inst.stake, &inst.w0);
    let mut m0 = Matrix::zeros(n);
    for i in 0..n {
        mask_row(inst.stake[i], inst.w0.row(i), &mu0, T, m0.row_mut(i));
    }
    m0
}

/// `L_i(W)` with `mu` recomputed from the whole of `W`.
fn loss_at(inst: &Instance, m0: &Matrix, w: &Matrix, i: usize) -> f64 {
    let n = w.n();
    let mut mu = vec![0.0; n];
    rank_into(&inst.stake, w, &mut mu);
    let inp = RowInput {
        i,
        stake_i: inst.stake[i],
        w_i: w.row(i),
        mu: &mu,
        m0_i: m0.row(i),
        temperature: T,
    };
    payoff::loss(&inst.h, &inp, &mut RowScratch::new(n))
}

fn payoff_at(inst: &Instance, m0: &Matrix, w: &Matrix, i: usize, alpha: f64, tau: f64) -> f64 {
    let r = rank(&inst.stake, w);
    payoff::payoff(loss_at(inst, m0, w, i), r[i], alpha, tau)
}

fn central_difference(f: impl Fn(&Matrix) -> f64, w: &Matrix, i: usize, j: usize) -> f64 {
    let h = 1e-6;
    let mut plus = w.clone();
    plus.set(i, j, w.get(i, j) + h);
    let mut minus = w.clone();
    minus.set(i, j, w.get(i, j) - h);
    (f(&plus) - f(&minus)) / (2.0 * h)
}

fn assert_close(analytic: f64, numeric: f64, what: &str) {
    let tol = 1e-6 * (1.0 + analytic.abs().max(numeric.abs()));
    assert!(
        (analytic - numeric).abs() <= tol,
        "{what}: analytic {analytic} vs numeric {numeric}"
    );
}

/// For every row `i` of `inst`, compares `analytic(row input) -> dF_i/dW_i` with central
/// differences of `value(W, i) = F_i(W)`.
fn check_row_gradients(
    inst: &Instance,
    what: &str,
    analytic: impl Fn(&RowInput<'_>, &mut [f64]),
    value: impl Fn(&Matrix, usize) -> f64,
) {
    let n = inst.w.n();
    let m0 = m0(inst);
    let mut mu = vec![0.0; n];
    rank_into(&inst.stake, &inst.w, &mut mu);
    for i in 0..n {
        let inp = RowInput {
            i,
            stake_i: inst.stake[i],
            w_i: inst.w.row(i),
            mu: &mu,
            m0_i: m0.row(i),
            temperature: T,
        };
        let mut grad = vec![0.0; n];
        analytic(&inp, &mut grad);
        for j in 0..n {
            let numeric = central_difference(|w| value(w, i), &inst.w, i, j);
            assert_close(grad[j], numeric, &format!("d{what}_{i}/dW_{i}{j} (n={n})"));
        }
    }
}

#[test]
fn loss_gradient_matches_finite_differences() {
    for (n, seed) in [(2, 1), (3, 2), (5, 3), (8, 4), (13, 5)] {
        let inst = instance(n, seed);
        let m0 = m0(&inst);
        check_row_gradients(
            &inst,
            "L",
            |inp, grad| {
                payoff::loss_gradient(&inst.h, inp, &mut RowScratch::new(n), grad);
            },
            |w, i| loss_at(&inst, &m0, w, i),
        );
    }
}

#[test]
fn payoff_gradient_matches_finite_differences() {
    for (n, seed, alpha, tau) in [(3, 11, 1.0, 1.0), (6, 12, 25.0, 1.0), (9, 13, 0.5, 3.0)] {
        let inst = instance(n, seed);
        let m0 = m0(&inst);
        check_row_gradients(
            &inst,
            "P",
            |inp, grad| {
                payoff::payoff_gradient(&inst.h, inp, alpha, tau, &mut RowScratch::new(n), grad);
            },
            |w, i| payoff_at(&inst, &m0, w, i, alpha, tau),
        );
    }
}

#[test]
fn rank_gradient_matches_finite_differences() {
    let inst = instance(7, 21);
    for i in 0..7 {
        for j in 0..7 {
            let numeric = central_difference(|w| rank(&inst.stake, w)[i], &inst.w, i, j);
            assert_close(
                payoff::rank_gradient(i, j, inst.stake[i], 7),
                numeric,
                "dR_i/dW_ij",
            );
        }
    }
}

fn params() -> GameParams {
    GameParams {
        alpha: 10.0,
        tau: 1.0,
        temperature: T,
        lambda: 0.005,
        eps: 1e-9,
        max_steps: 300,
    }
}

/// The game of `inst` under `p`.
fn new_game(inst: &Instance, p: GameParams) -> bt_mechanism::Result<Game> {
    Game::new(p, inst.stake.clone(), inst.w0.clone(), inst.h.clone())
}

fn run_game(inst: &Instance) -> (Matrix, u64) {
    let mut game = new_game(inst, params()).unwrap();
    let summary = game.run(|_| {});
    (game.weights().clone(), summary.steps)
}

#[test]
fn seeded_runs_are_bit_for_bit_repeatable_across_thread_counts() {
    let inst = instance(24, 99);
    let (a, sa) = run_game(&inst);
    let (b, sb) = run_game(&inst);
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let (c, sc) = one.install(|| run_game(&inst));
    assert_eq!(sa, sb);
    assert_eq!(sa, sc);
    let bits = |m: &Matrix| m.as_slice().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a), bits(&b));
    assert_eq!(bits(&a), bits(&c));
}

#[test]
fn game_keeps_rows_on_the_simplex_and_reports_its_bound() {
    let inst = instance(10, 5);
    let mut game = new_game(&inst, params()).unwrap();
    let mut prev = game.weights().clone();
    for _ in 0..50 {
        let out = game.step();
        for row in game.weights().rows() {
            assert!(on_simplex(row, 1e-12));
        }
        let bound = game.weights().max_abs_diff(&prev) / params().lambda;
        assert_eq!(out.gradient_bound, bound);
        prev = game.weights().clone();
    }
}

#[test]
fn only_rank_term_drives_weights_to_identity() {
    // alpha = 0: every learner only wants inflation, so it keeps its whole row.
    let inst = instance(6, 8);
    let p = GameParams {
        alpha: 0.0,
        eps: 1e-9,
        max_steps: 100_000,
        ..params()
    };
    let mut game = new_game(&inst, p).unwrap();
    let summary = game.run(|_| {});
    assert!(summary.converged);
    assert!(game.weights().max_abs_diff(&Matrix::identity(6)) < 1e-12);
}

#[test]
fn bad_parameters_are_refused_by_name() {
    let inst = instance(3, 1);
    for (p, name) in [
        (
            GameParams {
                temperature: 0.0,
                ..params()
            },
            "temperature",
        ),
        (
            GameParams {
                lambda: -1.0,
                ..params()
            },
            "lambda",
        ),
        (
            GameParams {
                alpha: f64::NAN,
                ..params()
            },
            "alpha",
        ),
        (
            GameParams {
                tau: -0.5,
                ..params()
            },
            "tau",
        ),
    ] {
        let err = new_game(&inst, p).unwrap_err();
        assert!(err.to_string().contains(name), "{err}");
    }
    let err = Game::new(params(), vec![1.0; 2], inst.w0.clone(), inst.h.clone()).unwrap_err();
    assert!(err.to_string().contains("stake"), "{err}");
}
