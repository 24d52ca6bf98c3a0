"""Side-by-side benchmark on loopback: bt-wire (Rust axon + dendrites) against hivemind 1.1.12
(Server + RemoteExpert over its p2pd), serving the same expert: hivemind's `ffn` block
(Linear(d, 4d), GELU (tanh form), Linear(4d, d), residual, LayerNorm), d = 1024.

For each system: forward-only and forward+backward samples/s with the same batch size and the
same number of concurrent clients, with 32-bit and 16-bit tensors on the wire (bt-wire: bf16;
hivemind 1.1.12 has no bf16 compression, so its FLOAT16), and loopback bytes per sample
(the kernel's counter of bytes sent on `lo` during the measured window; both directions).

Usage: python bench.py --rust-bin PATH [--batch 64] [--clients 4] [--secs 10] [--warmup 2]
       [--cache-mib M]
"""
import argparse
import json
import subprocess
import threading
import time


def lo_bytes():
    with open("/sys/class/net/lo/statistics/tx_bytes") as f:
        return int(f.read())


def run_rust(args):
    cmd = [
        args.rust_bin, "--dim", str(args.dim), "--batch", str(args.batch),
        "--clients", str(args.clients), "--secs", str(args.secs), "--warmup", str(args.warmup),
    ]
    if args.cache_mib is not None:
        cmd += ["--cache-mib", str(args.cache_mib)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = {}
    for line in out.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            rows[(r["mode"], "32" if r["wire"] == "f32" else "16")] = r
    return rows


def run_hivemind(args):
    import torch
    from hivemind import DHT
    from hivemind.moe.client.expert import create_remote_experts
    from hivemind.moe.expert_uid import ExpertInfo
    from hivemind.moe.server import background_server
    from hivemind.proto.runtime_pb2 import CompressionType

    rows = {}
    for bits, compression in (("32", CompressionType.NONE), ("16", CompressionType.FLOAT16)):
        with background_server(
            expert_uids=["expert.0"],
            expert_cls="ffn",
            hidden_dim=args.dim,
            num_handlers=args.clients,
            device="cpu",
            optim_cls=lambda params: torch.optim.SGD(params, lr=0.0),
            max_batch_size=max(4096, args.batch * args.clients),
            compression=compression,
        ) as server_info:
            dht = DHT(initial_peers=server_info.addrs, start=True)
            (expert,) = create_remote_experts([ExpertInfo("expert.0", server_info.peer_id)], dht)
            for backward in (False, True):
                mode = "forward+backward" if backward else "forward"
                counts = [0] * args.clients
                fails = [0] * args.clients
                t0 = time.time()
                warm_end = t0 + args.warmup
                end = warm_end + args.secs
                lo_start = [None]
                lock = threading.Lock()

                def client(i):
                    gen = torch.Generator().manual_seed(i)
                    x = torch.rand(args.batch, args.dim, generator=gen) - 0.5
                    g = torch.full((args.batch, args.dim), 1e-3)
                    step = 0
                    while True:
                        now = time.time()
                        if now >= end:
                            return
                        # A new batch each time, as on the bt-wire side.
                        x[:, 0] = (step % 100_000) * 1e-5 + i
                        step += 1
                        try:
                            if backward:
                                xi = x.clone().requires_grad_(True)
                                y = expert(xi)
                                y.backward(g)
                            else:
                                with torch.no_grad():
                                    expert(x)
                            ok = True
                        except Exception:  # noqa: BLE001 (counted, reported)
                            ok = False
                        if now >= warm_end and time.time() <= end:
                            with lock:
                                if lo_start[0] is None:
                                    lo_start[0] = lo_bytes()
                            if ok:
                                counts[i] += args.batch
                            else:
                                fails[i] += 1

                threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                n = sum(counts)
                rows[(mode, bits)] = {
                    "samples_per_s": n / args.secs,
                    "loopback_bytes_per_sample": (lo_bytes() - (lo_start[0] or lo_bytes())) / max(n, 1),
                    "failures": sum(fails),
                }
            dht.shutdown()
    return rows


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rust-bin", required=True)
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--secs", type=float, default=10)
    p.add_argument("--warmup", type=float, default=2)
    p.add_argument("--skip-hivemind", action="store_true")
    p.add_argument("--cache-mib", type=int,
                   help="bt-wire expert's activation cache (MiB; 0 = off; default: the expert's)")
    args = p.parse_args()

    rust = run_rust(args)
    hm = {} if args.skip_hivemind else run_hivemind(args)
    print(f"\nexpert ffn d={args.dim} (inner {4 * args.dim}), batch {args.batch}, "
          f"{args.clients} concurrent clients, {args.secs:g} s per cell, loopback, CPU only")
    head = (f"{'mode':<17} {'wire':<10} {'bt-wire samples/s':>18} {'hivemind samples/s':>19} "
            f"{'ratio':>6} {'bt-wire B/sample':>17} {'hivemind B/sample':>18}")
    print(head)
    print("-" * len(head))
    for mode in ("forward", "forward+backward"):
        for bits in ("32", "16"):
            r = rust[(mode, bits)]
            h = hm.get((mode, bits))
            wire = "f32" if bits == "32" else "bf16/fp16"
            hs = f"{h['samples_per_s']:.1f}" if h else "n/a"
            ratio = f"{r['samples_per_s'] / h['samples_per_s']:.2f}x" if h and h["samples_per_s"] > 0 else "n/a"
            hb = f"{h['loopback_bytes_per_sample']:.0f}" if h else "n/a"
            print(f"{mode:<17} {wire:<10} {r['samples_per_s']:>18.1f} {hs:>19} {ratio:>6} "
                  f"{r['loopback_bytes_per_sample']:>17.0f} {hb:>18}")
    fails = sum(r["failures"] for r in rust.values()), sum(h["failures"] for h in hm.values())
    print(f"failed requests: bt-wire {fails[0]}, hivemind {fails[1]}")


if __name__ == "__main__":
    main()
