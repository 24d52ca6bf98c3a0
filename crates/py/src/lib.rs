//! `bittensor_rs._native`: the compiled core of the Python package `bittensor_rs`. Every
//! class here is a thin wrapper over this workspace's Rust code (keys and wallets from
//! `bt-keys`, the ledger client from `bt-chain`), so Python users get the same signing, the
//! same checks and the same error messages as the `bt` command.
//!
//! ```python
//! import bittensor_rs as bt
//!
//! alice = bt.Keypair.from_uri("//Alice")
//! ledger = bt.Ledger("http://127.0.0.1:7711")          # or several validators
//! hot = bt.Keypair.from_uri("//Alice//miner")
//! ledger.register(hot, "127.0.0.1:8091", coldkey=alice)
//! mg = ledger.metagraph()                               # NumPy arrays: stake, rank, W
//! ledger.set_weights(hot, [0.0] * mg.n + [1.0])
//! ```
//!
//! Calls into Rust release the GIL while they wait on the network. Errors are Python
//! exceptions (`BtError` and its subclasses) carrying the Rust error's message.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use bt_chain::{Client, Failover};
use bt_keys::wallet::{Wallet as RustWallet, default_wallet_dir};
use bt_keys::{Keypair as RustKeypair, PublicKey, Signature};
use bt_ledger::{Call, RAO_PER_TAO};
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

mod wire;

create_exception!(
    _native,
    BtError,
    PyException,
    "Every error this package raises."
);
create_exception!(
    _native,
    KeysError,
    BtError,
    "A key, an address, a signature or a wallet file that is not valid (or a wrong passphrase)."
);
create_exception!(
    _native,
    LedgerError,
    BtError,
    "The ledger could not do what was asked."
);
create_exception!(
    _native,
    UnreachableError,
    LedgerError,
    "No ledger node (validator) answered."
);
create_exception!(
    _native,
    NoLeaderError,
    LedgerError,
    "A replicated ledger between leaders: ask again, or ask another validator."
);
create_exception!(
    _native,
    RefusedError,
    LedgerError,
    "The ledger refused a transaction (bad nonce, unknown hotkey, weight change too large...)."
);

fn keys_error(e: bt_keys::Error) -> PyErr {
    KeysError::new_err(e.to_string())
}

fn ledger_error(e: bt_chain::Error) -> PyErr {
    let msg = e.to_string();
    match e {
        bt_chain::Error::NoLeader => NoLeaderError::new_err(msg),
        bt_chain::Error::Unreachable { .. }
        | bt_chain::Error::NoneAnswered { .. }
        | bt_chain::Error::Transport(_) => UnreachableError::new_err(msg),
        bt_chain::Error::Ledger(_) | bt_chain::Error::Refused { .. } => RefusedError::new_err(msg),
        _ => LedgerError::new_err(msg),
    }
}

/// The runtime every network call of this package runs on (two worker threads).
fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    if let Some(rt) = RT.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bittensor-rs")
        .enable_all()
        .build()
        .map_err(|e| BtError::new_err(format!("cannot start the async runtime: {e}")))?;
    Ok(RT.get_or_init(|| rt))
}

/// Runs `fut` to completion with the GIL released.
fn block_on<F>(py: Python<'_>, fut: F) -> PyResult<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    let rt = runtime()?;
    Ok(py.detach(|| rt.block_on(fut)))
}

fn public_key(ss58: &str) -> PyResult<PublicKey> {
    PublicKey::from_ss58(ss58).map_err(keys_error)
}

/// An sr25519 key pair, derived as Substrate and bittensor derive them.
#[pyclass(module = "bittensor_rs", frozen)]
struct Keypair {
    inner: RustKeypair,
}

#[pymethods]
impl Keypair {
    /// From a secret URI: `//Alice`, `//Alice//hot`, or a phrase with a derivation path.
    #[staticmethod]
    fn from_uri(uri: &str) -> PyResult<Keypair> {
        Ok(Keypair {
            inner: RustKeypair::from_uri(uri).map_err(keys_error)?,
        })
    }

