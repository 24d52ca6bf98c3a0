//! A node under Yuma consensus: epochs every `tempo` blocks, its values in the metagraph,
//! and a chain that `verify` replays, bonds included.

use std::time::Duration;

use bt_chain::{Client, NodeConfig, TxStatus, serve, verify};
use bt_keys::Keypair;
use bt_ledger::{Call, Fixed, Mechanism, State, Transaction, genesis_state};

fn genesis() -> State {
    let alice = Keypair::from_uri("//Alice").expect("alice");
    genesis_state(&format!(
        "[params]\ntau = 1.0\nepsilon = 2.0\nmax_neurons = 16\nblock_time_ms = 20\n\
         mechanism = \"yuma\"\ntempo = 2\nkappa = 0.5\n\
         [[accounts]]\naddress = \"{}\"\nbalance = 1_000_000_000_000\n",
        alice.public()
    ))
    .expect("genesis")
}

async fn wait_included(c: &mut Client, id: &bt_ledger::Hash) -> u64 {
    for _ in 0..500 {
        if let TxStatus::Included(h) = c.tx_status(id).await.expect("status") {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("transaction {id} not included");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yuma_node_runs_shows_its_values_and_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = genesis();
    let mut cfg = NodeConfig::new(dir.path().to_path_buf(), Some(g.clone()));
    cfg.listen = "127.0.0.1:0".parse().expect("addr");
    let node = serve(cfg).await.expect("serves");
    let mut c = Client::connect(&format!("http://{}", node.addr))
        .await
        .expect("connects");
    let alice = Keypair::from_uri("//Alice").expect("alice");
    let hot: Vec<Keypair> = (0..4)
        .map(|i| Keypair::from_uri(&format!("//Alice//hot{i}")).expect("hot"))
        .collect();
    // Neuron 0 (1 TAO) weighs only itself; 1, 2, 3 (30 TAO each) weigh each other. (A
    // self-only row votes 0 in every column's consensus: with a majority of stake it would
    // block every consensus, and emission would fall back to stake.)
    let mut last = None;
    for (i, h) in hot.iter().enumerate() {
        let t = Transaction::sign(
            h,
            &g.genesis,
            0,
            Call::Register {
                coldkey: alice.public(),
                endpoint: "127.0.0.1:9000".parse().expect("addr"),
            },
        );
        c.submit(&t).await.expect("register");
        let t = Transaction::sign(
            &alice,
            &g.genesis,
            i as u64,
            Call::AddStake {
                hotkey: h.public(),
                amount: if i == 0 {
                    1_000_000_000
                } else {
                    30_000_000_000
                },
            },
        );
        last = Some(c.submit(&t).await.expect("stake"));
    }
    wait_included(&mut c, &last.expect("some")).await;
    for (i, h) in hot.iter().enumerate().skip(1) {
        let row: Vec<(u32, u32)> = (1..4u32)
            .filter(|&j| j as usize != i)
            .map(|j| (j, 1))
            .collect();
        let t = Transaction::sign(h, &g.genesis, 1, Call::SetWeights { row });
        last = Some(c.submit(&t).await.expect("weights"));
    }
    let h = wait_included(&mut c, &last.expect("some")).await;
    // Two more epochs.
    let mut blocks = c.subscribe().await.expect("subscribes");
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), blocks.message())
            .await
            .expect("in time")
            .expect("ok")
            .expect("header");
        if next.height >= h + 4 {
            break;
        }
    }
    let mg = c.metagraph(None, true).await.expect("metagraph");
    assert_eq!(mg.mechanism, Mechanism::Yuma);
    assert_eq!(mg.tempo, 2);
    let n0 = &mg.neurons[0];
    assert_eq!(
        n0.incentive,
        Fixed::ZERO,
        "a self-only row earns no incentive"
    );
    assert_eq!(n0.dividends, Fixed::ZERO);
    assert!(n0.bonds.is_empty());
    for n in &mg.neurons[1..] {
        assert!(n.incentive.to_f64() > 0.3, "{}", n.incentive.to_f64());
        assert!(n.consensus.to_f64() > 0.0);
        assert!((n.trust.to_f64() - 1.0).abs() < 1e-6);
        assert_eq!(n.bonds.len(), 2, "bonds on the two peers it weighs");
        assert!(n.stake > 30_000_000_000, "paid");
    }
    let total: f64 = mg.neurons.iter().map(|n| n.emission.to_f64()).sum();
    assert!((total - 1.0).abs() < 1e-8, "{total}");
    assert_eq!(
        n0.emission,
        Fixed::ZERO,
        "nothing minted to neuron 0 once others weigh"
    );
    node.stop().await.expect("stops");

    // `verify` replays every block, Yuma epochs and bonds included, to the stored state.
    let report = verify(dir.path(), |_, _| {}).expect("verifies");
    assert!(report.blocks >= h + 4);
}
