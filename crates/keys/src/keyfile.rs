//! Key files: the JSON layout bittensor uses, and the passphrase-encrypted container the
//! coldkey is stored in.
//!
//! # Encrypted container, version 1
//!
//! All integers little-endian. The header is the AEAD's associated data, so no header
//! byte can be changed without the decryption failing.
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0      | 8    | magic `BTKEYENC` |
//! | 8      | 1    | format version, `1` |
//! | 9      | 1    | KDF id, `1` = Argon2id (v0x13) |
//! | 10     | 4    | Argon2 memory, KiB |
//! | 14     | 4    | Argon2 iterations |
//! | 18     | 4    | Argon2 lanes |
//! | 22     | 16   | random salt |
//! | 38     | 24   | random XChaCha20-Poly1305 nonce |
//! | 62     | 4    | ciphertext length `n` (plaintext + 16-byte tag) |
//! | 66     | n    | ciphertext of the JSON key file |
//! | 66 + n | 32   | blake2b-256 of everything before it |
//!
//! The trailing unkeyed checksum is not for security (the AEAD tag is): it tells a
//! damaged file ([`Error::KeyfileCorrupt`]) apart from a wrong passphrase
//! ([`Error::WrongPassphrase`]), which the tag alone cannot.

use std::path::Path;

use argon2::{Algorithm, Argon2, Params, Version};
use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};
use crate::keypair::{Keypair, parse_hex, to_hex};
use crate::public::PublicKey;

/// The first 8 bytes of every encrypted key file.
pub const MAGIC: &[u8; 8] = b"BTKEYENC";
/// The container version this build writes and reads.
pub const VERSION: u8 = 1;
const KDF_ARGON2ID: u8 = 1;
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const SUM_LEN: usize = 32;
const HEADER_LEN: usize = 8 + 1 + 1 + 12 + SALT_LEN + NONCE_LEN + 4;
/// The shortest possible encrypted file: header, tag of an empty plaintext, checksum.
pub const MIN_ENCRYPTED_LEN: usize = HEADER_LEN + TAG_LEN + SUM_LEN;
/// Key files are small; anything larger is not one of ours.
const MAX_CIPHERTEXT_LEN: usize = 64 * 1024;

/// Argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Iterations (passes over the memory).
    pub iterations: u32,
    /// Lanes (degree of parallelism).
    pub lanes: u32,
}

impl Default for KdfParams {
    /// RFC 9106's second recommended setting: 64 MiB, 3 passes, 4 lanes (a few hundred
    /// milliseconds on one core), for a key that is opened rarely and guards funds.
    fn default() -> Self {
        KdfParams {
            memory_kib: 64 * 1024,
            iterations: 3,
            lanes: 4,
        }
    }
}

impl KdfParams {
    /// Limits on what a file may ask for, so a crafted file cannot make us allocate
    /// gigabytes or spin for hours: at most 1 GiB, 64 passes, 16 lanes.
    fn check(&self) -> std::result::Result<Params, String> {
        if self.memory_kib > 1024 * 1024 || self.iterations > 64 || self.lanes > 16 {
            return Err(format!("Argon2 parameters out of range: {self:?}"));
        }
        Params::new(self.memory_kib, self.iterations, self.lanes, Some(32))
            .map_err(|e| format!("invalid Argon2 parameters {self:?}: {e}"))
    }
}

fn derive_key(passphrase: &[u8], salt: &[u8], params: Params) -> Result<Zeroizing<[u8; 32]>> {
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase, salt, &mut key[..])
        .map_err(|e| Error::Kdf {
            reason: e.to_string(),
        })?;
    Ok(key)
}

fn checksum(bytes: &[u8]) -> [u8; SUM_LEN] {
    Blake2b::<U32>::digest(bytes).into()
}