    /// From a BIP39 phrase (and an optional password), as bittensor's `regen` does.
    #[staticmethod]
    #[pyo3(signature = (phrase, password = None))]
    fn from_mnemonic(phrase: &str, password: Option<&str>) -> PyResult<Keypair> {
        Ok(Keypair {
            inner: RustKeypair::from_phrase(phrase, password).map_err(keys_error)?,
        })
    }

    /// A new key pair and its phrase (12, 15, 18, 21 or 24 words).
    #[staticmethod]
    #[pyo3(signature = (words = 12))]
    fn generate(words: usize) -> PyResult<(Keypair, String)> {
        let (inner, phrase) = RustKeypair::generate(words).map_err(keys_error)?;
        Ok((Keypair { inner }, phrase))
    }

    /// The SS58 address (prefix 42).
    #[getter]
    fn ss58_address(&self) -> String {
        self.inner.public().to_ss58()
    }

    /// The 32-byte public key.
    #[getter]
    fn public_key<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.inner.public().as_bytes())
    }

    /// A 64-byte signature of `message` (in the ledger's signing context).
    fn sign<'py>(&self, py: Python<'py>, message: &[u8]) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.sign(message).to_bytes())
    }

    /// Whether `signature` is this key's signature of `message`.
    fn verify(&self, message: &[u8], signature: &[u8]) -> PyResult<bool> {
        verify_with(&self.inner.public(), message, signature)
    }

    fn __repr__(&self) -> String {
        format!("Keypair({})", self.inner.public().to_ss58())
    }
}

fn verify_with(key: &PublicKey, message: &[u8], signature: &[u8]) -> PyResult<bool> {
    let sig = Signature::from_bytes(signature).map_err(keys_error)?;
    Ok(key.verify(message, &sig).is_ok())
}

/// Whether `signature` is the signature of `message` by the key at `ss58_address`.
#[pyfunction]
fn verify(ss58_address: &str, message: &[u8], signature: &[u8]) -> PyResult<bool> {
    verify_with(&public_key(ss58_address)?, message, signature)
}

/// `path`, or bittensor's wallet directory.
fn wallet_dir(path: Option<PathBuf>) -> PyResult<PathBuf> {
    match path {
        Some(p) => Ok(p),
        None => default_wallet_dir()
            .ok_or_else(|| KeysError::new_err("no home directory to find ~/.bittensor/wallets in")),
    }
}

/// A wallet in bittensor's layout (`~/.bittensor/wallets/NAME`): a coldkey (encrypted in this
/// project's format or bittensor's `$NACL`), its public file, and hotkeys.
#[pyclass(module = "bittensor_rs", frozen)]
struct Wallet {
    inner: RustWallet,
}

#[pymethods]
impl Wallet {
    /// Opens wallet `name` under `path` (default: bittensor's wallet directory).
    #[new]
    #[pyo3(signature = (name = "default", path = None))]
    fn new(name: &str, path: Option<PathBuf>) -> PyResult<Wallet> {
        let dir = wallet_dir(path)?;
        Ok(Wallet {
            inner: RustWallet::open(&dir, name).map_err(keys_error)?,
        })
    }

    /// Creates wallet `name` under `path` (default: bittensor's wallet directory) with a new
    /// coldkey encrypted with `passphrase` and a new hotkey `hotkey`, from fresh `words`-word
    /// mnemonics. Returns the wallet and the two mnemonics (coldkey's, hotkey's): the only
    /// way to recover the keys. Refuses to replace existing key files unless `overwrite`.
    #[staticmethod]
    #[pyo3(signature = (name, passphrase, hotkey = "default", words = 12, path = None, overwrite = false))]
    fn create(
        py: Python<'_>,
        name: &str,
        passphrase: &str,
        hotkey: &str,
        words: usize,
        path: Option<PathBuf>,
        overwrite: bool,
    ) -> PyResult<(Wallet, String, String)> {
        let dir = wallet_dir(path)?;
        let made = py
            .detach(|| RustWallet::create(&dir, name, hotkey, words, passphrase, overwrite))
            .map_err(keys_error)?;
        Ok((
            Wallet { inner: made.wallet },
            made.coldkey_phrase.to_string(),
            made.hotkey_phrase.to_string(),
        ))
    }

