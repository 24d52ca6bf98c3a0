//! Three validators in one process over loopback gRPC: they elect a leader, replicate
//! submissions and blocks, survive the leader's loss, and a restarted validator catches up
//! to the same chain.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bt_chain::TxStatus;
use bt_keys::Keypair;
use bt_ledger::{Call, State, Transaction, genesis_state};
use bt_replica::{Applied, Error, NodeId, Peer, Replica, ReplicaConfig};

fn genesis() -> State {
    let alice = Keypair::from_uri("//Alice").expect("alice");
    genesis_state(&format!(
        "[params]\ntau = 1.0\nepsilon = 0.5\nmax_neurons = 16\nblock_time_ms = 50\n\
         [[accounts]]\naddress = \"{}\"\nbalance = 1_000_000_000_000\n",
        alice.public()
    ))
    .expect("genesis")
}

async fn start(
    id: NodeId,
    dir: &std::path::Path,
    g: &State,
    members: &BTreeMap<NodeId, Peer>,
) -> anyhow::Result<Replica> {
    start_with(id, dir, g, members, 5_000).await
}

async fn start_with(
    id: NodeId,
    dir: &std::path::Path,
    g: &State,
    members: &BTreeMap<NodeId, Peer>,
    snapshot_every: u64,
) -> anyhow::Result<Replica> {
    let mut cfg = ReplicaConfig::new(id, dir.to_path_buf(), Some(g.clone()), members.clone());
    cfg.snapshot_every = snapshot_every;
    cfg.raft_listener = Some(std::net::TcpListener::bind(&members[&id].raft)?);
    cfg.api_listener = Some(std::net::TcpListener::bind(&members[&id].api)?);
    cfg.heartbeat_ms = 50;
    cfg.election_ms = (200, 400);
    Ok(Replica::start(cfg).await?)
}

async fn until<F: Fn() -> bool>(what: &str, f: F) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(20), "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn leader(rs: &[Option<Replica>]) -> Option<usize> {
    rs.iter()
        .position(|r| r.as_ref().is_some_and(|r| r.status().role == "leader"))
}

