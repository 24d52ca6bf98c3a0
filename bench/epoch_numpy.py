"""Yuma epoch and the paper's inflation step in NumPy, on the state the ledger benchmark uses.

`bench/epoch_bench.sh` runs `cargo bench -p bt-chain --bench ledger` with `BT_BENCH_JSON` set
(the Rust timings, in the ledger's fixed point, and their results), then this script: it
builds the same state (crates/chain/benches/ledger.rs `network`), runs the same epoch
(spec/yuma.md steps 1-9; the dense paper step `S <- S + tau R / ||R||_2`), checks that the
results agree with Rust's, and prints one table with the ratio.
"""

import argparse
import json
import time

import numpy as np


def network(n, per_row):
    """Stake (TAO) and weights (rows normalised to 1) of the benchmark's `network`."""
    i = np.arange(n)
    stake = (1 + i % 50).astype(np.float64)
    w = np.zeros((n, n))
    if per_row >= n:
        j = np.arange(n)
        w[:] = 1 + ((i[:, None] * 31 + j[None, :] * 17) % 97)
    else:
        k = np.arange(per_row)
        cols = (i[:, None] + k[None, :] * 13) % n
        vals = 1 + ((i[:, None] + k[None, :]) % 89)
        w[i[:, None], cols] = vals
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
    emission = yuma_epoch(stake, w, zero)[4]
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
        ("yuma epoch, 256 weights per row", rust["yuma_epoch_ms"], yuma_ms),
        ("paper inflation step, dense", rust["paper_dense_ms"], paper_ms),
    ]:
        print(f"{label:<44} {r:>9.2f} {py:>9.2f} {py / r:>10.1f}x")
    print()
    print(f"max |E_rust - E_numpy| = {e_diff:.2e}; max |R_rust - R_numpy| = {r_diff:.2e} TAO")
    if e_diff > 1e-6 or r_diff > 1e-6:
        raise SystemExit("the two implementations disagree")


if __name__ == "__main__":
    main()
