//! Public keys (account ids), their SS58 addresses, and signatures.

use std::fmt;
use std::str::FromStr;

use blake2::{Blake2b512, Digest};

use crate::error::{Error, Result};

/// The SS58 network prefix of addresses here: 42, Substrate's generic prefix, which
/// bittensor uses too.
pub const SS58_PREFIX: u16 = 42;

/// The signing context of every signature, as in Substrate.
pub const SIGNING_CONTEXT: &[u8] = b"substrate";

const SS58_CHECKSUM_PREIMAGE: &[u8] = b"SS58PRE";
const SS58_CHECKSUM_LEN: usize = 2;

/// An sr25519 public key, which is also the account id.
///
/// It is always a valid Ristretto point ([`PublicKey::from_bytes`] checks). `Display`,
/// `Debug`, `FromStr` and serde all use the SS58 address with prefix [`SS58_PREFIX`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// A public key from its 32-byte compressed form; rejects bytes that are not a valid
    /// Ristretto point with [`Error::InvalidPublicKey`].
    pub fn from_bytes(b: [u8; 32]) -> Result<PublicKey> {
        schnorrkel::PublicKey::from_bytes(&b).map_err(|_| Error::InvalidPublicKey)?;
        Ok(PublicKey(b))
    }

    pub(crate) fn from_schnorrkel(p: &schnorrkel::PublicKey) -> PublicKey {
        PublicKey(p.to_bytes())
    }

    /// The 32-byte compressed form.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The SS58 address (prefix 42), e.g. `5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY`.
    pub fn to_ss58(&self) -> String {
        let mut data = Vec::with_capacity(1 + 32 + SS58_CHECKSUM_LEN);
        data.extend_from_slice(&encode_prefix(SS58_PREFIX));
        data.extend_from_slice(&self.0);
        let sum = ss58_checksum(&data);
        data.extend_from_slice(&sum[..SS58_CHECKSUM_LEN]);
        bs58::encode(data).into_string()
    }

    /// Parses an SS58 address. Checks, in order: base58 ([`Error::Ss58Base58`]), the
    /// length ([`Error::Ss58Length`], [`Error::Ss58ReservedPrefix`]), the checksum
    /// ([`Error::Ss58Checksum`]), the network prefix ([`Error::Ss58Prefix`]) and that the
    /// key is a valid point ([`Error::InvalidPublicKey`]).
    pub fn from_ss58(s: &str) -> Result<PublicKey> {
        let data = bs58::decode(s).into_vec().map_err(|e| Error::Ss58Base58 {
            reason: e.to_string(),
        })?;
        // An account address is 35 bytes (one-byte prefix) or 36 (two-byte prefix). Check
        // the length and the checksum before reading the prefix: a mistyped, missing or
        // extra character shows up there, not as a strange prefix.
        let prefix_len = match data.len() {
            35 => 1,
            36 => 2,
            got => {
                return Err(Error::Ss58Length { expected: 35, got });
            }
        };
        let (body, sum) = data.split_at(data.len() - SS58_CHECKSUM_LEN);
        if ss58_checksum(body)[..SS58_CHECKSUM_LEN] != *sum {
            return Err(Error::Ss58Checksum);
        }
        let prefix = match (data[0], prefix_len) {
            (b, 1) if b < 64 => u16::from(b),
            (b, 2) if (64..128).contains(&b) => {
                // The two-byte form of the SS58 spec: 14 bits spread over both bytes.
                let b1 = data[1];
                let lower = (b << 2) | (b1 >> 6);
                let upper = b1 & 0b0011_1111;
                u16::from(lower) | (u16::from(upper) << 8)
            }
            (b, _) if b >= 128 => return Err(Error::Ss58ReservedPrefix { byte: b }),
            (b, _) => {
                return Err(Error::Ss58Length {
                    expected: if b < 64 { 35 } else { 36 },
                    got: data.len(),
                });
            }
        };
        if prefix != SS58_PREFIX {
            return Err(Error::Ss58Prefix {
                expected: SS58_PREFIX,
                got: prefix,
            });
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&body[prefix_len..]);
        PublicKey::from_bytes(key)
    }

    /// Verifies an sr25519 signature over `msg` (signing context `b"substrate"`); returns
    /// [`Error::BadSignature`] when it does not verify.
    pub fn verify(&self, msg: &[u8], sig: &Signature) -> Result<()> {
        // Both were validated at construction, so these conversions only fail if that
        // invariant were broken; report it as a bad signature rather than panic.
        let pk = schnorrkel::PublicKey::from_bytes(&self.0).map_err(|_| Error::InvalidPublicKey)?;
        let sig = schnorrkel::Signature::from_bytes(&sig.0).map_err(|_| Error::BadSignature)?;
        pk.verify_simple(SIGNING_CONTEXT, msg, &sig)
            .map_err(|_| Error::BadSignature)
    }
}

