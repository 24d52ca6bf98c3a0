//! The one error type of this crate: every way a transaction, a block or a genesis file is
//! refused, each with the facts needed to understand why.

use bt_keys::PublicKey;

use crate::Hash;

/// Everything the ledger refuses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The signature does not verify for the signer over the transaction's signing payload.
    #[error("bad signature on a transaction from {signer}")]
    BadSignature {
        /// Who claims to have signed.
        signer: PublicKey,
    },
    /// The nonce was already used by this account.
    #[error("stale nonce for {account}: expected {expected}, got {got}")]
    StaleNonce {
        /// The signer.
        account: PublicKey,
        /// The account's next nonce.
        expected: u64,
        /// The nonce in the transaction.
        got: u64,
    },
    /// The nonce skips ahead of the account's next nonce.
    #[error("future nonce for {account}: expected {expected}, got {got}")]
    FutureNonce {
        /// The signer.
        account: PublicKey,
        /// The account's next nonce.
        expected: u64,
        /// The nonce in the transaction.
        got: u64,
    },
    /// The account has never held a balance.
    #[error("unknown account {account}")]
    UnknownAccount {
        /// The account.
        account: PublicKey,
    },
    /// A weight row names a uid that is not registered.
    #[error("unknown uid {uid}: only {n} neurons are registered")]
    UnknownUid {
        /// The uid named.
        uid: u32,
        /// Neurons registered.
        n: u32,
    },
    /// The hotkey is not registered as a neuron.
    #[error("hotkey {hotkey} is not registered")]
    UnknownHotkey {
        /// The hotkey.
        hotkey: PublicKey,
    },
    /// The hotkey is already registered.
    #[error("hotkey {hotkey} is already registered as uid {uid}")]
    HotkeyAlreadyRegistered {
        /// The hotkey.
        hotkey: PublicKey,
        /// Its uid.
        uid: u32,
    },
    /// Not enough free balance.
    #[error(
        "insufficient balance in {account}: need {} TAO, have {} TAO",
        tao_string(*.need),
        tao_string(*.have)
    )]
    InsufficientBalance {
        /// The account.
        account: PublicKey,
        /// Rao needed.
        need: u64,
        /// Rao held.
        have: u64,
    },
    /// Not enough stake in the (coldkey, hotkey) position.
    #[error(
        "insufficient stake of {coldkey} on {hotkey}: need {} TAO, have {} TAO",
        tao_string(*.need),
        tao_string(*.have)
    )]
    InsufficientStake {
        /// The staking account.
        coldkey: PublicKey,
        /// The neuron's hotkey.
        hotkey: PublicKey,
        /// Rao needed.
        need: u64,
        /// Rao staked.
        have: u64,
    },
    /// A transfer or stake change of zero rao.
    #[error("amount must be positive")]
    ZeroAmount,
    /// An amount would overflow a `u64` of rao. Defensive: genesis refuses a total above
    /// `u64::MAX` rao and minting stops short of it, so no single counter can overflow.
    #[error("{what} would overflow")]
    Overflow {
        /// Which quantity.
        what: &'static str,
    },
    /// A weight row names the same uid twice.
    #[error("duplicate uid {uid} in weight row")]
    DuplicateUid {
        /// The repeated uid.
        uid: u32,
    },
    /// A weight row with no entries.
    #[error("empty weight row")]
    EmptyRow,
    /// A weight row whose entries are all zero.
    #[error("weight row is all zeros")]
    ZeroRow,
    /// A weight given as a real number that is negative or not finite.
    #[error("weight {value} of uid {uid} is negative or not finite")]
    BadWeight {
        /// Its uid (its index in the row).
        uid: u32,
        /// The value given.
        value: f64,
    },
    /// The new row is too far from the old one: `||W_i_new - W_i_old||_2 >= epsilon`.
    #[error("weight change of uid {uid} is {distance:.6}, not below epsilon {epsilon:.6}")]
    WeightChangeTooLarge {
        /// The neuron.
        uid: u32,
        /// `||W_i_new - W_i_old||_2`.
        distance: f64,
        /// The ledger's bound.
        epsilon: f64,
    },
    /// A second weight update from the same neuron in one block.
    #[error("uid {uid} already set weights in block {height}")]
    DuplicateWeightUpdate {
        /// The neuron.
        uid: u32,
        /// The block.
        height: u64,
    },
    /// The encoded transaction is larger than the ledger allows.
    #[error("transaction of {size} bytes exceeds the limit of {max} bytes")]
    OversizedTransaction {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Registration refused: the ledger holds its maximum number of neurons.
    #[error("cannot register: all {max} neuron slots are taken")]
    TooManyNeurons {
        /// The maximum.
        max: u32,
    },
    /// Bytes that do not decode.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A block at the wrong height.
    #[error("block height {got} does not follow {expected_prev}")]
    WrongHeight {
        /// The height of the state the block was applied to.
        expected_prev: u64,
        /// The block's height.
        got: u64,
    },
    /// A block whose parent is not the current head.
    #[error("block {height} has parent {got}, expected {expected}")]
    WrongParent {
        /// The block's height.
        height: u64,
        /// The head's hash.
        expected: Hash,
        /// The parent in the block.
        got: Hash,
    },
    /// The header's transaction root does not match its transactions.
    #[error("block {height}: transaction root {got} does not match the transactions ({expected})")]
    TxRootMismatch {
        /// The block's height.
        height: u64,
        /// Computed from the transactions.
        expected: Hash,
        /// In the header.
        got: Hash,
    },
    /// The header's state hash does not match the state the block produces.
    #[error("block {height}: state hash {got} in the header, {expected} computed")]
    StateHashMismatch {
        /// The block's height.
        height: u64,
        /// Computed by applying the block.
        expected: Hash,
        /// In the header.
        got: Hash,
    },
    /// A transaction in a block was refused.
    #[error("block {height}, transaction {index}")]
    InBlock {
        /// The block's height.
        height: u64,
        /// The transaction's index in the block.
        index: usize,
        /// Why it was refused.
        #[source]
        source: Box<Error>,
    },
    /// Genesis names a mechanism this ledger does not know.
    #[error("invalid genesis: unknown mechanism {name:?} (expected paper, paper_no_self or yuma)")]
    UnknownMechanism {
        /// The name given.
        name: String,
    },
    /// A genesis parameter of the mechanism is out of its range.
    #[error("invalid genesis: {name} = {value} must be {expected}")]
    BadParameter {
        /// The parameter.
        name: &'static str,
        /// The value given.
        value: f64,
        /// Its range.
        expected: &'static str,
    },
    /// The genesis file is not valid.
    #[error("invalid genesis: {reason}")]
    Genesis {
        /// What is wrong.
        reason: String,
    },
}

/// The result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Shorthand for [`Error::Malformed`].
    pub(crate) fn malformed(what: &'static str, reason: impl Into<String>) -> Error {
        Error::Malformed {
            what,
            reason: reason.into(),
        }
    }
}

/// Rao as TAO, exactly and without trailing zeros (`1500000000` is `"1.5"`), for messages
/// to people who type amounts in TAO.
pub fn tao_string(rao: u64) -> String {
    let whole = rao / crate::RAO_PER_TAO;
    let frac = rao % crate::RAO_PER_TAO;
    if frac == 0 {
        return whole.to_string();
    }
    let digits = format!("{frac:09}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}
