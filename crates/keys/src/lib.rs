//! Keys and wallets: sr25519 key pairs derived from BIP39 phrases exactly as Substrate and
//! bittensor derive them, SS58 addresses (prefix 42), signatures, and on-disk wallets.
//!
//! - [`Keypair`]: from a phrase ([`Keypair::from_phrase`]), a secret URI such as `//Alice`
//!   or `<phrase>//hard/soft` ([`Keypair::from_uri`]), a fresh random mnemonic
//!   ([`Keypair::generate`]) or a 32-byte mini secret; signs with context `b"substrate"`.
//! - [`PublicKey`]: the account id; shows and parses as an SS58 address, serializes (serde)
//!   as one, and verifies [`Signature`]s.
//! - [`wallet`]: wallets on disk as bittensor lays them out (`<name>/coldkey`, encrypted;
//!   `<name>/coldkeypub.txt`; `<name>/hotkeys/<hotkey>`), with [`wallet::Wallet`],
//!   [`wallet::list_wallets`], [`wallet::regen_coldkey`] and [`wallet::regen_hotkey`].
//! - [`keyfile`]: the JSON key-file layout and the encrypted container of the coldkey
//!   (Argon2id + XChaCha20-Poly1305, versioned, with a magic header), and
//!   [`keyfile::Encryption`], which tells the coldkey formats apart.
//! - [`nacl`]: coldkeys encrypted by the Python bittensor (`$NACL`: Argon2i + XSalsa20-Poly1305),
//!   read transparently by [`wallet::Wallet::coldkey`]; [`wallet::import_wallet`] copies a
//!   bittensor wallet and can re-encrypt its coldkey into this project's format.
//! - [`Error`] and [`Result`]: one error type for the crate.
//!
//! # Example
//! ```
//! use bt_keys::{Keypair, PublicKey};
//!
//! let alice = Keypair::from_uri("//Alice")?;
//! assert_eq!(alice.public().to_ss58(), "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY");
//!
//! let sig = alice.sign(b"transfer 10 to bob");
//! let who: PublicKey = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY".parse()?;
//! who.verify(b"transfer 10 to bob", &sig)?;
//! assert!(who.verify(b"transfer 99 to bob", &sig).is_err());
//! # Ok::<(), bt_keys::Error>(())
//! ```
//!
//! # Wallets
//!
//! ```
//! use bt_keys::wallet::{Wallet, list_wallets, regen_hotkey};
//!
//! let dir = tempfile::tempdir()?; // in real use: bt_keys::wallet::default_wallet_dir()
//! let new = Wallet::create(dir.path(), "miner", "default", 12, "a long passphrase", false)?;
//! println!("write this down: {}", &*new.coldkey_phrase);
//!
//! let w = Wallet::open(dir.path(), "miner")?;
//! let cold = w.coldkey("a long passphrase")?; // decrypts; a wrong passphrase is an error
//! assert_eq!(cold.public(), w.coldkey_public()?); // the public file needs no passphrase
//! assert!(w.coldkey("wrong").is_err());
//! let hot = w.hotkey("default")?;
//! hot.public().verify(b"weights", &hot.sign(b"weights"))?;
//!
//! // Never replaces a key unless told to; restore a hotkey from its mnemonic instead.
//! assert!(Wallet::create(dir.path(), "miner", "default", 12, "pw", false).is_err());
//! regen_hotkey(dir.path(), "miner", "backup", bt_keys::DEV_PHRASE, false)?;
//! assert_eq!(w.hotkey_names()?, ["backup", "default"]);
//! assert_eq!(list_wallets(dir.path())?.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Command line
//!
//! The `bt wallet` command (crate `bt-cli`) wraps this module:
//!
//! ```text
//! bt wallet new   [--name default] [--hotkey default] [--words 12] [--overwrite]
//! bt wallet new-hotkey --hotkey NAME [--name default] [--words 12] [--overwrite]
//! bt wallet list
//! bt wallet show  [--name default]
//! bt wallet regen [--name default] [--hotkey NAME] [--mnemonic "..."] [--overwrite]
//! bt wallet import --from DIR [--name NAME] [--reencrypt] [--overwrite]
//! ```
//!
//! Every subcommand takes `--wallet-dir DIR` (default `~/.bittensor/wallets`). `new` prints
//! each mnemonic once, with a warning to write it down. `regen` without `--hotkey` restores
//! the coldkey; without `--mnemonic` it prompts for the phrase without echo (which keeps it
//! out of the shell history). The coldkey passphrase is read from the environment variable
//! `BT_WALLET_PASSWORD` when set (for scripts and tests), otherwise from a prompt that
//! does not echo (asked twice when creating).
//!
//! # Security notes
//!
//! - The coldkey's passphrase is stretched with Argon2id (64 MiB, 3 passes, 4 lanes: RFC
//!   9106's second recommended setting) with a random 16-byte salt stored in the file; the
//!   key file is sealed with XChaCha20-Poly1305 under a random 24-byte nonce, the header as
//!   associated data. Files are written atomically with mode 0600, directories 0700.
//! - Hotkeys are stored unencrypted, as in bittensor's default: they sign routine traffic
//!   and must be usable by an unattended neuron. Do not stake through a hotkey.
//! - Secrets are wiped from memory when dropped (`zeroize`), and `Debug` never prints one.
//! - The encrypted container is this project's own format. A coldkey encrypted by the
//!   Python bittensor (`$NACL`) is read as it is, with bittensor's own parameters (Argon2i,
//!   512 MiB, 8 passes, a salt fixed for all files: a few seconds per opening); its older
//!   Ansible Vault and Fernet formats are refused with their own error. `bt wallet import
//!   --reencrypt` moves a coldkey to this project's container (a random salt, and a
//!   checksum that tells damage from a wrong passphrase). Unencrypted JSON key files
//!   (hotkeys, `coldkeypub.txt`) are interchangeable.

// Tests may unwrap: a panic there is a failed test.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod error;
pub mod keyfile;
pub mod keypair;
pub mod nacl;
pub mod public;
pub mod wallet;

pub use error::{Error, Result};
pub use keypair::{DEV_PHRASE, Keypair, WORD_COUNTS};
pub use public::{PublicKey, SIGNING_CONTEXT, SS58_PREFIX, Signature, verify_batch};
