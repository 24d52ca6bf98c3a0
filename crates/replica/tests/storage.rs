//! The replica's storage: openraft's own conformance suite, and the ledger behind it (a
//! leader's block applies on another replica, a wrong one is refused and changes nothing, a
//! snapshot carries the whole chain, everything survives a reopen).

use bt_keys::Keypair;
use bt_ledger::{Call, State, Transaction, build_block, genesis_state};
use bt_replica::codec::{Applied, Command, Refused};
use bt_replica::{Entry, Error, LogId, LogStore, Machine, StorageError, TypeConfig};
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, EntryPayload, RaftSnapshotBuilder, StorageIOError};

fn genesis() -> State {
    let alice = Keypair::from_uri("//Alice").expect("alice");
    genesis_state(&format!(
        "[params]\ntau = 1.0\nepsilon = 0.5\nmax_neurons = 16\nblock_time_ms = 100\n\
         [[accounts]]\naddress = \"{}\"\nbalance = 1_000_000_000_000\n",
        alice.public()
    ))
    .expect("genesis")
}

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, Machine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, Machine), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(&e))?;
        let log = LogStore::open(dir.path()).map_err(|e| StorageIOError::write(&e))?;
        let machine =
            Machine::open(dir.path(), Some(&genesis())).map_err(|e| StorageIOError::write(&e))?;
        Ok((dir, log, machine))
    }
}

#[test]
fn openraft_storage_suite_passes_on_our_storage() {
    Suite::test_all(Builder).expect("openraft's storage suite");
}

fn id(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn entry(index: u64, c: Command) -> Entry {
    Entry {
        log_id: id(index),
        payload: EntryPayload::Normal(c),
    }
}

/// Two signed transactions of a new chain, and the block a leader builds from them.
fn leader_block(g: &State) -> (Vec<Vec<u8>>, Command) {
    let alice = Keypair::from_uri("//Alice").expect("alice");
    let hot = Keypair::from_uri("//Alice//hot").expect("hot");
    let txs = vec![
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
                amount: 5_000_000_000,
            },
        ),
    ];
    let bytes = txs.iter().map(Transaction::encode).collect();
    let built = build_block(g, txs, 1_000);
    assert!(built.rejected.is_empty());
    (
        bytes,
        Command::Block {
            block: built.block.encode(),
            consumed: vec![0, 1],
            refused: vec![],
        },
    )
}

#[test]
fn a_leaders_block_applies_a_wrong_one_is_refused_and_both_survive_a_reopen() -> anyhow::Result<()>
{
    let g = genesis();
    let dir = tempfile::tempdir()?;
    let (txs, block) = leader_block(&g);
    {
        let m = Machine::open(dir.path(), Some(&g))?;
        assert_eq!(
            m.apply_entry(&entry(1, Command::Submit { txs: txs.clone() }))?,
            Applied::Submitted { added: 2 }
        );
        // The same submissions again (a retried client) add nothing.
        assert_eq!(
            m.apply_entry(&entry(2, Command::Submit { txs }))?,
            Applied::Submitted { added: 0 }
        );
        assert_eq!(m.store().pending_len()?, 2);

        // A block whose state hash is not what this replica computes is refused.
        let Command::Block { block: bytes, .. } = &block else {
            unreachable!()
        };
        let mut wrong = bt_ledger::Block::decode(bytes, usize::MAX)?;
        wrong.header.state_hash = bt_ledger::Hash([7; 32]);
        let refused = m.apply_entry(&entry(
            3,
            Command::Block {
                block: wrong.encode(),
                consumed: vec![0, 1],
                refused: vec![Refused {
                    hash: [1; 32],
                    why: "x".into(),
                }],
            },
        ));
        assert!(
            matches!(&refused, Err(Error::Diverged { height: 1, .. })),
            "{refused:?}"
        );
        assert_eq!((m.head().height, m.store().pending_len()?), (0, 2));
        assert_eq!(m.applied()?.0, Some(id(2)));

        assert_eq!(
            m.apply_entry(&entry(3, block))?,
            Applied::Block { height: 1 }
        );
        assert_eq!((m.head().height, m.store().pending_len()?), (1, 0));
    }
    let m = Machine::open(dir.path(), None)?;
    assert_eq!(m.head().height, 1);
    assert_eq!(m.applied()?.0, Some(id(3)));
    Ok(())
}

#[tokio::test]
async fn a_snapshot_carries_the_chain_to_a_new_replica_and_another_chains_is_refused()
-> anyhow::Result<()> {
    let g = genesis();
    let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (txs, block) = leader_block(&g);
    let mut leader = Machine::open(a.path(), Some(&g))?;
    leader.apply_entry(&entry(1, Command::Submit { txs }))?;
    leader.apply_entry(&entry(2, block))?;
    let snap = leader.build_snapshot().await?;

    let mut fresh = Machine::open(b.path(), Some(&g))?;
    fresh.install_snapshot(&snap.meta, snap.snapshot).await?;
    assert_eq!(fresh.head().hash(), leader.head().hash());
    assert_eq!(fresh.head().height, 1);
    assert_eq!(fresh.applied()?.0, Some(id(2)));
    assert_eq!(
        fresh.store().block_bytes(1)?,
        leader.store().block_bytes(1)?
    );
    assert_eq!(
        fresh.get_current_snapshot().await?.map(|s| s.meta),
        Some(snap.meta.clone())
    );

    // A replica of another chain refuses it and keeps its own.
    let other = tempfile::tempdir()?;
    let g2 = genesis_state(
        "[params]\ntau = 1.0\nepsilon = 0.5\nmax_neurons = 16\nblock_time_ms = 250\n",
    )?;
    let mut elsewhere = Machine::open(other.path(), Some(&g2))?;
    let again = leader.build_snapshot().await?;
    assert!(
        elsewhere
            .install_snapshot(&again.meta, again.snapshot)
            .await
            .is_err()
    );
    assert_eq!(elsewhere.head().genesis, g2.genesis);
    Ok(())
}

#[tokio::test]
async fn the_log_keeps_entries_votes_and_purges_across_a_reopen() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    {
        let mut log = LogStore::open(dir.path())?;
        log.append_all((1..=5).map(|i| {
            entry(
                i,
                Command::Submit {
                    txs: vec![vec![i as u8]],
                },
            )
        }))?;
        log.save_vote(&openraft::Vote::new(4, 2)).await?;
        log.purge(id(2)).await?;
        log.truncate(id(5)).await?;
    }
    let mut log = LogStore::open(dir.path())?;
    assert_eq!(log.read_vote().await?, Some(openraft::Vote::new(4, 2)));
    let state = log.get_log_state().await?;
    assert_eq!(
        (state.last_purged_log_id, state.last_log_id),
        (Some(id(2)), Some(id(4)))
    );
    let kept: Vec<u64> = log.entries(..)?.iter().map(|e| e.log_id.index).collect();
    assert_eq!(kept, [3, 4]);
    // A second process cannot open the same log.
    assert!(matches!(
        LogStore::open(dir.path()),
        Err(Error::Locked { .. })
    ));
    Ok(())
}