    /// Copies (and checks) the wallet in directory `source`, one the Python bittensor wrote
    /// or one of this project's, as wallet `name` (default: the source's name) under `path`,
    /// as `bt wallet import` does: the coldkey is opened with `passphrase` and checked
    /// against its public file; with `reencrypt` it is stored in this project's format
    /// (Argon2id, XChaCha20-Poly1305; the Python bittensor cannot open that copy), otherwise
    /// copied byte for byte.
    #[staticmethod]
    #[pyo3(signature = (source, passphrase, name = None, path = None, reencrypt = false, overwrite = false))]
    fn import_from(
        py: Python<'_>,
        source: PathBuf,
        passphrase: &str,
        name: Option<String>,
        path: Option<PathBuf>,
        reencrypt: bool,
        overwrite: bool,
    ) -> PyResult<Wallet> {
        let dir = wallet_dir(path)?;
        let name = match name {
            Some(n) => n,
            None => source
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_owned)
                .ok_or_else(|| {
                    PyValueError::new_err(format!(
                        "{} has no wallet name: pass name=",
                        source.display()
                    ))
                })?,
        };
        let opts = bt_keys::wallet::ImportOptions {
            reencrypt,
            overwrite,
            params: bt_keys::keyfile::KdfParams::default(),
        };
        let got = py
            .detach(|| bt_keys::wallet::import_wallet(&source, &dir, &name, passphrase, opts))
            .map_err(keys_error)?;
        Ok(Wallet { inner: got.wallet })
    }

    /// Adds hotkey `name` from a fresh `words`-word mnemonic; returns the mnemonic.
    #[pyo3(signature = (name, words = 12, overwrite = false))]
    fn new_hotkey(&self, name: &str, words: usize, overwrite: bool) -> PyResult<String> {
        Ok(self
            .inner
            .new_hotkey(name, words, overwrite)
            .map_err(keys_error)?
            .to_string())
    }

    /// Its name.
    #[getter]
    fn name(&self) -> String {
        self.inner.name().to_owned()
    }

    /// Its directory.
    #[getter]
    fn path(&self) -> PathBuf {
        self.inner.path().to_path_buf()
    }

    /// The coldkey, decrypted with `passphrase`.
    fn coldkey(&self, py: Python<'_>, passphrase: &str) -> PyResult<Keypair> {
        // The key derivation takes a second or more: other Python threads go on.
        let inner = py
            .detach(|| self.inner.coldkey(passphrase))
            .map_err(keys_error)?;
        Ok(Keypair { inner })
    }

    /// The coldkey's SS58 address, from its public file (no passphrase needed).
    fn coldkey_address(&self) -> PyResult<String> {
        Ok(self.inner.coldkey_public().map_err(keys_error)?.to_ss58())
    }

    /// How the coldkey file is stored.
    fn coldkey_encryption(&self) -> PyResult<String> {
        Ok(self
            .inner
            .coldkey_encryption()
            .map_err(keys_error)?
            .describe()
            .to_owned())
    }

    /// Hotkey `name`.
    #[pyo3(signature = (name = "default"))]
    fn hotkey(&self, name: &str) -> PyResult<Keypair> {
        Ok(Keypair {
            inner: self.inner.hotkey(name).map_err(keys_error)?,
        })
    }

    /// The hotkeys' names, sorted.
    fn hotkey_names(&self) -> PyResult<Vec<String>> {
        self.inner.hotkey_names().map_err(keys_error)
    }

    fn __repr__(&self) -> String {
        format!("Wallet({:?}, {:?})", self.inner.name(), self.inner.path())
    }
}

