//! kill -9 the node while a client streams transactions, restart it, and check that no
//! acknowledged transaction is lost and the chain still verifies. The long version (50+
//! kills) is `scripts/ledger-crash-test.sh`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bt_chain::load::{check_acked, stream_transfers};
use bt_keys::Keypair;

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn spawn_node(dir: &Path, genesis: &Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_bt-chain-node"))
        .arg(dir)
        .arg(genesis)
        .arg(format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node starts")
}

#[test]
fn acknowledged_transactions_survive_kill_9() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let genesis = tmp.path().join("genesis.toml");
    let acked = tmp.path().join("acked.txt");
    let alice = Keypair::from_uri("//Alice").expect("alice");
    let bob = Keypair::from_uri("//Bob").expect("bob").public();
    std::fs::write(
        &genesis,
        format!(
            "[params]\ntau = 1.0\nepsilon = 0.5\nmax_neurons = 8\nblock_time_ms = 40\n\
             [[accounts]]\naddress = \"{}\"\nbalance = 1_000_000_000_000\n",
            alice.public()
        ),
    )
    .expect("genesis");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut node = spawn_node(&dir, &genesis, port);

    let stop = Arc::new(AtomicBool::new(false));
    let loader = {
        let (url, acked, stop) = (url.clone(), acked.clone(), stop.clone());
        rt.spawn(async move {
            stream_transfers(
                std::slice::from_ref(&url),
                &alice,
                bob,
                u64::MAX,
                &acked,
                Duration::from_secs(30),
                || stop.load(Ordering::Relaxed),
            )
            .await
        })
    };
    // Kill at varied moments (a fixed sequence, so the test is reproducible).
    for wait_ms in [350u64, 520, 430] {
        std::thread::sleep(Duration::from_millis(wait_ms));
        node.kill().expect("kill -9");
        node.wait().expect("reaped");
        node = spawn_node(&dir, &genesis, port);
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let report = rt.block_on(loader).expect("joined").expect("loader ran");
    assert!(report.acked > 0, "nothing was acknowledged");
    let check = rt
        .block_on(check_acked(&url, &acked, Duration::from_secs(20)))
        .expect("checked");
    node.kill().expect("kill -9");
    node.wait().expect("reaped");
    assert_eq!(check.acked, report.acked);
    assert_eq!(
        (check.lost, check.refused, check.pending),
        (0, 0, 0),
        "{check:?}"
    );
    let v = bt_chain::verify(&dir, |_, _| {}).expect("the chain verifies after the crashes");
    assert!(v.transactions >= check.included);
}