/// Verifies many `(public key, message, signature)` triples at once with schnorrkel's
/// batch verification (randomized, cheaper per signature than one by one for large
/// batches). `Ok` only if every signature verifies; [`Error::BadSignature`] if any does
/// not (verify them one by one to find which). An empty batch is `Ok`.
pub fn verify_batch<'a>(
    items: impl IntoIterator<Item = (&'a PublicKey, &'a [u8], &'a Signature)>,
) -> Result<()> {
    let ctx = schnorrkel::signing_context(SIGNING_CONTEXT);
    let mut keys = Vec::new();
    let mut sigs = Vec::new();
    let mut transcripts = Vec::new();
    for (pk, msg, sig) in items {
        keys.push(schnorrkel::PublicKey::from_bytes(&pk.0).map_err(|_| Error::InvalidPublicKey)?);
        sigs.push(schnorrkel::Signature::from_bytes(&sig.0).map_err(|_| Error::BadSignature)?);
        transcripts.push(ctx.bytes(msg));
    }
    if keys.is_empty() {
        return Ok(());
    }
    schnorrkel::verify_batch(transcripts, &sigs, &keys, false).map_err(|_| Error::BadSignature)
}

fn encode_prefix(prefix: u16) -> Vec<u8> {
    match prefix {
        // Every u16 below 64 fits a u8.
        0..=63 => vec![prefix as u8],
        _ => {
            let first = ((prefix & 0b0000_0000_1111_1100) as u8 >> 2) | 0b0100_0000;
            let second = ((prefix >> 8) as u8) | (((prefix & 0b0000_0000_0000_0011) as u8) << 6);
            vec![first, second]
        }
    }
}

fn ss58_checksum(data: &[u8]) -> [u8; 64] {
    let mut h = Blake2b512::new();
    h.update(SS58_CHECKSUM_PREIMAGE);
    h.update(data);
    h.finalize().into()
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_ss58())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_ss58())
    }
}

impl FromStr for PublicKey {
    type Err = Error;
    fn from_str(s: &str) -> Result<PublicKey> {
        PublicKey::from_ss58(s)
    }
}

impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_ss58())
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        PublicKey::from_ss58(&s).map_err(serde::de::Error::custom)
    }
}

/// An sr25519 signature: 64 bytes, with schnorrkel's marker bit set.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature([u8; 64]);

impl Signature {
    /// A signature from its 64 bytes. Rejects another length ([`Error::SignatureLength`])
    /// and bytes that are not a schnorrkel signature ([`Error::SignatureEncoding`]).
    pub fn from_bytes(b: &[u8]) -> Result<Signature> {
        let arr: [u8; 64] = b.try_into().map_err(|_| Error::SignatureLength {
            expected: 64,
            got: b.len(),
        })?;
        schnorrkel::Signature::from_bytes(&arr).map_err(|e| Error::SignatureEncoding {
            reason: e.to_string(),
        })?;
        Ok(Signature(arr))
    }

    pub(crate) fn from_schnorrkel(s: &schnorrkel::Signature) -> Signature {
        Signature(s.to_bytes())
    }

    /// The 64 bytes.
    pub fn to_bytes(&self) -> [u8; 64] {
        self.0
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature(0x")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address_with_prefix(prefix: u16, key: &[u8; 32]) -> String {
        let mut data = encode_prefix(prefix);
        data.extend_from_slice(key);
        let sum = ss58_checksum(&data);
        data.extend_from_slice(&sum[..SS58_CHECKSUM_LEN]);
        bs58::encode(data).into_string()
    }

    #[test]
    fn batch_verification() {
        let keys: Vec<_> = (0..8u8)
            .map(|i| crate::Keypair::from_mini_secret([i; 32]))
            .collect();
        let msgs: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 10]).collect();
        let sigs: Vec<_> = keys.iter().zip(&msgs).map(|(k, m)| k.sign(m)).collect();
        let pks: Vec<_> = keys.iter().map(|k| k.public()).collect();
        let batch = |msgs: &[Vec<u8>]| {
            verify_batch(
                pks.iter()
                    .zip(msgs)
                    .zip(&sigs)
                    .map(|((p, m), s)| (p, m.as_slice(), s)),
            )
        };
        batch(&msgs).unwrap();
        let mut tampered = msgs.clone();
        tampered[5][0] ^= 1;
        assert!(matches!(batch(&tampered), Err(Error::BadSignature)));
        verify_batch([]).unwrap();
    }

    #[test]
    fn two_byte_prefixes_decode_and_are_rejected_as_foreign() {
        let alice =
            PublicKey::from_ss58("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY").unwrap();
        for prefix in [64u16, 255, 1284, 16_383] {
            let s = address_with_prefix(prefix, alice.as_bytes());
            let e = PublicKey::from_ss58(&s).unwrap_err();
            assert!(
                matches!(e, Error::Ss58Prefix { expected: 42, got } if got == prefix),
                "{prefix}: {e}"
            );
        }
        assert_eq!(address_with_prefix(42, alice.as_bytes()), alice.to_ss58());
    }
}