/// Encrypts `plaintext` under `passphrase` into the version-1 container, with a fresh
/// random salt and nonce.
pub fn encrypt(plaintext: &[u8], passphrase: &str, params: KdfParams) -> Result<Vec<u8>> {
    if passphrase.is_empty() {
        return Err(Error::EmptyPassphrase);
    }
    let argon = params.check().map_err(|reason| Error::Kdf { reason })?;
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut salt).map_err(|e| Error::Random(e.to_string()))?;
    getrandom::fill(&mut nonce).map_err(|e| Error::Random(e.to_string()))?;
    let ct_len = u32::try_from(plaintext.len() + TAG_LEN)
        .ok()
        .filter(|&n| n as usize <= MAX_CIPHERTEXT_LEN)
        .ok_or_else(|| Error::Encrypt {
            reason: format!("plaintext too large: {} bytes", plaintext.len()),
        })?;

    let mut out = Vec::with_capacity(HEADER_LEN + ct_len as usize + SUM_LEN);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(KDF_ARGON2ID);
    out.extend_from_slice(&params.memory_kib.to_le_bytes());
    out.extend_from_slice(&params.iterations.to_le_bytes());
    out.extend_from_slice(&params.lanes.to_le_bytes());
    out.extend_from_slice(&salt);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct_len.to_le_bytes());
    debug_assert_eq!(out.len(), HEADER_LEN);

    let key = derive_key(passphrase.as_bytes(), &salt, argon)?;
    let cipher = XChaCha20Poly1305::new(key.as_ref().into());
    let ct = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &out,
            },
        )
        .map_err(|e| Error::Encrypt {
            reason: e.to_string(),
        })?;
    out.extend_from_slice(&ct);
    let sum = checksum(&out);
    out.extend_from_slice(&sum);
    Ok(out)
}

/// Decrypts a version-1 container. `path` only labels errors. Each failure has its own
/// error: [`Error::KeyfileMagic`], [`Error::KeyfileTruncated`], [`Error::KeyfileCorrupt`]
/// (unknown KDF, parameters out of range, trailing bytes, checksum mismatch),
/// [`Error::KeyfileVersion`] and [`Error::WrongPassphrase`].
pub fn decrypt(bytes: &[u8], passphrase: &str, path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let corrupt = |reason: String| Error::KeyfileCorrupt {
        path: path.to_path_buf(),
        reason,
    };
    let truncated = |expected: usize| Error::KeyfileTruncated {
        path: path.to_path_buf(),
        expected,
        got: bytes.len(),
    };

    if !bytes.starts_with(MAGIC) && !MAGIC.starts_with(bytes) {
        return Err(Error::KeyfileMagic {
            path: path.to_path_buf(),
            found: show_start(bytes),
        });
    }
    if bytes.len() < MIN_ENCRYPTED_LEN {
        return Err(truncated(MIN_ENCRYPTED_LEN));
    }
    let header = &bytes[..HEADER_LEN];
    if header[8] != VERSION {
        return Err(Error::KeyfileVersion {
            path: path.to_path_buf(),
            expected: VERSION,
            got: header[8],
        });
    }
    if header[9] != KDF_ARGON2ID {
        return Err(corrupt(format!(
            "unknown key-derivation function id {}",
            header[9]
        )));
    }
    let u32_at =
        |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let params = KdfParams {
        memory_kib: u32_at(10),
        iterations: u32_at(14),
        lanes: u32_at(18),
    };
    let salt = &header[22..22 + SALT_LEN];
    let nonce = &header[38..38 + NONCE_LEN];
    let ct_len = u32_at(62) as usize;
    if !(TAG_LEN..=MAX_CIPHERTEXT_LEN).contains(&ct_len) {
        return Err(corrupt(format!("ciphertext length {ct_len} out of range")));
    }
    let total = HEADER_LEN + ct_len + SUM_LEN;
    if bytes.len() < total {
        return Err(truncated(total));
    }
    if bytes.len() > total {
        return Err(corrupt(format!(
            "{} unexpected bytes after the end",
            bytes.len() - total
        )));
    }
    let (body, sum) = bytes.split_at(HEADER_LEN + ct_len);
    if checksum(body) != *sum {
        return Err(corrupt("checksum mismatch: the file was damaged".into()));
    }
    let argon = params.check().map_err(corrupt)?;
    let key = derive_key(passphrase.as_bytes(), salt, argon)?;
    let cipher = XChaCha20Poly1305::new(key.as_ref().into());
    let pt = cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: &body[HEADER_LEN..],
                aad: header,
            },
        )
        .map_err(|_| Error::WrongPassphrase {
            path: path.to_path_buf(),
        })?;
    Ok(Zeroizing::new(pt))
}

/// How a coldkey file is stored, from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encryption {
    /// This project's container (`BTKEYENC`: Argon2id, XChaCha20-Poly1305).
    BtKeyEnc,
    /// The Python bittensor's `$NACL` (Argon2i, XSalsa20-Poly1305): see [`crate::nacl`].
    Nacl,
    /// Not encrypted: a JSON key file (bittensor writes one when asked for no password).
    Plain,
}

