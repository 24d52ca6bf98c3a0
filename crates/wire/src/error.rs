//! The one error type of bt-wire; every variant maps to the [`ReturnCode`] an axon answers with.

use crate::proto::ReturnCode;
use crate::tensor::DType;

/// Everything that can go wrong in bt-wire, with the facts that explain it.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// A tensor's dtype field holds a value that is not a known [`DType`].
    #[error("{what}: unknown dtype value {value}")]
    UnknownDType {
        /// Which tensor (e.g. `inputs[0]`).
        what: String,
        /// The raw enum value received.
        value: i32,
    },
    /// A tensor's rank is above the protocol's limit.
    #[error("{what}: rank {rank} is above the limit of {max}")]
    RankTooLarge {
        /// Which tensor.
        what: String,
        /// The rank received.
        rank: usize,
        /// The limit.
        max: usize,
    },
    /// A shape whose element count overflows or exceeds the limit.
    #[error("{what}: shape {shape:?} has too many elements (limit {max})")]
    TooManyElements {
        /// Which tensor.
        what: String,
        /// The shape received.
        shape: Vec<u64>,
        /// The limit on elements.
        max: u64,
    },
    /// A tensor's data length does not match its shape and dtype.
    #[error("{what}: shape {shape:?} of {dtype} needs {expected} bytes, got {got}")]
    ByteLength {
        /// Which tensor.
        what: String,
        /// The shape.
        shape: Vec<usize>,
        /// The dtype.
        dtype: DType,
        /// Bytes the shape needs.
        expected: usize,
        /// Bytes received.
        got: usize,
    },
    /// A float tensor holds NaN or an infinity.
    #[error("{what}: non-finite value {value} at element {index}")]
    NonFinite {
        /// Which tensor.
        what: String,
        /// The flat index of the first offending element.
        index: usize,
        /// The value (NaN or ±inf).
        value: f32,
    },
    /// A request carries a different number of tensors than the model declares.
    #[error("{what}: expected {expected} tensors, got {got}")]
    TensorCount {
        /// `inputs` or `grad_outputs`.
        what: &'static str,
        /// Declared count.
        expected: usize,
        /// Received count.
        got: usize,
    },
    /// A tensor's dtype does not fit what the model declares.
    #[error("{what}: dtype {got} does not fit the declared {expected}")]
    DTypeMismatch {
        /// Which tensor.
        what: String,
        /// What the model declares (e.g. `float` or `int`).
        expected: String,
        /// The dtype received.
        got: DType,
    },
    /// A tensor's shape does not match what the model declares.
    #[error("{what}: shape {got:?} does not match the declared {expected}")]
    ShapeMismatch {
        /// Which tensor.
        what: String,
        /// The declared shape, rendered (e.g. `[batch, 1024]`).
        expected: String,
        /// The shape received.
        got: Vec<usize>,
    },
    /// The encoded request is larger than the axon accepts.
    #[error("request of {got} bytes is above the limit of {max} bytes")]
    TooLarge {
        /// Encoded size received.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// The caller field is not a valid sr25519 public key.
    #[error("caller key is invalid ({len} bytes): {reason}")]
    InvalidCaller {
        /// Length of the field received.
        len: usize,
        /// Why it was refused.
        reason: String,
    },
    /// The request is meant for another axon.
    #[error("receiver {got} is not this axon ({expected})")]
    WrongReceiver {
        /// This axon's hotkey (SS58).
        expected: String,
        /// The receiver named in the request (SS58 or hex when not a key).
        got: String,
    },
    /// The signature field is not 64 bytes of a well-formed sr25519 signature.
    #[error("signature is malformed ({len} bytes)")]
    MalformedSignature {
        /// Length of the field received.
        len: usize,
    },
    /// The signature does not verify against the caller's key.
    #[error("signature does not verify for caller {caller}")]
    BadSignature {
        /// The caller (SS58).
        caller: String,
    },
    /// The nonce was already used, or is too far below the caller's highest accepted nonce.
    #[error(
        "nonce {nonce} of caller {caller} was already used, or is too far below its highest nonce {last}"
    )]
    StaleNonce {
        /// The caller (SS58).
        caller: String,
        /// The nonce received.
        nonce: u64,
        /// The highest accepted nonce of that caller.
        last: u64,
    },
    /// The nonce is too far from the axon's clock.
    #[error("nonce {nonce} is more than {window_s} s away from the axon's clock ({now} ns)")]
    NonceOutOfWindow {
        /// The nonce received.
        nonce: u64,
        /// The axon's clock, Unix nanoseconds.
        now: u64,
        /// The window, seconds.
        window_s: u64,
    },
    /// The queue is full and the caller's stake outranks nobody in it.
    #[error("queue is full ({depth} requests) and stake {stake} outranks none of them: back off")]
    QueueFull {
        /// Queue depth.
        depth: usize,
        /// The caller's stake.
        stake: u64,
    },
    /// The request was pushed out of the full queue by a caller with more stake.
    #[error("overloaded: request with stake {stake} was pushed out of the queue by stake {by}")]
    Evicted {
        /// The evicted request's stake.
        stake: u64,
        /// The stake of the request that took its place.
        by: u64,
    },
    /// The request's timeout passed before the model answered.
    #[error("timed out after {ms} ms")]
    Timeout {
        /// The timeout, milliseconds.
        ms: u64,
    },
    /// The axon is not serving requests.
    #[error("axon is not serving: {reason}")]
    NotServing {
        /// Why.
        reason: String,
    },
    /// The model failed.
    #[error("model failed in {method}: {reason}")]
    Model {
        /// `forward`, `backward`, or `mask` (the stake view gave a bad response scale).
        method: &'static str,
        /// The model's error, rendered.
        reason: String,
    },
    /// A conversion asked of a tensor that its dtype does not allow.
    #[error("cannot convert a {from} tensor to {to}")]
    Conversion {
        /// The tensor's dtype.
        from: DType,
        /// The requested type.
        to: &'static str,
    },
    /// A transport failure seen by the client (connection refused, reset, gRPC status).
    #[error("transport to {endpoint}: {reason}")]
    Transport {
        /// The peer's endpoint.
        endpoint: String,
        /// The failure.
        reason: String,
    },
    /// A configuration value that cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An I/O failure (binding a socket).
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl WireError {
    /// The return code an axon answers with for this fault.
    pub fn code(&self) -> ReturnCode {
        use WireError::*;
        match self {
            UnknownDType { .. }
            | RankTooLarge { .. }
            | TooManyElements { .. }
            | ByteLength { .. }
            | NonFinite { .. }
            | TensorCount { .. }
            | DTypeMismatch { .. }
            | TooLarge { .. }
            | Conversion { .. } => ReturnCode::BadRequest,
            ShapeMismatch { .. } => ReturnCode::ShapeMismatch,
            InvalidCaller { .. }
            | WrongReceiver { .. }
            | MalformedSignature { .. }
            | BadSignature { .. } => ReturnCode::Unauthenticated,
            StaleNonce { .. } | NonceOutOfWindow { .. } => ReturnCode::StaleNonce,
            QueueFull { .. } => ReturnCode::Backoff,
            Evicted { .. } => ReturnCode::Overloaded,
            Timeout { .. } => ReturnCode::Timeout,
            NotServing { .. } | Transport { .. } => ReturnCode::Unavailable,
            Model { .. } | Config(_) | Io(_) => ReturnCode::Internal,
        }
    }
}

/// The result type of bt-wire.
pub type Result<T> = std::result::Result<T, WireError>;
