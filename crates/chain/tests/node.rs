//! A real node over real sockets: submit, include, query, restart, verify, limits.

use std::time::Duration;

use bt_chain::{Client, Error, NodeConfig, TxStatus, serve, verify};
use bt_keys::Keypair;
use bt_ledger::{Call, State, Transaction, genesis_state};

fn genesis(block_ms: u64) -> State {
    let alice = Keypair::from_uri("//Alice").expect("alice");
    genesis_state(&format!(
        "[params]\ntau = 1.0\nepsilon = 0.5\nmax_neurons = 16\nblock_time_ms = {block_ms}\nmax_tx_bytes = 1024\n\
         [[accounts]]\naddress = \"{}\"\nbalance = 1_000_000_000_000\n",
        alice.public()
    ))
    .expect("genesis")
}

fn config(dir: &std::path::Path, g: Option<State>) -> NodeConfig {
    let mut cfg = NodeConfig::new(dir.to_path_buf(), g);
    cfg.listen = "127.0.0.1:0".parse().expect("addr");
    cfg
}

async fn wait_included(c: &mut Client, id: &bt_ledger::Hash) -> u64 {
    for _ in 0..200 {
        if let TxStatus::Included(h) = c.tx_status(id).await.expect("status") {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("transaction {id} not included");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_include_query_restart_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = genesis(30);
    let node = serve(config(dir.path(), Some(g.clone())))
        .await
        .expect("serves");
    let url = format!("http://{}", node.addr);
    let mut c = Client::connect(&url).await.expect("connects");
    assert_eq!(c.status().await.expect("status").genesis, g.genesis);

    let alice = Keypair::from_uri("//Alice").expect("alice");
    let hot = Keypair::from_uri("//Alice//hot").expect("hot");
    let txs = [
        Transaction::sign(
            &hot,
            &g.genesis,
            0,
            Call::Register {
                coldkey: alice.public(),
                endpoint: "127.0.0.1:9000".parse().expect("addr"),
            },
        ),
        Transaction::sign(
            &alice,
            &g.genesis,
            0,
            Call::AddStake {
                hotkey: hot.public(),
                amount: 50_000_000_000,
            },
        ),
    ];
    let mut last = None;
    for t in &txs {
        let id = c.submit(t).await.expect("acknowledged");
        assert_eq!(id, t.hash());
        // Resubmitting the same bytes is answered with the same id, not stored twice.
        assert_eq!(c.submit(t).await.expect("idempotent"), id);
        last = Some(id);
    }
    let h = wait_included(&mut c, &last.expect("some")).await;
    // A stale nonce is refused at submission.
    let stale = Transaction::sign(
        &alice,
        &g.genesis,
        0,
        Call::Transfer {
            to: hot.public(),
            amount: 1,
        },
    );
    match c.submit(&stale).await {
        Err(Error::Rpc(s)) => assert_eq!(s.code(), tonic::Code::FailedPrecondition, "{s}"),
        other => panic!("unexpected {other:?}"),
    }
    // A forged signature is refused.
    let mut forged = Transaction::sign(
        &alice,
        &g.genesis,
        1,
        Call::Transfer {
            to: hot.public(),
            amount: 1,
        },
    );
    forged.nonce = 2;
    match c.submit(&forged).await {
        Err(Error::Rpc(s)) => assert_eq!(s.code(), tonic::Code::Unauthenticated, "{s}"),
        other => panic!("unexpected {other:?}"),
    }
    // Garbage and oversized requests are refused.
    match c.submit_bytes(vec![1, 2, 3]).await {
        Err(Error::Rpc(s)) => assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s}"),
        other => panic!("unexpected {other:?}"),
    }
    match c.submit_bytes(vec![0; 64 * 1024]).await {
        Err(Error::Rpc(s)) => assert!(
            matches!(
                s.code(),
                tonic::Code::InvalidArgument | tonic::Code::OutOfRange
            ),
            "{s}"
        ),
        other => panic!("unexpected {other:?}"),
    }

    let mg = c.metagraph_message(None, true).await.expect("metagraph");
    assert_eq!(mg.neurons.len(), 1);
    assert!(mg.neurons[0].stake >= 50_000_000_000);
    assert_eq!(mg.neurons[0].weight_uids, vec![0]);
    let at = c
        .metagraph(Some(h), false)
        .await
        .expect("metagraph at height");
    assert_eq!(at.height, h);
    let block = c.block(Some(h)).await.expect("block");
    assert_eq!(block.header.height, h);
    let acct = c.account(&alice.public()).await.expect("account");
    assert_eq!(acct.nonce, 1);
    assert_eq!(acct.stakes.len(), 1);

    let mut blocks = c.subscribe().await.expect("subscribes");
    let next = tokio::time::timeout(Duration::from_secs(10), blocks.message())
        .await
        .expect("in time")
        .expect("ok")
        .expect("header");
    assert!(next.height > h);
    node.stop().await.expect("stops");

    // Restart: resumes at the last committed block, same chain.
    let (store_height, _) = {
        let r = verify(dir.path(), |_, _| {}).expect("verifies");
        (r.blocks, r)
    };
    let node = serve(config(dir.path(), None)).await.expect("restarts");
    let mut c = Client::connect(&format!("http://{}", node.addr))
        .await
        .expect("connects");
    let st = c.status().await.expect("status");
    assert!(st.height >= store_height);
    node.stop().await.expect("stops");

    // Another genesis does not open this chain.
    let other = genesis(31);
    assert!(matches!(
        serve(config(dir.path(), Some(other))).await,
        Err(Error::GenesisMismatch { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_per_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), Some(genesis(1000)));
    cfg.rate_per_sec = 1;
    cfg.burst = 3;
    let node = serve(cfg).await.expect("serves");
    let mut c = Client::connect(&format!("http://{}", node.addr))
        .await
        .expect("connects");
    let mut limited = 0;
    for _ in 0..10 {
        if let Err(Error::Rpc(s)) = c.status().await {
            assert_eq!(s.code(), tonic::Code::ResourceExhausted);
            limited += 1;
        }
    }
    assert!(limited >= 6, "only {limited} of 10 requests were limited");
    node.stop().await.expect("stops");
}

#[test]
fn verify_detects_tampering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let node = serve(config(dir.path(), Some(genesis(10))))
            .await
            .expect("serves");
        tokio::time::sleep(Duration::from_millis(200)).await;
        node.stop().await.expect("stops");
    });
    let report = verify(dir.path(), |_, _| {}).expect("verifies");
    assert!(report.blocks >= 2);
    // Rewrite block 1 with a different timestamp: its id changes, so block 2's parent no
    // longer matches.
    let (store, _) = bt_chain::Store::open(dir.path(), None).expect("opens");
    let mut b1 = store.block(1).expect("read").expect("block 1");
    b1.header.timestamp_ms += 1;
    drop(store);
    let db = redb::Database::open(dir.path().join(bt_chain::store::DB_FILE)).expect("db");
    let w = db.begin_write().expect("write");
    {
        let table: redb::TableDefinition<'_, u64, &[u8]> = redb::TableDefinition::new("blocks");
        let mut t = w.open_table(table).expect("table");
        t.insert(1, b1.encode().as_slice()).expect("insert");
    }
    w.commit().expect("commit");
    drop(db);
    match verify(dir.path(), |_, _| {}) {
        // The stored state 1 names the original block as head; the replay names the forged one.
        Err(
            Error::Corrupt { height: 1, .. }
            | Error::Ledger(bt_ledger::Error::WrongParent { height: 2, .. }),
        ) => {}
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_first_skips_a_dead_address_and_names_every_one_when_none_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = serve(config(dir.path(), Some(genesis(1000))))
        .await
        .expect("serves");
    // A port that was free a moment ago: nothing listens there.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| format!("http://{a}"))
        .expect("a free port");
    let live = format!("http://{}", node.addr);
    let urls = vec![dead.clone(), live.clone()];
    let mut next = 0;
    let c = Client::connect_first(&urls, &mut next)
        .await
        .expect("the live one");
    assert_eq!(c.url(), live);
    assert_eq!(next, 0, "the next attempt starts after the one used");
    node.stop().await.expect("stops");
    let err = Client::connect_first(&urls, &mut next)
        .await
        .expect_err("nothing answers");
    let Error::NoneAnswered { tried } = &err else {
        panic!("expected NoneAnswered, got {err:?}");
    };
    assert_eq!(tried.len(), 2);
    assert!(
        err.to_string().contains(&dead) && err.to_string().contains(&live),
        "{err}"
    );
    assert!(err.is_lost());
}
