"""The PyTorch side of the neuron benchmark: one training step of the same model the candle
learner trains alone (bt_neuron `Mode::Alone`), on the CPU, on the same text.

Model: token embedding [256, d] + learned positions [seq, d]; `layers` pre-norm blocks
(LayerNorm -> qkv Linear(d, 3d) -> causal multi-head attention softmax(QK^T / sqrt(dh)) V ->
Linear(d, d), residual; LayerNorm -> Linear(d, hidden) -> GELU (tanh form) -> Linear(hidden, d),
residual); final LayerNorm; head LayerNorm -> Linear(d, 256). LayerNorm eps 1e-5 with affine.
Initialised as bt_neuron does (embeddings N(0, 0.02^2), linear weights U(+-1/sqrt(in)), zero
biases). Loss: mean next-token cross-entropy; AdamW (lr 3e-3, betas 0.9/0.999, eps 1e-8, no
weight decay). Data: data/text/moby_dick_a.txt, first 90% as training, random windows.

Usage: python torch_step.py [--batch 8] [--seq 64] [--d 64] [--layers 2] [--hidden 256]
    [--heads 2] [--steps 50] [--warmup 5] [--threads 2] [--seed 0] [--attn explicit|sdpa]

Prints one JSON line: {"impl": "pytorch", "tokens_per_s": .., "ms_per_step": .., "params": ..,
"final_loss": ..}.
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB = 256
TEXT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "data", "text",
                    "moby_dick_a.txt")


class Block(nn.Module):
    def __init__(self, d, heads, hidden, attn):
        super().__init__()
        self.heads, self.attn = heads, attn
        self.ln1 = nn.LayerNorm(d, eps=1e-5)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d, eps=1e-5)
        self.fc1 = nn.Linear(d, hidden)
        self.fc2 = nn.Linear(hidden, d)

    def forward(self, x, mask):
        b, t, d = x.shape
        dh = d // self.heads
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.heads, dh).transpose(1, 2) for z in (q, k, v))
        if self.attn == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(dh)) + mask[:t, :t]
            y = att.softmax(dim=-1) @ v
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x)), approximate="tanh"))


class Model(nn.Module):
    def __init__(self, seq, d, heads, layers, hidden, attn):
        super().__init__()
        self.tok = nn.Parameter(torch.randn(VOCAB, d) * 0.02)
        self.pos = nn.Parameter(torch.randn(seq, d) * 0.02)
        self.blocks = nn.ModuleList(Block(d, heads, hidden, attn) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d, eps=1e-5)
        self.head_ln = nn.LayerNorm(d, eps=1e-5)
        self.out = nn.Linear(d, VOCAB)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.in_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)
        mask = torch.full((seq, seq), float("-inf")).triu(1)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, ids):
        t = ids.shape[1]
        x = self.tok[ids] + self.pos[:t]
        for blk in self.blocks:
            x = blk(x, self.mask)
        h = self.ln_f(x)  # the trunk's output
        return self.out(self.head_ln(h))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name, default in (("batch", 8), ("seq", 64), ("d", 64), ("layers", 2), ("hidden", 256),
                          ("heads", 2), ("steps", 50), ("warmup", 5), ("threads", 2), ("seed", 0)):
        p.add_argument(f"--{name}", type=int, default=default)
    p.add_argument("--attn", choices=("explicit", "sdpa"), default="explicit")
    a = p.parse_args()
    if min(a.batch, a.d, a.layers, a.hidden, a.heads, a.steps, a.threads) < 1 or a.seq < 2 \
            or a.warmup < 0:
        p.error("sizes, --steps and --threads must be at least 1 (--seq at least 2)")
    if a.d % a.heads:
        p.error(f"--heads ({a.heads}) must divide --d ({a.d})")

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    with open(TEXT, "rb") as f:
        text = f.read()
    train = torch.frombuffer(bytearray(text[: int(len(text) * 0.9)]), dtype=torch.uint8).long()
    if len(train) < a.seq + 2:
        sys.exit(f"training text of {len(train)} bytes is shorter than a window")
    gen = torch.Generator().manual_seed(a.seed + 1)
    offsets = torch.arange(a.seq + 1)

    model = Model(a.seq, a.d, a.heads, a.layers, a.hidden, a.attn)
    params = sum(q.numel() for q in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=0.0)

    def step():
        starts = torch.randint(0, len(train) - a.seq - 1, (a.batch,), generator=gen)
        win = train[starts[:, None] + offsets]
        ids, targets = win[:, :-1], win[:, 1:]
        logits = model(ids)
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1))
        value = loss.item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return value

    for _ in range(a.warmup):
        step()
    t0 = time.perf_counter()
    loss = float("nan")
    for _ in range(a.steps):
        loss = step()
    secs = time.perf_counter() - t0
    print(json.dumps({
        "impl": "pytorch",
        "tokens_per_s": round(a.steps * a.batch * a.seq / secs, 1),
        "ms_per_step": round(secs * 1e3 / a.steps, 3),
        "params": params,
        "final_loss": round(loss, 4),
        "batch": a.batch, "seq": a.seq, "steps": a.steps,
        "threads": torch.get_num_threads(), "attn": a.attn, "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
