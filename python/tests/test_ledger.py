"""The ledger client against a real node (bittensor_rs.LocalLedger, the same node as
`bt chain run`): register, stake, set weights, and read them back as NumPy arrays."""

import numpy as np
import pytest

import bittensor_rs as bt


def test_register_stake_weights_and_metagraph(ledger_node):
    alice = bt.Keypair.from_uri("//Alice")
    ledger = bt.Ledger(ledger_node.url)
    assert ledger.url == ledger_node.url
    hot = [bt.Keypair.from_uri(f"//Alice//n{k}") for k in range(3)]
    for k, h in enumerate(hot):
        ledger.register(h, f"127.0.0.1:{9100 + k}", coldkey=alice)
        ledger.add_stake(alice, h.ss58_address, 10.0 * (k + 1))
    ledger.set_weights(hot[0], np.array([0.0, 1.0, 3.0]))

    mg = ledger.metagraph()
    assert mg.n == 3 and mg.mechanism == "paper"
    assert mg.height >= 1 and mg.height <= ledger.height()
    np.testing.assert_array_equal(mg.uids, np.arange(3, dtype=np.uint32))
    # What was staked, plus what inflation has minted to each since (tau * |R|_1 / |R|_2 a block).
    staked = np.array([10.0, 20.0, 30.0])
    assert np.all(mg.stake >= staked)
    assert mg.stake_rao.dtype == np.uint64
    np.testing.assert_allclose(mg.stake_rao / bt.RAO_PER_TAO, mg.stake)
    assert mg.hotkeys == [h.ss58_address for h in hot]
    assert mg.coldkeys == [alice.ss58_address] * 3
    assert mg.endpoints == ["127.0.0.1:9100", "127.0.0.1:9101", "127.0.0.1:9102"]
    assert mg.uid_of(hot[2].ss58_address) == 2 and mg.uid_of(alice.ss58_address) is None
    w = mg.weights
    assert w.shape == (3, 3) and w.dtype == np.float64
    np.testing.assert_allclose(w[0], [0.0, 0.25, 0.75], atol=1e-6)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-6)
    assert mg.rank.shape == (3,) and np.all(mg.rank >= 0)
    assert ledger.metagraph(weights=False).weights is None


def test_several_addresses_skip_a_dead_one(ledger_node):
    ledger = bt.Ledger(["http://127.0.0.1:9", ledger_node.url])
    assert ledger.url == ledger_node.url
    assert ledger.height() >= 0


def test_ledger_errors(ledger_node, tmp_path):
    alice = bt.Keypair.from_uri("//Alice")
    ledger = bt.Ledger(ledger_node.url)
    with pytest.raises(ValueError, match="must start with http"):
        bt.Ledger("127.0.0.1:1")
    with pytest.raises(bt.UnreachableError, match="127.0.0.1:9"):
        bt.Ledger("http://127.0.0.1:9")
    with pytest.raises(ValueError, match="not ip:port"):
        ledger.register(alice, "somewhere")
    with pytest.raises(ValueError, match="negative or not finite"):
        ledger.set_weights(alice, [1.0, float("nan")])
    with pytest.raises(ValueError, match="all zeros"):
        ledger.set_weights(alice, [0.0, 0.0])
    with pytest.raises(ValueError, match="must be positive"):
        ledger.add_stake(alice, alice.ss58_address, -1.0)
    # Refused by the ledger itself: weights from a hotkey that is not registered.
    with pytest.raises(bt.RefusedError):
        ledger.set_weights(bt.Keypair.from_uri("//Nobody"), [1.0])
    with pytest.raises(bt.KeysError):
        ledger.add_stake(alice, "5notanaddress", 1.0)
    with pytest.raises(ValueError):
        bt.LocalLedger(tmp_path / "x", "[params]\nnot valid")
    assert issubclass(bt.RefusedError, bt.LedgerError) and issubclass(bt.LedgerError, bt.BtError)
