//! Wallets on disk: layout, permissions, encryption, and one test per rejection path.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;

use bt_keys::wallet::{self, Wallet, list_wallets, regen_coldkey, regen_hotkey};
use bt_keys::{DEV_PHRASE, Error, Keypair};

const DEV_ROOT: &str = "5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV";
const PASS: &str = "correct horse battery staple";

fn new_wallet(dir: &Path, name: &str) -> wallet::NewWallet {
    Wallet::create(dir, name, "default", 12, PASS, false).unwrap()
}

#[test]
fn create_open_and_load_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let new = new_wallet(dir.path(), "alice");
    assert_eq!(new.coldkey_phrase.split_whitespace().count(), 12);

    let w = Wallet::open(dir.path(), "alice").unwrap();
    assert_eq!(w.name(), "alice");
    let cold = w.coldkey(PASS).unwrap();
    assert_eq!(w.coldkey_public().unwrap(), cold.public());
    assert_eq!(
        Keypair::from_phrase(&new.coldkey_phrase, None)
            .unwrap()
            .public(),
        cold.public()
    );
    let hot = w.hotkey("default").unwrap();
    assert_eq!(
        Keypair::from_phrase(&new.hotkey_phrase, None)
            .unwrap()
            .public(),
        hot.public()
    );
    assert_ne!(hot.public(), cold.public());
    assert_eq!(w.hotkey_names().unwrap(), vec!["default".to_string()]);
    assert_eq!(
        w.hotkey_phrase("default").unwrap().unwrap().as_str(),
        new.hotkey_phrase.as_str()
    );

    // Loaded keys sign like the originals.
    let sig = cold.sign(b"stake");
    w.coldkey_public().unwrap().verify(b"stake", &sig).unwrap();
}

#[test]
fn layout_and_public_file_in_bittensor_json() {
    let dir = tempfile::tempdir().unwrap();
    new_wallet(dir.path(), "w");
    let root = dir.path().join("w");
    assert!(root.join("coldkey").is_file());
    assert!(root.join("coldkeypub.txt").is_file());
    assert!(root.join("hotkeys/default").is_file());

    let public: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("coldkeypub.txt")).unwrap()).unwrap();
    let ss58 = public["ss58Address"].as_str().unwrap();
    assert!(ss58.starts_with('5'));
    assert!(public["publicKey"].as_str().unwrap().starts_with("0x"));
    assert_eq!(public["accountId"], public["publicKey"]);
    assert!(public["secretPhrase"].is_null() && public["privateKey"].is_null());

    // The coldkey is not readable JSON and does not contain the phrase.
    let cold = fs::read(root.join("coldkey")).unwrap();
    assert_eq!(&cold[..8], b"BTKEYENC");
    assert!(serde_json::from_slice::<serde_json::Value>(&cold).is_err());
}

#[cfg(unix)]
#[test]
fn permissions_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    new_wallet(dir.path(), "w");
    let root = dir.path().join("w");
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for f in ["coldkey", "coldkeypub.txt", "hotkeys/default"] {
        assert_eq!(mode(&root.join(f)), 0o600, "{f}");
    }
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&root.join("hotkeys")), 0o700);
}

#[test]
fn wrong_passphrase_is_its_own_error() {
    let dir = tempfile::tempdir().unwrap();
    let w = new_wallet(dir.path(), "w").wallet;
    let e = w.coldkey("Correct horse battery staple").unwrap_err();
    assert!(matches!(e, Error::WrongPassphrase { .. }), "{e}");
}

#[test]
fn corrupted_coldkey_is_its_own_error() {
    let dir = tempfile::tempdir().unwrap();
    let w = new_wallet(dir.path(), "w").wallet;
    let mut bytes = fs::read(w.coldkey_path()).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs::write(w.coldkey_path(), &bytes).unwrap();
    let e = w.coldkey(PASS).unwrap_err();
    assert!(matches!(e, Error::KeyfileCorrupt { .. }), "{e}");
}

#[test]
fn truncated_coldkey_is_its_own_error() {
    let dir = tempfile::tempdir().unwrap();
    let w = new_wallet(dir.path(), "w").wallet;
    let bytes = fs::read(w.coldkey_path()).unwrap();
    fs::write(w.coldkey_path(), &bytes[..bytes.len() - 10]).unwrap();
    let e = w.coldkey(PASS).unwrap_err();
    assert!(matches!(e, Error::KeyfileTruncated { .. }), "{e}");
}

#[test]
fn create_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let first = new_wallet(dir.path(), "w");
    let before = fs::read(first.wallet.coldkey_path()).unwrap();
    let e = Wallet::create(dir.path(), "w", "default", 12, PASS, false).unwrap_err();
    assert!(matches!(e, Error::AlreadyExists { .. }), "{e}");
    assert_eq!(
        fs::read(first.wallet.coldkey_path()).unwrap(),
        before,
        "must not be touched"
    );

    let second = Wallet::create(dir.path(), "w", "default", 12, PASS, true).unwrap();
    let old = Keypair::from_phrase(&first.coldkey_phrase, None)
        .unwrap()
        .public();
    assert_ne!(
        second.wallet.coldkey(PASS).unwrap().public(),
        old,
        "replaced with --overwrite"
    );
}

