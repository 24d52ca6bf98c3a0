//! Decoders of untrusted bytes never panic and never accept damage: SS58 strings,
//! signatures, public keys and encrypted key files.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use bt_keys::keyfile::{self, KdfParams};
use bt_keys::{Error, PublicKey, Signature};
use proptest::prelude::*;

const FAST: KdfParams = KdfParams {
    memory_kib: 64,
    iterations: 1,
    lanes: 1,
};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decrypt_arbitrary_bytes_is_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        prop_assert!(keyfile::decrypt(&bytes, "pw", Path::new("f")).is_err());
    }

    #[test]
    fn decrypt_after_magic_arbitrary_bytes_is_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut file = keyfile::MAGIC.to_vec();
        file.push(keyfile::VERSION);
        file.extend_from_slice(&bytes);
        prop_assert!(keyfile::decrypt(&file, "pw", Path::new("f")).is_err());
    }

    #[test]
    fn public_key_from_arbitrary_bytes_never_panics(b in any::<[u8; 32]>()) {
        if let Ok(pk) = PublicKey::from_bytes(b) {
            prop_assert_eq!(PublicKey::from_ss58(&pk.to_ss58()).unwrap(), pk);
        }
    }

    #[test]
    fn signature_from_arbitrary_bytes_never_panics(b in proptest::collection::vec(any::<u8>(), 0..80)) {
        match Signature::from_bytes(&b) {
            Ok(sig) => prop_assert_eq!(sig.to_bytes().to_vec(), b),
            Err(Error::SignatureLength { got, .. }) => prop_assert_eq!(got, b.len()),
            Err(e) => prop_assert!(matches!(e, Error::SignatureEncoding { .. }), "{}", e),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn damaged_container_is_never_accepted(pos in any::<usize>(), xor in 1u8..=255, cut in any::<bool>()) {
        let good = keyfile::encrypt(b"{\"k\": 1}", "pw", FAST).unwrap();
        let mut bad = good.clone();
        if cut {
            bad.truncate(pos % good.len());
        } else {
            bad[pos % good.len()] ^= xor;
        }
        let e = keyfile::decrypt(&bad, "pw", Path::new("f")).unwrap_err();
        prop_assert!(
            matches!(e, Error::KeyfileCorrupt { .. } | Error::KeyfileMagic { .. } | Error::KeyfileTruncated { .. } | Error::KeyfileVersion { .. }),
            "{}", e
        );
    }
}
