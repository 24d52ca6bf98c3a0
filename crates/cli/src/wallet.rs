//! `bt wallet`: create, list, show, restore and import wallets (coldkey + hotkeys), laid out
//! as bittensor lays them out under `~/.bittensor/wallets` (see [`bt_keys::wallet`]).
//! Wallets written by the Python bittensor load as they are (a `$NACL` coldkey takes a few
//! seconds to open: bittensor's Argon2i uses 512 MiB); `bt wallet import` copies one and can
//! re-encrypt its coldkey into this project's format.
//!
//! The coldkey passphrase is read from the environment variable [`PASSWORD_ENV`]
//! (`BT_WALLET_PASSWORD`, for scripts and tests) when it is set, otherwise from an
//! interactive prompt that does not echo.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use bt_keys::keyfile::Encryption;
use bt_keys::wallet::{self, ImportOptions, Wallet};
use clap::{Args, Subcommand};
use zeroize::Zeroizing;

/// The environment variable that, when set, supplies the coldkey passphrase instead of
/// an interactive prompt.
pub const PASSWORD_ENV: &str = "BT_WALLET_PASSWORD";

/// `bt wallet` arguments.
#[derive(Debug, Args)]
pub struct WalletArgs {
    /// The directory holding the wallets [default: ~/.bittensor/wallets].
    #[arg(long, global = true, value_name = "DIR")]
    pub wallet_dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: WalletCommand,
}

/// The `bt wallet` subcommands.
#[derive(Debug, Subcommand)]
pub enum WalletCommand {
    /// Create a wallet: a new encrypted coldkey and a hotkey, from fresh mnemonics.
    New {
        /// The wallet's name.
        #[arg(long, default_value = "default")]
        name: String,
        /// The hotkey's name.
        #[arg(long, default_value = "default")]
        hotkey: String,
        /// Mnemonic length: 12, 15, 18, 21 or 24 words.
        #[arg(long, default_value_t = 12)]
        words: usize,
        /// Replace existing key files (their keys are lost unless you kept the mnemonics).
        #[arg(long)]
        overwrite: bool,
    },
    /// Add a hotkey to an existing wallet, from a fresh mnemonic.
    NewHotkey {
        /// The wallet's name.
        #[arg(long, default_value = "default")]
        name: String,
        /// The new hotkey's name.
        #[arg(long)]
        hotkey: String,
        /// Mnemonic length: 12, 15, 18, 21 or 24 words.
        #[arg(long, default_value_t = 12)]
        words: usize,
        /// Replace an existing hotkey of that name.
        #[arg(long)]
        overwrite: bool,
    },
    /// List the wallets with their coldkey addresses and hotkeys.
    List,
    /// Show the SS58 addresses of a wallet's coldkey and hotkeys.
    Show {
        /// The wallet's name.
        #[arg(long, default_value = "default")]
        name: String,
    },
    /// Restore the coldkey (or, with --hotkey, a hotkey) from its mnemonic.
    Regen {
        /// The wallet's name.
        #[arg(long, default_value = "default")]
        name: String,
        /// Restore this hotkey instead of the coldkey.
        #[arg(long)]
        hotkey: Option<String>,
        /// The mnemonic; prompted for (without echo) when absent, which keeps it out of
        /// the shell history.
        #[arg(long)]
        mnemonic: Option<String>,
        /// Replace an existing key file.
        #[arg(long)]
        overwrite: bool,
    },
    /// Import a wallet written by the Python bittensor (`$NACL` or unencrypted coldkey, JSON
    /// hotkeys): checks the coldkey (asking its passphrase) and every hotkey, then copies
    /// them into the wallet directory, or only checks them when the wallet is already there.
    Import {
        /// The wallet's directory, e.g. `~/.bittensor/wallets/mywallet`.
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// The wallet's name here [default: the name of the --from directory].
        #[arg(long)]
        name: Option<String>,
        /// Re-encrypt the coldkey into this project's format, with the same passphrase
        /// (the Python bittensor cannot open the result; keep the original or the mnemonic).
        #[arg(long)]
        reencrypt: bool,
        /// Replace existing key files (needed to re-encrypt a wallet in place).
        #[arg(long)]
        overwrite: bool,
    },
}

