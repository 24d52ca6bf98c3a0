//! Transactions, their canonical encoding, signing and (batch) signature verification.
//!
//! Encoding (see [`crate::codec`] for integers and sequences):
//!
//! ```text
//! transaction = signer[32] nonce:u64 call signature[64]
//! call        = 0 to[32] amount:u64                      transfer (signed by the coldkey)
//!             | 1 hotkey[32] amount:u64                  add stake (coldkey)
//!             | 2 hotkey[32] amount:u64                  remove stake (coldkey)
//!             | 3 coldkey[32] endpoint                   register (signed by the hotkey)
//!             | 4 endpoint                               update endpoint (hotkey)
//!             | 5 count:u32 (uid:u32 weight:u32)*count   set weights (hotkey)
//! endpoint    = 4 ip[4] port:u16 | 6 ip[16] port:u16
//! ```
//!
//! The signature is sr25519 (context `substrate`) over the signing payload
//! `"bt-ledger/tx/v1" genesis[32] signer[32] nonce:u64 call`: the genesis hash binds a
//! transaction to one chain, the nonce to one position in the signer's history.
//!
//! Weights are submitted as non-negative integers on any scale; the ledger normalises the
//! row (largest remainder) to sum to exactly one. Negative and non-finite weights cannot be
//! encoded at all; clients that start from floats refuse them before signing.

use std::net::SocketAddr;

use bt_keys::{Keypair, PublicKey, Signature};
use rayon::prelude::*;

use crate::codec::{Hash, Reader, Writer};
use crate::error::{Error, Result};
use crate::state::{decode_endpoint, encode_endpoint};

/// The domain separator at the start of every signing payload.
pub const TX_DOMAIN: &[u8] = b"bt-ledger/tx/v1";

/// What a transaction does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// Move free balance to another account.
    Transfer {
        /// The recipient.
        to: PublicKey,
        /// Rao.
        amount: u64,
    },
    /// Move free balance into a stake position on a registered hotkey.
    AddStake {
        /// The neuron's hotkey.
        hotkey: PublicKey,
        /// Rao.
        amount: u64,
    },
    /// Move stake from a position back to free balance.
    RemoveStake {
        /// The neuron's hotkey.
        hotkey: PublicKey,
        /// Rao.
        amount: u64,
    },
    /// Register the signing hotkey as a new neuron owned by `coldkey`.
    Register {
        /// The owner, credited with the neuron's inflation.
        coldkey: PublicKey,
        /// Where the neuron serves.
        endpoint: SocketAddr,
    },
    /// Change the signing neuron's endpoint.
    UpdateEndpoint {
        /// The new endpoint.
        endpoint: SocketAddr,
    },
    /// Replace the signing neuron's weight row.
    SetWeights {
        /// `(uid, raw weight)` pairs; normalised by the ledger.
        row: Vec<(u32, u32)>,
    },
}

/// A signed transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// The signing account.
    pub signer: PublicKey,
    /// The signer's nonce.
    pub nonce: u64,
    /// What it does.
    pub call: Call,
    /// sr25519 over [`Transaction::signing_payload`].
    pub signature: Signature,
}

