"""Dendrite and Axon from Python: a Python model served by the Rust axon, queried by the Rust
dendrite from Python, every return code an axon or a dendrite can give, and the rejections of
bad arguments. The Rust side of the interop (a Rust axon here, a Rust dendrite against
serve_axon.py) is in crates/py/tests/pytest.rs."""

import os
import threading
import time

import numpy as np
import pytest

import bittensor_rs as bt

D = 8
SPEC = [("float", ["batch", D])]
Code = bt.ReturnCode


def double(caller, xs):
    return [xs[0] * 2.0]


def x(rows=4, value=0.5):
    return np.full((rows, D), value, dtype=np.float32)


@pytest.fixture()
def alice():
    return bt.Dendrite(bt.Keypair.from_uri("//Alice"), timeout=5.0)


def serve(forward=double, backward=None, **kw):
    axon = bt.Axon(bt.Keypair.from_uri("//Bob//axon"), forward, SPEC, SPEC, backward, **kw)
    axon.serve("127.0.0.1:0")
    return axon


def test_a_python_model_answers_forward_and_backward(alice):
    seen = []

    def forward(caller, xs):
        seen.append(caller)
        return [xs[0] * 2.0]

    def backward(caller, xs, grads):
        seen.append(caller)
        return [grads[0] * 3.0]

    with serve(forward, backward) as axon:
        r = alice.forward(axon.hotkey, axon.address, x())
        assert r.code == Code.SUCCESS and r.ok, r
        np.testing.assert_allclose(r.outputs[0], x(value=1.0))
        assert r.outputs[0].dtype == np.float32 and r.elapsed > 0
        g = alice.backward(axon.hotkey, axon.address, x(), np.ones((4, D), np.float32))
        assert g.code == Code.SUCCESS, g
        np.testing.assert_allclose(g.outputs[0], np.full((4, D), 3.0))
        # Each call runs alone, so the model is told who asked.
        assert seen == [alice.hotkey, alice.hotkey]


def test_an_axon_without_backward_acknowledges_it(alice):
    with serve() as axon:
        g = alice.backward(axon.hotkey, axon.address, [x()], [x()])
        assert g.code == Code.SUCCESS and g.outputs == [], g


def test_k_of_n_returns_one_reply_per_peer_in_order(alice):
    with serve() as a, serve(lambda c, xs: [xs[0] + 1.0]) as b:
        rs = alice.forward_many([(a.hotkey, a.address), (b.hotkey, b.address)], x())
        assert [r.code for r in rs] == [Code.SUCCESS, Code.SUCCESS]
        np.testing.assert_allclose(rs[0].outputs[0], 1.0)
        np.testing.assert_allclose(rs[1].outputs[0], 1.5)


def test_integer_ids_and_float64_arrays_cross(alice):
    def count(caller, xs):
        ids = xs[0]
        assert ids.dtype == np.int64
        return [np.repeat(ids.sum(axis=1, keepdims=True).astype(np.float64), D, axis=1)]

    key = bt.Keypair.from_uri("//Bob//ids")
    with bt.Axon(key, count, [("int", ["batch", "*"])], SPEC) as axon:
        axon.serve()
        ids = np.arange(12, dtype=np.int64).reshape(3, 4)
        r = alice.forward(axon.hotkey, axon.address, ids)
        assert r.ok, r
        np.testing.assert_allclose(r.outputs[0][:, 0], [6, 22, 38])


def test_a_python_exception_is_answered_internal_and_the_axon_goes_on(alice):
    def fragile(caller, xs):
        if xs[0][0, 0] < 0:
            raise ValueError("negative input")
        return [xs[0]]

    with serve(fragile) as axon:
        r = alice.forward(axon.hotkey, axon.address, x(value=-1.0))
        assert r.code == Code.INTERNAL, r
        assert "ValueError: negative input" in r.message
        # The failure backs the dendrite off this peer for a moment; a fresh one asks again.
        fresh = bt.Dendrite(bt.Keypair.from_uri("//Charlie"))
        assert fresh.forward(axon.hotkey, axon.address, x()).ok


def test_a_model_answer_of_the_wrong_shape_is_internal(alice):
    with serve(lambda c, xs: [np.zeros((1, 3), np.float32)]) as axon:
        r = alice.forward(axon.hotkey, axon.address, x())
        assert r.code == Code.INTERNAL and "output[0]" in r.message, r