#[test]
fn regen_coldkey_restores_the_same_address() {
    let dir = tempfile::tempdir().unwrap();
    let w = regen_coldkey(dir.path(), "dev", DEV_PHRASE, PASS, false).unwrap();
    assert_eq!(w.coldkey_public().unwrap().to_ss58(), DEV_ROOT);
    assert_eq!(w.coldkey(PASS).unwrap().public().to_ss58(), DEV_ROOT);
}

#[test]
fn regen_coldkey_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    new_wallet(dir.path(), "w");
    let e = regen_coldkey(dir.path(), "w", DEV_PHRASE, PASS, false).unwrap_err();
    assert!(matches!(e, Error::AlreadyExists { .. }), "{e}");
    let w = regen_coldkey(dir.path(), "w", DEV_PHRASE, PASS, true).unwrap();
    assert_eq!(w.coldkey_public().unwrap().to_ss58(), DEV_ROOT);
}

#[test]
fn regen_rejects_a_bad_mnemonic() {
    let dir = tempfile::tempdir().unwrap();
    let e = regen_coldkey(dir.path(), "w", "not a real mnemonic at all", PASS, false).unwrap_err();
    assert!(matches!(e, Error::InvalidPhrase { .. }), "{e}");
    assert!(!dir.path().join("w").join("coldkey").exists());
}

#[test]
fn regen_hotkey_restores_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let created = new_wallet(dir.path(), "w");
    let e = regen_hotkey(dir.path(), "w", "default", DEV_PHRASE, false).unwrap_err();
    assert!(matches!(e, Error::AlreadyExists { .. }), "{e}");
    let w = regen_hotkey(dir.path(), "w", "miner1", DEV_PHRASE, false).unwrap();
    assert_eq!(w.hotkey("miner1").unwrap().public().to_ss58(), DEV_ROOT);
    assert_eq!(
        w.hotkey_names().unwrap(),
        vec!["default".to_string(), "miner1".to_string()]
    );
    // The coldkey was not touched.
    assert_eq!(
        w.coldkey(PASS).unwrap().public(),
        Keypair::from_phrase(&created.coldkey_phrase, None)
            .unwrap()
            .public()
    );
}

#[test]
fn new_hotkey_adds_one_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let w = new_wallet(dir.path(), "w").wallet;
    let phrase = w.new_hotkey("second", 24, false).unwrap();
    assert_eq!(phrase.split_whitespace().count(), 24);
    assert_eq!(
        w.hotkey("second").unwrap().public(),
        Keypair::from_phrase(&phrase, None).unwrap().public()
    );
    assert!(matches!(
        w.new_hotkey("second", 12, false),
        Err(Error::AlreadyExists { .. })
    ));
}

#[test]
fn open_missing_wallet() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        Wallet::open(dir.path(), "nope"),
        Err(Error::WalletNotFound { .. })
    ));
}

#[test]
fn missing_hotkey() {
    let dir = tempfile::tempdir().unwrap();
    let w = new_wallet(dir.path(), "w").wallet;
    assert!(matches!(
        w.hotkey("other"),
        Err(Error::KeyNotFound { what: "hotkey", .. })
    ));
}

#[test]
fn missing_coldkey_with_public_file_present() {
    let dir = tempfile::tempdir().unwrap();
    let w = new_wallet(dir.path(), "w").wallet;
    fs::remove_file(w.coldkey_path()).unwrap();
    // Still a wallet (watch-only): the address is known, the secret is not.
    let w = Wallet::open(dir.path(), "w").unwrap();
    w.coldkey_public().unwrap();
    assert!(matches!(
        w.coldkey(PASS),
        Err(Error::KeyNotFound {
            what: "coldkey",
            ..
        })
    ));
}

#[test]
fn path_traversal_names_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["../evil", "a/b", "", ".hidden"] {
        let e = Wallet::create(dir.path(), name, "default", 12, PASS, false).unwrap_err();
        assert!(
            matches!(e, Error::InvalidName { kind: "wallet", .. }),
            "{name:?}: {e}"
        );
    }
    let e = Wallet::create(dir.path(), "w", "../../hot", 12, PASS, false).unwrap_err();
    assert!(
        matches!(e, Error::InvalidName { kind: "hotkey", .. }),
        "{e}"
    );
    assert!(
        fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing written"
    );
}

#[test]
fn empty_passphrase_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let e = Wallet::create(dir.path(), "w", "default", 12, "", false).unwrap_err();
    assert!(matches!(e, Error::EmptyPassphrase), "{e}");
    let e = regen_coldkey(dir.path(), "w", DEV_PHRASE, "", false).unwrap_err();
    assert!(matches!(e, Error::EmptyPassphrase), "{e}");
}

