//! The signed digest of a request: BLAKE2b-256 over a canonical byte layout (see
//! `proto/wire.proto` and docs/wire.md), signed with the caller's sr25519 hotkey.

use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use bt_keys::{Keypair, PublicKey, Signature};

use crate::proto;

/// Domain-separation prefix of every signed digest.
pub const DOMAIN: &[u8] = b"bt-wire/v1";

/// The two RPC methods; part of the signed digest, so a Forward cannot be replayed as Backward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// Run the model.
    Forward,
    /// Apply the caller's gradient.
    Backward,
}

impl Method {
    /// The byte that stands for the method in the digest.
    pub fn tag(self) -> u8 {
        match self {
            Method::Forward => 1,
            Method::Backward => 2,
        }
    }

    /// Lower-case name, as in metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Method::Forward => "forward",
            Method::Backward => "backward",
        }
    }
}

fn put_tensor(h: &mut Blake2b<U32>, t: &proto::Tensor) {
    h.update((t.dtype as u32).to_le_bytes());
    h.update((t.shape.len() as u32).to_le_bytes());
    for d in &t.shape {
        h.update(d.to_le_bytes());
    }
    h.update((t.data.len() as u64).to_le_bytes());
    h.update(&t.data);
}

/// The 32-byte digest a request's signature covers (every field but `signature`).
pub fn digest(method: Method, req: &proto::Request) -> [u8; 32] {
    let mut h = Blake2b::<U32>::new();
    h.update(DOMAIN);
    h.update([method.tag()]);
    // Keys enter as they are on the wire: an axon refuses any that is not 32 bytes before
    // verifying, and the length prefix-free layout stays canonical for valid requests.
    h.update(&req.caller);
    h.update(&req.receiver);
    h.update(req.nonce.to_le_bytes());
    h.update(req.timeout_ms.to_le_bytes());
    h.update((req.response_dtype as u32).to_le_bytes());
    h.update((req.inputs.len() as u32).to_le_bytes());
    for t in &req.inputs {
        put_tensor(&mut h, t);
    }
    h.update((req.grad_outputs.len() as u32).to_le_bytes());
    for t in &req.grad_outputs {
        put_tensor(&mut h, t);
    }
    h.finalize().into()
}

/// Fills in `caller` and `signature` of a request, signing it with `keypair`.
pub fn sign(method: Method, req: &mut proto::Request, keypair: &Keypair) {
    req.caller = keypair.public().as_bytes().to_vec();
    let d = digest(method, req);
    req.signature = keypair.sign(&d).to_bytes().to_vec();
}

/// Verifies a request's signature against `caller`; `Err` carries which check failed.
pub fn verify(
    method: Method,
    req: &proto::Request,
    caller: &PublicKey,
) -> std::result::Result<(), VerifyError> {
    let sig = Signature::from_bytes(&req.signature).map_err(|_| VerifyError::Malformed)?;
    caller
        .verify(&digest(method, req), &sig)
        .map_err(|_| VerifyError::Mismatch)
}

/// Why a signature was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyError {
    /// Not a well-formed 64-byte sr25519 signature.
    Malformed,
    /// Well-formed but does not verify.
    Mismatch,
}