def test_bad_requests_are_refused_before_the_model(alice):
    calls = []

    def forward(caller, xs):
        calls.append(caller)
        return [xs[0]]

    with serve(forward) as axon:
        r = alice.forward(axon.hotkey, axon.address, np.zeros((4, D), np.int64))
        assert r.code == Code.BAD_REQUEST and "float" in r.message, r
        r = alice.forward(axon.hotkey, axon.address, [x(), x()])
        assert r.code == Code.BAD_REQUEST, r
        bad = x()
        bad[1, 2] = np.nan
        r = alice.forward(axon.hotkey, axon.address, bad)
        assert r.code == Code.BAD_REQUEST and "non-finite" in r.message, r
        r = alice.forward(axon.hotkey, axon.address, np.zeros((4, D + 1), np.float32))
        assert r.code == Code.SHAPE_MISMATCH, r
        other = bt.Keypair.from_uri("//Eve").ss58_address
        r = alice.forward(other, axon.address, x())
        assert r.code == Code.UNAUTHENTICATED and "receiver" in r.message, r
        assert calls == []


def test_stale_nonces_are_refused():
    # An axon whose clock window is a microsecond finds every nonce too old.
    with serve(nonce_window=1e-6) as axon:
        d = bt.Dendrite(bt.Keypair.from_uri("//Alice//nonce"))
        r = d.forward(axon.hotkey, axon.address, x())
        assert r.code == Code.STALE_NONCE, r


def test_timeouts_and_unavailable():
    def slow(caller, xs):
        time.sleep(0.6)
        return [xs[0]]

    with serve(slow) as axon:
        d = bt.Dendrite(bt.Keypair.from_uri("//Alice//slow"), timeout=0.2)
        r = d.forward(axon.hotkey, axon.address, x())
        assert r.code == Code.TIMEOUT, r
    with serve() as axon:
        d = bt.Dendrite(bt.Keypair.from_uri("//Alice//paused"))
        axon.set_serving(False)
        r = d.forward(axon.hotkey, axon.address, x())
        assert r.code == Code.UNAVAILABLE, r
        address, hotkey = axon.address, axon.hotkey
    d = bt.Dendrite(bt.Keypair.from_uri("//Alice//gone"), timeout=2.0)
    r = d.forward(hotkey, address, x())
    assert r.code == Code.UNAVAILABLE, r


def test_a_full_queue_backs_off_and_stake_evicts():
    started = threading.Event()

    def slow(caller, xs):
        # Long enough for the rest of the scene to happen while the first request runs.
        started.set()
        time.sleep(2.0)
        return [xs[0]]

    def dendrite(name):
        return bt.Dendrite(bt.Keypair.from_uri(f"//Alice//{name}"), timeout=10.0)

    def wait_for(cond):
        end = time.monotonic() + 5.0
        while not cond():
            assert time.monotonic() < end, "timed out"
            time.sleep(0.01)

    with serve(slow, queue_capacity=1) as axon:
        peer = (axon.hotkey, axon.address)
        high = dendrite("high")
        axon.set_stake(high.hotkey, 100.0)
        replies = {}

        def call(name):
            replies[name] = dendrite(name).forward(*peer, x())

        running = threading.Thread(target=call, args=("running",))
        running.start()
        assert started.wait(5.0)  # the model has it: the queue is empty again
        waiting = threading.Thread(target=call, args=("waiting",))
        waiting.start()
        wait_for(lambda: axon.queue_depth == 1)
        # The one place is taken by a caller of equal stake (0): back off.
        call("third")
        assert replies["third"].code == Code.BACKOFF and "back off" in replies["third"].message
        # More stake takes the waiting request's place; that one is answered `overloaded`.
        replies["high"] = high.forward(*peer, x())
        running.join()
        waiting.join()
        assert replies["running"].code == Code.SUCCESS, replies["running"]
        assert replies["waiting"].code == Code.OVERLOADED, replies["waiting"]
        assert replies["high"].code == Code.SUCCESS, replies["high"]


