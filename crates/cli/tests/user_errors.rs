//! What a new user met probing bad input, each answered with a specific, typed error that
//! prints every message once: a missing or locked data directory, a TOML mistake without a
//! line, a negative amount, a mistyped address, an amount beyond the balance, a node address
//! without `http://`, and error chains that repeated themselves.

use bt_cli::{Cli, error_report, run};
use clap::Parser;

const ALICE: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";

fn bt(args: &[&str]) -> anyhow::Result<()> {
    let mut all = vec!["bt"];
    all.extend_from_slice(args);
    run(Cli::try_parse_from(all)?)
}

/// The first error of type `E` in the chain.
fn find<E: std::error::Error + Send + Sync + 'static>(e: &anyhow::Error) -> Option<&E> {
    e.chain().find_map(|c| c.downcast_ref::<E>())
}

/// Each message of the chain appears once in both `{:#}` and what `bt` prints.
fn assert_no_repeats(e: &anyhow::Error) {
    let alternate = format!("{e:#}");
    for cause in e.chain() {
        let msg = cause.to_string();
        assert_eq!(
            alternate.matches(msg.as_str()).count(),
            1,
            "{msg:?} repeats in {alternate:?}"
        );
    }
    let printed = error_report(e);
    assert!(printed.len() <= alternate.len(), "{printed}");
}

fn genesis_text(balance_rao: u64) -> String {
    format!(
        "[params]\ntau = 1.0\nepsilon = 0.5\nmax_neurons = 16\nblock_time_ms = 50\n\
         [[accounts]]\naddress = \"{ALICE}\"\nbalance = {balance_rao}\n"
    )
}

fn genesis(balance_rao: u64) -> bt_ledger::State {
    bt_ledger::genesis_state(&genesis_text(balance_rao)).expect("genesis")
}

#[test]
fn verify_refuses_a_missing_data_dir_and_creates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nosuchdir");
    let m = missing.to_str().expect("utf-8");
    let e = bt(&["chain", "verify", "--data-dir", m]).expect_err("refused");
    assert!(
        matches!(find::<bt_chain::Error>(&e), Some(bt_chain::Error::NoDataDir { dir }) if *dir == missing),
        "{e:#}"
    );
    assert!(!missing.exists(), "verify created {m}");
    assert!(error_report(&e).contains("does not exist"), "{e:#}");
    // `chain run` without a genesis does not create it either.
    let e = bt(&["chain", "run", "--data-dir", m, "--listen", "127.0.0.1:0"]).expect_err("refused");
    assert!(
        matches!(
            find::<bt_chain::Error>(&e),
            Some(bt_chain::Error::NoDataDir { .. })
        ),
        "{e:#}"
    );
    assert!(!missing.exists());
}

#[test]
fn a_running_nodes_directory_says_stop_the_node_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("chain");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut cfg = bt_chain::NodeConfig::new(data.clone(), Some(genesis(1_000_000_000)));
    cfg.listen = "127.0.0.1:0".parse().expect("addr");
    let node = rt.block_on(bt_chain::serve(cfg)).expect("node serves");
    let d = data.to_str().expect("utf-8");

    let e = bt(&["chain", "verify", "--data-dir", d]).expect_err("locked");
    assert!(
        matches!(find::<bt_chain::Error>(&e), Some(bt_chain::Error::Locked { dir }) if *dir == data),
        "{e:#}"
    );
    let printed = error_report(&e);
    assert!(printed.contains("stop the node first"), "{printed}");
    assert_no_repeats(&e);

    let e = bt(&["chain", "run", "--data-dir", d, "--listen", "127.0.0.1:0"]).expect_err("locked");
    assert!(
        matches!(
            find::<bt_chain::Error>(&e),
            Some(bt_chain::Error::Locked { .. })
        ),
        "{e:#}"
    );
    rt.block_on(node.stop()).expect("node stops");
    // Stopped: verify works.
    bt(&["chain", "verify", "--data-dir", d]).expect("verifies once stopped");
}

