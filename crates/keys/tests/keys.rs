//! Key derivation, signatures and SS58, against Substrate's known vectors.
#![allow(clippy::unwrap_used)]

use bt_keys::{DEV_PHRASE, Error, Keypair, PublicKey, Signature};
use proptest::prelude::*;

const ALICE: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
const BOB: &str = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";
const DEV_ROOT: &str = "5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV";

#[test]
fn dev_phrase_gives_substrate_dev_root() {
    let k = Keypair::from_phrase(DEV_PHRASE, None).unwrap();
    assert_eq!(k.public().to_ss58(), DEV_ROOT);
}

#[test]
fn alice_and_bob_hard_derivation() {
    assert_eq!(
        Keypair::from_uri("//Alice").unwrap().public().to_ss58(),
        ALICE
    );
    assert_eq!(Keypair::from_uri("//Bob").unwrap().public().to_ss58(), BOB);
    let explicit = Keypair::from_uri(&format!("{DEV_PHRASE}//Alice")).unwrap();
    assert_eq!(explicit.public().to_ss58(), ALICE);
}

#[test]
fn bare_phrase_uri_equals_from_phrase() {
    let a = Keypair::from_uri(DEV_PHRASE).unwrap();
    assert_eq!(a.public().to_ss58(), DEV_ROOT);
}

#[test]
fn password_changes_the_key() {
    let plain = Keypair::from_phrase(DEV_PHRASE, None).unwrap();
    let pw = Keypair::from_phrase(DEV_PHRASE, Some("hunter2")).unwrap();
    assert_ne!(plain.public(), pw.public());
    let via_uri = Keypair::from_uri(&format!("{DEV_PHRASE}///hunter2")).unwrap();
    assert_eq!(via_uri.public(), pw.public());
}

#[test]
fn soft_and_hard_junctions_differ_and_are_deterministic() {
    let soft = Keypair::from_uri("//Alice/stash").unwrap();
    let hard = Keypair::from_uri("//Alice//stash").unwrap();
    assert_ne!(soft.public(), hard.public());
    assert_eq!(
        soft.public(),
        Keypair::from_uri("//Alice/stash").unwrap().public()
    );
    assert!(soft.mini_secret().is_none());
    assert!(hard.mini_secret().is_some());
}

#[test]
fn hex_seed_uri_equals_mini_secret() {
    let k = Keypair::from_mini_secret([7u8; 32]);
    let hex = format!("0x{}", "07".repeat(32));
    assert_eq!(Keypair::from_uri(&hex).unwrap().public(), k.public());
}

#[test]
fn rejects_bad_phrase() {
    let e = Keypair::from_phrase(
        "bottom drive obey lake curtain smoke basket hold race lonely fit fit",
        None,
    )
    .unwrap_err();
    assert!(matches!(e, Error::InvalidPhrase { .. }), "{e}");
    let e = Keypair::from_phrase("notaword drive obey", None).unwrap_err();
    assert!(matches!(e, Error::InvalidPhrase { .. }), "{e}");
}

#[test]
fn rejects_bad_uri() {
    assert!(matches!(
        Keypair::from_uri("//").unwrap_err(),
        Error::InvalidUri { .. }
    ));
    assert!(matches!(
        Keypair::from_uri("//Alice//").unwrap_err(),
        Error::InvalidUri { .. }
    ));
    assert!(matches!(
        Keypair::from_uri("bad-phrase!//x").unwrap_err(),
        Error::InvalidUri { .. }
    ));
    assert!(matches!(
        Keypair::from_uri("0x1234").unwrap_err(),
        Error::InvalidSeed { .. }
    ));
    assert!(matches!(
        Keypair::from_uri(&format!("0x{}", "zz".repeat(32))).unwrap_err(),
        Error::InvalidSeed { .. }
    ));
}

#[test]
fn generate_every_length_and_round_trip() {
    for words in bt_keys::WORD_COUNTS {
        let (k, phrase) = Keypair::generate(words).unwrap();
        assert_eq!(phrase.split_whitespace().count(), words);
        assert_eq!(
            Keypair::from_phrase(&phrase, None).unwrap().public(),
            k.public()
        );
    }
    let (a, _) = Keypair::generate(12).unwrap();
    let (b, _) = Keypair::generate(12).unwrap();
    assert_ne!(a.public(), b.public());
}

#[test]
fn generate_rejects_bad_word_count() {
    assert!(matches!(
        Keypair::generate(13).unwrap_err(),
        Error::WordCount { got: 13 }
    ));
}