/// The metagraph at one height: per-neuron values as NumPy arrays, indexed by uid.
#[pyclass(module = "bittensor_rs", frozen)]
struct Metagraph {
    inner: bt_chain::Metagraph,
}

impl Metagraph {
    fn column<'py, T: numpy::Element>(
        &self,
        py: Python<'py>,
        f: impl Fn(&bt_chain::MetagraphNeuron) -> T,
    ) -> Bound<'py, PyArray1<T>> {
        self.inner
            .neurons
            .iter()
            .map(f)
            .collect::<Vec<T>>()
            .into_pyarray(py)
    }
}

#[pymethods]
impl Metagraph {
    /// The ledger height it was read at.
    #[getter]
    fn height(&self) -> u64 {
        self.inner.height
    }

    /// The number of neurons.
    #[getter]
    fn n(&self) -> usize {
        self.inner.neurons.len()
    }

    /// The mechanism the ledger runs: `paper`, `paper_no_self` or `yuma`.
    #[getter]
    fn mechanism(&self) -> String {
        self.inner.mechanism.to_string()
    }

    /// Inflation per block, in TAO.
    #[getter]
    fn tau(&self) -> f64 {
        self.inner.tau.to_f64()
    }

    /// Every rao in existence.
    #[getter]
    fn total_issuance(&self) -> u64 {
        self.inner.total_issuance
    }

    /// The uids, `0..n`.
    #[getter]
    fn uids<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u32>> {
        self.column(py, |n| n.uid)
    }

    /// Stake in TAO.
    #[getter]
    fn stake<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.column(py, |n| n.stake as f64 / RAO_PER_TAO as f64)
    }

    /// Stake in rao (exact).
    #[getter]
    fn stake_rao<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        self.column(py, |n| n.stake)
    }

    /// Rank at this height.
    #[getter]
    fn rank<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.column(py, |n| n.rank.to_f64())
    }

    /// Yuma's consensus `C_i` (zero under the paper's mechanisms).
    #[getter]
    fn consensus<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.column(py, |n| n.consensus.to_f64())
    }

    /// Yuma's trust `T_i`.
    #[getter]
    fn trust<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.column(py, |n| n.trust.to_f64())
    }

    /// Yuma's incentive `I_i`.
    #[getter]
    fn incentive<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.column(py, |n| n.incentive.to_f64())
    }

    /// Yuma's dividends `D_i`.
    #[getter]
    fn dividends<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.column(py, |n| n.dividends.to_f64())
    }

    /// Yuma's emission share `E_i`.
    #[getter]
    fn emission<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.column(py, |n| n.emission.to_f64())
    }

    /// The block each neuron last set weights in (0: never).
    #[getter]
    fn last_update<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        self.column(py, |n| n.last_update)
    }

    /// The weight matrix `W` (`n x n`, each row on the simplex), or `None` when the metagraph
    /// was read without weights.
    #[getter]
    fn weights<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyArray2<f64>>>> {
        if !self.inner.with_weights {
            return Ok(None);
        }
        let n = self.inner.neurons.len();
        let mut w = Array2::<f64>::zeros((n, n));
        for (i, nm) in self.inner.neurons.iter().enumerate() {
            for &(j, v) in &nm.row {
                w[(i, j as usize)] = f64::from(v) / f64::from(bt_ledger::WEIGHT_ONE);
            }
        }
        Ok(Some(w.into_pyarray(py)))
    }

    /// Each neuron's hotkey address.
    #[getter]
    fn hotkeys(&self) -> Vec<String> {
        self.inner
            .neurons
            .iter()
            .map(|n| n.hotkey.to_ss58())
            .collect()
    }

    /// Each neuron's coldkey address.
    #[getter]
    fn coldkeys(&self) -> Vec<String> {
        self.inner
            .neurons
            .iter()
            .map(|n| n.coldkey.to_ss58())
            .collect()
    }

    /// Each neuron's axon endpoint (`ip:port`).
    #[getter]
    fn endpoints(&self) -> Vec<String> {
        self.inner
            .neurons
            .iter()
            .map(|n| n.endpoint.clone())
            .collect()
    }

    /// The uid of the neuron with this hotkey address, if registered.
    fn uid_of(&self, hotkey: &str) -> PyResult<Option<u32>> {
        let key = public_key(hotkey)?;
        Ok(self
            .inner
            .neurons
            .iter()
            .find(|n| n.hotkey == key)
            .map(|n| n.uid))
    }

    fn __repr__(&self) -> String {
        format!(
            "Metagraph(height={}, n={}, mechanism={})",
            self.inner.height,
            self.inner.neurons.len(),
            self.inner.mechanism
        )
    }
}

