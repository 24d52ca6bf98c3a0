//! sr25519 key pairs from BIP39 phrases and Substrate secret URIs.

use std::fmt;

use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use schnorrkel::derive::{ChainCode, Derivation};
use schnorrkel::{ExpansionMode, MiniSecretKey};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::public::{PublicKey, SIGNING_CONTEXT, Signature};

/// Substrate's development phrase: the root of `//Alice`, `//Bob`, … Never hold value with it.
pub const DEV_PHRASE: &str =
    "bottom drive obey lake curtain smoke basket hold race lonely fit walk";

/// The mnemonic lengths BIP39 defines.
pub const WORD_COUNTS: [usize; 5] = [12, 15, 18, 21, 24];

/// An sr25519 key pair (schnorrkel), derived the way Substrate and bittensor derive it.
///
/// `Debug` prints only the public key's address; the secret is wiped from memory on drop.
#[derive(Clone)]
pub struct Keypair {
    inner: schnorrkel::Keypair,
    /// The 32-byte mini secret (what Substrate calls the seed), when the pair came from
    /// one: from a phrase, a seed, or hard derivation. Soft derivation has none.
    seed: Option<Zeroizing<[u8; 32]>>,
}

impl Keypair {
    /// The key pair of a BIP39 English phrase, with an optional BIP39 password, exactly as
    /// Substrate does it: the phrase's entropy goes through `substrate-bip39` (PBKDF2 over
    /// the entropy, not the BIP39 seed) to a mini secret, expanded in Ed25519 mode.
    pub fn from_phrase(phrase: &str, password: Option<&str>) -> Result<Keypair> {
        let mnemonic =
            bip39::Mnemonic::parse_in(bip39::Language::English, phrase).map_err(|e| {
                Error::InvalidPhrase {
                    reason: e.to_string(),
                }
            })?;
        let entropy = Zeroizing::new(mnemonic.to_entropy());
        let mini = substrate_bip39::mini_secret_from_entropy(&entropy, password.unwrap_or(""))
            .map_err(|e| Error::InvalidPhrase {
                reason: format!("{e:?}"),
            })?;
        Ok(Keypair::from_schnorrkel_mini(&mini))
    }

    /// The key pair of a 32-byte mini secret (Substrate's "seed").
    pub fn from_mini_secret(bytes: [u8; 32]) -> Keypair {
        let bytes = Zeroizing::new(bytes);
        // A mini secret is any 32 bytes, so this conversion cannot fail.
        match MiniSecretKey::from_bytes(&bytes[..]) {
            Ok(mini) => Keypair::from_schnorrkel_mini(&mini),
            Err(_) => unreachable!("MiniSecretKey::from_bytes accepts every 32-byte input"),
        }
    }

    fn from_schnorrkel_mini(mini: &MiniSecretKey) -> Keypair {
        Keypair {
            inner: mini.expand_to_keypair(ExpansionMode::Ed25519),
            seed: Some(Zeroizing::new(mini.to_bytes())),
        }
    }

    /// The key pair of a Substrate secret URI:
    /// `[<phrase> | 0x<64 hex seed>][//hard | /soft]*[///<password>]`.
    ///
    /// With no phrase, Substrate's [`DEV_PHRASE`] is used, so `//Alice` is the Alice dev
    /// account. A junction that parses as a `u64` is encoded as one (little-endian), any
    /// other as a SCALE string; the chain code is that encoding zero-padded to 32 bytes,
    /// or its blake2-256 when longer. `///password` is the BIP39 password of the phrase.
    pub fn from_uri(suri: &str) -> Result<Keypair> {
        let uri = parse_uri(suri)?;
        let mut pair = match uri.phrase.strip_prefix("0x") {
            Some(hex) => {
                if uri.password.is_some() {
                    return Err(Error::InvalidUri {
                        reason: "a password applies to a phrase, not to a hex seed".into(),
                    });
                }
                Keypair::from_mini_secret(parse_hex32(hex)?)
            }
            None => Keypair::from_phrase(uri.phrase, uri.password)?,
        };
        for j in &uri.junctions {
            pair = pair.derive(j);
        }
        Ok(pair)
    }