impl Encryption {
    /// Detects the format. [`Error::KeyfileTruncated`] for an empty file,
    /// [`Error::UnsupportedEncryption`] for bittensor's older formats (Ansible Vault, the
    /// legacy Fernet files), [`Error::KeyfileMagic`] for anything else unknown.
    pub fn detect(bytes: &[u8], path: &Path) -> Result<Encryption> {
        let unsupported = |method| {
            Err(Error::UnsupportedEncryption {
                path: path.to_path_buf(),
                method,
            })
        };
        if bytes.is_empty() {
            return Err(Error::KeyfileTruncated {
                path: path.to_path_buf(),
                expected: crate::nacl::MIN_LEN,
                got: 0,
            });
        }
        if bytes.starts_with(MAGIC) || MAGIC.starts_with(bytes) {
            return Ok(Encryption::BtKeyEnc);
        }
        if bytes.starts_with(b"$ANSIBLE_VAULT") {
            return unsupported("Ansible Vault");
        }
        if bytes.starts_with(crate::nacl::MAGIC) || crate::nacl::MAGIC.starts_with(bytes) {
            return Ok(Encryption::Nacl);
        }
        if bytes.starts_with(b"gAAAAA") {
            return unsupported("legacy (Fernet)");
        }
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
            return Ok(Encryption::Plain);
        }
        Err(Error::KeyfileMagic {
            path: path.to_path_buf(),
            found: show_start(bytes),
        })
    }

    /// Whether opening it needs a passphrase.
    pub fn needs_passphrase(self) -> bool {
        self != Encryption::Plain
    }

    /// A short description for people.
    pub fn describe(self) -> &'static str {
        match self {
            Encryption::BtKeyEnc => {
                "encrypted (this project's format: Argon2id, XChaCha20-Poly1305)"
            }
            Encryption::Nacl => "encrypted (bittensor's $NACL format: Argon2i, XSalsa20-Poly1305)",
            Encryption::Plain => "not encrypted",
        }
    }
}

/// Opens a coldkey file of any format [`Encryption::detect`] knows: decrypts it with
/// `passphrase` (ignored for a plain file) and returns the JSON key file inside.
pub fn open(bytes: &[u8], passphrase: &str, path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    match Encryption::detect(bytes, path)? {
        Encryption::BtKeyEnc => decrypt(bytes, passphrase, path),
        Encryption::Nacl => crate::nacl::decrypt(bytes, passphrase, path),
        Encryption::Plain => Ok(Zeroizing::new(bytes.to_vec())),
    }
}

/// The first bytes of a file, for an error message: printable ASCII as is, the rest as
/// `\xNN`, at most 16 bytes.
pub(crate) fn show_start(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(16)
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect()
}

/// A key file in bittensor's JSON layout. Public files (`coldkeypub.txt`) have the
/// secret fields set to `null`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KeyfileJson {
    account_id: String,
    public_key: String,
    private_key: Option<String>,
    secret_phrase: Option<String>,
    secret_seed: Option<String>,
    ss58_address: String,
    /// `1` (sr25519) in files of bittensor-wallet 4, which also knows `0` (ed25519); absent
    /// in older files and in ours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    crypto_type: Option<u64>,
}

impl Drop for KeyfileJson {
    fn drop(&mut self) {
        self.private_key.zeroize();
        self.secret_phrase.zeroize();
        self.secret_seed.zeroize();
    }
}

impl KeyfileJson {
    /// The file of a key pair, with its phrase if known.
    pub(crate) fn secret(pair: &Keypair, phrase: Option<&str>) -> KeyfileJson {
        let mut json = KeyfileJson::public(&pair.public());
        json.private_key = Some(to_hex(&pair.secret_bytes()[..]));
        json.secret_seed = pair.mini_secret().map(|s| to_hex(&s[..]));
        json.secret_phrase = phrase.map(str::to_owned);
        json
    }

    /// The public-only file of a key.
    pub(crate) fn public(pk: &PublicKey) -> KeyfileJson {
        let hex = to_hex(pk.as_bytes());
        KeyfileJson {
            account_id: hex.clone(),
            public_key: hex,
            private_key: None,
            secret_phrase: None,
            secret_seed: None,
            ss58_address: pk.to_ss58(),
            crypto_type: None,
        }
    }