/// The addresses a [`Ledger`] is given: one (`"http://host:port"`, or several
/// comma-separated) or a list.
#[derive(FromPyObject)]
enum Urls {
    One(String),
    Many(Vec<String>),
}

fn urls(given: Urls) -> PyResult<Vec<String>> {
    let checked = match given {
        Urls::One(s) => bt_chain::split_urls(&s),
        Urls::Many(v) => bt_chain::check_urls(v),
    };
    let list = checked.map_err(|e| PyValueError::new_err(e.to_string()))?;
    if list.is_empty() {
        return Err(PyValueError::new_err("no ledger address given"));
    }
    Ok(list)
}

/// A client of the ledger: one node, or a replicated ledger's validators (it uses the first
/// that answers and moves to the next when that one is lost).
#[pyclass(module = "bittensor_rs", frozen)]
struct Ledger {
    link: tokio::sync::Mutex<Failover>,
}

impl Ledger {
    /// Runs `op` on a connected client with the GIL released; a lost node is forgotten, so
    /// that the next call asks another.
    fn run<T, F, Fut>(&self, py: Python<'_>, op: F) -> PyResult<T>
    where
        T: Send,
        F: FnOnce(Client) -> Fut + Send,
        Fut: Future<Output = bt_chain::Result<T>> + Send,
    {
        block_on(py, async {
            let mut link = self.link.lock().await;
            link.call(async |c: &mut Client| op(c.clone()).await).await
        })?
        .map_err(ledger_error)
    }

    /// Signs `call` with `key`, submits it and waits until it is in a block: its height.
    fn transact(&self, py: Python<'_>, key: &RustKeypair, call: Call, wait: f64) -> PyResult<u64> {
        let wait = seconds(wait)?;
        let key = key.clone();
        self.run(py, async move |mut c: Client| {
            let (id, _) = c.sign_and_submit(&key, call).await?;
            c.wait_included(&id, wait).await
        })?
        .ok_or_else(|| {
            LedgerError::new_err(format!(
                "transaction still pending after {:.1} s",
                wait.as_secs_f64()
            ))
        })
    }
}

fn seconds(s: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(s)
        .map_err(|_| PyValueError::new_err(format!("wait {s} s is not a duration")))
}

#[pymethods]
impl Ledger {
    /// Connects to the first of `urls` that answers.
    #[new]
    fn new(py: Python<'_>, urls: Urls) -> PyResult<Ledger> {
        let ledger = Ledger {
            link: tokio::sync::Mutex::new(Failover::new(self::urls(urls)?)),
        };
        ledger.run(py, async |_c: Client| Ok(()))?;
        Ok(ledger)
    }

    /// The address of the node in use.
    #[getter]
    fn url(&self, py: Python<'_>) -> Option<String> {
        // Another thread's call may hold the link: wait for it without the GIL.
        py.detach(|| {
            self.link
                .blocking_lock()
                .current()
                .map(|c| c.url().to_owned())
        })
    }

    /// The ledger's height.
    fn height(&self, py: Python<'_>) -> PyResult<u64> {
        self.run(py, async |mut c: Client| Ok(c.status().await?.height))
    }