#[test]
fn io_errors_print_their_cause_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A data directory that is a file.
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").expect("write");
    let g = dir.path().join("genesis.toml");
    std::fs::write(&g, genesis_text(1)).expect("write");
    let e = bt(&[
        "chain",
        "run",
        "--genesis",
        g.to_str().expect("utf-8"),
        "--data-dir",
        file.to_str().expect("utf-8"),
        "--listen",
        "127.0.0.1:0",
    ])
    .expect_err("not a directory");
    assert_no_repeats(&e);
    assert_eq!(format!("{e:#}").matches("os error").count(), 1, "{e:#}");

    // A wallet whose coldkey is a directory: bt-keys' I/O error.
    let wallets = dir.path().join("wallets");
    std::fs::create_dir_all(wallets.join("w").join("coldkey")).expect("mkdir");
    let e = bt(&[
        "transfer",
        "--wallet-dir",
        wallets.to_str().expect("utf-8"),
        "--wallet",
        "w",
        "--to",
        ALICE,
        "--amount",
        "1",
    ])
    .expect_err("unreadable");
    assert!(
        matches!(find::<bt_keys::Error>(&e), Some(bt_keys::Error::Io { .. })),
        "{e:#}"
    );
    assert_no_repeats(&e);
    assert_eq!(format!("{e:#}").matches("os error").count(), 1, "{e:#}");
}

#[test]
fn a_neuron_config_syntax_error_has_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("neuron.toml");
    std::fs::write(&cfg, "name = \"n\"\n[train]\nsteps = 10\nbatch = 16,\n").expect("write");
    let e = bt(&["neuron", "run", "--config", cfg.to_str().expect("utf-8")]).expect_err("bad");
    match find::<bt_neuron::Error>(&e) {
        Some(bt_neuron::Error::ConfigSyntax {
            line, column, file, ..
        }) => {
            assert_eq!((*line, *column), (4, 11), "{e:#}");
            assert_eq!(file.as_deref(), cfg.to_str());
        }
        _ => panic!("{e:#}"),
    }
    assert!(error_report(&e).contains("line 4, column 11"), "{e:#}");
}

#[test]
fn a_negative_amount_is_an_amount_not_a_flag() {
    for amount in ["-5", "0"] {
        let e = Cli::try_parse_from([
            "bt", "transfer", "--to", ALICE, "--amount", amount, "--suri", "//Alice",
        ])
        .expect_err("refused");
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{e}");
        assert!(
            e.to_string().contains("TAO amounts must be positive"),
            "{e}"
        );
    }
}

#[test]
fn a_mistyped_address_is_a_length_or_checksum_error() {
    let mut deleted = ALICE.to_string();
    deleted.remove(20);
    let e = Cli::try_parse_from([
        "bt", "transfer", "--to", &deleted, "--amount", "1", "--suri", "//Alice",
    ])
    .expect_err("refused");
    let shown = e.to_string();
    assert!(!shown.contains("reserved prefix"), "{shown}");
    assert!(
        shown.contains("decodes to") || shown.contains("checksum"),
        "{shown}"
    );
}

#[test]
fn node_takes_ip_port_like_listen_and_refuses_garbage() {
    let e = Cli::try_parse_from(["bt", "metagraph", "--node", "nonsense"]).expect_err("refused");
    assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{e}");
    assert!(
        e.to_string()
            .contains("expected ip:port or http://host:port"),
        "{e}"
    );
}

#[test]
fn an_amount_beyond_the_balance_is_reported_in_tao() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut cfg = bt_chain::NodeConfig::new(dir.path().join("chain"), Some(genesis(1_000_000_000)));
    cfg.listen = "127.0.0.1:0".parse().expect("addr");
    let node = rt.block_on(bt_chain::serve(cfg)).expect("node serves");
    // `--node` as `--listen` writes it: ip:port.
    let addr = node.addr.to_string();
    let e = bt(&[
        "transfer", "--node", &addr, "--suri", "//Alice", "--to", ALICE, "--amount", "5",
    ])
    .expect_err("too much");
    match find::<bt_cli::Error>(&e) {
        Some(bt_cli::Error::InsufficientBalance {
            need_rao, have_rao, ..
        }) => assert_eq!((*need_rao, *have_rao), (5_000_000_000, 1_000_000_000)),
        _ => panic!("{e:#}"),
    }
    let printed = error_report(&e);
    assert!(
        printed.contains("holds 1 TAO, the transfer needs 5 TAO"),
        "{printed}"
    );
    assert!(!printed.contains("rao"), "{printed}");

    // The ledger's own refusal speaks TAO too.
    let refusal = bt_ledger::Error::InsufficientStake {
        coldkey: ALICE.parse().expect("address"),
        hotkey: ALICE.parse().expect("address"),
        need: 1_500_000_000,
        have: 1,
    };
    assert!(
        refusal
            .to_string()
            .ends_with("need 1.5 TAO, have 0.000000001 TAO"),
        "{refusal}"
    );
    rt.block_on(node.stop()).expect("node stops");
}