/// Where secrets come from: the environment or a prompt in real use, fixed values in tests.
pub trait Secrets {
    /// The coldkey passphrase; `confirm` asks twice (for a new passphrase).
    fn passphrase(&mut self, confirm: bool) -> Result<Zeroizing<String>>;
    /// A mnemonic phrase.
    fn mnemonic(&mut self) -> Result<Zeroizing<String>>;
}

/// [`Secrets`] from `BT_WALLET_PASSWORD` or the terminal.
pub struct Terminal;

impl Secrets for Terminal {
    fn passphrase(&mut self, confirm: bool) -> Result<Zeroizing<String>> {
        if let Ok(p) = std::env::var(PASSWORD_ENV) {
            return Ok(Zeroizing::new(p));
        }
        let first = Zeroizing::new(
            rpassword::prompt_password("Coldkey passphrase: ")
                .with_context(|| format!("cannot prompt for the passphrase; set {PASSWORD_ENV}"))?,
        );
        if confirm {
            let again = Zeroizing::new(
                rpassword::prompt_password("Repeat the passphrase: ")
                    .context("cannot prompt for the passphrase")?,
            );
            if *first != *again {
                bail!("the passphrases do not match");
            }
        }
        Ok(first)
    }

    fn mnemonic(&mut self) -> Result<Zeroizing<String>> {
        Ok(Zeroizing::new(
            rpassword::prompt_password("Mnemonic: ")
                .context("cannot prompt for the mnemonic; pass --mnemonic")?,
        ))
    }
}

/// Runs `bt wallet` with secrets from the environment or the terminal, printing to stdout.
pub fn run(args: WalletArgs) -> Result<()> {
    let stdout = std::io::stdout();
    execute(args, &mut Terminal, &mut stdout.lock())
}