    /// The metagraph at the head (or at `height`), with the weight matrix unless
    /// `weights=False`.
    #[pyo3(signature = (weights = true, height = None))]
    fn metagraph(&self, py: Python<'_>, weights: bool, height: Option<u64>) -> PyResult<Metagraph> {
        let inner = self.run(py, async move |mut c: Client| {
            c.metagraph(height, weights).await
        })?;
        Ok(Metagraph { inner })
    }

    /// Registers `hotkey` serving at `endpoint` (`ip:port`), owned by `coldkey` (default: the
    /// hotkey itself); waits until it is in a block and returns that block's height.
    #[pyo3(signature = (hotkey, endpoint, coldkey = None, wait = 30.0))]
    fn register(
        &self,
        py: Python<'_>,
        hotkey: &Keypair,
        endpoint: &str,
        coldkey: Option<&Keypair>,
        wait: f64,
    ) -> PyResult<u64> {
        let endpoint: SocketAddr = endpoint.parse().map_err(|e| {
            PyValueError::new_err(format!("endpoint {endpoint:?} is not ip:port: {e}"))
        })?;
        let coldkey = coldkey.unwrap_or(hotkey).inner.public();
        self.transact(
            py,
            &hotkey.inner,
            Call::Register { coldkey, endpoint },
            wait,
        )
    }

    /// Stakes `tao` from `coldkey` on the neuron of `hotkey` (an SS58 address).
    #[pyo3(signature = (coldkey, hotkey, tao, wait = 30.0))]
    fn add_stake(
        &self,
        py: Python<'_>,
        coldkey: &Keypair,
        hotkey: &str,
        tao: f64,
        wait: f64,
    ) -> PyResult<u64> {
        if !(tao.is_finite() && tao > 0.0) {
            return Err(PyValueError::new_err(format!(
                "stake {tao} TAO must be positive"
            )));
        }
        let call = Call::AddStake {
            hotkey: public_key(hotkey)?,
            amount: (tao * RAO_PER_TAO as f64).round() as u64,
        };
        self.transact(py, &coldkey.inner, call, wait)
    }

    /// Sets the weight row of `hotkey`'s neuron: `weights[j]` for uid `j`, non-negative (the
    /// ledger normalises the row). Returns the height of the block it is in.
    #[pyo3(signature = (hotkey, weights, wait = 30.0))]
    fn set_weights(
        &self,
        py: Python<'_>,
        hotkey: &Keypair,
        weights: Vec<f64>,
        wait: f64,
    ) -> PyResult<u64> {
        let row = bt_ledger::raw_row(&weights).map_err(|e| PyValueError::new_err(e.to_string()))?;
        self.transact(py, &hotkey.inner, Call::SetWeights { row }, wait)
    }

