//! `verify`: replays every stored block from the stored genesis and checks every header's
//! state hash and every stored state.

use std::path::Path;

use bt_ledger::{Hash, apply};

use crate::error::{Error, Result};
use crate::store::Store;

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Blocks replayed.
    pub blocks: u64,
    /// Transactions replayed.
    pub transactions: u64,
    /// The state hash at the head.
    pub state_hash: Hash,
    /// The chain id.
    pub genesis: Hash,
}

/// Replays the chain in `dir` (the node must not be running on it). `progress` is called
/// with `(height, head)` after each block.
pub fn verify(dir: &Path, mut progress: impl FnMut(u64, u64)) -> Result<VerifyReport> {
    let (store, head) = Store::open(dir, None)?;
    let genesis = store.genesis()?.ok_or(Error::NoChain {
        dir: dir.to_path_buf(),
    })?;
    let stored0 = store.state_bytes(0)?.ok_or(Error::Corrupt {
        height: 0,
        reason: "no genesis state".into(),
    })?;
    if stored0 != genesis.encode() {
        return Err(Error::Corrupt {
            height: 0,
            reason: "stored state 0 is not the genesis".into(),
        });
    }
    let mut state = genesis.clone();
    let mut transactions = 0;
    for h in 1..=head.height {
        let block = store.block(h)?.ok_or(Error::Corrupt {
            height: h,
            reason: "missing block".into(),
        })?;
        transactions += block.txs.len() as u64;
        // `apply` checks height, parent, transaction root, signatures and the state hash.
        state = apply(&state, &block)?.0;
        let stored = store.state_bytes(h)?.ok_or(Error::Corrupt {
            height: h,
            reason: "missing state".into(),
        })?;
        if stored != state.encode() {
            return Err(Error::Corrupt {
                height: h,
                reason: "stored state differs from the replayed one".into(),
            });
        }
        progress(h, head.height);
    }
    if store.block(head.height + 1)?.is_some() {
        return Err(Error::Corrupt {
            height: head.height + 1,
            reason: "block without a state".into(),
        });
    }
    Ok(VerifyReport {
        blocks: head.height,
        transactions,
        state_hash: state.hash(),
        genesis: genesis.genesis,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn genesis() -> bt_ledger::State {
        bt_ledger::genesis_state(
            "[params]\ntau = 1.0\nepsilon = 0.5\nmax_neurons = 4\nblock_time_ms = 100\n\
             [[accounts]]\naddress = \"5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY\"\nbalance = 1\n",
        )
        .unwrap()
    }

    #[test]
    fn a_missing_directory_is_refused_and_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nosuchdir");
        let e = verify(&missing, |_, _| {}).unwrap_err();
        assert!(
            matches!(e, Error::NoDataDir { ref dir } if *dir == missing),
            "{e}"
        );
        assert!(!missing.exists());
        // An empty directory holds no chain.
        let e = verify(dir.path(), |_, _| {}).unwrap_err();
        assert!(matches!(e, Error::NoChain { .. }), "{e}");
    }

    #[test]
    fn an_open_database_is_locked_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), Some(&genesis())).unwrap();
        let e = verify(dir.path(), |_, _| {}).unwrap_err();
        assert!(matches!(e, Error::Locked { .. }), "{e}");
        assert!(e.to_string().contains("stop the node first"), "{e}");
        drop(store);
        assert_eq!(verify(dir.path(), |_, _| {}).unwrap().blocks, 0);
    }
}