#[test]
fn debug_does_not_print_secrets() {
    let k = Keypair::from_uri("//Alice").unwrap();
    let dbg = format!("{k:?}");
    assert!(dbg.contains(ALICE), "{dbg}");
    let seed = k.mini_secret().unwrap();
    let seed_hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!dbg.to_lowercase().contains(&seed_hex[..16]));
    assert!(!dbg.contains("secret:"));
}

#[test]
fn sign_verify_round_trip() {
    let k = Keypair::from_uri("//Alice").unwrap();
    let sig = k.sign(b"hello");
    k.public().verify(b"hello", &sig).unwrap();
    let again = Signature::from_bytes(&sig.to_bytes()).unwrap();
    assert_eq!(again, sig);
    k.public().verify(b"hello", &again).unwrap();
}

#[test]
fn tampered_message_is_rejected() {
    let k = Keypair::from_uri("//Alice").unwrap();
    let sig = k.sign(b"hello");
    assert!(matches!(
        k.public().verify(b"hellp", &sig),
        Err(Error::BadSignature)
    ));
}

#[test]
fn wrong_key_is_rejected() {
    let k = Keypair::from_uri("//Alice").unwrap();
    let bob = Keypair::from_uri("//Bob").unwrap();
    let sig = k.sign(b"hello");
    assert!(matches!(
        bob.public().verify(b"hello", &sig),
        Err(Error::BadSignature)
    ));
}

#[test]
fn corrupted_signature_is_rejected() {
    let k = Keypair::from_uri("//Alice").unwrap();
    let mut bytes = k.sign(b"hello").to_bytes();
    bytes[5] ^= 0x01;
    let sig = Signature::from_bytes(&bytes).unwrap();
    assert!(matches!(
        k.public().verify(b"hello", &sig),
        Err(Error::BadSignature)
    ));
}

#[test]
fn signature_encoding_rejections() {
    let e = Signature::from_bytes(&[0u8; 63]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::SignatureLength {
                expected: 64,
                got: 63
            }
        ),
        "{e}"
    );
    // Without schnorrkel's marker bit (an ed25519-style signature).
    let mut bytes = Keypair::from_uri("//Alice").unwrap().sign(b"x").to_bytes();
    bytes[63] &= 0x7f;
    assert!(matches!(
        Signature::from_bytes(&bytes).unwrap_err(),
        Error::SignatureEncoding { .. }
    ));
}

#[test]
fn public_key_bytes_round_trip_and_invalid_point() {
    let pk = Keypair::from_uri("//Alice").unwrap().public();
    assert_eq!(PublicKey::from_bytes(*pk.as_bytes()).unwrap(), pk);
    // 0xff.. is not a canonical Ristretto encoding.
    assert!(matches!(
        PublicKey::from_bytes([0xff; 32]),
        Err(Error::InvalidPublicKey)
    ));
}

#[test]
fn ss58_display_debug_fromstr() {
    let pk: PublicKey = ALICE.parse().unwrap();
    assert_eq!(pk.to_string(), ALICE);
    assert_eq!(format!("{pk:?}"), ALICE);
    assert_eq!(PublicKey::from_ss58(ALICE).unwrap(), pk);
}

#[test]
fn ss58_bad_base58() {
    // '0', 'O', 'I' and 'l' are not in the base58 alphabet.
    let e = PublicKey::from_ss58("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKut0Y").unwrap_err();
    assert!(matches!(e, Error::Ss58Base58 { .. }), "{e}");
}

#[test]
fn ss58_bad_length() {
    let e = PublicKey::from_ss58(&ALICE[..ALICE.len() - 3]).unwrap_err();
    assert!(matches!(e, Error::Ss58Length { expected: 35, .. }), "{e}");
    let e = PublicKey::from_ss58("").unwrap_err();
    assert!(matches!(e, Error::Ss58Length { got: 0, .. }), "{e}");
}

#[test]
fn ss58_deleted_or_added_character_is_a_length_or_checksum_error() {
    // What a user meets when a character is lost in copying: never "reserved prefix".
    for i in 0..ALICE.len() {
        let mut s = ALICE.to_string();
        s.remove(i);
        let e = PublicKey::from_ss58(&s).unwrap_err();
        assert!(
            matches!(e, Error::Ss58Length { .. } | Error::Ss58Checksum),
            "without character {i}: {e}"
        );
        let mut s = ALICE.to_string();
        s.insert(i, 'z');
        let e = PublicKey::from_ss58(&s).unwrap_err();
        assert!(
            matches!(e, Error::Ss58Length { .. } | Error::Ss58Checksum),
            "with an extra character at {i}: {e}"
        );
    }
}