/// Runs `bt wallet` with the given sources of secrets and output.
pub fn execute(args: WalletArgs, secrets: &mut dyn Secrets, out: &mut dyn Write) -> Result<()> {
    let dir = match args.wallet_dir {
        Some(d) => d,
        None => wallet::default_wallet_dir()
            .context("cannot find the home directory; pass --wallet-dir")?,
    };
    match args.command {
        WalletCommand::New {
            name,
            hotkey,
            words,
            overwrite,
        } => {
            let pass = secrets.passphrase(true)?;
            let new = with_spinner("encrypting coldkey (argon2id)", || {
                Wallet::create(&dir, &name, &hotkey, words, &pass, overwrite)
            })
            .with_context(|| format!("creating wallet {name:?}"))?;
            let cold = new.wallet.coldkey_public()?;
            let hot = new.wallet.hotkey(&hotkey)?.public();
            writeln!(
                out,
                "created wallet {name:?} at {}",
                new.wallet.path().display()
            )?;
            writeln!(out, "coldkey        {cold}")?;
            writeln!(out, "hotkey {hotkey:<8}{hot}")?;
            print_mnemonic(out, "coldkey", &new.coldkey_phrase)?;
            print_mnemonic(out, &format!("hotkey {hotkey:?}"), &new.hotkey_phrase)?;
        }
        WalletCommand::NewHotkey {
            name,
            hotkey,
            words,
            overwrite,
        } => {
            let w = Wallet::open(&dir, &name)?;
            let phrase = w
                .new_hotkey(&hotkey, words, overwrite)
                .with_context(|| format!("adding hotkey {hotkey:?} to wallet {name:?}"))?;
            writeln!(out, "hotkey {hotkey:?}  {}", w.hotkey(&hotkey)?.public())?;
            print_mnemonic(out, &format!("hotkey {hotkey:?}"), &phrase)?;
        }
        WalletCommand::List => {
            let wallets = wallet::list_wallets(&dir)?;
            if wallets.is_empty() {
                writeln!(out, "no wallets in {}", dir.display())?;
            }
            for w in wallets {
                show(out, &w)?;
            }
        }
        WalletCommand::Show { name } => show(out, &Wallet::open(&dir, &name)?)?,
        WalletCommand::Regen {
            name,
            hotkey,
            mnemonic,
            overwrite,
        } => {
            let phrase = match mnemonic {
                Some(m) => Zeroizing::new(m),
                None => secrets.mnemonic()?,
            };
            match hotkey {
                Some(h) => {
                    let w = wallet::regen_hotkey(&dir, &name, &h, &phrase, overwrite)
                        .with_context(|| format!("restoring hotkey {h:?} of wallet {name:?}"))?;
                    writeln!(out, "restored hotkey {h:?}  {}", w.hotkey(&h)?.public())?;
                }
                None => {
                    // Check the phrase before asking for a passphrase.
                    bt_keys::Keypair::from_phrase(&phrase, None)?;
                    let pass = secrets.passphrase(true)?;
                    let w = with_spinner("encrypting coldkey (argon2id)", || {
                        wallet::regen_coldkey(&dir, &name, &phrase, &pass, overwrite)
                    })
                    .with_context(|| format!("restoring the coldkey of wallet {name:?}"))?;
                    writeln!(out, "restored coldkey  {}", w.coldkey_public()?)?;
                }
            }
        }
        WalletCommand::Import {
            from,
            name,
            reencrypt,
            overwrite,
        } => {
            let name = match name {
                Some(n) => n,
                None => from
                    .file_name()
                    .and_then(|n| n.to_str())
                    .map(str::to_owned)
                    .with_context(|| {
                        format!("{} has no directory name; pass --name", from.display())
                    })?,
            };
            let source = Wallet::open(
                from.parent().unwrap_or_else(|| std::path::Path::new(".")),
                from.file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default(),
            )
            .with_context(|| format!("reading the wallet in {}", from.display()))?;
            let enc = source.coldkey_encryption()?;
            let pass = if enc.needs_passphrase() || reencrypt {
                // A new passphrase (an unencrypted coldkey being encrypted) is asked twice.
                secrets.passphrase(!enc.needs_passphrase())?
            } else {
                Zeroizing::new(String::new())
            };
            let opts = ImportOptions {
                reencrypt,
                overwrite,
                ..ImportOptions::default()
            };
            let got = with_spinner(decrypting(enc), || {
                wallet::import_wallet(&from, &dir, &name, &pass, opts)
            })
            .with_context(|| format!("importing the wallet in {}", from.display()))?;
            let done = if !got.written {
                "checked (already in place)"
            } else if got.reencrypted {
                "imported, coldkey re-encrypted into this project's format"
            } else {
                "imported, coldkey copied as it was"
            };
            writeln!(
                out,
                "wallet {name:?} {done} at {}",
                got.wallet.path().display()
            )?;
            writeln!(
                out,
                "coldkey        {}  (was {})",
                got.coldkey,
                got.from.describe()
            )?;
            for (h, pk) in &got.hotkeys {
                writeln!(out, "hotkey {h:<8}{pk}")?;
            }
        }
    }
    Ok(())
}

fn show(out: &mut dyn Write, w: &Wallet) -> Result<()> {
    writeln!(out, "wallet {:?}  ({})", w.name(), w.path().display())?;
    match w.coldkey_public() {
        Ok(pk) => writeln!(out, "  coldkey            {pk}")?,
        Err(e) => writeln!(
            out,
            "  coldkey            unreadable: {}",
            crate::error_chain(&e)
        )?,
    }
    if let Ok(enc) = w.coldkey_encryption() {
        writeln!(out, "  coldkey file       {}", enc.describe())?;
    }
    for h in w.hotkey_names()? {
        match w.hotkey(&h) {
            Ok(k) => writeln!(out, "  hotkey {h:<12}{}", k.public())?,
            Err(e) => writeln!(
                out,
                "  hotkey {h:<12}unreadable: {}",
                crate::error_chain(&e)
            )?,
        }
    }
    Ok(())
}

