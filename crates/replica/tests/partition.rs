//! A network partition between validators, in one process: every raft link goes through a
//! proxy the test can cut. The leader cut off from the others cannot acknowledge; the two
//! others elect a leader and go on; after healing, the old leader's uncommitted entry is gone
//! and all three hold the same chain.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bt_chain::TxStatus;
use bt_keys::Keypair;
use bt_ledger::{Call, Hash, State, Transaction, genesis_state};
use bt_replica::{NodeId, Peer, Replica, ReplicaConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// One direction of one raft link: a TCP proxy that can be cut (existing connections
/// dropped, new ones refused) and healed.
struct Link {
    addr: SocketAddr,
    open: watch::Sender<bool>,
}

async fn link(to: String) -> anyhow::Result<Link> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (open, rx) = watch::channel(true);
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let mut rx = rx.clone();
            if !*rx.borrow() {
                continue;
            }
            let to = to.clone();
            tokio::spawn(async move {
                let Ok(mut out) = TcpStream::connect(&to).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut out) => {}
                    _ = rx.wait_for(|open| !*open) => {}
                }
            });
        }
    });
    Ok(Link { addr, open })
}

fn genesis() -> State {
    let alice = Keypair::from_uri("//Alice").expect("alice");
    genesis_state(&format!(
        "[params]\ntau = 1.0\nepsilon = 0.5\nmax_neurons = 16\nblock_time_ms = 50\n\
         [[accounts]]\naddress = \"{}\"\nbalance = 1_000_000_000_000\n",
        alice.public()
    ))
    .expect("genesis")
}

async fn until<F: Fn() -> bool>(what: &str, f: F) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(30), "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn transfer(alice: &Keypair, g: &State, nonce: u64, amount: u64) -> Transaction {
    let bob = Keypair::from_uri("//Bob").expect("bob");
    Transaction::sign(
        alice,
        &g.genesis,
        nonce,
        Call::Transfer {
            to: bob.public(),
            amount,
        },
    )
}

/// Submits to whichever validator (but `not`) leads, again while leadership moves (a
/// validator that led a moment ago answers `NotLeader`), as a client would.
async fn submit(
    rs: &BTreeMap<NodeId, Replica>,
    not: Option<NodeId>,
    tx: &Transaction,
) -> anyhow::Result<NodeId> {
    let t0 = Instant::now();
    loop {
        let leader = rs
            .values()
            .map(Replica::status)
            .find(|s| s.role == "leader" && Some(s.id) != not)
            .map(|s| s.id);
        if let Some(id) = leader {
            match rs[&id].submit(vec![tx.encode()]).await {
                Ok(_) => return Ok(id),
                Err(bt_replica::Error::NotLeader { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(20),
            "no leader took {tx:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn status_of(r: &Replica, id: &Hash) -> TxStatus {
    r.machine().store().tx_status(id).expect("read")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partitioned_leader_acknowledges_nothing_and_rejoins_the_majoritys_chain()
-> anyhow::Result<()> {
    let g = genesis();
    let dirs: Vec<tempfile::TempDir> = (0..3)
        .map(|_| tempfile::tempdir())
        .collect::<Result<_, _>>()?;
    let mut members = BTreeMap::new();
    let mut raft_listeners = BTreeMap::new();
    for id in 1..=3u64 {
        let raft = std::net::TcpListener::bind("127.0.0.1:0")?;
        let api = std::net::TcpListener::bind("127.0.0.1:0")?;
        members.insert(
            id,
            Peer {
                raft: raft.local_addr()?.to_string(),
                api: api.local_addr()?.to_string(),
            },
        );
        raft_listeners.insert(id, (raft, api));
    }
    // links[(a, b)]: validator a's way to b's raft.
    let mut links: BTreeMap<(NodeId, NodeId), Link> = BTreeMap::new();
    for a in 1..=3u64 {
        for b in (1..=3u64).filter(|&b| b != a) {
            links.insert((a, b), link(members[&b].raft.clone()).await?);
        }
    }
    let mut rs: BTreeMap<NodeId, Replica> = BTreeMap::new();
    for (id, (raft, api)) in raft_listeners {
        let mut cfg = ReplicaConfig::new(
            id,
            dirs[id as usize - 1].path().to_path_buf(),
            Some(g.clone()),
            members.clone(),
        );
        cfg.raft_listener = Some(raft);
        cfg.api_listener = Some(api);
        cfg.heartbeat_ms = 50;
        cfg.election_ms = (200, 400);
        cfg.raft_routes = links
            .iter()
            .filter(|((a, _), _)| *a == id)
            .map(|((_, b), l)| (*b, l.addr.to_string()))
            .collect();
        rs.insert(id, Replica::start(cfg).await?);
    }
    let leader = |rs: &BTreeMap<NodeId, Replica>, not: Option<NodeId>| {
        rs.values()
            .map(Replica::status)
            .find(|s| s.role == "leader" && Some(s.id) != not)
            .map(|s| s.id)
    };
    until("a leader", || leader(&rs, None).is_some()).await;
    let alice = Keypair::from_uri("//Alice")?;
    let first = transfer(&alice, &g, 0, 1);
    let old = submit(&rs, None, &first).await?;
    until("the first transfer in a block everywhere", || {
        rs.values()
            .all(|r| matches!(status_of(r, &first.hash()), TxStatus::Included(_)))
    })
    .await;

    // Cut the leader off: every link to or from it.
    for ((a, b), l) in &links {
        if *a == old || *b == old {
            l.open.send_replace(false);
        }
    }
    let cut_off = transfer(&alice, &g, 1, 2);
    let answer = tokio::time::timeout(
        Duration::from_millis(1500),
        rs[&old].submit(vec![cut_off.encode()]),
    )
    .await;
    assert!(
        !matches!(answer, Ok(Ok(_))),
        "a leader without a majority acknowledged a submission: {answer:?}"
    );
    // The majority elects another leader and goes on.
    until("a new leader among the majority", || {
        leader(&rs, Some(old)).is_some()
    })
    .await;
    let mut acknowledged = vec![first.hash()];
    let mut new = 0;
    for nonce in 1..4 {
        let tx = transfer(&alice, &g, nonce, 1);
        new = submit(&rs, Some(old), &tx).await?;
        acknowledged.push(tx.hash());
    }
    until("the majority includes what it acknowledged", || {
        rs.iter().filter(|(id, _)| **id != old).all(|(_, r)| {
            acknowledged
                .iter()
                .all(|h| matches!(status_of(r, h), TxStatus::Included(_)))
        })
    })
    .await;

    // Heal: the old leader steps down, drops its uncommitted entry and catches up.
    for l in links.values() {
        l.open.send_replace(true);
    }
    until("the old leader holds the majority's chain", || {
        acknowledged
            .iter()
            .all(|h| matches!(status_of(&rs[&old], h), TxStatus::Included(_)))
    })
    .await;
    assert_ne!(rs[&old].status().role, "leader");
    let h = rs
        .values()
        .map(|r| r.machine().head().height)
        .min()
        .expect("some");
    let at = |r: &Replica| {
        (
            r.machine().store().block_bytes(h).expect("read"),
            r.machine().store().state_bytes(h).expect("read"),
        )
    };
    let reference = at(&rs[&new]);
    for r in rs.values() {
        assert_eq!(at(r), reference);
    }
    // The cut-off submission was never committed: no replica has it (its nonce went to
    // another transfer, of another amount).
    for r in rs.values() {
        assert_eq!(status_of(r, &cut_off.hash()), TxStatus::Unknown);
    }
    for (_, r) in rs {
        r.shutdown().await?;
    }
    Ok(())
}
