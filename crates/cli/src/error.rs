//! The one error type of this crate: the refusals the command line makes itself, before
//! anything is sent. Commands return `anyhow::Error` chains holding these and the errors of
//! the crates they call; callers and tests match with `downcast_ref::<bt_cli::Error>()`.

use bt_keys::PublicKey;

/// A refusal of the command line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The signer's free balance does not cover the amount.
    #[error(
        "insufficient balance: {account} holds {} TAO, the {what} needs {} TAO",
        tao(.have_rao),
        tao(.need_rao)
    )]
    InsufficientBalance {
        /// The signing account.
        account: PublicKey,
        /// "transfer" or "stake".
        what: &'static str,
        /// The amount, in rao.
        need_rao: u64,
        /// The free balance, in rao.
        have_rao: u64,
    },
    /// The coldkey's stake on the hotkey does not cover the amount to remove.
    #[error(
        "insufficient stake: {coldkey} has {} TAO staked on {hotkey}, removing needs {} TAO",
        tao(.have_rao),
        tao(.need_rao)
    )]
    InsufficientStake {
        /// The staking coldkey.
        coldkey: PublicKey,
        /// The neuron's hotkey.
        hotkey: PublicKey,
        /// The amount, in rao.
        need_rao: u64,
        /// The stake, in rao.
        have_rao: u64,
    },
}

fn tao(rao: &u64) -> String {
    bt_ledger::error::tao_string(*rao)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tao_is_exact() {
        assert_eq!(tao(&0), "0");
        assert_eq!(tao(&1), "0.000000001");
        assert_eq!(tao(&1_500_000_000), "1.5");
        assert_eq!(tao(&5_000_000_000), "5");
        assert_eq!(tao(&u64::MAX), "18446744073.709551615");
    }
}
