//! The hot path: one step of the weight game, and the tiled Hessian-vector product inside it.

use bt_mechanism::matrix::{Hessians, Matrix};
use bt_mechanism::{Game, GameParams};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// A deterministic game of `n` learners: PSD Hessians `B B^T`, rows on the simplex.
fn game(n: usize) -> Game {
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut full = vec![0.0; n * n * n];
    for i in 0..n {
        let b: Vec<f64> = (0..n * n).map(|_| next() - 0.5).collect();
        for j in 0..n {
            for k in j..n {
                let v: f64 = (0..n).map(|l| b[j * n + l] * b[k * n + l]).sum::<f64>() / n as f64;
                full[i * n * n + j * n + k] = v;
                full[i * n * n + k * n + j] = v;
            }
        }
    }
    let mut w0 = Matrix::zeros(n);
    for i in 0..n {
        let row: Vec<f64> = (0..n).map(|_| next() + 0.01).collect();
        let sum: f64 = row.iter().sum();
        for (j, x) in row.iter().enumerate() {
            w0.set(i, j, x / sum);
        }
    }
    let params = GameParams {
        alpha: 1.0,
        tau: 1.0,
        temperature: 0.03,
        lambda: 0.005,
        eps: 0.0,
        max_steps: u64::MAX,
    };
    let hessians = Hessians::from_full(n, &full).expect("valid Hessians");
    Game::new(params, vec![1.0; n], w0, hessians).expect("valid game")
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("game_step");
    for n in [50usize, 100, 200] {
        let mut g = game(n);
        group.throughput(Throughput::Bytes(g.hessians().bytes() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| g.step())
        });
    }
    group.finish();
    let mut group = c.benchmark_group("tiled_matvec_all_learners");
    for n in [50usize, 100, 200] {
        let g = game(n);
        let h = g.hessians();
        let mut x: Vec<f64> = (0..n).map(|k| (k as f64).sin()).collect();
        x.resize(Hessians::padded(n), 0.0);
        let mut y = vec![0.0; Hessians::padded(n)];
        group.throughput(Throughput::Bytes(h.bytes() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                for i in 0..n {
                    h.matvec(i, &x, &mut y);
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
