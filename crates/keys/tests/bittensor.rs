//! Wallets written by the Python `bittensor-wallet` package (the files in
//! `tests/vectors/bittensor/`, made by `scripts/wallet-vectors.sh`): `$NACL` coldkeys,
//! JSON hotkeys and public files load, give the addresses the package computed, and each
//! kind of damage has its own error. Each opening of a `$NACL` coldkey derives its key with
//! bittensor's Argon2i (512 MiB, 8 passes), so these tests open as few as they can.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

use bt_keys::Error;
use bt_keys::keyfile::{Encryption, KdfParams};
use bt_keys::wallet::{ImportOptions, Wallet, import_wallet, list_wallets};

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/bittensor")
}

struct Case {
    name: String,
    coldkey: String,
    hotkey: String,
    hotkey_ss58: String,
}

fn cases() -> (String, Vec<Case>) {
    let v: serde_json::Value =
        serde_json::from_slice(&fs::read(vectors().join("vectors.json")).unwrap()).unwrap();
    assert_eq!(v["package"], "bittensor-wallet");
    let s = |x: &serde_json::Value| x.as_str().unwrap().to_owned();
    let cases = v["wallets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| Case {
            name: s(&w["name"]),
            coldkey: s(&w["coldkey_ss58"]),
            hotkey: s(&w["hotkey"]),
            hotkey_ss58: s(&w["hotkey_ss58"]),
        })
        .collect();
    (s(&v["password"]), cases)
}

/// A copy of the vector wallets, to damage.
fn copy_wallets() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fn copy(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for e in fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                copy(&e.path(), &to.join(e.file_name()));
            } else {
                fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }
    copy(&vectors().join("wallets"), dir.path());
    dir
}

#[test]
fn python_wallets_load_with_the_addresses_bittensor_computed() {
    let (password, cases) = cases();
    let dir = vectors().join("wallets");
    assert_eq!(list_wallets(&dir).unwrap().len(), cases.len());
    for c in &cases {
        let w = Wallet::open(&dir, &c.name).unwrap();
        assert_eq!(w.coldkey_encryption().unwrap(), Encryption::Nacl);
        assert_eq!(w.coldkey_public().unwrap().to_ss58(), c.coldkey);
        // `<hotkey>pub.txt` beside the hotkey is not listed as a hotkey.
        assert_eq!(w.hotkey_names().unwrap(), std::slice::from_ref(&c.hotkey));
        let hot = w.hotkey(&c.hotkey).unwrap();
        assert_eq!(hot.public().to_ss58(), c.hotkey_ss58);
        // The decrypted coldkey signs, and its address is the one bittensor computed.
        let cold = w.coldkey(&password).unwrap();
        assert_eq!(cold.public().to_ss58(), c.coldkey, "{}", c.name);
        cold.public().verify(b"x", &cold.sign(b"x")).unwrap();
    }
}

#[test]
fn wrong_passphrase_is_its_own_error() {
    let (password, cases) = cases();
    let w = Wallet::open(&vectors().join("wallets"), &cases[0].name).unwrap();
    let e = w.coldkey(&format!("{password}!")).unwrap_err();
    assert!(matches!(e, Error::WrongPassphrase { .. }), "{e}");
}

#[test]
fn damage_that_needs_no_key_derivation() {
    let (password, cases) = cases();
    let dir = copy_wallets();
    let w = Wallet::open(dir.path(), &cases[0].name).unwrap();
    let original = fs::read(w.coldkey_path()).unwrap();

    // Cut inside the nonce or tag: truncated, before any key is derived.
    fs::write(w.coldkey_path(), &original[..30]).unwrap();
    let e = w.coldkey(&password).unwrap_err();
    assert!(
        matches!(
            e,
            Error::KeyfileTruncated {
                got: 30,
                expected: 45,
                ..
            }
        ),
        "{e}"
    );
    fs::write(w.coldkey_path(), b"").unwrap();
    let e = w.coldkey(&password).unwrap_err();
    assert!(matches!(e, Error::KeyfileTruncated { got: 0, .. }), "{e}");

    // Another magic: not a key file this build reads.
    let mut bad = original.clone();
    bad[..5].copy_from_slice(b"$NACK");
    fs::write(w.coldkey_path(), &bad).unwrap();
    let e = w.coldkey(&password).unwrap_err();
    assert!(
        matches!(e, Error::KeyfileMagic { ref found, .. } if found.starts_with("$NACK")),
        "{e}"
    );

    // bittensor's older formats are named.
    fs::write(w.coldkey_path(), b"$ANSIBLE_VAULT;1.1;AES256\n3132").unwrap();
    let e = w.coldkey(&password).unwrap_err();
    assert!(
        matches!(
            e,
            Error::UnsupportedEncryption {
                method: "Ansible Vault",
                ..
            }
        ),
        "{e}"
    );

    // Bad JSON in a hotkey and in the public file.
    fs::write(w.hotkey_path(&cases[0].hotkey), b"{\"accountId\": \"0x12").unwrap();
    let e = w.hotkey(&cases[0].hotkey).unwrap_err();
    assert!(matches!(e, Error::KeyfileJson { .. }), "{e}");
    fs::write(w.coldkeypub_path(), b"not json").unwrap();
    let e = w.coldkey_public().unwrap_err();
    assert!(matches!(e, Error::KeyfileJson { .. }), "{e}");
}