/// Submits to whichever validator leads, again while leadership moves; gives back which one
/// took it and what applying it did.
async fn submit(rs: &[Option<Replica>], tx: &Transaction) -> anyhow::Result<(usize, Applied)> {
    let t0 = Instant::now();
    loop {
        if let Some(l) = leader(rs) {
            match rs[l].as_ref().expect("up").submit(vec![tx.encode()]).await {
                Ok(a) => return Ok((l, a)),
                Err(Error::NotLeader { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        anyhow::ensure!(t0.elapsed() < Duration::from_secs(20), "no leader took it");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn stake(alice: &Keypair, hot: &Keypair, g: &State, nonce: u64) -> Transaction {
    Transaction::sign(
        alice,
        &g.genesis,
        nonce,
        Call::AddStake {
            hotkey: hot.public(),
            amount: 1_000_000_000,
        },
    )
}

/// Three validators' data directories, and their membership on free loopback ports
/// (released for the validators to bind).
/// Alice's coldkey, her hotkey `//Alice//hot`, and the hotkey's registration (nonce 0).
fn register(g: &State) -> anyhow::Result<(Keypair, Keypair, Transaction)> {
    let alice = Keypair::from_uri("//Alice")?;
    let hot = Keypair::from_uri("//Alice//hot")?;
    let register = Transaction::sign(
        &hot,
        &g.genesis,
        0,
        Call::Register {
            coldkey: alice.public(),
            endpoint: "127.0.0.1:9000".parse()?,
        },
    );
    Ok((alice, hot, register))
}

fn three() -> anyhow::Result<(Vec<tempfile::TempDir>, BTreeMap<NodeId, Peer>)> {
    let dirs = (0..3)
        .map(|_| tempfile::tempdir())
        .collect::<Result<_, _>>()?;
    let free = || -> anyhow::Result<String> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .to_string())
    };
    let mut members = BTreeMap::new();
    for id in 1..=3u64 {
        members.insert(
            id,
            Peer {
                raft: free()?,
                api: free()?,
            },
        );
    }
    Ok((dirs, members))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_validators_agree_survive_the_leaders_loss_and_catch_up() -> anyhow::Result<()> {
    let g = genesis();
    let (dirs, members) = three()?;
    let mut rs: Vec<Option<Replica>> = Vec::new();
    for (k, id) in (1..=3u64).enumerate() {
        rs.push(Some(start(id, dirs[k].path(), &g, &members).await?));
    }
    until("a leader", || leader(&rs).is_some()).await;

    let (alice, hot, register) = register(&g)?;
    // The validator that leads takes it (a validator that led a moment ago, before another
    // won the election, points elsewhere: the helper asks again, as a client would).
    let (l, applied) = submit(&rs, &register).await?;
    assert_eq!(applied, Applied::Submitted { added: 1 });
    // A follower points at the leader (once it has heard from it).
    let follower = (l + 1) % 3;
    until("the follower hears from the leader", || {
        rs[follower].as_ref().expect("up").status().leader == Some(l as u64 + 1)
    })
    .await;
    let refused = rs[follower]
        .as_ref()
        .expect("up")
        .submit(vec![register.encode()])
        .await;
    assert!(
        matches!(&refused, Err(Error::NotLeader { leader: Some(id), api: Some(_) }) if *id == l as u64 + 1),
        "{refused:?}"
    );
    let mut nonce = 0;
    let mut acknowledged = vec![register.hash()];
    for _ in 0..5 {
        let tx = stake(&alice, &hot, &g, nonce);
        nonce += 1;
        acknowledged.push(tx.hash());
        submit(&rs, &tx).await?;
    }
    let included = |rs: &[Option<Replica>], ids: &[bt_ledger::Hash]| {
        rs.iter().flatten().all(|r| {
            ids.iter()
                .all(|id| matches!(r.machine().store().tx_status(id), Ok(TxStatus::Included(_))))
        })
    };
    until(
        "every acknowledged transaction in a block everywhere",
        || included(&rs, &acknowledged),
    )
    .await;

    // Through the ledger API: a follower forwards a submission to the leader, and says where
    // it stands.
    let follower_api = format!("http://{}", members[&(follower as u64 + 1)].api);
    let mut client = bt_chain::Client::connect(&follower_api).await?;
    let status = client.status().await?;
    let replication = status
        .replication
        .expect("a validator says where it stands");
    assert_eq!(
        (replication.role.as_str(), replication.leader),
        ("follower", Some(l as u64 + 1))
    );
    assert_eq!(
        replication.leader_api.as_deref(),
        Some(members[&(l as u64 + 1)].api.as_str())
    );
    let tx = stake(&alice, &hot, &g, nonce);
    nonce += 1;
    assert_eq!(client.submit(&tx).await?, tx.hash());
    acknowledged.push(tx.hash());
    until("the forwarded transaction in a block everywhere", || {
        included(&rs, &acknowledged)
    })
    .await;

    // The leader goes; the other two elect one and go on.
    let old = rs[l].take().expect("up");
    old.shutdown().await?;
    until("a new leader", || leader(&rs).is_some()).await;
    for _ in 0..5 {
        let tx = stake(&alice, &hot, &g, nonce);
        nonce += 1;
        acknowledged.push(tx.hash());
        let (l2, _) = submit(&rs, &tx).await?;
        assert_ne!(l2, l);
    }
    until("the two go on", || included(&rs, &acknowledged)).await;

    // The old leader comes back from its directory and catches up.
    rs[l] = Some(start(l as u64 + 1, dirs[l].path(), &g, &members).await?);
    until("the restarted validator catches up", || {
        included(&rs, &acknowledged)
    })
    .await;

    // The same chain everywhere: the block and the state at a height all have.
    let h = rs
        .iter()
        .flatten()
        .map(|r| r.machine().head().height)
        .min()
        .expect("some");
    let at = |r: &Replica| {
        (
            r.machine().store().block_bytes(h).expect("read"),
            r.machine().store().state_bytes(h).expect("read"),
        )
    };
    let first = at(rs[0].as_ref().expect("up"));
    assert!(first.0.is_some());
    for r in rs.iter().flatten() {
        assert_eq!(at(r), first);
    }
    for r in rs.into_iter().flatten() {
        r.shutdown().await?;
    }
    // Every data directory replays from genesis to the same head.
    let mut heads = Vec::new();
    for d in &dirs {
        let report = bt_chain::verify(d.path(), |_, _| {})?;
        heads.push(report.blocks);
    }
    assert!(heads.iter().all(|&x| x >= h), "{heads:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_validator_behind_the_kept_log_catches_up_from_a_snapshot() -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let g = genesis();
    let (dirs, members) = three()?;
    // A snapshot every 10 entries, keeping 10 behind it: a validator away for long falls
    // behind what the log keeps.
    let mut rs: Vec<Option<Replica>> = Vec::new();
    for (k, id) in (1..=3u64).enumerate() {
        rs.push(Some(
            start_with(id, dirs[k].path(), &g, &members, 10).await?,
        ));
    }
    until("a leader", || leader(&rs).is_some()).await;
    let (alice, hot, register) = register(&g)?;
    let (l, _) = submit(&rs, &register).await?;
    let away = (l + 1) % 3;
    rs[away].take().expect("up").shutdown().await?;
    let mut acknowledged = Vec::new();
    for nonce in 0..40 {
        let tx = stake(&alice, &hot, &g, nonce);
        submit(&rs, &tx).await?;
        acknowledged.push(tx.hash());
    }
    let purged = |rs: &[Option<Replica>]| {
        rs.iter()
            .flatten()
            .filter_map(|r| r.raft().metrics().borrow().purged.map(|p| p.index))
            .min()
            .unwrap_or(0)
    };
    until("the others purge their logs", || purged(&rs) > 20).await;
    rs[away] = Some(start_with(away as u64 + 1, dirs[away].path(), &g, &members, 10).await?);
    let included = |r: &Replica| {
        acknowledged
            .iter()
            .all(|id| matches!(r.machine().store().tx_status(id), Ok(TxStatus::Included(_))))
    };
    until("the validator that was away catches up", || {
        rs.iter().flatten().all(included)
    })
    .await;
    let back = rs[away].as_ref().expect("up");
    assert!(
        back.raft().metrics().borrow().snapshot.is_some(),
        "it caught up without a snapshot"
    );
    let h = rs
        .iter()
        .flatten()
        .map(|r| r.machine().head().height)
        .min()
        .expect("some");
    let at = |r: &Replica| r.machine().store().state_bytes(h).expect("read");
    let reference = at(rs[l].as_ref().expect("up"));
    for r in rs.iter().flatten() {
        assert_eq!(at(r), reference);
    }
    for r in rs.into_iter().flatten() {
        r.shutdown().await?;
    }
    // The snapshot carried the whole chain: it replays from genesis.
    bt_chain::verify(dirs[away].path(), |_, _| {})?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_cluster_without_its_first_member_still_elects() -> anyhow::Result<()> {
    // Only the first member initializes a new cluster at once; the others wait their turn and
    // initialize only if nobody has reached them, so a first start without member 1 goes on.
    let g = genesis();
    let (dirs, members) = three()?;
    let mut rs: Vec<Option<Replica>> = vec![None];
    for (k, id) in (2..=3u64).enumerate() {
        rs.push(Some(start(id, dirs[k + 1].path(), &g, &members).await?));
    }
    until("a leader among the two", || leader(&rs).is_some()).await;
    let (_, _, register) = register(&g)?;
    let (_, applied) = submit(&rs, &register).await?;
    assert_eq!(applied, Applied::Submitted { added: 1 });
    // Member 1 joins late, from an empty directory, and learns the chain from the others.
    rs[0] = Some(start(1, dirs[0].path(), &g, &members).await?);
    until("the late member has the registration", || {
        matches!(
            rs[0]
                .as_ref()
                .expect("up")
                .machine()
                .store()
                .tx_status(&register.hash()),
            Ok(TxStatus::Included(_))
        )
    })
    .await;
    for r in rs.into_iter().flatten() {
        r.shutdown().await?;
    }
    Ok(())
}
