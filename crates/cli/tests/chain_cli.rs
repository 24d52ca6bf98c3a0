//! The ledger's client commands (`bt register | stake | weights | transfer | metagraph`)
//! against a real node on loopback, signing with secret URIs and with a wallet on disk.

use bt_cli::{Cli, run};
use bt_keys::Keypair;
use bt_keys::wallet::Wallet;
use clap::Parser;

const ALICE: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
const BOB: &str = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";

fn bt(args: &[&str]) -> anyhow::Result<()> {
    let mut all = vec!["bt"];
    all.extend_from_slice(args);
    run(Cli::try_parse_from(all)?)
}

#[test]
fn client_commands_against_a_real_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let genesis = bt_ledger::genesis_state(&format!(
        "[params]\ntau = 1.0\nepsilon = 0.5\nmax_neurons = 16\nblock_time_ms = 30\n\
         [[accounts]]\naddress = \"{ALICE}\"\nbalance = 1_000_000_000_000\n"
    ))
    .expect("genesis");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut cfg = bt_chain::NodeConfig::new(dir.path().join("chain"), Some(genesis));
    cfg.listen = "127.0.0.1:0".parse().expect("addr");
    let node = rt.block_on(bt_chain::serve(cfg)).expect("node serves");
    let url = format!("http://{}", node.addr);
    let node_flag = format!("--node={url}");
    let n = node_flag.as_str();

    // A wallet on disk: its (unencrypted) hotkey signs the registration and the weights.
    let wallets = dir.path().join("wallets");
    let w = wallets.to_str().expect("utf-8 path");
    Wallet::create(&wallets, "w", "hot", 12, "correct horse", false).expect("wallet");
    let wallet_hot = Wallet::open(&wallets, "w")
        .and_then(|w| w.hotkey("hot"))
        .expect("hotkey")
        .public();
    let suri_hot = Keypair::from_uri("//Alice//hot").expect("suri").public();

    bt(&[
        "register",
        n,
        "--suri",
        "//Alice//hot",
        "--coldkey-address",
        ALICE,
        "--endpoint",
        "127.0.0.1:9001",
    ])
    .expect("register by suri");
    bt(&[
        "register",
        n,
        "--wallet-dir",
        w,
        "--wallet",
        "w",
        "--hotkey",
        "hot",
        "--coldkey-address",
        ALICE,
        "--endpoint",
        "127.0.0.1:9002",
    ])
    .expect("register by wallet hotkey");
    let hot0 = suri_hot.to_string();
    let hot1 = wallet_hot.to_string();
    bt(&[
        "stake",
        "add",
        n,
        "--suri",
        "//Alice",
        "--hotkey-address",
        &hot0,
        "--amount",
        "100",
    ])
    .expect("stake");
    bt(&[
        "stake",
        "add",
        n,
        "--suri",
        "//Alice",
        "--hotkey-address",
        &hot1,
        "--amount",
        "50",
    ])
    .expect("stake");
    bt(&[
        "stake",
        "remove",
        n,
        "--suri",
        "//Alice",
        "--hotkey-address",
        &hot1,
        "--amount",
        "10",
    ])
    .expect("unstake");
    bt(&[
        "weights",
        "set",
        n,
        "--wallet-dir",
        w,
        "--wallet",
        "w",
        "--hotkey",
        "hot",
        "--weights",
        "0:0.3,1:0.7",
    ])
    .expect("weights by wallet hotkey");
    bt(&[
        "transfer", n, "--suri", "//Alice", "--to", BOB, "--amount", "5",
    ])
    .expect("transfer");
    bt(&["metagraph", n]).expect("table");
    bt(&["metagraph", n, "--json", "--weights"]).expect("json");

    // What the ledger refuses reaches the user with the ledger's reason.
    let err = bt(&[
        "weights",
        "set",
        n,
        "--suri",
        "//Alice//hot",
        "--weights",
        "1:1.0",
    ])
    .unwrap_err();
    assert!(format!("{err:#}").contains("epsilon"), "{err:#}");
    let err = bt(&[
        "transfer", n, "--suri", "//Bob", "--to", ALICE, "--amount", "500",
    ])
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("insufficient balance"),
        "{err:#}"
    );
    // The coldkey is encrypted: with no terminal and no BT_WALLET_PASSWORD, say so.
    let err = bt(&[
        "transfer",
        n,
        "--wallet-dir",
        w,
        "--wallet",
        "w",
        "--to",
        BOB,
        "--amount",
        "1",
    ])
    .unwrap_err();
    assert!(format!("{err:#}").contains("BT_WALLET_PASSWORD"), "{err:#}");

    let mut client = rt
        .block_on(bt_chain::Client::connect(&url))
        .expect("client");
    let mg = rt
        .block_on(client.metagraph(None, true))
        .expect("metagraph");
    assert_eq!(mg.neurons.len(), 2);
    // Staked amounts plus whatever inflation has minted to each neuron since: all of it is
    // stake, since Alice's and Bob's free balances account for the rest of the issuance.
    const TAO: u64 = 1_000_000_000;
    assert!(mg.neurons[0].stake >= 100 * TAO);
    assert!(mg.neurons[1].stake >= 40 * TAO);
    assert!(mg.total_issuance > 1000 * TAO, "inflation minted nothing");
    let alice = rt
        .block_on(client.account(&ALICE.parse().expect("ss58")))
        .expect("account");
    assert_eq!(alice.balance, (1000 - 100 - 50 + 10 - 5) * TAO);
    assert_eq!(
        mg.neurons[0].stake + mg.neurons[1].stake,
        mg.total_issuance - 860 * TAO
    );
    let uids: Vec<u32> = mg.neurons[1].row.iter().map(|&(j, _)| j).collect();
    assert_eq!(uids, vec![0, 1]);
    assert_eq!(
        mg.neurons[1]
            .row
            .iter()
            .map(|&(_, v)| u64::from(v))
            .sum::<u64>(),
        1 << 31
    );
    let bob = rt
        .block_on(client.account(&BOB.parse().expect("ss58")))
        .expect("account");
    assert_eq!(bob.balance, 5 * TAO);
}
