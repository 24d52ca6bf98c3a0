"""Shared fixtures: a ledger node run in-process (bittensor_rs.LocalLedger) with //Alice
funded, and the bittensor wallets in the Rust crate's test vectors."""

import json
import pathlib

import pytest

import bittensor_rs as bt

ROOT = pathlib.Path(__file__).resolve().parents[2]
VECTORS = ROOT / "crates" / "keys" / "tests" / "vectors" / "bittensor"


@pytest.fixture(scope="session")
def vectors():
    return json.loads((VECTORS / "vectors.json").read_text())


@pytest.fixture(scope="session")
def wallets_dir():
    return VECTORS / "wallets"


@pytest.fixture()
def ledger_node(tmp_path):
    alice = bt.Keypair.from_uri("//Alice")
    genesis = f"""
[params]
tau = 1.0
epsilon = 2.0
max_neurons = 16
block_time_ms = 50

[[accounts]]
address = "{alice.ss58_address}"
balance = 1_000_000_000_000_000
"""
    with bt.LocalLedger(tmp_path / "chain", genesis) as node:
        yield node