    /// A new random key pair and its mnemonic phrase of `words` words (12, 15, 18, 21 or
    /// 24), from the operating system's random number generator.
    pub fn generate(words: usize) -> Result<(Keypair, String)> {
        if !WORD_COUNTS.contains(&words) {
            return Err(Error::WordCount { got: words });
        }
        let mut entropy = Zeroizing::new([0u8; 32]);
        let len = words / 3 * 4;
        getrandom::fill(&mut entropy[..len]).map_err(|e| Error::Random(e.to_string()))?;
        let mnemonic = bip39::Mnemonic::from_entropy_in(bip39::Language::English, &entropy[..len])
            .map_err(|e| Error::InvalidPhrase {
                reason: e.to_string(),
            })?;
        let phrase = mnemonic.to_string();
        let pair = Keypair::from_phrase(&phrase, None)?;
        Ok((pair, phrase))
    }

    /// The public key (account id).
    pub fn public(&self) -> PublicKey {
        PublicKey::from_schnorrkel(&self.inner.public)
    }

    /// Signs `msg` with signing context `b"substrate"`, as Substrate does.
    pub fn sign(&self, msg: &[u8]) -> Signature {
        Signature::from_schnorrkel(&self.inner.sign_simple(SIGNING_CONTEXT, msg))
    }

    /// The 32-byte mini secret ("seed") this pair was expanded from, if it came from one.
    /// Pairs made by soft derivation have none.
    pub fn mini_secret(&self) -> Option<Zeroizing<[u8; 32]>> {
        self.seed.clone()
    }

    /// The 64-byte secret key in the Ed25519-compatible layout (scalar ‖ nonce) that
    /// Substrate tools write as `privateKey`.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 64]> {
        Zeroizing::new(self.inner.secret.to_ed25519_bytes())
    }

    /// The key pair of a 64-byte secret in the layout of [`Keypair::secret_bytes`].
    pub fn from_secret_bytes(bytes: &[u8; 64]) -> Result<Keypair> {
        let secret =
            schnorrkel::SecretKey::from_ed25519_bytes(bytes).map_err(|e| Error::InvalidSeed {
                expected: 64,
                reason: format!("not an sr25519 secret key: {e}"),
            })?;
        Ok(Keypair {
            inner: secret.into(),
            seed: None,
        })
    }

    /// The key pair of a 64-byte secret in schnorrkel's own layout (canonical scalar ‖
    /// nonce, `SecretKey::to_bytes`), which `bittensor-wallet` 4 writes as `privateKey`
    /// (through sp-core's `to_raw_vec`). The scalar is the one of
    /// [`Keypair::secret_bytes`] divided by the cofactor, so the two layouts differ.
    pub fn from_canonical_secret_bytes(bytes: &[u8; 64]) -> Result<Keypair> {
        let secret = schnorrkel::SecretKey::from_bytes(bytes).map_err(|e| Error::InvalidSeed {
            expected: 64,
            reason: format!("not an sr25519 secret key: {e}"),
        })?;
        Ok(Keypair {
            inner: secret.into(),
            seed: None,
        })
    }

    fn derive(&self, j: &Junction) -> Keypair {
        match j {
            Junction::Hard(cc) => {
                let (mini, _) = self
                    .inner
                    .secret
                    .hard_derive_mini_secret_key(Some(ChainCode(*cc)), b"");
                Keypair::from_schnorrkel_mini(&mini)
            }
            Junction::Soft(cc) => Keypair {
                inner: self.inner.derived_key_simple(ChainCode(*cc), []).0,
                seed: None,
            },
        }
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keypair")
            .field("public", &self.public())
            .finish_non_exhaustive()
    }
}

/// One derivation step, with its 32-byte chain code.
enum Junction {
    Hard([u8; 32]),
    Soft([u8; 32]),
}

impl Junction {
    fn chain_code(s: &str) -> [u8; 32] {
        let encoded = match s.parse::<u64>() {
            Ok(n) => n.to_le_bytes().to_vec(),
            Err(_) => scale_str(s),
        };
        let mut cc = [0u8; 32];
        if encoded.len() > 32 {
            cc.copy_from_slice(&Blake2b::<U32>::digest(&encoded));
        } else {
            cc[..encoded.len()].copy_from_slice(&encoded);
        }
        cc
    }
}

