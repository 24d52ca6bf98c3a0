"""The weight game of the empirical model in plain NumPy: the peer a user would otherwise write.

It follows spec/mechanism.md line by line, vectorised over learners:
  mu = (1/n) S^T W;  m = sigmoid((S_i W_ij - mu_j) / T);  d = m - m(W0)
  y_i = H_i d_i;     dL_ij = 2 y_ij m_ij (1 - m_ij) S_i (1 - 1/n) / T
  G = tau dR - alpha dL (dR_ii = S_i / n);  W <- Proj_simplex_rows(W + lambda G)
  stop when max |W_t - W_{t-1}| / lambda < eps, or after max_steps.

The safetensors file is read with NumPy alone (8-byte header length, JSON header, data).
"""

import json
import struct
import time

import numpy as np

DTYPES = {"F64": np.float64, "F32": np.float32}


def load_instance(path):
    """Returns (stake [n], w0 [n,n], hessians [n,n,n]) as float64 arrays."""
    with open(path, "rb") as f:
        raw = f.read()
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + hlen])
    base = 8 + hlen
    out = {}
    for name in ("stake", "w0", "hessians"):
        info = header[name]
        start, end = info["data_offsets"]
        arr = np.frombuffer(raw[base + start : base + end], dtype=DTYPES[info["dtype"]])
        out[name] = arr.reshape(info["shape"]).astype(np.float64)
    return out["stake"], out["w0"], out["hessians"]


def project_rows(v):
    """Euclidean projection of every row onto the probability simplex (sort-based)."""
    n = v.shape[1]
    u = -np.sort(-v, axis=1)
    css = np.cumsum(u, axis=1) - 1.0
    k = np.arange(1, n + 1)
    rho = np.count_nonzero(u - css / k > 0, axis=1)
    theta = css[np.arange(v.shape[0]), rho - 1] / rho
    return np.maximum(v - theta[:, None], 0.0)


def sigmoid(z):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-z))


def run(stake, w0, hessians, alpha, tau, temperature, lam=0.005, eps=1e-6, max_steps=None):
    """Runs the game; returns (W, steps, converged, seconds of the loop)."""
    n = stake.shape[0]
    max_steps = 1000 * n if max_steps is None else max_steps
    mu0 = stake @ w0 / n
    m0 = sigmoid((stake[:, None] * w0 - mu0[None, :]) / temperature)
    slope = (stake * (1.0 - 1.0 / n) / temperature)[:, None]
    diag = np.arange(n)
    w = w0.copy()
    converged = False
    steps = 0
    start = time.perf_counter()
    for steps in range(1, max_steps + 1):
        mu = stake @ w / n
        m = sigmoid((stake[:, None] * w - mu[None, :]) / temperature)
        d = m - m0
        y = np.matmul(hessians, d[:, :, None])[:, :, 0]
        g = -alpha * (2.0 * y * m * (1.0 - m) * slope)
        g[diag, diag] += tau * stake / n
        w_next = project_rows(w + lam * g)
        bound = np.abs(w_next - w).max() / lam
        w = w_next
        if bound < eps:
            converged = True
            break
    return w, steps, converged, time.perf_counter() - start