def test_bad_arguments_raise_clear_errors(alice):
    key = bt.Keypair.from_uri("//Bob")
    with pytest.raises(ValueError, match="timeout"):
        bt.Dendrite(key, timeout=0.0)
    with pytest.raises(ValueError, match="dtype"):
        bt.Dendrite(key, wire_dtype="f64")
    with pytest.raises(ValueError, match="host:port"):
        alice.forward(key.ss58_address, "nowhere", x())
    with pytest.raises(bt.KeysError):
        alice.forward("not-an-address", "127.0.0.1:1", x())
    with pytest.raises(TypeError, match="float32, float64, int64 or int32"):
        alice.forward(key.ss58_address, "127.0.0.1:1", np.array(["a", "b"]))
    with pytest.raises(TypeError, match="callable"):
        bt.Axon(key, 3, SPEC, SPEC)
    with pytest.raises(ValueError, match="kind"):
        bt.Axon(key, double, [("complex", ["batch"])], SPEC)
    with pytest.raises(ValueError, match="dimension"):
        bt.Axon(key, double, [("float", ["rows"])], SPEC)
    with pytest.raises(TypeError, match="kind, dims"):
        bt.Axon(key, double, ["float"], SPEC)
    axon = bt.Axon(key, double, SPEC, SPEC)
    with pytest.raises(ValueError, match="ip:port"):
        axon.serve("localhost")
    with pytest.raises(ValueError, match="TAO"):
        axon.set_stake(key.ss58_address, -1.0)
    with pytest.raises(bt.BtError, match="no ledger"):
        axon.refresh()
    axon.serve()
    with pytest.raises(bt.BtError, match="already serving"):
        axon.serve()
    axon.stop()


def test_torch_tensors_are_taken(alice):
    torch = pytest.importorskip("torch")
    with serve(lambda c, xs: [torch.from_numpy(xs[0]) * 2]) as axon:
        t = torch.full((4, D), 0.5, requires_grad=True)
        r = alice.forward(axon.hotkey, axon.address, t)
        assert r.ok, r
        y = torch.from_numpy(r.outputs[0])
        assert torch.allclose(y, torch.ones(4, D))


def test_a_rust_axon_answers_the_python_dendrite(alice):
    hotkey, endpoint = os.environ["BT_RUST_AXON"].split()
    r = alice.forward(hotkey, endpoint, x(rows=2))
    assert r.ok, r
    assert r.outputs[0].shape == (2, D)
    g = alice.backward(hotkey, endpoint, x(rows=2), np.ones((2, D), np.float32))
    assert g.ok, g
    r = alice.forward(hotkey, endpoint, np.zeros((2, D + 1), np.float32))
    assert r.code == Code.SHAPE_MISMATCH, r


def test_an_axon_on_the_ledger_reads_stakes_and_masks(ledger_node):
    ledger = bt.Ledger(ledger_node.url)
    alice = bt.Keypair.from_uri("//Alice")
    server = bt.Keypair.from_uri("//Alice//server")
    caller = bt.Keypair.from_uri("//Alice//caller")
    blocks = ledger.subscribe()
    first = blocks.next(timeout=10.0)
    assert first is not None and first.height >= 1
    second = next(blocks)
    assert second.height == first.height + 1 and second.parent == first.hash
    with bt.Axon(server, double, SPEC, SPEC, ledger=ledger) as axon:
        address = axon.serve()
        ledger.register(server, address, coldkey=alice)
        ledger.register(caller, "127.0.0.1:9", coldkey=alice)
        ledger.add_stake(alice, caller.ss58_address, 10.0)
        assert axon.refresh() >= second.height
        # The caller puts no weight on the server: the mask gives it less than the whole answer.
        scale = axon.response_scale(caller.ss58_address)
        assert 0.0 <= scale < 1.0
        r = bt.Dendrite(caller).forward(axon.hotkey, address, x())
        assert r.ok, r
        np.testing.assert_allclose(r.outputs[0], x(value=1.0) * scale, rtol=1e-5)
        with pytest.raises(bt.BtError, match="from its ledger"):
            axon.set_stake(caller.ss58_address, 1.0)
    with bt.Axon(server, double, SPEC, SPEC, ledger=ledger, mask=False) as axon:
        axon.serve()
        assert axon.response_scale(caller.ss58_address) == 1.0
