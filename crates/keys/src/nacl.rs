//! Coldkeys encrypted by the Python bittensor (`bittensor-wallet`, and the `bittensor`
//! package before it): the `$NACL` format, read only.
//!
//! # Layout
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0      | 5    | magic `$NACL` |
//! | 5      | 24   | random XSalsa20 nonce |
//! | 29     | 16   | Poly1305 tag |
//! | 45     | n    | XSalsa20 ciphertext of the JSON key file |
//!
//! Bytes 5.. are NaCl's `crypto_secretbox` "combined" output (nonce, then tag, then
//! ciphertext). The key is Argon2i (version 0x13) of the passphrase's UTF-8 bytes with
//! libsodium's `OPSLIMIT_SENSITIVE` / `MEMLIMIT_SENSITIVE` (8 passes over 512 MiB, one
//! lane) and a salt that is the same for every file ([`NACL_SALT`]), 32 bytes out. Deriving
//! it takes a few seconds and 512 MiB of memory.
//!
//! # Telling failures apart
//!
//! The format has no length field and no checksum besides the tag, so a failed tag alone
//! cannot say whether the passphrase is wrong or the file damaged. When the tag fails,
//! [`decrypt`] also runs the cipher without it: the right key turns the ciphertext into
//! the start of a JSON key file (printable text opening with `{`), a wrong key into noise.
//! That gives [`Error::KeyfileEndsEarly`] (right passphrase, the JSON stops short: the file
//! was truncated), [`Error::KeyfileDamaged`] (right passphrase, bytes altered) and
//! [`Error::WrongPassphrase`] (noise). A damaged nonce makes noise too, so it reads as a
//! wrong passphrase.
//!
//! bittensor's two older formats, Ansible Vault (`$ANSIBLE_VAULT`) and the legacy Fernet
//! files (base64 text starting `gAAAAA`), are recognised and refused with
//! [`Error::UnsupportedEncryption`].

use std::path::Path;

use argon2::{Algorithm, Argon2, Params, Version};
use crypto_secretbox::aead::{AeadInPlace, KeyInit};
use crypto_secretbox::{Nonce, Tag, XSalsa20Poly1305};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// The first bytes of a coldkey encrypted by the Python bittensor.
pub const MAGIC: &[u8; 5] = b"$NACL";
/// The salt bittensor uses for every file.
pub const NACL_SALT: [u8; 16] = [
    0x13, 0x71, 0x83, 0xdf, 0xf1, 0x5a, 0x09, 0xbc, 0x9c, 0x90, 0xb5, 0x51, 0x87, 0x39, 0xe9, 0xb1,
];
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// The shortest `$NACL` file: magic, nonce and the tag of an empty plaintext.
pub const MIN_LEN: usize = MAGIC.len() + NONCE_LEN + TAG_LEN;
/// Key files are small; anything larger is not one.
const MAX_LEN: usize = 64 * 1024;

/// Argon2i costs of the key derivation: bittensor's files use [`SENSITIVE`]; tests and
/// fuzzing use small ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NaclKdf {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub passes: u32,
}

/// libsodium's `crypto_pwhash_argon2i` `OPSLIMIT_SENSITIVE` (8) and
/// `MEMLIMIT_SENSITIVE` (512 MiB), what bittensor uses.
pub const SENSITIVE: NaclKdf = NaclKdf {
    memory_kib: 512 * 1024,
    passes: 8,
};

fn derive_key(passphrase: &str, kdf: NaclKdf) -> Result<Zeroizing<[u8; 32]>> {
    let params = Params::new(kdf.memory_kib, kdf.passes, 1, Some(32)).map_err(|e| Error::Kdf {
        reason: e.to_string(),
    })?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2i, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), &NACL_SALT, &mut key[..])
        .map_err(|e| Error::Kdf {
            reason: e.to_string(),
        })?;
    Ok(key)
}

/// Decrypts a `$NACL` file with bittensor's key derivation. `path` only labels errors.
pub fn decrypt(bytes: &[u8], passphrase: &str, path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    decrypt_with(bytes, passphrase, path, SENSITIVE)
}

/// [`decrypt`] with the given key-derivation costs.
pub fn decrypt_with(
    bytes: &[u8],
    passphrase: &str,
    path: &Path,
    kdf: NaclKdf,
) -> Result<Zeroizing<Vec<u8>>> {
    if !bytes.starts_with(MAGIC) {
        return Err(Error::KeyfileMagic {
            path: path.to_path_buf(),
            found: crate::keyfile::show_start(bytes),
        });
    }
    if bytes.len() < MIN_LEN {
        return Err(Error::KeyfileTruncated {
            path: path.to_path_buf(),
            expected: MIN_LEN,
            got: bytes.len(),
        });
    }
    if bytes.len() > MAX_LEN {
        return Err(Error::KeyfileCorrupt {
            path: path.to_path_buf(),
            reason: format!("{} bytes is far too large for a key file", bytes.len()),
        });
    }
    let nonce = Nonce::from_slice(&bytes[MAGIC.len()..MAGIC.len() + NONCE_LEN]);
    let tag = Tag::from_slice(&bytes[MAGIC.len() + NONCE_LEN..MIN_LEN]);
    let ciphertext = &bytes[MIN_LEN..];

    let key = derive_key(passphrase, kdf)?;
    let cipher = XSalsa20Poly1305::new(key.as_ref().into());
    let mut plain = Zeroizing::new(ciphertext.to_vec());
    if cipher
        .decrypt_in_place_detached(nonce, b"", &mut plain, tag)
        .is_ok()
    {
        return Ok(plain);
    }

    // The tag failed. Encrypting zeros gives the key stream, and with it what the
    // ciphertext holds under this key, unauthenticated: used only to choose the error.
    let mut stream = Zeroizing::new(vec![0u8; ciphertext.len()]);
    cipher
        .encrypt_in_place_detached(nonce, b"", &mut stream)
        .map_err(|e| Error::Kdf {
            reason: format!("secretbox: {e}"),
        })?;
    let guess: Zeroizing<Vec<u8>> = Zeroizing::new(
        ciphertext
            .iter()
            .zip(stream.iter())
            .map(|(c, k)| c ^ k)
            .collect(),
    );
    if !looks_like_json_text(&guess) {
        return Err(Error::WrongPassphrase {
            path: path.to_path_buf(),
        });
    }
    match serde_json::from_slice::<serde::de::IgnoredAny>(&guess) {
        Err(e) if e.is_eof() => Err(Error::KeyfileEndsEarly {
            path: path.to_path_buf(),
            got: bytes.len(),
        }),
        _ => Err(Error::KeyfileDamaged {
            path: path.to_path_buf(),
        }),
    }
}

