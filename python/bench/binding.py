"""What the Python binding costs: the package's Dendrite and Axon against the Rust ones, on
loopback, side by side in one run (run it with scripts/python-bench.sh).

- Dendrite: calls one after another from one caller to the Rust axon (the feed-forward
  expert); the Rust dendrite (examples/wire_client) against bittensor_rs.Dendrite.
- Axon: samples/s served to --clients concurrent Rust dendrites; the Rust axon with the
  feed-forward expert against bittensor_rs.Axon with the same block written in NumPy
  (LayerNorm(x + W2 GELU(W1 x + b1) + b2), inner width 4 d). The NumPy model's own time per
  call, measured in-process, tells the model apart from the binding.
- The same with an echo model (the answer is the input) on both sides: what the wire and the
  binding cost without a model.

Prints a Markdown table and one JSON line per measurement.
"""

import argparse
import json
import subprocess
import time

import numpy as np

import bittensor_rs as bt


def numpy_ffn(d, seed=1):
    rng = np.random.default_rng(seed)
    h = 4 * d
    w1 = (rng.standard_normal((d, h)) / np.sqrt(d)).astype(np.float32)
    b1 = np.zeros(h, np.float32)
    w2 = (rng.standard_normal((h, d)) / np.sqrt(h)).astype(np.float32)
    b2 = np.zeros(d, np.float32)
    c = np.float32(np.sqrt(2.0 / np.pi))

    def forward(caller, xs):
        x = xs[0]
        a = x @ w1 + b1
        g = 0.5 * a * (1.0 + np.tanh(c * (a + 0.044715 * a * a * a)))
        r = x + g @ w2 + b2
        mu = r.mean(axis=1, keepdims=True)
        var = r.var(axis=1, keepdims=True)
        return [((r - mu) / np.sqrt(var + 1e-12)).astype(np.float32)]

    return forward


def rust_client(args, endpoint, hotkey, clients):
    out = subprocess.run(
        [args.rust_client, "--endpoint", endpoint, "--hotkey", hotkey, "--dim", str(args.dim),
         "--batch", str(args.batch), "--clients", str(clients), "--secs", str(args.secs),
         "--warmup", "1"],
        check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def python_calls(args, endpoint, hotkey):
    d = bt.Dendrite(bt.Keypair.from_uri("//Alice//pybench"))
    x = np.full((args.batch, args.dim), 0.25, np.float32)
    end = time.perf_counter() + 1.0
    while time.perf_counter() < end:
        d.forward(hotkey, endpoint, x)
    calls = failures = 0
    t0 = time.perf_counter()
    end = t0 + args.secs
    while time.perf_counter() < end:
        r = d.forward(hotkey, endpoint, x)
        calls += 1
        failures += r.code != bt.ReturnCode.SUCCESS
    secs = time.perf_counter() - t0
    return {"calls": calls, "failures": failures, "secs": secs,
            "per_call_us": secs / calls * 1e6, "samples_per_s": calls * args.batch / secs}


def model_time_us(forward, args):
    x = np.full((args.batch, args.dim), 0.25, np.float32)
    for _ in range(20):
        forward(None, [x])
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 2.0:
        forward(None, [x])
        n += 1
    return (time.perf_counter() - t0) / n * 1e6


def start_rust_axon(args, model):
    proc = subprocess.Popen(
        [args.rust_axon, "--port", "0", "--dim", str(args.dim), "--model", model, "--secs", "3600"],
        stdout=subprocess.PIPE, text=True)
    hotkey = None
    while True:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit("the Rust axon did not start")
        if line.startswith("hotkey"):
            hotkey = line.split()[1]
        if line.startswith("listening"):
            return proc, "http://" + line.split()[1], hotkey


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rust-axon", required=True)
    p.add_argument("--rust-client", required=True)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--secs", type=float, default=2.0)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()

    models = {"ffn": numpy_ffn(args.dim), "echo": lambda caller, xs: xs}
    names = {"ffn": "feed-forward", "echo": "echo"}
    rows = []
    spec = [("float", ["batch", args.dim])]
    key = bt.Keypair.from_uri("//Bob//pybench")
    for model, forward in models.items():
        proc, endpoint, hotkey = start_rust_axon(args, model)
        with bt.Axon(key, forward, spec, spec, batchable=True) as axon:
            py_endpoint = "http://" + axon.serve("127.0.0.1:0")
            dendrite, served = [], []
            try:
                # Rust and Python alternate, so that a slow moment of a shared machine falls
                # on both; the table gives medians and the ratios' range.
                for _ in range(args.repeats):
                    dendrite.append((rust_client(args, endpoint, hotkey, 1),
                                     python_calls(args, endpoint, hotkey)))
                    served.append((rust_client(args, endpoint, hotkey, args.clients),
                                   rust_client(args, py_endpoint, axon.hotkey, args.clients)))
            finally:
                proc.kill()
                proc.wait()
        rows.append((f"dendrite to a Rust axon ({names[model]}): us per call", "per_call_us", dendrite))
        rows.append((f"axon ({names[model]}), {args.clients} Rust callers: samples/s", "samples_per_s", served))
    model_us = model_time_us(models["ffn"], args)

    print(f"\nbatch {args.batch}, width {args.dim} (feed-forward inner width {4 * args.dim}), "
          f"{args.repeats} x {args.secs:.0f} s each, Rust and Python alternating\n")
    print("| measure | Rust (median) | Python package (median) | Python / Rust (median, range) |")
    print("|---|---:|---:|---:|")
    for name, key_, pairs in rows:
        r = [a[key_] for a, _ in pairs]
        p_ = [b[key_] for _, b in pairs]
        ratios = [b / a for a, b in zip(r, p_)]
        print(f"| {name} | {np.median(r):,.1f} | {np.median(p_):,.1f} | "
              f"{np.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) |")
    print(f"\nThe NumPy feed-forward block alone, in-process: {model_us:,.0f} us per call of "
          f"{args.batch} rows")
    for name, key_, pairs in rows:
        for a, b in pairs:
            print(json.dumps({"measure": name, "rust": a, "python": b, "ratio": b[key_] / a[key_]}))

if __name__ == "__main__":
    main()
