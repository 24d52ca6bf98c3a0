//! Wallets on disk, laid out as bittensor lays them out:
//!
//! ```text
//! <wallet-dir>/<name>/coldkey             encrypted (see [`crate::keyfile`]), mode 0600
//! <wallet-dir>/<name>/coldkeypub.txt      public JSON key file, mode 0600
//! <wallet-dir>/<name>/hotkeys/<hotkey>    unencrypted JSON key file, mode 0600
//! ```
//!
//! Wallets written by the Python bittensor load as they are: a `$NACL` coldkey (see
//! [`crate::nacl`]) or an unencrypted one, its JSON hotkeys, and the public
//! `hotkeys/<hotkey>pub.txt` files that recent versions add (skipped when listing hotkeys).
//! [`import_wallet`] copies such a wallet, optionally re-encrypting the coldkey into this
//! project's format.
//!
//! Directories are created with mode 0700. The coldkey holds stake and funds, so it is
//! encrypted with a passphrase; hotkeys sign routine work (weights, requests) and are
//! stored in the clear, as bittensor does by default. No function here replaces an
//! existing key file unless told to (`overwrite`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::keyfile::{self, Encryption, KdfParams, KeyfileJson};
use crate::keypair::Keypair;
use crate::public::PublicKey;

/// The file name of the encrypted coldkey inside a wallet.
pub const COLDKEY_FILE: &str = "coldkey";
/// The file name of the coldkey's public key file inside a wallet.
pub const COLDKEYPUB_FILE: &str = "coldkeypub.txt";
/// The directory of hotkeys inside a wallet.
pub const HOTKEYS_DIR: &str = "hotkeys";

/// The default wallet directory, `~/.bittensor/wallets`, as bittensor uses; `None` if the
/// home directory is unknown.
pub fn default_wallet_dir() -> Option<PathBuf> {
    dirs::home_dir().map(|h| h.join(".bittensor").join("wallets"))
}

/// A wallet: a named directory with one coldkey and any number of named hotkeys.
#[derive(Clone, Debug)]
pub struct Wallet {
    name: String,
    path: PathBuf,
}

/// A freshly created wallet and the mnemonics of its keys, to show the user once.
#[derive(Debug)]
pub struct NewWallet {
    /// The wallet.
    pub wallet: Wallet,
    /// The coldkey's mnemonic: the only way to recover the coldkey.
    pub coldkey_phrase: Zeroizing<String>,
    /// The hotkey's mnemonic.
    pub hotkey_phrase: Zeroizing<String>,
}

impl Wallet {
    /// Creates wallet `name` under `wallet_dir` with a new coldkey (encrypted with
    /// `passphrase`) and a new hotkey `hotkey`, from fresh `words`-word mnemonics.
    /// Fails with [`Error::AlreadyExists`] if any of the key files exists, unless
    /// `overwrite`; in that case nothing is written.
    pub fn create(
        wallet_dir: &Path,
        name: &str,
        hotkey: &str,
        words: usize,
        passphrase: &str,
        overwrite: bool,
    ) -> Result<NewWallet> {
        let wallet = Wallet::at(wallet_dir, name)?;
        check_name("hotkey", hotkey)?;
        if passphrase.is_empty() {
            return Err(Error::EmptyPassphrase);
        }
        if !overwrite {
            for p in [
                wallet.coldkey_path(),
                wallet.coldkeypub_path(),
                wallet.hotkey_path(hotkey),
            ] {
                refuse_existing(&p)?;
            }
        }
        let (cold, cold_phrase) = Keypair::generate(words)?;
        let (hot, hot_phrase) = Keypair::generate(words)?;
        let cold_phrase = Zeroizing::new(cold_phrase);
        let hot_phrase = Zeroizing::new(hot_phrase);
        wallet.write_coldkey(
            &cold,
            Some(&cold_phrase),
            passphrase,
            KdfParams::default(),
            overwrite,
        )?;
        wallet.write_hotkey(hotkey, &hot, Some(&hot_phrase), overwrite)?;
        Ok(NewWallet {
            wallet,
            coldkey_phrase: cold_phrase,
            hotkey_phrase: hot_phrase,
        })
    }

