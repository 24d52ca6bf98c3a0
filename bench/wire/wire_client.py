"""A Python client of bt-wire's Axon service, generated from crates/wire/proto/wire.proto.

It rebuilds the signed digest exactly as docs/wire.md defines it (BLAKE2b-256 over the
canonical byte layout) and signs it with sr25519 (signing context "substrate").
"""
import hashlib
import struct
import time

import numpy as np
import sr25519

DOMAIN = b"bt-wire/v1"
FORWARD, BACKWARD = 1, 2


def _put_tensor(h, t):
    h.update(struct.pack("<II", t.dtype, len(t.shape)))
    for d in t.shape:
        h.update(struct.pack("<Q", d))
    h.update(struct.pack("<Q", len(t.data)))
    h.update(t.data)


def digest(method, req):
    h = hashlib.blake2b(digest_size=32)
    h.update(DOMAIN)
    h.update(bytes([method]))
    h.update(req.caller)
    h.update(req.receiver)
    h.update(struct.pack("<QQI", req.nonce, req.timeout_ms, req.response_dtype))
    h.update(struct.pack("<I", len(req.inputs)))
    for t in req.inputs:
        _put_tensor(h, t)
    h.update(struct.pack("<I", len(req.grad_outputs)))
    for t in req.grad_outputs:
        _put_tensor(h, t)
    return h.digest()


class Client:
    def __init__(self, pb2, pb2_grpc, endpoint, receiver: bytes, seed: bytes):
        import grpc

        self.pb2 = pb2
        self.keypair = sr25519.pair_from_seed(seed)
        self.receiver = receiver
        self.channel = grpc.insecure_channel(
            endpoint,
            options=[
                ("grpc.max_send_message_length", 256 << 20),
                ("grpc.max_receive_message_length", 256 << 20),
            ],
        )
        self.stub = pb2_grpc.AxonStub(self.channel)
        self.last_nonce = 0

    def tensor(self, array: np.ndarray):
        pb2 = self.pb2
        dtype = {np.float32: pb2.DTYPE_F32, np.int64: pb2.DTYPE_I64}[array.dtype.type]
        return pb2.Tensor(shape=list(array.shape), dtype=dtype, data=array.astype(array.dtype.newbyteorder("<")).tobytes())

    def request(self, method, inputs, grad_outputs=(), timeout_ms=10_000):
        self.last_nonce = max(time.time_ns(), self.last_nonce + 1)
        req = self.pb2.Request(
            caller=bytes(self.keypair[0]),
            receiver=self.receiver,
            nonce=self.last_nonce,
            timeout_ms=timeout_ms,
            response_dtype=self.pb2.DTYPE_F32,
            inputs=[self.tensor(a) for a in inputs],
            grad_outputs=[self.tensor(a) for a in grad_outputs],
        )
        req.signature = bytes(sr25519.sign(self.keypair, digest(method, req)))
        return req

    def forward(self, *inputs):
        return self.stub.Forward(self.request(FORWARD, inputs))

    def backward(self, inputs, grad_outputs):
        return self.stub.Backward(self.request(BACKWARD, inputs, grad_outputs))

    @staticmethod
    def to_numpy(t):
        return np.frombuffer(t.data, dtype="<f4").reshape(tuple(t.shape))
