"""Writes bittensor wallets with the Python `bittensor-wallet` package, for bt-keys' tests.

Run by scripts/wallet-vectors.sh; the only argument is the output folder. It lays out two
wallets as bittensor does (`<dir>/wallets/<name>/coldkey`, `coldkeypub.txt`, `hotkeys/<name>` and the
public `hotkeys/<name>pub.txt` that recent versions add):

- `mnemonic`: coldkey from a fixed 12-word mnemonic, encrypted ($NACL) with PASSWORD; hotkey
  `default` from another mnemonic, unencrypted JSON.
- `uri`: coldkey from the secret URI //Alice (no mnemonic in the file, only the private key),
  encrypted with PASSWORD; hotkey `miner` from //Alice//hot.

`vectors.json` records the package version, the passphrase and every expected SS58 address,
computed by the package itself (so the test checks our reading against bittensor's).
"""

import importlib.metadata
import json
import os
import sys

from bittensor_wallet import Keypair, Wallet
from bittensor_wallet.keyfile import keyfile_data_is_encrypted_nacl

PASSWORD = "correct horse battery staple 7"
COLD_PHRASE = "bottom drive obey lake curtain smoke basket hold race lonely fit walk"
HOT_PHRASE = "legal winner thank year wave sausage worth useful legal winner thank yellow"


def main(out: str) -> None:
    wallets = os.path.join(out, "wallets")
    vectors = {
        "package": "bittensor-wallet",
        "version": importlib.metadata.version("bittensor-wallet"),
        "password": PASSWORD,
        "wallets": [],
    }
    cases = [
        ("mnemonic", Keypair.create_from_mnemonic(COLD_PHRASE), "default",
         Keypair.create_from_mnemonic(HOT_PHRASE)),
        ("uri", Keypair.create_from_uri("//Alice"), "miner",
         Keypair.create_from_uri("//Alice//hot")),
    ]
    for name, cold, hot_name, hot in cases:
        w = Wallet(name=name, hotkey=hot_name, path=wallets)
        w.set_coldkey(cold, encrypt=True, overwrite=True, coldkey_password=PASSWORD)
        w.set_coldkeypub(cold, encrypt=False, overwrite=True)
        w.set_hotkey(hot, encrypt=False, overwrite=True)
        w.set_hotkeypub(hot, encrypt=False, overwrite=True)
        # Read back with the package: the files are what bittensor itself loads.
        with open(os.path.join(wallets, name, "coldkey"), "rb") as f:
            assert keyfile_data_is_encrypted_nacl(f.read())
        again = w.coldkey_file.get_keypair(password=PASSWORD)
        assert again.ss58_address == cold.ss58_address
        assert w.hotkey.ss58_address == hot.ss58_address
        vectors["wallets"].append({
            "name": name,
            "coldkey_ss58": cold.ss58_address,
            "hotkey": hot_name,
            "hotkey_ss58": hot.ss58_address,
        })
    with open(os.path.join(out, "vectors.json"), "w") as f:
        json.dump(vectors, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
