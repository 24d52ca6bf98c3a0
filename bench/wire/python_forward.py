"""Calls Forward (and Backward) on a running bt-wire axon from Python, and shows that a
tampered request is refused. Usage: python_forward.py GEN_DIR HOST:PORT RECEIVER_HEX DIM"""
import sys

import numpy as np

gen, endpoint, receiver_hex, dim = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sys.path.insert(0, gen)
import wire_pb2  # noqa: E402
import wire_pb2_grpc  # noqa: E402
from wire_client import FORWARD, Client  # noqa: E402

client = Client(wire_pb2, wire_pb2_grpc, endpoint, bytes.fromhex(receiver_hex), bytes([1] * 32))
x = np.random.default_rng(0).standard_normal((4, dim)).astype(np.float32)
resp = client.forward(x)
name = wire_pb2.ReturnCode.Name
print(f"Forward: {name(resp.code)} {resp.message!r}")
assert resp.code == wire_pb2.RETURN_CODE_SUCCESS, resp.message
y = client.to_numpy(resp.outputs[0])
print(f"  output shape {y.shape}, row means {np.round(y.mean(axis=1), 4).tolist()}, row stds {np.round(y.std(axis=1), 3).tolist()}")

resp = client.backward([x], [np.full((4, dim), 1e-3, dtype=np.float32)])
print(f"Backward: {name(resp.code)}, input gradient shape {tuple(resp.outputs[0].shape)}")
assert resp.code == wire_pb2.RETURN_CODE_SUCCESS, resp.message

req = client.request(FORWARD, [x])
req.timeout_ms += 1  # changed after signing
resp = client.stub.Forward(req)
print(f"Tampered: {name(resp.code)} {resp.message!r}")
assert resp.code == wire_pb2.RETURN_CODE_UNAUTHENTICATED

resp = client.stub.Forward(client.request(FORWARD, [x[:, :-1].copy()]))
print(f"Wrong shape: {name(resp.code)} {resp.message!r}")
assert resp.code == wire_pb2.RETURN_CODE_SHAPE_MISMATCH
print("python client: ok")
