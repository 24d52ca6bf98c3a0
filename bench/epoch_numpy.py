"""Yuma epoch and the paper's inflation step in NumPy, on the state the ledger benchmark uses.

`bench/epoch_bench.sh` runs `cargo bench -p bt-chain --bench ledger` with `BT_BENCH_JSON` set
(the Rust timings, in the ledger's fixed point, and their results), then this script: it
builds the same state (crates/chain/benches/state/mod.rs `network`: a stake majority agreeing
on a set of good neurons, every fifth row weighing at random), runs the same epoch
(spec/yuma.md steps 1-9; the dense paper step `S <- S + tau R / ||R||_2`), checks that the
results agree with Rust's, and prints one table with the ratio.
"""

import argparse
import json
import time

import numpy as np


def mix(x):
    """The splitmix64 finaliser on uint64 arrays (wrapping), as the Rust benchmark's `mix`."""
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def noise(i, k):
    """Noise for entry k of row i (broadcasting)."""
    return mix((np.asarray(i, dtype=np.uint64) << np.uint64(32)) | np.asarray(k, dtype=np.uint64))


def network(n, per_row):
    """Stake (TAO) and weights (rows normalised to 1) of the benchmark's `network`
    (crates/chain/benches/state/mod.rs `raw_row`): dense, or a stake majority that agrees on
    the good neurons (uids divisible by 16) while every fifth row weighs at random."""
    i = np.arange(n)
    stake = (1 + i % 50).astype(np.float64)
    w = np.zeros((n, n))
    if per_row >= n:
        j = np.arange(n)
        w[:] = 1 + ((i[:, None] * 31 + j[None, :] * 17) % 97)
    else:
        nn = np.uint64(n)
        # Random rows: per_row random neurons, weights 1..=1000 (repeats add up).
        rnd = i[i % 5 == 0]
        r = noise(rnd[:, None], np.arange(per_row)[None, :])
        np.add.at(
            w,
            (np.repeat(rnd, per_row), (r % nn).astype(np.int64).ravel()),
            (1 + (r >> np.uint64(32)) % np.uint64(1000)).astype(np.float64).ravel(),
        )
        # Honest rows: the good neurons at 100 q_g + noise, each kept with probability 7/8,
        # then small weights on random other neurons up to per_row entries.
        hon = i[i % 5 != 0]
        goods = np.arange(0, n, 16)[:per_row]
        r = noise(hon[:, None], goods[None, :])
        kept = (r % np.uint64(8)) != 0
        q = 1 + (goods // 16) % 64
        vals = (100 * q[None, :] + (r >> np.uint64(32)) % np.uint64(400)).astype(np.float64)
        rows_h = np.broadcast_to(hon[:, None], kept.shape)
        cols_h = np.broadcast_to(goods[None, :], kept.shape)
        np.add.at(w, (rows_h[kept], cols_h[kept]), vals[kept])
        used = kept.sum(axis=1)
        k = np.arange(per_row)
        r = noise(hon[:, None], n + k[None, :])
        j = (r % nn).astype(np.int64)
        j = np.where(j % 16 == 0, j + 1, j)
        fill = k[None, :] >= used[:, None]
        vals = (1 + (r >> np.uint64(32)) % np.uint64(20)).astype(np.float64)
        np.add.at(w, (np.broadcast_to(hon[:, None], fill.shape)[fill], j[fill]), vals[fill])
    w /= w.sum(axis=1, keepdims=True)
    return stake, w


def normalize(v):
    s = v.sum()
    return v / s if s > 0 else v


def col_normalize(m):
    s = m.sum(axis=0)
    return np.divide(m, s, out=np.zeros_like(m), where=s > 0)


def yuma_epoch(stake, w, bonds, kappa=0.5, bma=0.9, beta=1.0):
    """spec/yuma.md steps 1-9; the consensus as a stake-weighted quantile by sorting."""
    s = normalize(stake)
    w = w.copy()
    np.fill_diagonal(w, 0.0)
    rs = w.sum(axis=1, keepdims=True)
    w = np.divide(w, rs, out=np.zeros_like(w), where=rs > 0)
    pos = s > 0
    sp = normalize(s[pos])
    wp = w[pos]
    order = np.argsort(wp, axis=0, kind="stable")
    ranked = np.take_along_axis(wp, order, axis=0)
    cum = np.cumsum(sp[order], axis=0)
    # The quantile: the first score whose cumulative stake exceeds the minority 1 - kappa.
    k = np.minimum((cum <= 1.0 - kappa).sum(axis=0), len(sp) - 1)
    c = ranked[k, np.arange(w.shape[1])]
    wc = np.minimum(w, c[None, :])
    trust = wc.sum(axis=1)
    incentive = normalize(s @ wc)
    wb = w + beta * (wc - w)
    delta = col_normalize(s[:, None] * wb)
    a = 1.0 - bma
    b = col_normalize(a * delta + (1.0 - a) * col_normalize(bonds))
    dividends = normalize(b @ incentive)
    total = incentive + dividends
    emission = total / total.sum() if total.sum() > 0 else s
    return c, trust, incentive, dividends, emission, b


def paper_step(stake, w, tau=1.0):
    r = (stake @ w) / len(stake)
    norm = np.sqrt(r @ r)
    return r, (stake + tau * r / norm if norm > 0 else stake)


def median_ms(f, reps):
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2] * 1e3


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rust", required=True, help="the JSON written through BT_BENCH_JSON")
    p.add_argument("--n", type=int, default=4096)
    a = p.parse_args()
    rust = json.load(open(a.rust))
    n = a.n

    stake, w = network(n, 256)
    zero = np.zeros((n, n))
    c, _, _, _, emission, _ = yuma_epoch(stake, w, zero)
    rust_agreed = int((np.array(rust["yuma_consensus"]) > 0).sum())
    yuma_ms = median_ms(lambda: yuma_epoch(stake, w, zero), 3)
    e_diff = np.abs(emission - np.array(rust["yuma_emission"])).max()

    stake_d, w_d = network(n, n)
    rank = paper_step(stake_d, w_d)[0]
    paper_ms = median_ms(lambda: paper_step(stake_d, w_d), 5)
    r_diff = np.abs(rank - np.array(rust["paper_rank"])).max()

    print(f"NumPy {np.__version__}; Rust on {rust['threads']} threads, fixed point")
    print()
    print(f"{'measure (n = ' + str(n) + ')':<44} {'Rust ms':>9} {'NumPy ms':>9} {'NumPy/Rust':>11}")
    print("-" * 76)
    for label, r, py in [
        ("yuma epoch, 256 weights per row, zero bonds", rust["yuma_epoch_ms"], yuma_ms),
        ("paper inflation step, dense", rust["paper_dense_ms"], paper_ms),
    ]:
        print(f"{label:<44} {r:>9.2f} {py:>9.2f} {py / r:>10.1f}x")
    print()
    print(f"Rust's yuma epoch with the bonds of three earlier epochs: {rust['yuma_epoch_bonds_ms']:.2f} ms")
    print(f"columns with a positive consensus: Rust {rust_agreed}, NumPy {int((c > 0).sum())} of {n}")
    print(f"max |E_rust - E_numpy| = {e_diff:.2e}; max |R_rust - R_numpy| = {r_diff:.2e} TAO")
    if e_diff > 1e-6 or r_diff > 1e-6:
        raise SystemExit("the two implementations disagree")


if __name__ == "__main__":
    main()