    /// Opens an existing wallet: its directory must exist and hold a coldkey or a
    /// coldkey public file.
    pub fn open(wallet_dir: &Path, name: &str) -> Result<Wallet> {
        let wallet = Wallet::at(wallet_dir, name)?;
        if !wallet.coldkey_path().exists() && !wallet.coldkeypub_path().exists() {
            return Err(Error::WalletNotFound {
                name: name.to_owned(),
                path: wallet.path,
            });
        }
        Ok(wallet)
    }

    /// The wallet at `wallet_dir/name`, whether or not it exists yet.
    fn at(wallet_dir: &Path, name: &str) -> Result<Wallet> {
        check_name("wallet", name)?;
        Ok(Wallet {
            name: name.to_owned(),
            path: wallet_dir.join(name),
        })
    }

    /// The wallet's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The wallet's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of the encrypted coldkey.
    pub fn coldkey_path(&self) -> PathBuf {
        self.path.join(COLDKEY_FILE)
    }

    /// The path of the coldkey's public key file.
    pub fn coldkeypub_path(&self) -> PathBuf {
        self.path.join(COLDKEYPUB_FILE)
    }

    /// The path of hotkey `name` (not checked).
    pub fn hotkey_path(&self, name: &str) -> PathBuf {
        self.path.join(HOTKEYS_DIR).join(name)
    }

    /// Decrypts the coldkey, in this project's format or bittensor's `$NACL` (or reads it,
    /// if bittensor stored it unencrypted; the passphrase is then ignored).
    /// [`Error::WrongPassphrase`] if the passphrase is wrong; [`Error::KeyfileTruncated`],
    /// [`Error::KeyfileEndsEarly`], [`Error::KeyfileDamaged`], [`Error::KeyfileCorrupt`],
    /// [`Error::KeyfileMagic`] or [`Error::KeyfileJson`] if the file is damaged.
    pub fn coldkey(&self, passphrase: &str) -> Result<Keypair> {
        let (json, path) = self.coldkey_json(passphrase)?;
        json.keypair(&path)
    }

    fn coldkey_json(&self, passphrase: &str) -> Result<(KeyfileJson, PathBuf)> {
        let path = self.coldkey_path();
        let bytes = read_key_file(&path, "coldkey")?;
        let plain = keyfile::open(&bytes, passphrase, &path)?;
        Ok((KeyfileJson::from_bytes(&plain, &path)?, path))
    }

    /// How the coldkey file is stored (whether opening it needs a passphrase, and which
    /// format), from its first bytes.
    pub fn coldkey_encryption(&self) -> Result<Encryption> {
        let path = self.coldkey_path();
        let bytes = read_key_file(&path, "coldkey")?;
        Encryption::detect(&bytes, &path)
    }

    /// The coldkey's public key, from `coldkeypub.txt` (no passphrase needed).
    pub fn coldkey_public(&self) -> Result<PublicKey> {
        let path = self.coldkeypub_path();
        let bytes = read_key_file(&path, "coldkey public file")?;
        KeyfileJson::from_bytes(&bytes, &path)?.public_key(&path)
    }

    /// Loads hotkey `name`.
    pub fn hotkey(&self, name: &str) -> Result<Keypair> {
        check_name("hotkey", name)?;
        let path = self.hotkey_path(name);
        let bytes = Zeroizing::new(read_key_file(&path, "hotkey")?);
        KeyfileJson::from_bytes(&bytes, &path)?.keypair(&path)
    }

