"""A neuron written in PyTorch that joins a bittensor-rs network.

It registers its hotkey on the ledger, serves its own model through ``bittensor_rs.Axon`` (the
Rust axon checks signatures, nonces and shapes, orders the queue by stake and applies the
competitive mask), queries its peers through ``bittensor_rs.Dendrite``, trains with their answers
(and sends them the gradient of its loss with Backward), and sets weights on the peers that
helped it. The ledger then ranks it with the others.

Start a network that outside neurons may join, then this neuron against its ledger:

    bt net up --transport grpc --steps 2000          # prints "ledger: http://127.0.0.1:PORT"
    python python/examples/torch_neuron.py --ledger http://127.0.0.1:PORT

It speaks the network's shape: byte tokens (vocabulary 256), sequences of 64, representations
of width 64 (``bt net up --model tiny``). Needs torch and the bittensor_rs wheel.
"""

import argparse
import concurrent.futures
import pathlib
import threading
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import bittensor_rs as bt

VOCAB, SEQ, D = 256, 64, 64
MAX_PEERS = 16
ROOT = pathlib.Path(__file__).resolve().parents[2]


class Encoder(nn.Module):
    """What this neuron serves: token ids [batch, t] -> representations [batch, t, D]."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, D)
        self.pos = nn.Parameter(torch.zeros(SEQ, D))
        layer = nn.TransformerEncoderLayer(D, 2, 4 * D, dropout=0.0, batch_first=True)
        self.layers = nn.TransformerEncoder(layer, 2)

    def forward(self, ids):
        t = ids.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(t)
        return self.layers(self.emb(ids) + self.pos[:t], mask=mask, is_causal=True)


class Learner(nn.Module):
    """The encoder, plus what joins the peers' answers: a gate over peers and an adapter that
    starts closed (zero), so that the peers' representations are learned into, not added raw."""

    def __init__(self):
        super().__init__()
        self.encoder = Encoder()
        self.gate = nn.Parameter(torch.zeros(MAX_PEERS))
        self.adapter = nn.Linear(D, D)
        nn.init.zeros_(self.adapter.weight)
        nn.init.zeros_(self.adapter.bias)
        self.head = nn.Linear(D, VOCAB)

    def forward(self, ids, remote):
        """``remote``: {uid: [batch, t, D] tensor} of the peers that answered."""
        h = self.encoder(ids)
        if remote:
            uids = sorted(remote)
            g = torch.softmax(self.gate[uids], dim=0)
            joined = sum(g[i] * remote[u] for i, u in enumerate(uids))
            h = h + self.adapter(joined)
        return self.head(h)


