"""Serves a small Python model on an axon for the Rust side of the tests
(crates/py/tests/pytest.rs): prints ``serving HOTKEY ADDRESS`` and serves until its standard
input closes. The model doubles its input, and raises ValueError on a negative first value, so
that the caller sees how a Python exception is answered."""

import sys

import numpy as np

import bittensor_rs as bt


def forward(caller, xs):
    x = xs[0]
    if x.flat[0] < 0:
        raise ValueError(f"negative input from {caller}")
    return [x * 2.0]


def backward(caller, xs, grads):
    return [grads[0] * 2.0]


def main():
    key = bt.Keypair.from_uri("//Dave//python-axon")
    spec = [("float", ["batch", 8])]
    with bt.Axon(key, forward, spec, spec, backward) as axon:
        address = axon.serve("127.0.0.1:0")
        print(f"serving {axon.hotkey} {address}", flush=True)
        sys.stdin.read()
    assert np is not None


if __name__ == "__main__":
    main()