#[test]
fn a_cut_or_altered_coldkey_is_damage_not_a_wrong_passphrase() {
    let (password, cases) = cases();
    let dir = copy_wallets();
    let w = Wallet::open(dir.path(), &cases[1].name).unwrap();
    let original = fs::read(w.coldkey_path()).unwrap();

    fs::write(w.coldkey_path(), &original[..original.len() - 20]).unwrap();
    let e = w.coldkey(&password).unwrap_err();
    assert!(matches!(e, Error::KeyfileEndsEarly { .. }), "{e}");

    let mut bad = original.clone();
    let i = original.len() - 30;
    bad[i] ^= 0x04;
    fs::write(w.coldkey_path(), &bad).unwrap();
    let e = w.coldkey(&password).unwrap_err();
    assert!(matches!(e, Error::KeyfileDamaged { .. }), "{e}");
}

#[test]
fn import_copies_as_is_or_reencrypts() {
    let (password, cases) = cases();
    let c = &cases[1];
    let source = vectors().join("wallets").join(&c.name);
    let out = tempfile::tempdir().unwrap();

    // A plain import: the coldkey byte for byte, the hotkey, no `pub.txt` files.
    let got = import_wallet(
        &source,
        out.path(),
        "copy",
        &password,
        ImportOptions::default(),
    )
    .unwrap();
    assert_eq!(got.coldkey.to_ss58(), c.coldkey);
    assert_eq!(got.from, Encryption::Nacl);
    assert!(got.written && !got.reencrypted);
    assert_eq!(got.hotkeys.len(), 1);
    assert_eq!(got.hotkeys[0].1.to_ss58(), c.hotkey_ss58);
    let copy = Wallet::open(out.path(), "copy").unwrap();
    assert_eq!(
        fs::read(copy.coldkey_path()).unwrap(),
        fs::read(source.join("coldkey")).unwrap()
    );
    assert_eq!(
        copy.hotkey_names().unwrap(),
        std::slice::from_ref(&c.hotkey)
    );
    assert!(!copy.hotkey_path(&format!("{}pub.txt", c.hotkey)).exists());

    // Again: refused without overwrite, before checking the passphrase costs anything.
    let e = import_wallet(
        &source,
        out.path(),
        "copy",
        &password,
        ImportOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::AlreadyExists { .. }), "{e}");

    // Re-encrypted into this project's format (cheap Argon2id costs for the test), in
    // place on the copy: needs overwrite.
    let opts = ImportOptions {
        reencrypt: true,
        overwrite: false,
        params: KdfParams {
            memory_kib: 64,
            iterations: 1,
            lanes: 1,
        },
    };
    let e = import_wallet(copy.path(), out.path(), "copy", &password, opts).unwrap_err();
    assert!(matches!(e, Error::AlreadyExists { .. }), "{e}");
    let opts = ImportOptions {
        overwrite: true,
        ..opts
    };
    let got = import_wallet(copy.path(), out.path(), "copy", &password, opts).unwrap();
    assert!(got.reencrypted);
    assert_eq!(copy.coldkey_encryption().unwrap(), Encryption::BtKeyEnc);
    assert_eq!(
        copy.coldkey(&password).unwrap().public().to_ss58(),
        c.coldkey
    );
    assert_eq!(
        copy.hotkey(&c.hotkey).unwrap().public().to_ss58(),
        c.hotkey_ss58
    );

    // A wrong passphrase imports nothing.
    let e = import_wallet(copy.path(), out.path(), "other", "wrong", opts).unwrap_err();
    assert!(matches!(e, Error::WrongPassphrase { .. }), "{e}");
    assert!(!out.path().join("other").exists());
}