#[test]
fn bad_word_count_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let e = Wallet::create(dir.path(), "w", "default", 11, PASS, false).unwrap_err();
    assert!(matches!(e, Error::WordCount { got: 11 }), "{e}");
}

#[test]
fn corrupted_public_file() {
    let dir = tempfile::tempdir().unwrap();
    let w = new_wallet(dir.path(), "w").wallet;
    fs::write(w.coldkeypub_path(), b"{\"ss58Address\": 5}").unwrap();
    assert!(matches!(w.coldkey_public(), Err(Error::KeyfileJson { .. })));
}

#[test]
fn public_file_with_disagreeing_fields() {
    let dir = tempfile::tempdir().unwrap();
    let w = new_wallet(dir.path(), "w").wallet;
    let mut v: serde_json::Value =
        serde_json::from_slice(&fs::read(w.coldkeypub_path()).unwrap()).unwrap();
    v["ss58Address"] = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY".into();
    fs::write(w.coldkeypub_path(), serde_json::to_vec(&v).unwrap()).unwrap();
    let e = w.coldkey_public().unwrap_err();
    assert!(e.to_string().contains("disagree"), "{e}");
}

#[test]
fn corrupted_hotkey_file() {
    let dir = tempfile::tempdir().unwrap();
    let w = new_wallet(dir.path(), "w").wallet;
    fs::write(w.hotkey_path("default"), b"garbage").unwrap();
    assert!(matches!(
        w.hotkey("default"),
        Err(Error::KeyfileJson { .. })
    ));
}

#[test]
fn reads_a_hotkey_written_by_python_bittensor() {
    // The JSON layout bittensor writes for an unencrypted hotkey (field order and the
    // extra fields do not matter; the secret phrase wins and must match the address).
    let dir = tempfile::tempdir().unwrap();
    let hotkeys = dir.path().join("py").join("hotkeys");
    fs::create_dir_all(&hotkeys).unwrap();
    let pk = Keypair::from_phrase(DEV_PHRASE, None).unwrap().public();
    let hex: String = pk.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let json = format!(
        r#"{{"accountId": "0x{hex}", "publicKey": "0x{hex}", "secretPhrase": "{DEV_PHRASE}", "ss58Address": "{DEV_ROOT}"}}"#
    );
    fs::write(hotkeys.join("default"), json).unwrap();
    fs::write(
        dir.path().join("py").join("coldkeypub.txt"),
        fs::read(hotkeys.join("default")).unwrap(),
    )
    .unwrap();
    let w = Wallet::open(dir.path(), "py").unwrap();
    assert_eq!(w.hotkey("default").unwrap().public().to_ss58(), DEV_ROOT);
    assert_eq!(w.coldkey_public().unwrap().to_ss58(), DEV_ROOT);
}

#[test]
fn list_wallets_finds_only_wallets() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        list_wallets(&dir.path().join("missing"))
            .unwrap()
            .is_empty()
    );
    regen_hotkey(dir.path(), "only-hotkeys", "h", DEV_PHRASE, false).unwrap();
    new_wallet(dir.path(), "zeta");
    regen_coldkey(dir.path(), "alpha", DEV_PHRASE, PASS, false).unwrap();
    fs::create_dir(dir.path().join("empty-dir")).unwrap();
    fs::write(dir.path().join("stray-file"), b"x").unwrap();
    let names: Vec<String> = list_wallets(dir.path())
        .unwrap()
        .iter()
        .map(|w| w.name().to_string())
        .collect();
    assert_eq!(names, ["alpha", "zeta"]);
}

#[test]
fn concurrent_writers_never_replace_each_other() {
    // Eight threads race to create the same hotkey without --overwrite: exactly one wins,
    // the others get AlreadyExists, and the file holds the winner's key.
    let dir = tempfile::tempdir().unwrap();
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let dir = dir.path();
                s.spawn(move || {
                    let (_, phrase) = Keypair::generate(12).unwrap();
                    let r = regen_hotkey(dir, "w", "race", &phrase, false);
                    (i, phrase, r)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners: Vec<_> = results.iter().filter(|(_, _, r)| r.is_ok()).collect();
    assert_eq!(winners.len(), 1);
    for (_, _, r) in &results {
        if let Err(e) = r {
            assert!(matches!(e, Error::AlreadyExists { .. }), "{e}");
        }
    }
    let w = Wallet::open(dir.path(), "w");
    // Only a hotkey exists, so the directory is not a wallet yet; read the key directly.
    assert!(w.is_err());
    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.path().join("w/hotkeys/race")).unwrap()).unwrap();
    assert_eq!(json["secretPhrase"].as_str().unwrap(), winners[0].1);
    let leftovers: Vec<_> = fs::read_dir(dir.path().join("w/hotkeys"))
        .unwrap()
        .collect();
    assert_eq!(leftovers.len(), 1, "no temporary files left behind");
}