impl Call {
    fn encode(&self, w: &mut Writer) {
        match self {
            Call::Transfer { to, amount } => {
                w.u8(0);
                w.key(to);
                w.u64(*amount);
            }
            Call::AddStake { hotkey, amount } => {
                w.u8(1);
                w.key(hotkey);
                w.u64(*amount);
            }
            Call::RemoveStake { hotkey, amount } => {
                w.u8(2);
                w.key(hotkey);
                w.u64(*amount);
            }
            Call::Register { coldkey, endpoint } => {
                w.u8(3);
                w.key(coldkey);
                encode_endpoint(w, endpoint);
            }
            Call::UpdateEndpoint { endpoint } => {
                w.u8(4);
                encode_endpoint(w, endpoint);
            }
            Call::SetWeights { row } => {
                w.u8(5);
                w.len(row.len());
                for &(uid, wt) in row {
                    w.u32(uid);
                    w.u32(wt);
                }
            }
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Call> {
        Ok(match r.u8()? {
            0 => Call::Transfer {
                to: r.key()?,
                amount: r.u64()?,
            },
            1 => Call::AddStake {
                hotkey: r.key()?,
                amount: r.u64()?,
            },
            2 => Call::RemoveStake {
                hotkey: r.key()?,
                amount: r.u64()?,
            },
            3 => Call::Register {
                coldkey: r.key()?,
                endpoint: decode_endpoint(r)?,
            },
            4 => Call::UpdateEndpoint {
                endpoint: decode_endpoint(r)?,
            },
            5 => {
                let n = r.len(8)?;
                let mut row = Vec::with_capacity(n);
                for _ in 0..n {
                    row.push((r.u32()?, r.u32()?));
                }
                Call::SetWeights { row }
            }
            tag => {
                return Err(Error::malformed(
                    "transaction",
                    format!("unknown call tag {tag}"),
                ));
            }
        })
    }
}

impl Transaction {
    /// The bytes the signer signs, for a transaction on the chain `genesis`.
    pub fn signing_payload(genesis: &Hash, signer: &PublicKey, nonce: u64, call: &Call) -> Vec<u8> {
        let mut w = Writer::with_capacity(96 + call_size_hint(call));
        w.raw(TX_DOMAIN);
        w.raw(&genesis.0);
        w.key(signer);
        w.u64(nonce);
        call.encode(&mut w);
        w.finish()
    }

    /// Builds and signs a transaction.
    pub fn sign(key: &Keypair, genesis: &Hash, nonce: u64, call: Call) -> Transaction {
        let signer = key.public();
        let signature = key.sign(&Transaction::signing_payload(
            genesis, &signer, nonce, &call,
        ));
        Transaction {
            signer,
            nonce,
            call,
            signature,
        }
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(112 + call_size_hint(&self.call));
        w.key(&self.signer);
        w.u64(self.nonce);
        self.call.encode(&mut w);
        w.raw(&self.signature.to_bytes());
        w.finish()
    }

    /// The length of [`Transaction::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        32 + 8
            + 64
            + match &self.call {
                Call::Transfer { .. } | Call::AddStake { .. } | Call::RemoveStake { .. } => 41,
                Call::Register { endpoint, .. } => 1 + 32 + endpoint_len(endpoint),
                Call::UpdateEndpoint { endpoint } => 1 + endpoint_len(endpoint),
                Call::SetWeights { row } => 5 + 8 * row.len(),
            }
    }

    /// The transaction's id: BLAKE2b-256 of its encoding.
    pub fn hash(&self) -> Hash {
        Hash::of(&self.encode())
    }

    /// Decodes a transaction, refusing more than `max_bytes` bytes before decoding anything.
    pub fn decode(bytes: &[u8], max_bytes: usize) -> Result<Transaction> {
        if bytes.len() > max_bytes {
            return Err(Error::OversizedTransaction {
                size: bytes.len(),
                max: max_bytes,
            });
        }
        let mut r = Reader::new(bytes, "transaction");
        let signer = r.key()?;
        let nonce = r.u64()?;
        let call = Call::decode(&mut r)?;
        let sig = r.fixed::<64>()?;
        r.finish()?;
        let signature = Signature::from_bytes(&sig)
            .map_err(|e| Error::malformed("transaction", format!("signature: {e}")))?;
        Ok(Transaction {
            signer,
            nonce,
            call,
            signature,
        })
    }

    /// Checks the signature for the chain `genesis`.
    pub fn verify(&self, genesis: &Hash) -> Result<()> {
        let payload = Transaction::signing_payload(genesis, &self.signer, self.nonce, &self.call);
        self.signer
            .verify(&payload, &self.signature)
            .map_err(|_| Error::BadSignature {
                signer: self.signer,
            })
    }
}

fn endpoint_len(e: &SocketAddr) -> usize {
    if e.is_ipv4() { 1 + 4 + 2 } else { 1 + 16 + 2 }
}

fn call_size_hint(call: &Call) -> usize {
    match call {
        Call::SetWeights { row } => 8 + 8 * row.len(),
        _ => 64,
    }
}

/// Transactions verified per schnorrkel batch. Batches amortise the multiscalar
/// multiplication; rayon runs batches on every core.
const BATCH: usize = 64;

/// Verifies every signature, in parallel batches. On failure returns the index of the
/// first transaction whose own signature does not verify, with [`Error::BadSignature`].
pub fn verify_all(txs: &[Transaction], genesis: &Hash) -> std::result::Result<(), (usize, Error)> {
    let bad: Option<usize> = txs
        .par_chunks(BATCH)
        .enumerate()
        .filter_map(|(c, chunk)| {
            if verify_chunk(chunk, genesis) {
                None
            } else {
                // Find the culprit one by one; the batch only says "some".
                chunk
                    .iter()
                    .position(|tx| tx.verify(genesis).is_err())
                    .map(|i| c * BATCH + i)
            }
        })
        .min();
    match bad {
        None => Ok(()),
        Some(i) => Err((
            i,
            Error::BadSignature {
                signer: txs[i].signer,
            },
        )),
    }
}

/// Checks every signature, in parallel batches, and says for each transaction whether its
/// signature verifies. A failing batch is re-checked one by one.
pub fn verify_each(txs: &[Transaction], genesis: &Hash) -> Vec<bool> {
    txs.par_chunks(BATCH)
        .flat_map_iter(|chunk| {
            if verify_chunk(chunk, genesis) {
                vec![true; chunk.len()]
            } else {
                chunk.iter().map(|tx| tx.verify(genesis).is_ok()).collect()
            }
        })
        .collect()
}

fn verify_chunk(chunk: &[Transaction], genesis: &Hash) -> bool {
    let mut keys = Vec::with_capacity(chunk.len());
    let mut sigs = Vec::with_capacity(chunk.len());
    let mut transcripts = Vec::with_capacity(chunk.len());
    let ctx = schnorrkel::signing_context(bt_keys::SIGNING_CONTEXT);
    for tx in chunk {
        let (Ok(pk), Ok(sig)) = (
            schnorrkel::PublicKey::from_bytes(tx.signer.as_bytes()),
            schnorrkel::Signature::from_bytes(&tx.signature.to_bytes()),
        ) else {
            return false;
        };
        keys.push(pk);
        sigs.push(sig);
        let payload = Transaction::signing_payload(genesis, &tx.signer, tx.nonce, &tx.call);
        transcripts.push(ctx.bytes(&payload));
    }
    schnorrkel::verify_batch(transcripts, &sigs, &keys, false).is_ok()
}

/// A weight row of non-negative real numbers (index = uid), scaled to sum to one, as
/// [`Call::SetWeights`]'s raw `(uid, weight)` pairs in units of [`crate::fixed::WEIGHT_ONE`]
/// (zeros dropped; the ledger normalises the rounding). Refuses a negative or non-finite
/// weight and a row of zeros.
pub fn raw_row(row: &[f64]) -> Result<Vec<(u32, u32)>> {
    if let Some((uid, &value)) = row
        .iter()
        .enumerate()
        .find(|(_, v)| !(v.is_finite() && **v >= 0.0))
    {
        return Err(Error::BadWeight {
            uid: uid as u32,
            value,
        });
    }
    let total: f64 = row.iter().sum();
    if !(total > 0.0 && total.is_finite()) {
        return Err(Error::ZeroRow);
    }
    let out: Vec<(u32, u32)> = row
        .iter()
        .enumerate()
        .map(|(j, w)| {
            (
                j as u32,
                (w / total * f64::from(crate::fixed::WEIGHT_ONE)).round() as u32,
            )
        })
        .filter(|(_, w)| *w > 0)
        .collect();
    if out.is_empty() {
        return Err(Error::ZeroRow);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(i: u8) -> Keypair {
        Keypair::from_mini_secret([i; 32])
    }

    #[test]
    fn raw_rows_are_scaled_to_one_and_refuse_bad_values() {
        let one = f64::from(crate::fixed::WEIGHT_ONE);
        let raw = raw_row(&[0.0, 1.0, 3.0]).expect("a row");
        assert_eq!(
            raw,
            vec![
                (1, (0.25 * one).round() as u32),
                (2, (0.75 * one).round() as u32)
            ]
        );
        assert_eq!(
            raw_row(&[0.5, 0.5]).expect("a row"),
            raw_row(&[2.0, 2.0]).expect("a row")
        );
        assert!(matches!(
            raw_row(&[1.0, f64::NAN]),
            Err(Error::BadWeight { uid: 1, value }) if value.is_nan()
        ));
        assert!(matches!(
            raw_row(&[-1.0, 2.0]),
            Err(Error::BadWeight { uid: 0, .. })
        ));
        assert!(matches!(raw_row(&[0.0, 0.0]), Err(Error::ZeroRow)));
        assert!(matches!(raw_row(&[]), Err(Error::ZeroRow)));
        assert!(matches!(
            raw_row(&[f64::MAX, f64::MAX]),
            Err(Error::ZeroRow)
        ));
    }

    fn calls(other: PublicKey) -> Vec<Call> {
        let ep: SocketAddr = "10.0.0.1:8091".parse().expect("addr");
        let ep6: SocketAddr = "[::1]:9".parse().expect("addr");
        vec![
            Call::Transfer {
                to: other,
                amount: 5,
            },
            Call::AddStake {
                hotkey: other,
                amount: 6,
            },
            Call::RemoveStake {
                hotkey: other,
                amount: 7,
            },
            Call::Register {
                coldkey: other,
                endpoint: ep,
            },
            Call::UpdateEndpoint { endpoint: ep6 },
            Call::SetWeights {
                row: vec![(0, 1), (3, 9)],
            },
        ]
    }

    #[test]
    fn every_call_round_trips_and_verifies() {
        let g = Hash::of(b"chain");
        let k = key(1);
        for call in calls(key(2).public()) {
            let tx = Transaction::sign(&k, &g, 3, call);
            let bytes = tx.encode();
            assert_eq!(bytes.len(), tx.encoded_len());
            let back = Transaction::decode(&bytes, 1 << 16).expect("decodes");
            assert_eq!(back, tx);
            back.verify(&g).expect("verifies");
            assert!(matches!(
                back.verify(&Hash::of(b"other chain")),
                Err(Error::BadSignature { .. })
            ));
        }
    }

    #[test]
    fn decode_rejects_oversized_and_malformed() {
        let g = Hash::of(b"chain");
        let tx = Transaction::sign(
            &key(1),
            &g,
            0,
            Call::SetWeights {
                row: vec![(0, 1); 100],
            },
        );
        let bytes = tx.encode();
        assert!(matches!(
            Transaction::decode(&bytes, 200),
            Err(Error::OversizedTransaction { size, max: 200 }) if size == bytes.len()
        ));
        let mut bad_tag = bytes.clone();
        bad_tag[40] = 99;
        assert!(matches!(
            Transaction::decode(&bad_tag, 1 << 16),
            Err(Error::Malformed { .. })
        ));
        assert!(matches!(
            Transaction::decode(&bytes[..50], 1 << 16),
            Err(Error::Malformed { .. })
        ));
    }

    #[test]
    fn batch_verification_finds_the_forgery() {
        let g = Hash::of(b"chain");
        let mut txs: Vec<Transaction> = (0..200)
            .map(|i| {
                Transaction::sign(
                    &key(1),
                    &g,
                    i,
                    Call::Transfer {
                        to: key(2).public(),
                        amount: 1,
                    },
                )
            })
            .collect();
        verify_all(&txs, &g).expect("all good");
        txs[130].nonce += 1000;
        txs[170].nonce += 1000;
        let (i, e) = verify_all(&txs, &g).expect_err("forged");
        assert_eq!(i, 130);
        assert!(matches!(e, Error::BadSignature { .. }));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Transaction::decode(&bytes, 1 << 16);
        }
    }
}
