//! Fuzzes the decoders of key files, which come from elsewhere (copied from another machine,
//! written by the Python bittensor): a hotkey's and a coldkey public file's JSON, an encrypted
//! coldkey in this project's format and in bittensor's `$NACL` format, and the JSON inside a
//! coldkey that decrypts. The first byte picks the path. Key derivation costs are made small
//! (this project's format states them in its header, which is clamped here; `$NACL` files
//! are opened with cheap costs instead of bittensor's 512 MiB), so that each input runs in
//! milliseconds; the derivation itself is argon2's, not ours. Nothing may panic, and what
//! opens with the right passphrase must open to the key it was made from.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bt_keys::keyfile::{self, KdfParams};
use bt_keys::nacl::{self, NaclKdf};
use bt_keys::wallet::Wallet;
use libfuzzer_sys::fuzz_target;

const CHEAP: KdfParams = KdfParams {
    memory_kib: 8,
    iterations: 1,
    lanes: 1,
};

/// A wallet directory of this process, written over by each input.
fn wallet() -> &'static (PathBuf, Wallet) {
    static W: OnceLock<(PathBuf, Wallet)> = OnceLock::new();
    W.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("bt-fuzz-keys-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("w").join("hotkeys")).expect("wallet dir");
        std::fs::write(dir.join("w").join("coldkeypub.txt"), b"{}").expect("coldkeypub");
        let w = Wallet::open(&dir, "w").expect("wallet");
        (dir, w)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let (_, w) = wallet();
    match which % 5 {
        // A hotkey file as it is.
        0 => {
            std::fs::write(w.hotkey_path("h"), rest).expect("write");
            let _ = w.hotkey("h");
        }
        // A coldkey public file.
        1 => {
            std::fs::write(w.coldkeypub_path(), rest).expect("write");
            let _ = w.coldkey_public();
        }
        // An encrypted coldkey of this project's format, its costs made small.
        2 => {
            // A `$NACL` file here would be opened with bittensor's real costs (512 MiB, 8
            // passes): those go to the next path instead.
            if rest.starts_with(nacl::MAGIC) {
                return;
            }
            let mut file = rest.to_vec();
            if file.len() >= 22 && file.starts_with(keyfile::MAGIC) {
                // Memory (KiB), iterations and lanes: at most 63, 2 and 2.
                for (at, below) in [(10, 64), (14, 3), (18, 3)] {
                    let v =
                        u32::from_le_bytes([file[at], file[at + 1], file[at + 2], file[at + 3]]);
                    file[at..at + 4].copy_from_slice(&(v % below).to_le_bytes());
                }
            }
            let _ = keyfile::open(&file, "pw", Path::new("coldkey"));
        }
        // A `$NACL` coldkey, opened with cheap costs.
        3 => {
            let kdf = NaclKdf {
                memory_kib: 8,
                passes: 1,
            };
            let _ = nacl::decrypt_with(rest, "pw", Path::new("coldkey"), kdf);
        }
        // The JSON inside a coldkey that decrypts: encrypted here, then opened as a wallet
        // opens its coldkey, with the right passphrase and a wrong one.
        _ => {
            let file = keyfile::encrypt(rest, "pw", CHEAP).expect("encrypt");
            std::fs::write(w.coldkey_path(), &file).expect("write");
            let plain = keyfile::open(&file, "pw", Path::new("coldkey")).expect("opens");
            assert_eq!(plain.as_slice(), rest, "decrypts to what was encrypted");
            let _ = w.coldkey("pw");
            assert!(
                w.coldkey("wrong").is_err(),
                "a wrong passphrase never opens it"
            );
        }
    }
});