    /// The hotkeys' names, sorted (an empty list if the wallet has no hotkeys directory).
    pub fn hotkey_names(&self) -> Result<Vec<String>> {
        let dir = self.path.join(HOTKEYS_DIR);
        let mut names = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(names),
            Err(source) => {
                return Err(Error::Io {
                    op: "list",
                    path: dir,
                    source,
                });
            }
        };
        for entry in entries {
            let entry = entry.map_err(|source| Error::Io {
                op: "list",
                path: dir.clone(),
                source,
            })?;
            let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
            if let (true, Some(name)) = (is_file, entry.file_name().to_str())
                && check_name("hotkey", name).is_ok()
            {
                names.push(name.to_owned());
            }
        }
        // bittensor-wallet 4 keeps `<hotkey>pub.txt` beside each hotkey: not a hotkey.
        let public_files: Vec<String> = names
            .iter()
            .filter(|n| {
                n.strip_suffix("pub.txt")
                    .is_some_and(|stem| names.iter().any(|m| m == stem))
            })
            .cloned()
            .collect();
        names.retain(|n| !public_files.contains(n));
        names.sort();
        Ok(names)
    }

    /// Adds a new hotkey from a fresh `words`-word mnemonic; returns the mnemonic.
    pub fn new_hotkey(
        &self,
        name: &str,
        words: usize,
        overwrite: bool,
    ) -> Result<Zeroizing<String>> {
        check_name("hotkey", name)?;
        if !overwrite {
            refuse_existing(&self.hotkey_path(name))?;
        }
        let (pair, phrase) = Keypair::generate(words)?;
        let phrase = Zeroizing::new(phrase);
        self.write_hotkey(name, &pair, Some(&phrase), overwrite)?;
        Ok(phrase)
    }

    fn write_coldkey(
        &self,
        pair: &Keypair,
        phrase: Option<&str>,
        passphrase: &str,
        params: KdfParams,
        overwrite: bool,
    ) -> Result<()> {
        let json = KeyfileJson::secret(pair, phrase).to_bytes();
        let sealed = keyfile::encrypt(&json, passphrase, params)?;
        make_private_dir(&self.path)?;
        write_private(&self.coldkey_path(), &sealed, overwrite)?;
        let public = KeyfileJson::public(&pair.public()).to_bytes();
        write_private(&self.coldkeypub_path(), &public, overwrite)
    }

    fn write_hotkey(
        &self,
        name: &str,
        pair: &Keypair,
        phrase: Option<&str>,
        overwrite: bool,
    ) -> Result<()> {
        make_private_dir(&self.path.join(HOTKEYS_DIR))?;
        let json = KeyfileJson::secret(pair, phrase).to_bytes();
        write_private(&self.hotkey_path(name), &json, overwrite)
    }

    /// The mnemonic stored with hotkey `name`, if it was created from one.
    pub fn hotkey_phrase(&self, name: &str) -> Result<Option<Zeroizing<String>>> {
        check_name("hotkey", name)?;
        let path = self.hotkey_path(name);
        let bytes = Zeroizing::new(read_key_file(&path, "hotkey")?);
        let json = KeyfileJson::from_bytes(&bytes, &path)?;
        Ok(json.phrase().map(|p| Zeroizing::new(p.to_owned())))
    }
}

/// The wallets under `wallet_dir` (directories holding a coldkey or a coldkey public
/// file), sorted by name; an empty list if `wallet_dir` does not exist.
pub fn list_wallets(wallet_dir: &Path) -> Result<Vec<Wallet>> {
    let entries = match fs::read_dir(wallet_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Io {
                op: "list",
                path: wallet_dir.to_path_buf(),
                source,
            });
        }
    };
    let mut wallets = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::Io {
            op: "list",
            path: wallet_dir.to_path_buf(),
            source,
        })?;
        if let Some(name) = entry.file_name().to_str()
            && let Ok(w) = Wallet::open(wallet_dir, name)
        {
            wallets.push(w);
        }
    }
    wallets.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(wallets)
}

/// Restores the coldkey of wallet `name` from its mnemonic, encrypting it with
/// `passphrase`; creates the wallet if needed. Refuses to replace an existing coldkey
/// unless `overwrite`.
pub fn regen_coldkey(
    wallet_dir: &Path,
    name: &str,
    mnemonic: &str,
    passphrase: &str,
    overwrite: bool,
) -> Result<Wallet> {
    regen_coldkey_with(
        wallet_dir,
        name,
        mnemonic,
        passphrase,
        overwrite,
        KdfParams::default(),
    )
}

/// [`regen_coldkey`] with explicit Argon2id costs (for tools that must be fast, such as
/// tests; the default is [`KdfParams::default`]).
pub fn regen_coldkey_with(
    wallet_dir: &Path,
    name: &str,
    mnemonic: &str,
    passphrase: &str,
    overwrite: bool,
    params: KdfParams,
) -> Result<Wallet> {
    let wallet = Wallet::at(wallet_dir, name)?;
    if passphrase.is_empty() {
        return Err(Error::EmptyPassphrase);
    }
    if !overwrite {
        refuse_existing(&wallet.coldkey_path())?;
        refuse_existing(&wallet.coldkeypub_path())?;
    }
    let pair = Keypair::from_phrase(mnemonic, None)?;
    wallet.write_coldkey(&pair, Some(mnemonic), passphrase, params, overwrite)?;
    Ok(wallet)
}

