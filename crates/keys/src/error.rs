//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong with keys, addresses, signatures and wallets.
///
/// Variants never carry secrets (phrases, passphrases, seeds): only the facts needed to
/// understand what was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The phrase is not a valid English BIP39 mnemonic.
    #[error("invalid mnemonic phrase: {reason}")]
    InvalidPhrase {
        /// What the BIP39 parser rejected (unknown word, bad checksum, word count).
        reason: String,
    },
    /// A mnemonic of an unsupported length was requested.
    #[error("unsupported mnemonic length: {got} words (expected 12, 15, 18, 21 or 24)")]
    WordCount {
        /// The number of words requested.
        got: usize,
    },
    /// A secret URI (`<phrase>//hard/soft///password`) is malformed.
    #[error("invalid secret URI: {reason}")]
    InvalidUri {
        /// Which part is malformed.
        reason: String,
    },
    /// A hexadecimal seed (`0x…`) in a secret URI or key file is malformed.
    #[error("invalid hex seed: expected {expected} bytes as 0x-prefixed hex, {reason}")]
    InvalidSeed {
        /// The expected length in bytes.
        expected: usize,
        /// What is wrong with it.
        reason: String,
    },

    /// An SS58 address is not valid base58.
    #[error("invalid SS58 address: not base58: {reason}")]
    Ss58Base58 {
        /// The base58 decoder's message.
        reason: String,
    },
    /// An SS58 address decodes to the wrong number of bytes.
    #[error("invalid SS58 address: decodes to {got} bytes, expected {expected}")]
    Ss58Length {
        /// Bytes expected for a 32-byte account with this prefix.
        expected: usize,
        /// Bytes decoded.
        got: usize,
    },
    /// An SS58 address's checksum does not match its content (a typo, most likely).
    #[error("invalid SS58 address: checksum mismatch")]
    Ss58Checksum,
    /// An SS58 address is for another network.
    #[error("SS58 address has network prefix {got}, expected {expected}")]
    Ss58Prefix {
        /// The prefix this network uses.
        expected: u16,
        /// The prefix found.
        got: u16,
    },
    /// An SS58 address starts with a reserved prefix byte.
    #[error("invalid SS58 address: reserved prefix byte {byte}")]
    Ss58ReservedPrefix {
        /// The first decoded byte.
        byte: u8,
    },

    /// 32 bytes that are not a valid compressed Ristretto point.
    #[error("invalid public key: not a valid sr25519 (Ristretto) point")]
    InvalidPublicKey,
    /// A signature of the wrong length.
    #[error("invalid signature encoding: {got} bytes, expected {expected}")]
    SignatureLength {
        /// Always 64.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// 64 bytes that are not an sr25519 signature (no schnorrkel marker bit, or a
    /// non-canonical scalar).
    #[error("invalid signature encoding: {reason}")]
    SignatureEncoding {
        /// What schnorrkel rejected.
        reason: String,
    },
    /// The signature does not verify for this message and public key.
    #[error("bad signature: does not verify for this message and public key")]
    BadSignature,

    /// A file-system operation failed.
    #[error("cannot {op} {path}")]
    Io {
        /// What was being done ("read", "write", "create directory", ...).
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error (the cause in the chain, not repeated in this message).
        #[source]
        source: std::io::Error,
    },
    /// A wallet or hotkey name that cannot be used as a file name.
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        /// "wallet" or "hotkey".
        kind: &'static str,
        /// The rejected name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// The wallet directory has no wallet of this name.
    #[error("no wallet named {name:?} at {path}")]
    WalletNotFound {
        /// The wallet's name.
        name: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A key file that should exist does not.
    #[error("no {what} at {path}")]
    KeyNotFound {
        /// "coldkey", "coldkey public file" or "hotkey".
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// Refused to replace a key file (pass `overwrite` to replace it).
    #[error("{path} already exists; refusing to overwrite it without --overwrite")]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// The passphrase does not decrypt the coldkey.
    #[error("wrong passphrase for {path}")]
    WrongPassphrase {
        /// The encrypted key file.
        path: PathBuf,
    },
    /// An empty passphrase was given for encryption.
    #[error("the coldkey passphrase must not be empty")]
    EmptyPassphrase,
    /// A key file is shorter than its format requires.
    #[error("{path} is truncated: {got} bytes, at least {expected} needed")]
    KeyfileTruncated {
        /// The key file.
        path: PathBuf,
        /// Minimum length.
        expected: usize,
        /// Actual length.
        got: usize,
    },
    /// A key file is damaged or not a key file of ours.
    #[error("{path} is corrupted: {reason}")]
    KeyfileCorrupt {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A key file that starts with none of the formats this build reads.
    #[error(
        "{path} is not a key file this build reads: it starts with \"{found}\" \
         (expected BTKEYENC, $NACL or a JSON key file)"
    )]
    KeyfileMagic {
        /// The file.
        path: PathBuf,
        /// Its first bytes, escaped.
        found: String,
    },
    /// A coldkey encrypted with one of bittensor's older formats, which this build does
    /// not read.
    #[error(
        "{path} is encrypted with bittensor's {method} format, which this build does not \
         read: re-save it with a current Python bittensor (which writes $NACL), or restore \
         the key here from its mnemonic with `bt wallet regen`"
    )]
    UnsupportedEncryption {
        /// The file.
        path: PathBuf,
        /// "Ansible Vault" or "legacy (Fernet)".
        method: &'static str,
    },
    /// The passphrase is right but the encrypted key inside ends early: the file was cut.
    #[error(
        "{path} is truncated ({got} bytes): the passphrase is right but the key inside ends early"
    )]
    KeyfileEndsEarly {
        /// The file.
        path: PathBuf,
        /// Its length.
        got: usize,
    },
    /// The passphrase is right but bytes of the encrypted key were altered.
    #[error(
        "{path} is damaged: the passphrase is right but the encrypted key was altered \
         (its authentication tag does not match)"
    )]
    KeyfileDamaged {
        /// The file.
        path: PathBuf,
    },
    /// A key file (or what an encrypted one holds) is not the JSON key-file layout.
    #[error("{path} does not hold a JSON key file: {reason}")]
    KeyfileJson {
        /// The file.
        path: PathBuf,
        /// What the JSON parser rejected.
        reason: String,
    },
    /// A bittensor key file of a key type other than sr25519.
    #[error("{path} holds a key of crypto type {got}; only sr25519 (crypto type 1) is supported")]
    UnsupportedCryptoType {
        /// The file.
        path: PathBuf,
        /// The `cryptoType` field.
        got: u64,
    },
    /// A wallet's coldkey and its public file name different keys.
    #[error("{path} gives {file}, but the coldkey is {key}")]
    PublicMismatch {
        /// The public key file.
        path: PathBuf,
        /// The key it names.
        file: crate::PublicKey,
        /// The key the coldkey holds.
        key: crate::PublicKey,
    },
    /// An encrypted key file of a format version this build cannot read.
    #[error("{path} has format version {got}; this build reads version {expected}")]
    KeyfileVersion {
        /// The key file.
        path: PathBuf,
        /// The version this build writes and reads.
        expected: u8,
        /// The version found.
        got: u8,
    },
    /// Argon2 refused its parameters or failed (at encryption; a file's bad parameters are
    /// [`Error::KeyfileCorrupt`]).
    #[error("key derivation (argon2id) failed: {reason}")]
    Kdf {
        /// Argon2's message.
        reason: String,
    },
    /// Sealing a key file failed.
    #[error("encryption failed: {reason}")]
    Encrypt {
        /// Why.
        reason: String,
    },
    /// The secure random number generator failed.
    #[error("operating-system random number generator failed: {0}")]
    Random(String),
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
