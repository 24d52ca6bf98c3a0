"""bittensor-rs from Python: keys and bittensor wallets, and the ledger client, with the Rust
implementation doing the signing, the checks and the network (this package is a thin, typed
wrapper over it).

    import bittensor_rs as bt

    alice = bt.Keypair.from_uri("//Alice")
    ledger = bt.Ledger("http://127.0.0.1:7711")      # or "http://a:7711,http://b:7711"
    hot = bt.Keypair.from_uri("//Alice//miner")
    ledger.register(hot, "127.0.0.1:8091", coldkey=alice)
    mg = ledger.metagraph()                           # NumPy arrays: mg.stake, mg.rank, mg.weights
    ledger.set_weights(hot, [1.0] * mg.n)

Every error is a ``BtError``: ``KeysError`` for keys and wallet files, ``LedgerError`` (with
``UnreachableError``, ``NoLeaderError`` and ``RefusedError``) for the ledger; the messages are
the ``bt`` command's.
"""

from ._native import (
    RAO_PER_TAO,
    BtError,
    Keypair,
    KeysError,
    Ledger,
    LedgerError,
    LocalLedger,
    Metagraph,
    NoLeaderError,
    RefusedError,
    UnreachableError,
    Wallet,
    verify,
)

__all__ = [
    "RAO_PER_TAO",
    "BtError",
    "Keypair",
    "KeysError",
    "Ledger",
    "LedgerError",
    "LocalLedger",
    "Metagraph",
    "NoLeaderError",
    "RefusedError",
    "UnreachableError",
    "Wallet",
    "verify",
]