/// How [`import_wallet`] writes. The default copies, replaces nothing, and would
/// re-encrypt with [`KdfParams::default`].
#[derive(Clone, Copy, Debug, Default)]
pub struct ImportOptions {
    /// Re-encrypt the coldkey into this project's format (the Python bittensor can then no
    /// longer open the copy); otherwise the coldkey file is copied byte for byte.
    pub reencrypt: bool,
    /// Replace existing key files at the destination (needed to re-encrypt in place).
    pub overwrite: bool,
    /// Argon2id costs when re-encrypting.
    pub params: KdfParams,
}

/// What [`import_wallet`] found and did.
#[derive(Debug)]
pub struct Imported {
    /// The wallet at the destination.
    pub wallet: Wallet,
    /// The coldkey's address (checked against the source's `coldkeypub.txt` when present).
    pub coldkey: PublicKey,
    /// The hotkeys' names and addresses, sorted by name.
    pub hotkeys: Vec<(String, PublicKey)>,
    /// How the source's coldkey was stored.
    pub from: Encryption,
    /// Whether the coldkey was re-encrypted into this project's format.
    pub reencrypted: bool,
    /// Whether anything was written (not when importing a wallet onto itself without
    /// re-encrypting: it is only checked).
    pub written: bool,
}

/// Imports the wallet in directory `source` (one written by the Python bittensor, or by
/// this project) as wallet `name` under `wallet_dir`: opens the coldkey with `passphrase`
/// (ignored if it is not encrypted), checks it against `coldkeypub.txt`, loads every
/// hotkey, then writes the coldkey (copied, or re-encrypted with the same passphrase when
/// `opts.reencrypt`), a fresh `coldkeypub.txt` and the hotkey files (copied). Checks
/// everything before writing anything; refuses to replace existing files unless
/// `opts.overwrite`.
pub fn import_wallet(
    source: &Path,
    wallet_dir: &Path,
    name: &str,
    passphrase: &str,
    opts: ImportOptions,
) -> Result<Imported> {
    let src = Wallet {
        name: source
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned(),
        path: source.to_path_buf(),
    };
    let from = src.coldkey_encryption()?;
    let names = src.hotkey_names()?;
    let dst = Wallet::at(wallet_dir, name)?;
    let same = match (fs::canonicalize(&src.path), fs::canonicalize(&dst.path)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    let write = !same || opts.reencrypt;
    // Refuse before the (slow) decryption.
    if write && !opts.overwrite {
        refuse_existing(&dst.coldkey_path())?;
        if !same {
            refuse_existing(&dst.coldkeypub_path())?;
            for h in &names {
                refuse_existing(&dst.hotkey_path(h))?;
            }
        }
    }
    if opts.reencrypt && passphrase.is_empty() {
        return Err(Error::EmptyPassphrase);
    }

    let (json, cold_path) = src.coldkey_json(passphrase)?;
    let pair = json.keypair(&cold_path)?;
    if src.coldkeypub_path().exists() {
        let file = src.coldkey_public()?;
        if file != pair.public() {
            return Err(Error::PublicMismatch {
                path: src.coldkeypub_path(),
                file,
                key: pair.public(),
            });
        }
    }
    let mut hotkeys = Vec::new();
    let mut hotkey_files = Vec::new();
    for h in names {
        let key = src.hotkey(&h)?;
        hotkeys.push((h.clone(), key.public()));
        let bytes = Zeroizing::new(read_key_file(&src.hotkey_path(&h), "hotkey")?);
        hotkey_files.push((h, bytes));
    }
    let mut imported = Imported {
        wallet: dst.clone(),
        coldkey: pair.public(),
        hotkeys,
        from,
        reencrypted: false,
        written: false,
    };
    if !write {
        return Ok(imported);
    }
    if opts.reencrypt {
        dst.write_coldkey(
            &pair,
            json.phrase(),
            passphrase,
            opts.params,
            opts.overwrite,
        )?;
        imported.reencrypted = true;
    } else {
        make_private_dir(&dst.path)?;
        let bytes = Zeroizing::new(read_key_file(&cold_path, "coldkey")?);
        write_private(&dst.coldkey_path(), &bytes, opts.overwrite)?;
        let public = KeyfileJson::public(&pair.public()).to_bytes();
        write_private(&dst.coldkeypub_path(), &public, opts.overwrite)?;
    }
    if !same {
        make_private_dir(&dst.path.join(HOTKEYS_DIR))?;
        for (h, bytes) in &hotkey_files {
            write_private(&dst.hotkey_path(h), bytes, opts.overwrite)?;
        }
    }
    imported.written = true;
    Ok(imported)
}

/// Restores hotkey `hotkey` of wallet `name` from its mnemonic; creates the wallet
/// directory if needed. Refuses to replace an existing hotkey unless `overwrite`.
pub fn regen_hotkey(
    wallet_dir: &Path,
    name: &str,
    hotkey: &str,
    mnemonic: &str,
    overwrite: bool,
) -> Result<Wallet> {
    let wallet = Wallet::at(wallet_dir, name)?;
    check_name("hotkey", hotkey)?;
    if !overwrite {
        refuse_existing(&wallet.hotkey_path(hotkey))?;
    }
    let pair = Keypair::from_phrase(mnemonic, None)?;
    wallet.write_hotkey(hotkey, &pair, Some(mnemonic), overwrite)?;
    Ok(wallet)
}

/// Wallet and hotkey names become file names: 1 to 64 characters of ASCII letters,
/// digits, `-`, `_` and `.`, not starting with `.`.
fn check_name(kind: &'static str, name: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidName {
            kind,
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() || name.len() > 64 {
        return bad("must be 1 to 64 characters");
    }
    if name.starts_with('.') {
        return bad("must not start with '.'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return bad("may hold only ASCII letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

fn refuse_existing(path: &Path) -> Result<()> {
    if path.exists() {
        return Err(Error::AlreadyExists {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

fn read_key_file(path: &Path, what: &'static str) -> Result<Vec<u8>> {
    // Key files are a few hundred bytes; refuse to slurp something huge by mistake.
    const MAX: u64 = 1 << 20;
    match fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::KeyNotFound {
                what,
                path: path.to_path_buf(),
            });
        }
        Err(source) => {
            return Err(Error::Io {
                op: "read",
                path: path.to_path_buf(),
                source,
            });
        }
        Ok(m) if m.len() > MAX => {
            return Err(Error::KeyfileCorrupt {
                path: path.to_path_buf(),
                reason: format!("{} bytes is far too large for a key file", m.len()),
            });
        }
        Ok(_) => {}
    }
    fs::read(path).map_err(|source| Error::Io {
        op: "read",
        path: path.to_path_buf(),
        source,
    })
}

fn make_private_dir(dir: &Path) -> Result<()> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir).map_err(|source| Error::Io {
        op: "create directory",
        path: dir.to_path_buf(),
        source,
    })
}

/// Writes a key file with mode 0600 atomically: a new temporary file beside it, synced,
/// then renamed over the target (so a crash leaves the old key or the new one, never half).
fn write_private(path: &Path, bytes: &[u8], overwrite: bool) -> Result<()> {
    if !overwrite {
        refuse_existing(path)?;
    }
    let io = |op, source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    };
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("key");
    let mut tag = [0u8; 8];
    getrandom::fill(&mut tag).map_err(|e| Error::Random(e.to_string()))?;
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{:016x}", u64::from_le_bytes(tag)));
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let result = (|| {
        let mut f = opts.open(&tmp).map_err(|e| io("create", e))?;
        f.write_all(bytes).map_err(|e| io("write", e))?;
        f.sync_all().map_err(|e| io("sync", e))?;
        if overwrite {
            fs::rename(&tmp, path).map_err(|e| io("replace", e))
        } else {
            // A hard link fails if the target appeared meanwhile: no silent replacement.
            fs::hard_link(&tmp, path).map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => Error::AlreadyExists {
                    path: path.to_path_buf(),
                },
                _ => io("create", e),
            })
        }
    })();
    let _ = fs::remove_file(&tmp);
    result?;
    if let Some(parent) = path.parent()
        && let Ok(dir) = fs::File::open(parent)
    {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["default", "my-wallet_2", "a.b", "x"] {
            check_name("wallet", ok).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "a\\b",
            "a b",
            "é",
            &"x".repeat(65),
        ] {
            assert!(
                matches!(check_name("wallet", bad), Err(Error::InvalidName { .. })),
                "{bad:?}"
            );
        }
    }
}
