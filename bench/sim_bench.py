"""Solver benchmark: the Rust game against the NumPy game, same instances, one run.

For each n it writes an instance with `bt sim instance`, times a fixed number of steps with
`bt sim bench` (Rust) and with bench/sim_numpy.py (NumPy), checks that the final W agree to
1e-6 in every entry, and prints steps per second, their ratio, and the Hessian bytes each
streams per second against the machine's read bandwidth measured in the same run.

Run it through bench/sim_bench.sh, which builds `bt` and prepares the NumPy environment.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sim_numpy  # noqa: E402

TOLERANCE = 1e-6


def bt(binary, *args):
    out = subprocess.run([binary, *args], check=True, capture_output=True, text=True)
    return out.stdout


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bt", default="target/release/bt")
    p.add_argument("--sizes", default="50,100,200")
    p.add_argument("--steps", default="4000,2000,400", help="steps timed at each size")
    p.add_argument("--alpha", type=float, default=1.0,
                   help="alpha/tau of the timed games; keep it in the stable regime: games at >= 10 "
                        "cycle, and a cycling game is chaotic, so two correct implementations drift apart")
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args()
    sizes = [int(x) for x in a.sizes.split(",")]
    steps = [int(x) for x in a.steps.split(",")]
    temp_args = [] if a.temperature is None else ["--temperature", str(a.temperature)]
    rows = []
    bandwidth = None
    with tempfile.TemporaryDirectory() as tmp:
        for i, (n, k) in enumerate(zip(sizes, steps)):
            path = os.path.join(tmp, f"instance-{n}.safetensors")
            bt(a.bt, "sim", "instance", "--n", str(n), "--seed", str(a.seed), "--out", path)
            rust = json.loads(
                bt(a.bt, "sim", "bench", "--instance", path, "--steps", str(k),
                   "--alpha", str(a.alpha), "--bandwidth-mib", "1024" if i == 0 else "0", *temp_args)
            )
            if i == 0:
                bandwidth = rust["read_bandwidth_bytes_per_second"]
            temperature = rust["temperature"]
            stake, w0, hs = sim_numpy.load_instance(path)
            w, np_steps, _, np_seconds = sim_numpy.run(
                stake, w0, hs, a.alpha, 1.0, temperature, eps=0.0, max_steps=k
            )
            solver = rust["solver"]
            diff = float(np.abs(w - np.array(solver["weights"])).max())
            full_bytes = 8 * n ** 3
            rows.append({
                "n": n,
                "steps": k,
                "rust_steps_per_s": solver["steps_per_second"],
                "numpy_steps_per_s": np_steps / np_seconds,
                "max_abs_diff": diff,
                "rust_bytes_per_step": solver["hessian_bytes_per_step"],
                "rust_gb_per_s": solver["hessian_bytes_per_second"] / 1e9,
                "numpy_gb_per_s": full_bytes * np_steps / np_seconds / 1e9,
            })
    bw = bandwidth / 1e9
    print(f"read bandwidth measured now (all cores, 1 GiB buffer): {bw:.1f} GB/s\n")
    head = (f"{'n':>5} {'steps':>6} {'rust steps/s':>13} {'numpy steps/s':>14} {'ratio':>7} "
            f"{'max|dW|':>9} {'agree':>6} {'rust GB/s':>10} {'%bw':>6} {'numpy GB/s':>11}")
    print(head)
    print("-" * len(head))
    ok = True
    for r in rows:
        agree = r["max_abs_diff"] <= TOLERANCE
        ok &= agree
        print(f"{r['n']:>5} {r['steps']:>6} {r['rust_steps_per_s']:>13.1f} {r['numpy_steps_per_s']:>14.1f} "
              f"{r['rust_steps_per_s'] / r['numpy_steps_per_s']:>6.1f}x {r['max_abs_diff']:>9.1e} "
              f"{'yes' if agree else 'NO':>6} {r['rust_gb_per_s']:>10.2f} {100 * r['rust_gb_per_s'] / bw:>5.0f}% "
              f"{r['numpy_gb_per_s']:>11.2f}")
    print("\nRust streams the upper triangles of 8 x 8 tiles (about 4 n^2 (n+8) bytes a step); NumPy the full")
    print("Hessians (8 n^3 bytes a step). %bw = Rust's Hessian bytes per second / read bandwidth;")
    print("above 100% means the Hessians were served from cache rather than memory.")
    if not ok:
        print(f"\nFAIL: final weights differ by more than {TOLERANCE}")
        sys.exit(1)


if __name__ == "__main__":
    main()