def batches(data, batch, rng):
    while True:
        starts = rng.integers(0, len(data) - SEQ - 1, size=batch)
        rows = np.stack([data[s : s + SEQ + 1] for s in starts]).astype(np.int64)
        yield torch.from_numpy(rows[:, :-1]), torch.from_numpy(rows[:, 1:])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ledger", required=True, help="the ledger's address(es), comma-separated")
    p.add_argument("--name", default="torch0", help="hotkey //Alice//NAME unless --hotkey-uri")
    p.add_argument("--hotkey-uri", default=None)
    p.add_argument("--coldkey-uri", default="//Alice", help="funds the stake (a dev network's)")
    p.add_argument("--stake", type=float, default=100.0, help="TAO staked on the hotkey")
    p.add_argument("--data", default=str(ROOT / "data/text/sotu_1930s.txt"))
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--k", type=int, default=3, help="peers queried per step")
    p.add_argument("--epoch", type=int, default=25, help="steps between weight settings")
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--max-change", type=float, default=0.25,
                   help="largest step of the weight row (L2), below the ledger's epsilon")
    args = p.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    text = np.frombuffer(pathlib.Path(args.data).read_bytes(), dtype=np.uint8)
    cut = int(len(text) * 0.9)
    train, held_out = text[:cut], text[cut:]

    hot = bt.Keypair.from_uri(args.hotkey_uri or f"//Alice//{args.name}")
    cold = bt.Keypair.from_uri(args.coldkey_uri)
    ledger = bt.Ledger(args.ledger)
    model = Learner()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    lock = threading.Lock()  # the axon's threads and the training loop share the encoder

    served = {"forward": 0, "backward": 0, "callers": set()}

    def serve_forward(caller, xs):
        served["forward"] += 1
        served["callers"].add(caller)
        ids = torch.from_numpy(xs[0]).long().clamp(0, VOCAB - 1)[:, :SEQ]
        with lock, torch.no_grad():
            return [model.encoder(ids).numpy()]

    def serve_backward(caller, xs, grads):
        # A consumer's gradient: one small step of the encoder along it.
        served["backward"] += 1
        ids = torch.from_numpy(xs[0]).long().clamp(0, VOCAB - 1)[:, :SEQ]
        with lock:
            opt.zero_grad(set_to_none=True)
            model.encoder(ids).backward(torch.from_numpy(grads[0]) * 0.1)
            opt.step()
        return None

    axon = bt.Axon(
        hot,
        serve_forward,
        inputs=[("int", ["batch", "*"])],
        outputs=[("float", ["batch", "*", D])],
        backward=serve_backward,
        ledger=ledger,
    )
    address = axon.serve(args.listen)
    mg = ledger.metagraph()
    if mg.uid_of(hot.ss58_address) is None:
        ledger.register(hot, address, coldkey=cold)
        ledger.add_stake(cold, hot.ss58_address, args.stake)
    me = ledger.metagraph().uid_of(hot.ss58_address)
    axon.refresh()
    print(f"{args.name}: uid {me}, hotkey {hot.ss58_address}, axon {address}", flush=True)

    dendrite = bt.Dendrite(hot, timeout=5.0)
    backprop = concurrent.futures.ThreadPoolExecutor(max_workers=4)
    stream = batches(train, args.batch, rng)
    held = batches(held_out, 32, np.random.default_rng(1))
    eval_x, eval_y = next(held)
    peers, answered = {}, np.zeros(MAX_PEERS)

    def peers_of(mg):
        return {
            u: (h, e)
            for u, (h, e) in enumerate(zip(mg.hotkeys, mg.endpoints))
            if u != me and u < MAX_PEERS
        }

    def evaluate():
        # Its own encoder and head, no peers: what it would be alone.
        with lock, torch.no_grad():
            return F.cross_entropy(model(eval_x, {}).reshape(-1, VOCAB), eval_y.reshape(-1)).item()

    start, first_eval = time.time(), evaluate()
    print(f"{args.name}: held-out loss {first_eval:.3f} nats/byte (own model, before training)")
    for step in range(1, args.steps + 1):
        if step % args.epoch == 1:
            peers = peers_of(ledger.metagraph(weights=False))
        x, y = next(stream)
        # The k peers the gate rates highest (a new peer starts at 0, like the others).
        with torch.no_grad():
            order = sorted(peers, key=lambda u: -model.gate[u].item())[: args.k]
        # k of n: go on once two have answered (and 50 ms more), so a slow peer costs little.
        replies = (
            dendrite.forward_many([peers[u] for u in order], x.numpy(), k=min(2, len(order)), grace=0.05)
            if order
            else []
        )
        remote = {}
        for u, r in zip(order, replies):
            if r.ok and r.outputs[0].shape == (x.shape[0], x.shape[1], D):
                remote[u] = torch.from_numpy(r.outputs[0]).requires_grad_()
                answered[u] += 1
        with lock:
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x, remote).reshape(-1, VOCAB), y.reshape(-1))
            loss.backward()
            opt.step()
        # Remote backprop: each peer gets the gradient of this loss with respect to its answer.
        # Sent from a background thread: training does not wait for the peers' updates.
        for u, t in remote.items():
            if t.grad is not None:
                backprop.submit(dendrite.backward, *peers[u], x.numpy(), t.grad.numpy())
        if step % args.epoch == 0 or step == args.steps:
            # Weights: its own share and the gate's share for each peer that answered, moved
            # toward from the row on the ledger by less than the ledger's bound on a change.
            mg = ledger.metagraph()
            target = np.zeros(mg.n)
            with torch.no_grad():
                g = torch.softmax(model.gate[: min(mg.n, MAX_PEERS)], dim=0).numpy()
            for u in peers:
                if u < len(g) and answered[u] > 0:
                    target[u] = g[u]
            target[me] = max(target.sum(), 1e-3)
            target /= target.sum()
            current = mg.weights[me] if mg.weights is not None else np.eye(mg.n)[me]
            change = target - current
            distance = np.linalg.norm(change)
            row = current + change * min(1.0, args.max_change / distance) if distance > 0 else current
            try:
                ledger.set_weights(hot, np.clip(row, 0.0, None))
            except bt.RefusedError as e:
                print(f"{args.name}: weights refused: {e}")
            print(
                f"{args.name}: step {step}  loss {loss.item():.3f}  held-out (own) {evaluate():.3f}  "
                f"peers answered {len(remote)}/{len(order)}  rank {mg.rank[me]:.4f}  "
                f"stake {mg.stake[me]:.2f}  ({time.time() - start:.0f} s)",
                flush=True,
            )

    mg = ledger.metagraph()
    print(f"\n{args.name}: held-out loss of its own model {first_eval:.3f} -> {evaluate():.3f} nats/byte")
    print(
        f"served {served['forward']} Forward and {served['backward']} Backward requests "
        f"from {len(served['callers'])} callers"
    )
    print(f"ledger at height {mg.height}: uid, rank, stake, weight from the others (column sum)")
    w = mg.weights if mg.weights is not None else np.eye(mg.n)
    from_others = w.sum(axis=0) - np.diag(w)
    for u in range(mg.n):
        mark = "  <- this neuron" if u == me else ""
        print(f"  {u:3d}  {mg.rank[u]:10.4f}  {mg.stake[u]:10.2f}  {from_others[u]:.3f}{mark}")
    backprop.shutdown(wait=True)
    axon.stop()


if __name__ == "__main__":
    main()