#[test]
fn ss58_bad_checksum() {
    // Change one character in the middle: still base58, same length, wrong checksum.
    let mut s = ALICE.to_string();
    s.replace_range(10..11, if &s[10..11] == "a" { "b" } else { "a" });
    let e = PublicKey::from_ss58(&s).unwrap_err();
    assert!(matches!(e, Error::Ss58Checksum), "{e}");
}

#[test]
fn ss58_wrong_prefix() {
    // Alice on Polkadot (prefix 0) and on Kusama (prefix 2).
    let e = PublicKey::from_ss58("15oF4uVJwmo4TdGW7VfQxNLavjCXviqxT9S1MgbjMNHr6Sp5").unwrap_err();
    assert!(
        matches!(
            e,
            Error::Ss58Prefix {
                expected: 42,
                got: 0
            }
        ),
        "{e}"
    );
    let e = PublicKey::from_ss58("HNZata7iMYWmk5RvZRTiAsSDhV8366zq2YGb3tLH5Upf74F").unwrap_err();
    assert!(
        matches!(
            e,
            Error::Ss58Prefix {
                expected: 42,
                got: 2
            }
        ),
        "{e}"
    );
}

#[test]
fn ss58_reserved_prefix_byte() {
    let mut data = vec![200u8];
    data.extend_from_slice(&[1u8; 32]);
    let sum = ss58_checksum(&data);
    data.extend_from_slice(&sum[..2]);
    let s = bs58_encode(&data);
    assert!(matches!(
        PublicKey::from_ss58(&s).unwrap_err(),
        Error::Ss58ReservedPrefix { byte: 200 }
    ));
}

#[test]
fn ss58_invalid_point_with_valid_checksum() {
    // A correctly checksummed address around bytes that are not a point.
    let mut data = vec![42u8];
    data.extend_from_slice(&[0xff; 32]);
    let sum = ss58_checksum(&data);
    data.extend_from_slice(&sum[..2]);
    assert!(matches!(
        PublicKey::from_ss58(&bs58_encode(&data)).unwrap_err(),
        Error::InvalidPublicKey
    ));
}

#[test]
fn serde_as_ss58_string() {
    let pk: PublicKey = ALICE.parse().unwrap();
    let json = serde_json::to_string(&pk).unwrap();
    assert_eq!(json, format!("\"{ALICE}\""));
    assert_eq!(serde_json::from_str::<PublicKey>(&json).unwrap(), pk);
    let err = serde_json::from_str::<PublicKey>("\"5Grwva\"").unwrap_err();
    assert!(err.to_string().contains("SS58"), "{err}");
}

fn bs58_encode(data: &[u8]) -> String {
    bs58::encode(data).into_string()
}

fn ss58_checksum(data: &[u8]) -> [u8; 64] {
    use blake2::{Blake2b512, Digest};
    let mut h = Blake2b512::new();
    h.update(b"SS58PRE");
    h.update(data);
    h.finalize().into()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn ss58_round_trip(seed in any::<[u8; 32]>()) {
        let pk = Keypair::from_mini_secret(seed).public();
        let s = pk.to_ss58();
        prop_assert_eq!(PublicKey::from_ss58(&s).unwrap(), pk);
        prop_assert_eq!(s.parse::<PublicKey>().unwrap(), pk);
        prop_assert_eq!(PublicKey::from_bytes(*pk.as_bytes()).unwrap(), pk);
    }

    #[test]
    fn ss58_single_char_change_is_rejected(seed in any::<[u8; 32]>(), pos in 0usize..48, c in 0usize..58) {
        const ALPHABET: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
        let s = Keypair::from_mini_secret(seed).public().to_ss58();
        let pos = pos % s.len();
        let mut bytes = s.clone().into_bytes();
        prop_assume!(bytes[pos] != ALPHABET[c]);
        bytes[pos] = ALPHABET[c];
        let changed = String::from_utf8(bytes).unwrap();
        prop_assert!(PublicKey::from_ss58(&changed).is_err());
    }

    #[test]
    fn ss58_arbitrary_strings_never_panic(s in "[1-9A-HJ-NP-Za-km-z]{0,60}") {
        let _ = PublicKey::from_ss58(&s);
    }

    #[test]
    fn signatures_verify_only_their_message(seed in any::<[u8; 32]>(), msg in proptest::collection::vec(any::<u8>(), 0..256), flip in any::<usize>()) {
        let k = Keypair::from_mini_secret(seed);
        let sig = k.sign(&msg);
        prop_assert!(k.public().verify(&msg, &sig).is_ok());
        let mut other = msg.clone();
        if other.is_empty() { other.push(0) } else { let i = flip % other.len(); other[i] ^= 1; }
        prop_assert!(matches!(k.public().verify(&other, &sig), Err(Error::BadSignature)));
    }
}