    /// New blocks as they are made: an iterator of `Block` headers (`next` waits for the
    /// next one; `Blocks.next(timeout)` gives up after `timeout` seconds and returns None).
    fn subscribe(&self, py: Python<'_>) -> PyResult<Blocks> {
        let stream = self.run(py, async |mut c: Client| c.subscribe().await)?;
        Ok(Blocks {
            stream: tokio::sync::Mutex::new(stream),
        })
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!("Ledger({:?})", self.urls(py))
    }
}

impl Ledger {
    /// The addresses this client was given, in order.
    fn urls(&self, py: Python<'_>) -> Vec<String> {
        // Another thread's call may hold the link: wait for it without the GIL.
        py.detach(|| self.link.blocking_lock().urls().to_vec())
    }
}

/// A block header, as a subscription delivers it.
#[pyclass(module = "bittensor_rs", frozen, get_all)]
struct Block {
    /// Its height.
    height: u64,
    /// Its hash (hex).
    hash: String,
    /// Its parent's hash (hex).
    parent: String,
    /// When it was made (Unix milliseconds).
    timestamp_ms: u64,
    /// The transactions in it.
    transactions: u32,
}

#[pymethods]
impl Block {
    fn __repr__(&self) -> String {
        format!(
            "Block(height={}, hash={}, transactions={})",
            self.height,
            &self.hash[..self.hash.len().min(16)],
            self.transactions
        )
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The blocks of a subscription (`Ledger.subscribe`).
#[pyclass(module = "bittensor_rs", frozen)]
struct Blocks {
    stream: tokio::sync::Mutex<tonic::Streaming<bt_chain::proto::BlockHeader>>,
}

#[pymethods]
impl Blocks {
    /// The next block; None when `timeout` (seconds) passes first. Raises `UnreachableError`
    /// when the node goes away.
    #[pyo3(signature = (timeout = None))]
    fn next(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Block>> {
        let timeout = timeout.map(seconds).transpose()?;
        let got = block_on(py, async {
            let mut s = self.stream.lock().await;
            match timeout {
                Some(t) => tokio::time::timeout(t, s.message()).await.ok(),
                None => Some(s.message().await),
            }
        })?;
        match got {
            None => Ok(None),
            Some(Ok(Some(h))) => Ok(Some(Block {
                height: h.height,
                hash: hex(&h.hash),
                parent: hex(&h.parent),
                timestamp_ms: h.timestamp_ms,
                transactions: h.transactions,
            })),
            Some(Ok(None)) => Err(UnreachableError::new_err("the node ended the subscription")),
            Some(Err(status)) => Err(UnreachableError::new_err(format!(
                "the subscription failed: {}",
                status.message()
            ))),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Block>> {
        self.next(py, None)
    }
}

/// A ledger node run by this process, for tests and local experiments: its data in
/// `data_dir`, its genesis from TOML text (as `bt chain run --genesis` reads it).
#[pyclass(module = "bittensor_rs")]
struct LocalLedger {
    node: Option<bt_chain::NodeHandle>,
    url: String,
}

#[pymethods]
impl LocalLedger {
    /// Starts a node on a free loopback port.
    #[new]
    fn new(py: Python<'_>, data_dir: PathBuf, genesis: &str) -> PyResult<LocalLedger> {
        let state =
            bt_ledger::genesis_state(genesis).map_err(|e| PyValueError::new_err(e.to_string()))?;
        let mut cfg = bt_chain::NodeConfig::new(data_dir, Some(state));
        cfg.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let node = block_on(py, bt_chain::serve(cfg))?.map_err(ledger_error)?;
        Ok(LocalLedger {
            url: format!("http://{}", node.addr),
            node: Some(node),
        })
    }

    /// Its API address.
    #[getter]
    fn url(&self) -> String {
        self.url.clone()
    }

    /// Stops it (also when the object is collected).
    fn stop(&mut self, py: Python<'_>) -> PyResult<()> {
        if let Some(node) = self.node.take() {
            block_on(py, node.stop())?.map_err(ledger_error)?;
        }
        Ok(())
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __exit__(
        &mut self,
        py: Python<'_>,
        _kind: Option<Bound<'_, PyAny>>,
        _value: Option<Bound<'_, PyAny>>,
        _tb: Option<Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        self.stop(py)?;
        Ok(false)
    }
}

/// The module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("BtError", py.get_type::<BtError>())?;
    m.add("KeysError", py.get_type::<KeysError>())?;
    m.add("LedgerError", py.get_type::<LedgerError>())?;
    m.add("UnreachableError", py.get_type::<UnreachableError>())?;
    m.add("NoLeaderError", py.get_type::<NoLeaderError>())?;
    m.add("RefusedError", py.get_type::<RefusedError>())?;
    m.add_class::<Keypair>()?;
    m.add_class::<Wallet>()?;
    m.add_class::<Metagraph>()?;
    m.add_class::<Ledger>()?;
    m.add_class::<LocalLedger>()?;
    m.add_class::<Block>()?;
    m.add_class::<Blocks>()?;
    m.add_class::<wire::Dendrite>()?;
    m.add_class::<wire::Reply>()?;
    m.add_class::<wire::Axon>()?;
    m.add_function(wrap_pyfunction!(verify, m)?)?;
    m.add("RAO_PER_TAO", RAO_PER_TAO)?;
    Ok(())
}