/// Opens a wallet's coldkey in any format it may be stored in, asking for the passphrase
/// only when the file is encrypted.
pub(crate) fn open_coldkey(w: &Wallet, secrets: &mut dyn Secrets) -> Result<bt_keys::Keypair> {
    let enc = w.coldkey_encryption()?;
    let pass = if enc.needs_passphrase() {
        secrets.passphrase(false)?
    } else {
        Zeroizing::new(String::new())
    };
    with_spinner(decrypting(enc), || w.coldkey(&pass)).context("opening the coldkey")
}

fn decrypting(enc: Encryption) -> &'static str {
    match enc {
        Encryption::Nacl => "decrypting coldkey (bittensor $NACL: argon2i, 512 MiB)",
        _ => "decrypting coldkey (argon2id)",
    }
}

fn print_mnemonic(out: &mut dyn Write, what: &str, phrase: &str) -> Result<()> {
    writeln!(out)?;
    writeln!(out, "Mnemonic of the {what} (shown only this once):")?;
    writeln!(out, "    {phrase}")?;
    writeln!(
        out,
        "WARNING: write it down and keep it offline. Anyone who has it controls the key, \
         and without it a lost key cannot be restored."
    )?;
    Ok(())
}

fn with_spinner<T>(msg: &'static str, f: impl FnOnce() -> T) -> T {
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_message(msg);
    pb.enable_steady_tick(std::time::Duration::from_millis(100));
    let r = f();
    pb.finish_and_clear();
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::path::Path;

    const PASS: &str = "test passphrase";
    const DEV_PHRASE: &str =
        "bottom drive obey lake curtain smoke basket hold race lonely fit walk";
    const DEV_ROOT: &str = "5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV";

    struct Fixed(&'static str);
    impl Secrets for Fixed {
        fn passphrase(&mut self, _confirm: bool) -> Result<Zeroizing<String>> {
            Ok(Zeroizing::new(self.0.into()))
        }
        fn mnemonic(&mut self) -> Result<Zeroizing<String>> {
            Ok(Zeroizing::new(DEV_PHRASE.into()))
        }
    }

    fn bt(dir: &Path, args: &[&str]) -> Result<String> {
        let mut argv = vec!["bt", "wallet", "--wallet-dir", dir.to_str().unwrap()];
        argv.extend_from_slice(args);
        let cli = crate::Cli::try_parse_from(argv)?;
        let crate::Command::Wallet(w) = cli.command else {
            panic!("not a wallet command")
        };
        let mut out = Vec::new();
        execute(w, &mut Fixed(PASS), &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn new_show_list() {
        let dir = tempfile::tempdir().unwrap();
        let out = bt(dir.path(), &["new", "--name", "w1", "--hotkey", "h1"]).unwrap();
        assert!(out.contains("WARNING: write it down"), "{out}");
        assert!(out.contains("Mnemonic of the coldkey"), "{out}");
        let w = Wallet::open(dir.path(), "w1").unwrap();
        let cold = w.coldkey_public().unwrap().to_string();
        let hot = w.hotkey("h1").unwrap().public().to_string();
        assert!(out.contains(&cold) && out.contains(&hot), "{out}");

        let shown = bt(dir.path(), &["show", "--name", "w1"]).unwrap();
        assert!(
            shown.contains(&cold) && shown.contains(&hot) && shown.contains("h1"),
            "{shown}"
        );
        assert!(!shown.contains("Mnemonic"), "{shown}");

        let listed = bt(dir.path(), &["list"]).unwrap();
        assert!(
            listed.contains("\"w1\"") && listed.contains(&cold),
            "{listed}"
        );
    }

    #[test]
    fn new_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        bt(dir.path(), &["new"]).unwrap();
        let e = bt(dir.path(), &["new"]).unwrap_err();
        assert!(format!("{e:#}").contains("--overwrite"), "{e:#}");
    }

    #[test]
    fn regen_coldkey_and_hotkey() {
        let dir = tempfile::tempdir().unwrap();
        let out = bt(dir.path(), &["regen", "--mnemonic", DEV_PHRASE]).unwrap();
        assert!(out.contains(DEV_ROOT), "{out}");
        let out = bt(dir.path(), &["regen", "--hotkey", "h"]).unwrap(); // prompted mnemonic
        assert!(out.contains(DEV_ROOT), "{out}");
        let shown = bt(dir.path(), &["show"]).unwrap();
        assert_eq!(shown.matches(DEV_ROOT).count(), 2, "{shown}");
        assert!(bt(dir.path(), &["regen", "--mnemonic", DEV_PHRASE]).is_err());
    }

    #[test]
    fn regen_rejects_bad_mnemonic() {
        let dir = tempfile::tempdir().unwrap();
        let e = bt(dir.path(), &["regen", "--mnemonic", "one two three"]).unwrap_err();
        assert!(format!("{e:#}").contains("invalid mnemonic"), "{e:#}");
    }

    #[test]
    fn show_missing_wallet() {
        let dir = tempfile::tempdir().unwrap();
        let e = bt(dir.path(), &["show", "--name", "ghost"]).unwrap_err();
        assert!(format!("{e:#}").contains("no wallet named"), "{e:#}");
    }

    #[test]
    fn list_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(bt(dir.path(), &["list"]).unwrap().contains("no wallets"));
    }

    #[test]
    fn new_hotkey_command() {
        let dir = tempfile::tempdir().unwrap();
        bt(dir.path(), &["new"]).unwrap();
        let out = bt(
            dir.path(),
            &["new-hotkey", "--hotkey", "second", "--words", "15"],
        )
        .unwrap();
        assert!(out.contains("Mnemonic of the hotkey"), "{out}");
        assert!(bt(dir.path(), &["new-hotkey", "--hotkey", "second"]).is_err());
    }

    /// Wallets written by the Python `bittensor-wallet` (see `docs/wallets.md`).
    fn python_wallets() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../keys/tests/vectors/bittensor/wallets")
    }

    #[test]
    fn show_and_import_a_python_bittensor_wallet() {
        let py = python_wallets();
        let vectors: serde_json::Value =
            serde_json::from_slice(&std::fs::read(py.join("../vectors.json")).unwrap()).unwrap();
        let case = &vectors["wallets"][1];
        let (cold, hot) = (
            case["coldkey_ss58"].as_str().unwrap(),
            case["hotkey_ss58"].as_str().unwrap(),
        );
        let shown = bt(&py, &["show", "--name", "uri"]).unwrap();
        assert!(shown.contains(cold) && shown.contains(hot), "{shown}");
        assert!(shown.contains("$NACL"), "{shown}");
        assert!(!shown.contains("pub.txt"), "{shown}");

        let dir = tempfile::tempdir().unwrap();
        let mut argv = vec!["bt", "wallet", "--wallet-dir", dir.path().to_str().unwrap()];
        let from = py.join("uri");
        argv.extend_from_slice(&["import", "--from", from.to_str().unwrap(), "--reencrypt"]);
        let crate::Command::Wallet(w) = crate::Cli::try_parse_from(argv).unwrap().command else {
            panic!("not a wallet command")
        };
        let mut out = Vec::new();
        let password = vectors["password"].as_str().unwrap().to_owned();
        let password: &'static str = Box::leak(password.into_boxed_str());
        execute(w, &mut Fixed(password), &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains("re-encrypted") && out.contains(cold) && out.contains(hot),
            "{out}"
        );
        let shown = bt(dir.path(), &["show", "--name", "uri"]).unwrap();
        assert!(shown.contains("this project's format"), "{shown}");
        let back = Wallet::open(dir.path(), "uri")
            .unwrap()
            .coldkey(password)
            .unwrap();
        assert_eq!(back.public().to_ss58(), cold);
    }

    #[test]
    fn bad_arguments_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        assert!(bt(dir.path(), &["new", "--words", "seven"]).is_err());
        let e = bt(dir.path(), &["new", "--words", "13"]).unwrap_err();
        assert!(format!("{e:#}").contains("13 words"), "{e:#}");
        let e = bt(dir.path(), &["new", "--name", "../x"]).unwrap_err();
        assert!(format!("{e:#}").contains("invalid wallet name"), "{e:#}");
    }
}