/// Whether `b` reads as (most of) a JSON text: opens with `{` and is at least 90% printable
/// ASCII. Noise from a wrong key passes with a probability far below 2^-100 for a key file
/// of any real size.
fn looks_like_json_text(b: &[u8]) -> bool {
    let printable = b
        .iter()
        .filter(|&&c| c == b'\n' || c == b'\t' || (0x20..0x7f).contains(&c))
        .count();
    b.first() == Some(&b'{') && printable * 10 >= b.len() * 9
}

/// Encrypts as bittensor does, with the given costs: only for this crate's tests, which
/// need files with known damage (the real costs take seconds per file).
#[cfg(test)]
pub(crate) fn encrypt_with(plain: &[u8], passphrase: &str, kdf: NaclKdf) -> Vec<u8> {
    let key = derive_key(passphrase, kdf).unwrap();
    let cipher = XSalsa20Poly1305::new(key.as_ref().into());
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).unwrap();
    let mut body = plain.to_vec();
    let tag = cipher
        .encrypt_in_place_detached(Nonce::from_slice(&nonce), b"", &mut body)
        .unwrap();
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&tag);
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: NaclKdf = NaclKdf {
        memory_kib: 64,
        passes: 1,
    };
    const JSON: &[u8] = br#"{"accountId":"0x00","publicKey":"0x00","ss58Address":"5x"}"#;

    fn p() -> &'static Path {
        Path::new("coldkey")
    }

    #[test]
    fn round_trip() {
        let file = encrypt_with(JSON, "pw", FAST);
        assert_eq!(file.len(), MIN_LEN + JSON.len());
        assert_eq!(
            decrypt_with(&file, "pw", p(), FAST).unwrap().as_slice(),
            JSON
        );
    }

    #[test]
    fn wrong_passphrase() {
        let file = encrypt_with(JSON, "pw", FAST);
        let e = decrypt_with(&file, "pW", p(), FAST).unwrap_err();
        assert!(matches!(e, Error::WrongPassphrase { .. }), "{e}");
    }

    #[test]
    fn short_header_is_truncated() {
        let file = encrypt_with(JSON, "pw", FAST);
        for n in MAGIC.len()..MIN_LEN {
            let e = decrypt_with(&file[..n], "pw", p(), FAST).unwrap_err();
            assert!(
                matches!(e, Error::KeyfileTruncated { got, .. } if got == n),
                "{n}: {e}"
            );
        }
    }

    #[test]
    fn cut_body_ends_early_with_the_right_passphrase_only() {
        let file = encrypt_with(JSON, "pw", FAST);
        for cut in [1, 10, JSON.len() - 1] {
            let short = &file[..file.len() - cut];
            let e = decrypt_with(short, "pw", p(), FAST).unwrap_err();
            assert!(
                matches!(e, Error::KeyfileEndsEarly { .. }),
                "cut {cut}: {e}"
            );
            let e = decrypt_with(short, "nope", p(), FAST).unwrap_err();
            assert!(matches!(e, Error::WrongPassphrase { .. }), "cut {cut}: {e}");
        }
    }

    #[test]
    fn altered_bytes_are_damage() {
        let file = encrypt_with(JSON, "pw", FAST);
        for i in [MIN_LEN - 1, MIN_LEN + 3, file.len() - 1] {
            let mut bad = file.clone();
            bad[i] ^= 0x01;
            let e = decrypt_with(&bad, "pw", p(), FAST).unwrap_err();
            assert!(matches!(e, Error::KeyfileDamaged { .. }), "byte {i}: {e}");
        }
    }

    #[test]
    fn wrong_magic() {
        let mut file = encrypt_with(JSON, "pw", FAST);
        file[1] = b'X';
        let e = decrypt_with(&file, "pw", p(), FAST).unwrap_err();
        assert!(matches!(e, Error::KeyfileMagic { .. }), "{e}");
    }

    #[test]
    fn the_salt_is_bittensors() {
        assert_eq!(
            &NACL_SALT,
            b"\x13q\x83\xdf\xf1Z\t\xbc\x9c\x90\xb5Q\x879\xe9\xb1"
        );
    }
}
