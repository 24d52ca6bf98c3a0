"""bittensor-rs from Python: keys and bittensor wallets, the ledger client, and the tensor RPC
between learners (``Dendrite`` and ``Axon``), with the Rust implementation doing the signing,
the checks and the network (this package is a thin, typed wrapper over it).

    import numpy as np
    import bittensor_rs as bt

    alice = bt.Keypair.from_uri("//Alice")
    ledger = bt.Ledger("http://127.0.0.1:7711")      # or "http://a:7711,http://b:7711"
    hot = bt.Keypair.from_uri("//Alice//miner")

    # Serve a model written in Python: the axon checks signatures, nonces and shapes, orders
    # its queue by stake and applies the competitive mask, all in Rust.
    axon = bt.Axon(hot, forward=lambda caller, xs: [xs[0] * 2.0],
                   inputs=[("float", ["batch", 8])], outputs=[("float", ["batch", 8])],
                   ledger=ledger)
    address = axon.serve("127.0.0.1:0")
    ledger.register(hot, address, coldkey=alice)

    mg = ledger.metagraph()                           # NumPy arrays: mg.stake, mg.rank, mg.weights
    dendrite = bt.Dendrite(hot)
    reply = dendrite.forward(mg.hotkeys[0], mg.endpoints[0], np.ones((4, 8), np.float32))
    if reply.code == bt.ReturnCode.SUCCESS:
        y = reply.outputs[0]
    ledger.set_weights(hot, [1.0] * mg.n)

Arrays are NumPy arrays; torch tensors are taken wherever arrays are (``torch.from_numpy`` turns
an answer into a tensor without a copy).

Every error is a ``BtError``: ``KeysError`` for keys and wallet files, ``LedgerError`` (with
``UnreachableError``, ``NoLeaderError`` and ``RefusedError``) for the ledger; the messages are
the ``bt`` command's. A query never raises for what the peer answered: its ``Reply.code`` says.
"""

import enum

from ._native import (
    RAO_PER_TAO,
    Axon,
    Block,
    Blocks,
    BtError,
    Dendrite,
    Keypair,
    KeysError,
    Ledger,
    LedgerError,
    LocalLedger,
    Metagraph,
    NoLeaderError,
    RefusedError,
    Reply,
    UnreachableError,
    Wallet,
    verify,
)


class ReturnCode(enum.IntEnum):
    """What an axon answered (the wire protocol's ``ReturnCode``), or the dendrite's own verdict
    when no answer came (``TIMEOUT``, ``UNAVAILABLE``, ``BACKOFF``)."""

    UNSPECIFIED = 0
    SUCCESS = 1
    #: The request's timeout passed before the model answered.
    TIMEOUT = 2
    #: The axon's queue is full and the caller's stake outranks no one in it.
    BACKOFF = 3
    #: The axon is not serving (paused, stopped or unreachable).
    UNAVAILABLE = 4
    #: Malformed request: wrong dtype or tensor count, non-finite values, too large.
    BAD_REQUEST = 5
    #: A tensor's shape differs from the one the model declares.
    SHAPE_MISMATCH = 6
    #: A bad signature, or the request was meant for another axon.
    UNAUTHENTICATED = 7
    #: The nonce was used already or is outside the axon's clock window.
    STALE_NONCE = 8
    #: Queued, then pushed out of the full queue by a caller with more stake.
    OVERLOADED = 9
    #: The model failed (a Python exception in ``forward``/``backward``) or answered wrongly.
    INTERNAL = 10


__all__ = [
    "RAO_PER_TAO",
    "Axon",
    "Block",
    "Blocks",
    "BtError",
    "Dendrite",
    "Keypair",
    "KeysError",
    "Ledger",
    "LedgerError",
    "LocalLedger",
    "Metagraph",
    "NoLeaderError",
    "RefusedError",
    "Reply",
    "ReturnCode",
    "UnreachableError",
    "Wallet",
    "verify",
]