    pub(crate) fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        // Serializing a struct of strings to a Vec cannot fail.
        Zeroizing::new(serde_json::to_vec_pretty(self).unwrap_or_default())
    }

    pub(crate) fn from_bytes(bytes: &[u8], path: &Path) -> Result<KeyfileJson> {
        let json: KeyfileJson = serde_json::from_slice(bytes).map_err(|e| Error::KeyfileJson {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        match json.crypto_type {
            None | Some(1) => Ok(json),
            Some(got) => Err(Error::UnsupportedCryptoType {
                path: path.to_path_buf(),
                got,
            }),
        }
    }

    /// The public key, checking that the address and the hex key agree.
    pub(crate) fn public_key(&self, path: &Path) -> Result<PublicKey> {
        let corrupt = |reason: String| Error::KeyfileCorrupt {
            path: path.to_path_buf(),
            reason,
        };
        let pk = PublicKey::from_ss58(&self.ss58_address)
            .map_err(|e| corrupt(format!("bad ss58Address: {e}")))?;
        let hex = self
            .public_key
            .strip_prefix("0x")
            .unwrap_or(&self.public_key);
        let bytes = parse_hex(hex, 32).map_err(|e| corrupt(format!("bad publicKey: {e}")))?;
        if bytes.as_slice() != pk.as_bytes() {
            return Err(corrupt("publicKey and ss58Address disagree".into()));
        }
        Ok(pk)
    }

    /// The key pair: from the phrase if present, else the seed, else the private key;
    /// it must match the stored public key.
    pub(crate) fn keypair(&self, path: &Path) -> Result<Keypair> {
        let corrupt = |reason: String| Error::KeyfileCorrupt {
            path: path.to_path_buf(),
            reason,
        };
        let pk = self.public_key(path)?;
        let pair = if let Some(phrase) = &self.secret_phrase {
            Keypair::from_phrase(phrase, None)
                .map_err(|e| corrupt(format!("bad secretPhrase: {e}")))?
        } else if let Some(seed) = &self.secret_seed {
            let hex = seed.strip_prefix("0x").unwrap_or(seed);
            let bytes = parse_hex(hex, 32).map_err(|e| corrupt(format!("bad secretSeed: {e}")))?;
            let mut arr = Zeroizing::new([0u8; 32]);
            arr.copy_from_slice(&bytes);
            Keypair::from_mini_secret(*arr)
        } else if let Some(private) = &self.private_key {
            let hex = private.strip_prefix("0x").unwrap_or(private);
            let bytes = parse_hex(hex, 64).map_err(|e| corrupt(format!("bad privateKey: {e}")))?;
            let mut arr = Zeroizing::new([0u8; 64]);
            arr.copy_from_slice(&bytes);
            // Two 64-byte layouts are in use: Substrate's Ed25519-compatible one (ours, older
            // bittensor) and schnorrkel's canonical one (bittensor-wallet 4). The stored
            // public key says which this is.
            match Keypair::from_secret_bytes(&arr) {
                Ok(pair) if pair.public() == pk => pair,
                first => match Keypair::from_canonical_secret_bytes(&arr) {
                    Ok(pair) if pair.public() == pk => pair,
                    _ => first.map_err(|e| corrupt(format!("bad privateKey: {e}")))?,
                },
            }
        } else {
            return Err(corrupt(
                "no secret in the key file (is it a public key file?)".into(),
            ));
        };
        if pair.public() != pk {
            return Err(corrupt(format!(
                "the secret gives {} but the file says {pk}",
                pair.public()
            )));
        }
        Ok(pair)
    }

    pub(crate) fn phrase(&self) -> Option<&str> {
        self.secret_phrase.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: KdfParams = KdfParams {
        memory_kib: 64,
        iterations: 1,
        lanes: 1,
    };

    fn p() -> &'static Path {
        Path::new("test-key")
    }

    #[test]
    fn round_trip() {
        let ct = encrypt(b"secret stuff", "pw", FAST).unwrap();
        assert_eq!(&ct[..8], MAGIC);
        assert_eq!(decrypt(&ct, "pw", p()).unwrap().as_slice(), b"secret stuff");
    }

    #[test]
    fn fresh_salt_and_nonce_each_time() {
        assert_ne!(
            encrypt(b"x", "pw", FAST).unwrap(),
            encrypt(b"x", "pw", FAST).unwrap()
        );
    }

    #[test]
    fn wrong_passphrase() {
        let ct = encrypt(b"secret", "pw", FAST).unwrap();
        assert!(matches!(
            decrypt(&ct, "pW", p()),
            Err(Error::WrongPassphrase { .. })
        ));
    }

    #[test]
    fn empty_passphrase_refused() {
        assert!(matches!(
            encrypt(b"x", "", FAST),
            Err(Error::EmptyPassphrase)
        ));
    }

    #[test]
    fn every_truncation_is_truncated() {
        let ct = encrypt(b"secret", "pw", FAST).unwrap();
        for n in MAGIC.len()..ct.len() {
            let e = decrypt(&ct[..n], "pw", p()).unwrap_err();
            assert!(matches!(e, Error::KeyfileTruncated { .. }), "len {n}: {e}");
        }
    }

    #[test]
    fn every_bit_flip_is_detected_as_damage_not_passphrase() {
        let ct = encrypt(b"secret", "pw", FAST).unwrap();
        for i in 0..ct.len() {
            let mut bad = ct.clone();
            bad[i] ^= 0x10;
            let e = decrypt(&bad, "pw", p()).unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::KeyfileCorrupt { .. }
                        | Error::KeyfileMagic { .. }
                        | Error::KeyfileVersion { .. }
                        | Error::KeyfileTruncated { .. }
                ),
                "byte {i}: {e}"
            );
        }
    }

    #[test]
    fn bad_magic() {
        let mut ct = encrypt(b"secret", "pw", FAST).unwrap();
        ct[0] = b'X';
        let e = decrypt(&ct, "pw", p()).unwrap_err();
        assert!(
            matches!(e, Error::KeyfileMagic { ref found, .. } if found.starts_with("XTKEYENC")),
            "{e}"
        );
    }

    #[test]
    fn formats_are_detected() {
        let ours = encrypt(b"{}", "pw", FAST).unwrap();
        for (bytes, want) in [
            (&ours[..], Encryption::BtKeyEnc),
            (&b"BTKE"[..], Encryption::BtKeyEnc),
            (&b"$NACL0123"[..], Encryption::Nacl),
            (&b"$NA"[..], Encryption::Nacl),
            (&b"  {\"ss58Address\": 1}"[..], Encryption::Plain),
        ] {
            assert_eq!(Encryption::detect(bytes, p()).unwrap(), want, "{bytes:?}");
        }
        for (bytes, method) in [
            (&b"$ANSIBLE_VAULT;1.1;AES256\n6131"[..], "Ansible Vault"),
            (&b"gAAAAABkX"[..], "legacy (Fernet)"),
        ] {
            let e = Encryption::detect(bytes, p()).unwrap_err();
            assert!(
                matches!(e, Error::UnsupportedEncryption { method: m, .. } if m == method),
                "{e}"
            );
        }
        let e = Encryption::detect(b"\x00\x01garbage", p()).unwrap_err();
        assert!(
            matches!(e, Error::KeyfileMagic { ref found, .. } if found == "\\x00\\x01garbage"),
            "{e}"
        );
        let e = Encryption::detect(b"", p()).unwrap_err();
        assert!(matches!(e, Error::KeyfileTruncated { got: 0, .. }), "{e}");
        // A plain file opens without a passphrase.
        assert_eq!(open(b"{}", "", p()).unwrap().as_slice(), b"{}");
    }

    #[test]
    fn bad_json_and_unknown_crypto_type() {
        let refused = |b: &[u8]| match KeyfileJson::from_bytes(b, p()) {
            Err(e) => e,
            Ok(_) => panic!("accepted {b:?}"),
        };
        let e = refused(b"{\"accountId\": ");
        assert!(matches!(e, Error::KeyfileJson { .. }), "{e}");
        let pair = Keypair::from_uri("//Alice").unwrap();
        let mut v: serde_json::Value =
            serde_json::from_slice(&KeyfileJson::secret(&pair, None).to_bytes()).unwrap();
        v["cryptoType"] = 1.into();
        let one = serde_json::to_vec(&v).unwrap();
        assert_eq!(
            KeyfileJson::from_bytes(&one, p())
                .unwrap()
                .keypair(p())
                .unwrap()
                .public(),
            pair.public()
        );
        v["cryptoType"] = 0.into();
        let e = refused(&serde_json::to_vec(&v).unwrap());
        assert!(
            matches!(e, Error::UnsupportedCryptoType { got: 0, .. }),
            "{e}"
        );
    }

    #[test]
    fn unknown_version() {
        let mut ct = encrypt(b"secret", "pw", FAST).unwrap();
        ct[8] = 9;
        assert!(matches!(
            decrypt(&ct, "pw", p()),
            Err(Error::KeyfileVersion {
                expected: 1,
                got: 9,
                ..
            })
        ));
    }

    #[test]
    fn trailing_bytes() {
        let mut ct = encrypt(b"secret", "pw", FAST).unwrap();
        ct.push(0);
        let e = decrypt(&ct, "pw", p()).unwrap_err();
        assert!(e.to_string().contains("unexpected bytes"), "{e}");
    }

    #[test]
    fn absurd_kdf_parameters_refused_before_running() {
        let mut ct = encrypt(b"secret", "pw", FAST).unwrap();
        ct[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
        let n = ct.len();
        let sum = checksum(&ct[..n - SUM_LEN]);
        ct[n - SUM_LEN..].copy_from_slice(&sum);
        let e = decrypt(&ct, "pw", p()).unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
    }

    #[test]
    fn header_tamper_with_fixed_checksum_fails_authentication() {
        // Someone rewrites the salt and the checksum: the AEAD still refuses.
        let mut ct = encrypt(b"secret", "pw", FAST).unwrap();
        ct[22] ^= 1;
        let n = ct.len();
        let sum = checksum(&ct[..n - SUM_LEN]);
        ct[n - SUM_LEN..].copy_from_slice(&sum);
        assert!(matches!(
            decrypt(&ct, "pw", p()),
            Err(Error::WrongPassphrase { .. })
        ));
    }

    #[test]
    fn bad_kdf_parameters_refused_at_encryption() {
        let tiny = KdfParams {
            memory_kib: 1,
            iterations: 1,
            lanes: 1,
        };
        assert!(matches!(encrypt(b"x", "pw", tiny), Err(Error::Kdf { .. })));
        let huge = KdfParams {
            memory_kib: 4 << 20,
            ..FAST
        };
        assert!(matches!(encrypt(b"x", "pw", huge), Err(Error::Kdf { .. })));
    }

    #[test]
    fn oversized_plaintext_refused() {
        let big = vec![0u8; MAX_CIPHERTEXT_LEN];
        assert!(matches!(
            encrypt(&big, "pw", FAST),
            Err(Error::Encrypt { .. })
        ));
    }

    #[test]
    fn json_round_trip_and_mismatch() {
        let pair = Keypair::from_uri("//Alice").unwrap();
        let json = KeyfileJson::secret(&pair, None);
        let back = KeyfileJson::from_bytes(&json.to_bytes(), p()).unwrap();
        assert_eq!(back.keypair(p()).unwrap().public(), pair.public());
        let bob = Keypair::from_uri("//Bob").unwrap();
        let mut lying = KeyfileJson::secret(&bob, None);
        lying.ss58_address = pair.public().to_ss58();
        lying.public_key = to_hex(pair.public().as_bytes());
        let e = lying.keypair(p()).unwrap_err();
        assert!(e.to_string().contains("file says"), "{e}");
    }

    #[test]
    fn private_key_in_either_layout_loads() {
        let pair = Keypair::from_uri("//Alice//hot").unwrap();
        let canonical: [u8; 64] = {
            // schnorrkel's own layout, as bittensor-wallet 4 writes it.
            let ed = pair.secret_bytes();
            schnorrkel::SecretKey::from_ed25519_bytes(&ed[..])
                .unwrap()
                .to_bytes()
        };
        assert_ne!(&canonical[..], &pair.secret_bytes()[..]);
        let mut json = KeyfileJson::public(&pair.public());
        json.private_key = Some(to_hex(&canonical));
        assert_eq!(json.keypair(p()).unwrap().public(), pair.public());
        let mut other = KeyfileJson::public(&Keypair::from_uri("//Bob").unwrap().public());
        other.private_key = Some(to_hex(&canonical));
        let e = other.keypair(p()).unwrap_err();
        assert!(e.to_string().contains("file says"), "{e}");
    }

    #[test]
    fn private_key_only_file_loads() {
        let pair = Keypair::from_uri("//Alice/soft").unwrap();
        let json = KeyfileJson::secret(&pair, None);
        assert!(json.secret_seed.is_none());
        assert_eq!(json.keypair(p()).unwrap().public(), pair.public());
    }
}