/// SCALE encoding of a string: compact length prefix, then the UTF-8 bytes.
fn scale_str(s: &str) -> Vec<u8> {
    let n = s.len();
    let mut out = Vec::with_capacity(n + 5);
    if n < 1 << 6 {
        out.push((n as u8) << 2);
    } else if n < 1 << 14 {
        out.extend_from_slice(&(((n as u16) << 2) | 0b01).to_le_bytes());
    } else if n < 1 << 30 {
        out.extend_from_slice(&(((n as u32) << 2) | 0b10).to_le_bytes());
    } else {
        // Big-integer mode: the number of length bytes minus 4, then the bytes.
        let bytes = (n as u64).to_le_bytes();
        let used = 8 - (n as u64).leading_zeros() as usize / 8;
        out.push((((used - 4) as u8) << 2) | 0b11);
        out.extend_from_slice(&bytes[..used]);
    }
    out.extend_from_slice(s.as_bytes());
    out
}

struct Uri<'a> {
    phrase: &'a str,
    junctions: Vec<Junction>,
    password: Option<&'a str>,
}

fn parse_uri(suri: &str) -> Result<Uri<'_>> {
    let (rest, password) = match suri.find("///") {
        Some(i) => (&suri[..i], Some(&suri[i + 3..])),
        None => (suri, None),
    };
    let (phrase, mut path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if !phrase
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_' || c == ' ')
    {
        return Err(Error::InvalidUri {
            reason: "the phrase may hold only letters, digits, '_' and spaces".into(),
        });
    }
    let phrase = if phrase.is_empty() {
        DEV_PHRASE
    } else {
        phrase
    };
    let mut junctions = Vec::new();
    while let Some(after) = path.strip_prefix('/') {
        let (hard, body) = match after.strip_prefix('/') {
            Some(b) => (true, b),
            None => (false, after),
        };
        let end = body.find('/').unwrap_or(body.len());
        let name = &body[..end];
        if name.is_empty() {
            return Err(Error::InvalidUri {
                reason: "empty derivation junction".into(),
            });
        }
        let cc = Junction::chain_code(name);
        junctions.push(if hard {
            Junction::Hard(cc)
        } else {
            Junction::Soft(cc)
        });
        path = &body[end..];
    }
    Ok(Uri {
        phrase,
        junctions,
        password,
    })
}

/// Parses 64 hex digits (without the `0x`) into 32 bytes.
pub(crate) fn parse_hex32(hex: &str) -> Result<[u8; 32]> {
    let bytes = parse_hex(hex, 32)?;
    let mut out = [0u8; 32];
    out.copy_from_slice(&bytes);
    Ok(out)
}

/// Parses exactly `len` bytes of hex digits (without the `0x`).
pub(crate) fn parse_hex(hex: &str, len: usize) -> Result<Zeroizing<Vec<u8>>> {
    if hex.len() != 2 * len {
        return Err(Error::InvalidSeed {
            expected: len,
            reason: format!("got {} hex digits", hex.len()),
        });
    }
    let mut out = Zeroizing::new(Vec::with_capacity(len));
    for pair in hex.as_bytes().chunks(2) {
        let digit = |c: u8| (c as char).to_digit(16);
        match (digit(pair[0]), digit(pair[1])) {
            (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
            _ => {
                return Err(Error::InvalidSeed {
                    expected: len,
                    reason: "found a character that is not a hex digit".into(),
                });
            }
        }
    }
    Ok(out)
}

/// Lower-case hex with a `0x` prefix.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + 2 * bytes.len());
    s.push_str("0x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_string_lengths() {
        assert_eq!(scale_str("Alice")[0], 5 << 2);
        let s = "x".repeat(100);
        assert_eq!(&scale_str(&s)[..2], &((100u16 << 2) | 1).to_le_bytes());
    }

    #[test]
    fn soft_derivation_matches_public_derivation() {
        // Soft junctions can be derived from the public key alone; both paths must agree.
        let alice = Keypair::from_uri("//Alice").unwrap();
        let soft = Keypair::from_uri("//Alice/stash").unwrap();
        let cc = ChainCode(Junction::chain_code("stash"));
        let (public, _) = alice.inner.public.derived_key_simple(cc, []);
        assert_eq!(soft.public(), PublicKey::from_schnorrkel(&public));
    }

    #[test]
    fn numeric_junction_is_u64() {
        let cc = Junction::chain_code("7");
        assert_eq!(cc[0], 7);
        assert!(cc[1..].iter().all(|&b| b == 0));
    }

    #[test]
    fn long_junction_is_hashed() {
        let name = "a".repeat(40);
        let cc = Junction::chain_code(&name);
        assert_eq!(
            cc.as_slice(),
            Blake2b::<U32>::digest(scale_str(&name)).as_slice()
        );
    }
}
