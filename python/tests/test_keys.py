"""Keys and wallets: the same keys, addresses and signatures as the Rust code and as
bittensor's own wallet package (the vectors were written by bittensor-wallet)."""

import pytest

import bittensor_rs as bt

ALICE = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"


def test_alice_has_the_well_known_address():
    assert bt.Keypair.from_uri("//Alice").ss58_address == ALICE


def test_sign_and_verify_round_trip():
    k = bt.Keypair.from_uri("//Alice//hot")
    sig = k.sign(b"hello")
    assert len(sig) == 64 and len(k.public_key) == 32
    assert k.verify(b"hello", sig)
    assert bt.verify(k.ss58_address, b"hello", sig)
    assert not k.verify(b"hellO", sig)
    assert not bt.verify(ALICE, b"hello", sig)


def test_generated_phrase_gives_back_the_key():
    k, phrase = bt.Keypair.generate(12)
    assert len(phrase.split()) == 12
    assert bt.Keypair.from_mnemonic(phrase).ss58_address == k.ss58_address


@pytest.mark.parametrize(
    "call",
    [
        lambda: bt.Keypair.from_uri("not a uri at all ///"),
        lambda: bt.Keypair.from_mnemonic("abandon " * 11 + "wrong"),
        lambda: bt.Keypair.generate(13),
        lambda: bt.verify("5notanaddress", b"m", b"\0" * 64),
        lambda: bt.Keypair.from_uri("//Alice").verify(b"m", b"short"),
    ],
)
def test_bad_keys_are_keys_errors(call):
    with pytest.raises(bt.KeysError):
        call()


def test_bittensor_wallets_open_with_their_addresses(vectors, wallets_dir):
    for case in vectors["wallets"]:
        w = bt.Wallet(case["name"], path=wallets_dir)
        assert w.coldkey_address() == case["coldkey_ss58"]
        assert w.hotkey(case["hotkey"]).ss58_address == case["hotkey_ss58"]
        assert "NACL" in w.coldkey_encryption()
        assert case["hotkey"] in w.hotkey_names()


def test_a_nacl_coldkey_decrypts_with_its_passphrase(vectors, wallets_dir):
    # bittensor's key derivation (512 MiB, 8 passes) takes a few seconds: one wallet.
    case = vectors["wallets"][1]
    w = bt.Wallet(case["name"], path=wallets_dir)
    assert w.coldkey(vectors["password"]).ss58_address == case["coldkey_ss58"]


def test_wallet_errors_name_what_is_wrong(tmp_path, wallets_dir):
    with pytest.raises(bt.KeysError, match="nowhere"):
        bt.Wallet("nowhere", path=tmp_path)
    w = bt.Wallet("uri", path=wallets_dir)
    with pytest.raises(bt.KeysError, match="missing"):
        w.hotkey("missing")
    broken = tmp_path / "broken" / "hotkeys"
    broken.mkdir(parents=True)
    (tmp_path / "broken" / "coldkeypub.txt").write_text("{not json")
    (broken / "default").write_text('{"secretSeed": "0x12"}')
    b = bt.Wallet("broken", path=tmp_path)
    with pytest.raises(bt.KeysError):
        b.coldkey_address()
    with pytest.raises(bt.KeysError):
        b.hotkey()


def test_a_wrong_passphrase_is_its_own_error(vectors, wallets_dir):
    case = vectors["wallets"][1]
    w = bt.Wallet(case["name"], path=wallets_dir)
    with pytest.raises(bt.KeysError, match="passphrase"):
        w.coldkey("not the passphrase")


def test_create_then_open_a_wallet(tmp_path):
    w, cold_phrase, hot_phrase = bt.Wallet.create("fresh", "pass word", path=tmp_path)
    assert len(cold_phrase.split()) == 12 and len(hot_phrase.split()) == 12
    again = bt.Wallet("fresh", path=tmp_path)
    assert again.coldkey("pass word").ss58_address == bt.Keypair.from_mnemonic(cold_phrase).ss58_address
    assert again.hotkey().ss58_address == bt.Keypair.from_mnemonic(hot_phrase).ss58_address
    phrase = again.new_hotkey("second")
    assert again.hotkey("second").ss58_address == bt.Keypair.from_mnemonic(phrase).ss58_address
    assert again.hotkey_names() == ["default", "second"]
    with pytest.raises(bt.KeysError):
        bt.Wallet.create("fresh", "pass word", path=tmp_path)
    with pytest.raises(bt.KeysError):
        again.new_hotkey("second")
    with pytest.raises(bt.KeysError):
        bt.Wallet.create("empty-pass", "", path=tmp_path)


def test_a_bittensor_wallet_imports_and_reencrypts(vectors, wallets_dir, tmp_path):
    case = vectors["wallets"][1]
    source = wallets_dir / case["name"]
    w = bt.Wallet.import_from(source, vectors["password"], path=tmp_path, reencrypt=True)
    assert "NACL" not in w.coldkey_encryption()
    assert w.coldkey_address() == case["coldkey_ss58"]
    assert w.coldkey(vectors["password"]).ss58_address == case["coldkey_ss58"]
    assert w.hotkey(case["hotkey"]).ss58_address == case["hotkey_ss58"]
    with pytest.raises(bt.KeysError, match="passphrase"):
        bt.Wallet.import_from(source, "wrong", name="other", path=tmp_path)
