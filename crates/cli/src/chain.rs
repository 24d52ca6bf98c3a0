//! The ledger from the command line: `bt chain run | verify | load | check-acked` for the
//! node, and `bt transfer`, `bt stake add|remove`, `bt register`, `bt weights set`,
//! `bt metagraph` as clients of a node's gRPC API.
//!
//! Commands that sign take the key either from a wallet (`--wallet-dir`, `--wallet`,
//! `--hotkey`; the coldkey passphrase from `BT_WALLET_PASSWORD` or a prompt) or from a
//! secret URI (`--suri "//Alice"`, or `"<mnemonic>//hard/soft"`), handy for scripts and a
//! local network. Transfers and stake are signed by the coldkey; registration and weights by
//! the hotkey.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bt_chain::{Client, NodeConfig};
use bt_keys::{Keypair, PublicKey, wallet::Wallet};
use bt_ledger::{Call, Fixed, WEIGHT_ONE};
use clap::{Args, Subcommand};

use crate::wallet::Terminal;

/// The default node address of the client commands.
pub const DEFAULT_NODE: &str = "http://127.0.0.1:50051";

/// `bt chain ...`: run and check a node.
#[derive(Debug, Subcommand)]
pub enum ChainCommand {
    /// Run a node: produce a block every block time and serve the gRPC API.
    Run {
        /// The genesis file (TOML); needed to start a new data directory.
        #[arg(long)]
        genesis: Option<PathBuf>,
        /// Where blocks and states are stored.
        #[arg(long)]
        data_dir: PathBuf,
        /// The gRPC listen address.
        #[arg(long, default_value = "127.0.0.1:50051")]
        listen: SocketAddr,
        /// Requests per second allowed per client IP.
        #[arg(long, default_value_t = 20_000)]
        rate: u32,
        /// Burst of requests allowed per client IP.
        #[arg(long, default_value_t = 40_000)]
        burst: u32,
        /// Run as one validator of a replicated ledger: the cluster file (`[[validator]]`
        /// tables with `id`, `raft` and `api` addresses; docs/ledger.md). The API then
        /// listens on this validator's `api` address, not `--listen`.
        #[arg(long, requires = "node_id")]
        cluster: Option<PathBuf>,
        /// This validator's id in the cluster file.
        #[arg(long, requires = "cluster")]
        node_id: Option<u64>,
    },
    /// Where a node stands: chain, head, pool, and (a validator of a replicated ledger) its
    /// raft role, term, leader and applied index.
    Status {
        /// The node (several, comma-separated: each is asked).
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Replay every block from genesis and check every state hash (node stopped).
    Verify {
        /// The node's data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Stream 1-rao transfers at a node, surviving its restarts, recording acknowledged ids.
    Load {
        /// The node.
        #[command(flatten)]
        node: NodeArgs,
        /// Secret URI of the sender, e.g. `//Alice`.
        #[arg(long)]
        suri: String,
        /// The recipient's SS58 address.
        #[arg(long)]
        to: PublicKey,
        /// The most transfers to send.
        #[arg(long, default_value_t = u64::MAX)]
        count: u64,
        /// File to append acknowledged transaction ids to.
        #[arg(long)]
        acked: PathBuf,
        /// Stop once this file exists.
        #[arg(long)]
        stop_file: Option<PathBuf>,
        /// Seconds to keep reconnecting to a node that is down.
        #[arg(long, default_value_t = 60)]
        patience_s: u64,
    },
    /// Check that every id in an acknowledged-ids file is in a block.
    CheckAcked {
        /// The node.
        #[command(flatten)]
        node: NodeArgs,
        /// The file written by `bt chain load`.
        #[arg(long)]
        acked: PathBuf,
        /// Seconds to wait for pending ones to be included.
        #[arg(long, default_value_t = 30)]
        wait_s: u64,
    },
}

/// Which node to talk to.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The node's gRPC address: `ip:port` (as `bt chain run --listen` takes it) or
    /// `http://host:port`. Several, comma-separated (a replicated ledger's validators): the
    /// first that answers is used.
    #[arg(long, default_value = DEFAULT_NODE, value_parser = parse_node, value_delimiter = ',')]
    pub node: Vec<String>,
}

impl NodeArgs {
    /// A client of the first node that answers, in the order given.
    pub async fn connect(&self) -> Result<Client> {
        Ok(Client::connect_first(&self.node, &mut 0).await?)
    }
}

/// Which key signs.
#[derive(Debug, Args)]
pub struct SignerArgs {
    /// Sign with this secret URI instead of a wallet: `//Alice` (development keys), or
    /// `"<mnemonic>//hard/soft"`.
    #[arg(long)]
    pub suri: Option<String>,
    /// The wallet directory (default `~/.bittensor/wallets`).
    #[arg(long)]
    pub wallet_dir: Option<PathBuf>,
    /// The wallet's name.
    #[arg(long, default_value = "default")]
    pub wallet: String,
    /// The hotkey's name in the wallet.
    #[arg(long, default_value = "default")]
    pub hotkey: String,
    /// Return once the node has the transaction on disk, without waiting for a block.
    #[arg(long)]
    pub no_wait: bool,
}

impl SignerArgs {
    fn open_wallet(&self) -> Result<Wallet> {
        let dir = match &self.wallet_dir {
            Some(d) => d.clone(),
            None => bt_keys::wallet::default_wallet_dir()
                .context("no home directory; pass --wallet-dir")?,
        };
        Wallet::open(&dir, &self.wallet)
            .with_context(|| format!("opening wallet {:?} in {}", self.wallet, dir.display()))
    }

    /// The coldkey (from `--suri` or the wallet, asking for its passphrase when it is
    /// encrypted, in this project's format or the Python bittensor's).
    pub fn coldkey(&self) -> Result<Keypair> {
        if let Some(s) = &self.suri {
            return Keypair::from_uri(s).context("reading --suri");
        }
        let w = self.open_wallet()?;
        crate::wallet::open_coldkey(&w, &mut Terminal)
    }

    /// The hotkey (from `--suri` or the wallet).
    pub fn hotkey_pair(&self) -> Result<Keypair> {
        if let Some(s) = &self.suri {
            return Keypair::from_uri(s).context("reading --suri");
        }
        self.open_wallet()?
            .hotkey(&self.hotkey)
            .with_context(|| format!("reading hotkey {:?}", self.hotkey))
    }
}

/// `bt transfer`.
#[derive(Debug, Args)]
pub struct TransferArgs {
    /// The recipient's SS58 address.
    #[arg(long)]
    pub to: PublicKey,
    /// TAO to send, e.g. `1.5` (up to 9 decimals).
    #[arg(long, value_parser = parse_tao, allow_negative_numbers = true)]
    pub amount: u64,
    /// The node.
    #[command(flatten)]
    pub node: NodeArgs,
    /// The signing key.
    #[command(flatten)]
    pub signer: SignerArgs,
}

/// `bt stake ...`.
#[derive(Debug, Subcommand)]
pub enum StakeCommand {
    /// Stake free balance on a neuron's hotkey.
    Add(StakeArgs),
    /// Move stake back to free balance.
    Remove(StakeArgs),
}

/// Arguments of `bt stake add|remove`.
#[derive(Debug, Args)]
pub struct StakeArgs {
    /// TAO, e.g. `10` (up to 9 decimals).
    #[arg(long, value_parser = parse_tao, allow_negative_numbers = true)]
    pub amount: u64,
    /// The neuron's hotkey address (default: the wallet's hotkey).
    #[arg(long)]
    pub hotkey_address: Option<PublicKey>,
    /// The node.
    #[command(flatten)]
    pub node: NodeArgs,
    /// The signing key.
    #[command(flatten)]
    pub signer: SignerArgs,
}

/// `bt register`.
#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// Where the neuron serves, `ip:port`.
    #[arg(long)]
    pub endpoint: SocketAddr,
    /// The owning coldkey's address (default: the wallet's coldkey; required with `--suri`).
    #[arg(long)]
    pub coldkey_address: Option<PublicKey>,
    /// The node.
    #[command(flatten)]
    pub node: NodeArgs,
    /// The signing key.
    #[command(flatten)]
    pub signer: SignerArgs,
}

/// `bt weights ...`.
#[derive(Debug, Subcommand)]
pub enum WeightsCommand {
    /// Replace the neuron's weight row.
    Set(WeightsSetArgs),
}

/// Arguments of `bt weights set`.
#[derive(Debug, Args)]
pub struct WeightsSetArgs {
    /// The row as `uid:weight` pairs, e.g. `0:0.7,3:0.3`; finite, non-negative, not all
    /// zero; the ledger normalises it to sum to one.
    #[arg(long, value_parser = parse_weights, value_delimiter = ',', required = true)]
    pub weights: Vec<(u32, f64)>,
    /// The node.
    #[command(flatten)]
    pub node: NodeArgs,
    /// The signing key.
    #[command(flatten)]
    pub signer: SignerArgs,
}

/// `bt metagraph`.
#[derive(Debug, Args)]
pub struct MetagraphArgs {
    /// At this block height (default: the latest).
    #[arg(long)]
    pub block: Option<u64>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Include every neuron's weight row.
    #[arg(long)]
    pub weights: bool,
    /// The node.
    #[command(flatten)]
    pub node: NodeArgs,
}

/// Parses a positive amount of TAO with up to 9 decimals into rao, exactly.
pub fn parse_tao(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if s.starts_with('-') {
        return Err(format!("TAO amounts must be positive, got {s:?}"));
    }
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty() {
        return Err("empty amount".into());
    }
    if !int.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("{s:?} is not a non-negative decimal number of TAO"));
    }
    if frac.len() > 9 {
        return Err(format!(
            "{s:?} has more than 9 decimals (1 rao = 0.000000001 TAO)"
        ));
    }
    let whole: u64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| format!("{s:?} is too large"))?
    };
    let frac_rao: u64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}")
            .parse()
            .map_err(|_| "bad decimals".to_string())?
    };
    let rao = whole
        .checked_mul(bt_ledger::RAO_PER_TAO)
        .and_then(|r| r.checked_add(frac_rao))
        .ok_or_else(|| format!("{s:?} TAO is too large"))?;
    if rao == 0 {
        return Err(format!("TAO amounts must be positive, got {s:?}"));
    }
    Ok(rao)
}

/// Parses a node address: `http://host:port` or `https://host:port` as given, `host:port`
/// (as `--listen` takes it) as `http://host:port`. Anything else is refused with what was
/// expected.
pub fn parse_node(s: &str) -> Result<String, String> {
    let s = s.trim();
    let expected = "expected ip:port or http://host:port, e.g. 127.0.0.1:50051";
    let (scheme, rest) = match s.split_once("://") {
        Some((scheme @ ("http" | "https"), rest)) => (scheme, rest),
        Some((scheme, _)) => {
            return Err(format!(
                "{s:?}: unsupported scheme {scheme:?} (use http:// or https://)"
            ));
        }
        None => ("http", s),
    };
    let hostport = rest.strip_suffix('/').unwrap_or(rest);
    let Some((host, port)) = hostport.rsplit_once(':') else {
        return Err(format!("{s:?} has no port: {expected}"));
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => {
            return Err(format!(
                "{s:?}: port {port:?} is not a number from 1 to 65535"
            ));
        }
    }
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    };
    if !host_ok {
        return Err(format!(
            "{s:?}: {host:?} is not a host name or IP address: {expected}"
        ));
    }
    Ok(format!("{scheme}://{host}:{port}"))
}

/// Parses `uid:weight[,uid:weight...]`, refusing non-finite and negative weights.
pub fn parse_weights(s: &str) -> Result<(u32, f64), String> {
    let (uid, w) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?}: expected uid:weight"))?;
    let uid: u32 = uid
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: uid {uid:?} is not a non-negative integer"))?;
    let w: f64 = w
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: weight {w:?} is not a number"))?;
    if !w.is_finite() {
        return Err(format!("{s:?}: weight must be finite"));
    }
    if w < 0.0 {
        return Err(format!("{s:?}: weight must be non-negative"));
    }
    Ok((uid, w))
}

/// Turns a float row into the ledger's raw integer row (scaled so the largest entry is
/// `2^31`; the ledger normalises exactly).
pub fn raw_row(weights: &[(u32, f64)]) -> Result<Vec<(u32, u32)>> {
    if weights.is_empty() {
        bail!("the weight row is empty");
    }
    let max = weights.iter().map(|&(_, w)| w).fold(0.0f64, f64::max);
    if max <= 0.0 {
        bail!("the weight row is all zeros");
    }
    Ok(weights
        .iter()
        .map(|&(uid, w)| (uid, (w / max * f64::from(WEIGHT_ONE)).round() as u32))
        .collect())
}

/// The multi-threaded async runtime the networked commands run on.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Runs `bt chain ...`.
pub fn run(cmd: ChainCommand) -> Result<()> {
    match cmd {
        ChainCommand::Run {
            genesis,
            data_dir,
            listen,
            rate,
            burst,
            cluster,
            node_id,
        } => {
            let genesis = match genesis {
                Some(p) => {
                    let text = std::fs::read_to_string(&p)
                        .with_context(|| format!("reading {}", p.display()))?;
                    Some(
                        bt_ledger::genesis_state(&text)
                            .with_context(|| format!("in {}", p.display()))?,
                    )
                }
                None => None,
            };
            if let (Some(file), Some(id)) = (cluster, node_id) {
                return run_validator(&file, id, data_dir, genesis, (rate, burst));
            }
            let mut cfg = NodeConfig::new(data_dir.clone(), genesis);
            cfg.listen = listen;
            cfg.rate_per_sec = rate;
            cfg.burst = burst;
            runtime()?.block_on(async move {
                let node = bt_chain::serve(cfg)
                    .await
                    .with_context(|| format!("starting the node in {}", data_dir.display()))?;
                let head = node.shared.head();
                eprintln!(
                    "chain {} at height {}, serving on {} (block time {} ms); Ctrl-C stops",
                    head.genesis, head.height, node.addr, head.params.block_time_ms
                );
                drop(head);
                node.run_until(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await
                .context("running the node")
            })
        }
        ChainCommand::Status { node } => {
            let rt = runtime()?;
            for url in &node.node {
                let s = rt.block_on(async {
                    let mut c = Client::connect(url).await?;
                    c.status().await
                });
                match s {
                    Ok(s) => {
                        println!(
                            "{url}: chain {} height {} head {} state {} pending {}",
                            s.genesis, s.height, s.head, s.state_hash, s.pending
                        );
                        if let Some(r) = s.replication {
                            let opt = |x: Option<u64>| x.map_or("-".to_string(), |v| v.to_string());
                            println!(
                                "  validator {} {} term {} leader {}{} applied {} last log {}",
                                r.id,
                                r.role,
                                r.term,
                                opt(r.leader),
                                r.leader_api.map(|a| format!(" ({a})")).unwrap_or_default(),
                                opt(r.applied_index),
                                opt(r.last_log_index)
                            );
                        }
                    }
                    Err(e) => println!("{url}: unreachable: {e}"),
                }
            }
            Ok(())
        }
        ChainCommand::Verify { data_dir } => {
            let bar = crate::progress::bar(0, "verify");
            let report = bt_chain::verify(&data_dir, |h, head| {
                bar.set_length(head);
                bar.set_position(h);
            })
            .with_context(|| format!("verifying {}", data_dir.display()))?;
            bar.finish_and_clear();
            println!(
                "ok: chain {} verified: {} blocks, {} transactions replayed, every state hash matches; head state {}",
                report.genesis, report.blocks, report.transactions, report.state_hash
            );
            Ok(())
        }
        ChainCommand::Load {
            node,
            suri,
            to,
            count,
            acked,
            stop_file,
            patience_s,
        } => {
            let from = Keypair::from_uri(&suri).context("reading --suri")?;
            let report = runtime()?.block_on(bt_chain::load::stream_transfers(
                &node.node,
                &from,
                to,
                count,
                &acked,
                Duration::from_secs(patience_s),
                || stop_file.as_ref().is_some_and(|p| p.exists()),
            ))?;
            println!(
                "acknowledged {} transactions ({} resubmissions)",
                report.acked, report.retries
            );
            Ok(())
        }
        ChainCommand::CheckAcked {
            node,
            acked,
            wait_s,
        } => {
            // Every node given is asked: with a replicated ledger, each validator must hold
            // every acknowledged transaction in a block.
            let mut missing = Vec::new();
            for url in &node.node {
                let c = runtime()?.block_on(bt_chain::load::check_acked(
                    url,
                    &acked,
                    Duration::from_secs(wait_s),
                ))?;
                println!(
                    "{url}: acknowledged {}: included {}, pending {}, refused {}, lost {}",
                    c.acked, c.included, c.pending, c.refused, c.lost
                );
                if c.included != c.acked {
                    missing.push(format!("{} at {url}", c.acked - c.included));
                }
            }
            if !missing.is_empty() {
                bail!(
                    "acknowledged transactions are not in a block: {}",
                    missing.join(", ")
                );
            }
            Ok(())
        }
    }
}

/// `bt chain run --cluster FILE --node-id K`: one validator of a replicated ledger until
/// Ctrl-C.
fn run_validator(
    file: &std::path::Path,
    id: u64,
    data_dir: PathBuf,
    genesis: Option<bt_ledger::State>,
    rate: (u32, u32),
) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let members =
        bt_replica::parse_cluster(&text).with_context(|| format!("in {}", file.display()))?;
    let mut cfg = bt_replica::ReplicaConfig::new(id, data_dir.clone(), genesis, members);
    cfg.rate = rate;
    runtime()?.block_on(async move {
        let replica = bt_replica::Replica::start(cfg)
            .await
            .with_context(|| format!("starting validator {id} in {}", data_dir.display()))?;
        let head = replica.machine().head();
        eprintln!(
            "validator {id}: chain {} at height {}, raft on {}, API on {} (block time {} ms); Ctrl-C stops",
            head.genesis,
            head.height,
            replica.raft_addr(),
            replica.api_addr(),
            head.params.block_time_ms
        );
        drop(head);
        let _ = tokio::signal::ctrl_c().await;
        replica.shutdown().await.context("stopping the validator")
    })
}

/// Refuses, before signing, an amount the signer does not have ([`crate::Error`]), in TAO
/// as the user typed it (the ledger checks again when the transaction is applied).
async fn check_funds(c: &mut Client, signer: &PublicKey, call: &Call) -> Result<()> {
    let (what, need) = match call {
        Call::Transfer { amount, .. } => ("transfer", *amount),
        Call::AddStake { amount, .. } => ("stake", *amount),
        Call::RemoveStake { hotkey, amount } => {
            let info = c.account(signer).await.context("reading the account")?;
            let have = info
                .stakes
                .iter()
                .find(|(h, _)| h == hotkey)
                .map_or(0, |&(_, rao)| rao);
            if have < *amount {
                return Err(crate::Error::InsufficientStake {
                    coldkey: *signer,
                    hotkey: *hotkey,
                    need_rao: *amount,
                    have_rao: have,
                }
                .into());
            }
            return Ok(());
        }
        _ => return Ok(()),
    };
    let have = c
        .account(signer)
        .await
        .context("reading the account")?
        .balance;
    if have < need {
        return Err(crate::Error::InsufficientBalance {
            account: *signer,
            what,
            need_rao: need,
            have_rao: have,
        }
        .into());
    }
    Ok(())
}

async fn submit(node: &NodeArgs, key: &Keypair, call: Call, wait: bool) -> Result<()> {
    let mut c = node.connect().await?;
    check_funds(&mut c, &key.public(), &call).await?;
    let (id, nonce) = c.sign_and_submit(key, call).await.context("submitting")?;
    println!("accepted {id} (nonce {nonce}, signer {})", key.public());
    if !wait {
        return Ok(());
    }
    let block_ms = c.status().await?.block_time_ms.max(100);
    match c
        .wait_included(&id, Duration::from_millis(20 * block_ms))
        .await
    {
        Ok(Some(h)) => {
            println!("included in block {h}");
            Ok(())
        }
        Ok(None) => bail!("not in a block yet (still pending); check later with its id {id}"),
        Err(bt_chain::Error::Refused { reason }) => bail!("refused by the ledger: {reason}"),
        Err(e) => Err(e.into()),
    }
}

/// Runs `bt transfer`.
pub fn transfer(a: TransferArgs) -> Result<()> {
    let key = a.signer.coldkey()?;
    runtime()?.block_on(submit(
        &a.node,
        &key,
        Call::Transfer {
            to: a.to,
            amount: a.amount,
        },
        !a.signer.no_wait,
    ))
}

/// Runs `bt stake add|remove`.
pub fn stake(cmd: StakeCommand) -> Result<()> {
    let (a, add) = match cmd {
        StakeCommand::Add(a) => (a, true),
        StakeCommand::Remove(a) => (a, false),
    };
    let hotkey = match a.hotkey_address {
        Some(h) => h,
        None if a.signer.suri.is_some() => bail!("--hotkey-address is required with --suri"),
        None => a.signer.open_wallet()?.hotkey(&a.signer.hotkey)?.public(),
    };
    let key = a.signer.coldkey()?;
    let call = if add {
        Call::AddStake {
            hotkey,
            amount: a.amount,
        }
    } else {
        Call::RemoveStake {
            hotkey,
            amount: a.amount,
        }
    };
    runtime()?.block_on(submit(&a.node, &key, call, !a.signer.no_wait))
}

/// Runs `bt register`.
pub fn register(a: RegisterArgs) -> Result<()> {
    let coldkey = match a.coldkey_address {
        Some(c) => c,
        None if a.signer.suri.is_some() => bail!("--coldkey-address is required with --suri"),
        None => a.signer.open_wallet()?.coldkey_public()?,
    };
    let key = a.signer.hotkey_pair()?;
    runtime()?.block_on(submit(
        &a.node,
        &key,
        Call::Register {
            coldkey,
            endpoint: a.endpoint,
        },
        !a.signer.no_wait,
    ))
}

/// Runs `bt weights set`.
pub fn weights(cmd: WeightsCommand) -> Result<()> {
    let WeightsCommand::Set(a) = cmd;
    let row = raw_row(&a.weights)?;
    let key = a.signer.hotkey_pair()?;
    runtime()?.block_on(submit(
        &a.node,
        &key,
        Call::SetWeights { row },
        !a.signer.no_wait,
    ))
}

fn ss58(b: &[u8]) -> String {
    <[u8; 32]>::try_from(b)
        .ok()
        .and_then(|a| PublicKey::from_bytes(a).ok())
        .map_or_else(|| "?".into(), |k| k.to_string())
}

/// Runs `bt metagraph`.
pub fn metagraph(a: MetagraphArgs) -> Result<()> {
    let mg = runtime()?.block_on(async {
        let mut c = a.node.connect().await?;
        c.metagraph_message(a.block, a.weights)
            .await
            .context("fetching the metagraph")
    })?;
    let rank = |bits: u64| Fixed::from_bits(i128::from(bits)).to_f64();
    let unit = f64::from(WEIGHT_ONE);
    if a.json {
        let neurons: Vec<serde_json::Value> = mg
            .neurons
            .iter()
            .map(|n| {
                let mut v = serde_json::json!({
                    "uid": n.uid,
                    "hotkey": ss58(&n.hotkey),
                    "coldkey": ss58(&n.coldkey),
                    "endpoint": n.endpoint,
                    "stake_rao": n.stake,
                    "rank": rank(n.rank_bits),
                    "rank_bits": n.rank_bits,
                    "registered_at": n.registered_at,
                    "last_update": n.last_update,
                    "consensus": rank(n.consensus_bits),
                    "trust": rank(n.trust_bits),
                    "incentive": rank(n.incentive_bits),
                    "dividends": rank(n.dividends_bits),
                    "emission": rank(n.emission_bits),
                });
                if a.weights {
                    v["weights"] = n
                        .weight_uids
                        .iter()
                        .zip(&n.weight_values)
                        .map(|(&j, &w)| serde_json::json!([j, f64::from(w) / unit]))
                        .collect();
                    v["bonds"] = n
                        .bond_uids
                        .iter()
                        .zip(&n.bond_values)
                        .map(|(&j, &b)| serde_json::json!([j, rank(b)]))
                        .collect();
                }
                v
            })
            .collect();
        let out = serde_json::json!({
            "height": mg.height,
            "state_hash": mg.state_hash.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "tau": rank(mg.tau_bits),
            "total_issuance_rao": mg.total_issuance,
            "mechanism": mg.mechanism,
            "tempo": mg.tempo,
            "neurons": neurons,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let yuma = mg.mechanism == "yuma";
    println!(
        "block {}  neurons {}  mechanism {}{}  tau {:.6}  issuance {:.9} TAO",
        mg.height,
        mg.neurons.len(),
        mg.mechanism,
        if yuma {
            format!(" (tempo {})", mg.tempo)
        } else {
            String::new()
        },
        rank(mg.tau_bits),
        mg.total_issuance as f64 / 1e9
    );
    let yuma_head = if yuma {
        format!(
            "  {:>8}  {:>8}  {:>8}  {:>8}  {:>8}",
            "CONSENS", "TRUST", "INCENT", "DIVIDS", "EMISSION"
        )
    } else {
        String::new()
    };
    println!(
        "{:>5}  {:<48}  {:<21}  {:>18}  {:>14}  {:>8}{yuma_head}",
        "UID", "HOTKEY", "ENDPOINT", "STAKE (TAO)", "RANK", "UPDATED"
    );
    for n in &mg.neurons {
        let yuma_cols = if yuma {
            format!(
                "  {:>8.6}  {:>8.6}  {:>8.6}  {:>8.6}  {:>8.6}",
                rank(n.consensus_bits),
                rank(n.trust_bits),
                rank(n.incentive_bits),
                rank(n.dividends_bits),
                rank(n.emission_bits)
            )
        } else {
            String::new()
        };
        println!(
            "{:>5}  {:<48}  {:<21}  {:>18.9}  {:>14.9}  {:>8}{yuma_cols}",
            n.uid,
            ss58(&n.hotkey),
            n.endpoint,
            n.stake as f64 / 1e9,
            rank(n.rank_bits),
            n.last_update
        );
        if a.weights {
            let row: Vec<String> = n
                .weight_uids
                .iter()
                .zip(&n.weight_values)
                .map(|(&j, &w)| format!("{j}:{:.6}", f64::from(w) / unit))
                .collect();
            println!("       weights {}", row.join(" "));
            if yuma {
                let bonds: Vec<String> = n
                    .bond_uids
                    .iter()
                    .zip(&n.bond_values)
                    .map(|(&j, &b)| format!("{j}:{:.6}", rank(b)))
                    .collect();
                println!("       bonds   {}", bonds.join(" "));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn tao_amounts_parse_exactly() {
        assert_eq!(parse_tao("1"), Ok(1_000_000_000));
        assert_eq!(parse_tao("1.5"), Ok(1_500_000_000));
        assert_eq!(parse_tao("0.000000001"), Ok(1));
        assert_eq!(parse_tao(".25"), Ok(250_000_000));
        for bad in [
            "",
            "-1",
            "0",
            "0.0",
            "1.0000000001",
            "abc",
            "1e9",
            "99999999999999999999",
        ] {
            assert!(parse_tao(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn negative_and_zero_amounts_say_amounts_must_be_positive() {
        let alice = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
        for args in [
            vec!["bt", "transfer", "--to", alice, "--amount", "-5"],
            vec!["bt", "transfer", "--to", alice, "--amount", "0"],
            vec![
                "bt",
                "stake",
                "add",
                "--hotkey-address",
                alice,
                "--amount",
                "-0.5",
            ],
        ] {
            let e = crate::Cli::try_parse_from(args).expect_err("refused");
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{e}");
            assert!(
                e.to_string().contains("TAO amounts must be positive"),
                "{e}"
            );
        }
    }

    #[test]
    fn node_addresses_in_both_forms() {
        for (given, want) in [
            ("127.0.0.1:50051", "http://127.0.0.1:50051"),
            ("http://127.0.0.1:50051", "http://127.0.0.1:50051"),
            ("http://127.0.0.1:50051/", "http://127.0.0.1:50051"),
            ("https://node.example:443", "https://node.example:443"),
            ("localhost:7100", "http://localhost:7100"),
            ("[::1]:7100", "http://[::1]:7100"),
        ] {
            assert_eq!(parse_node(given).as_deref(), Ok(want), "{given}");
        }
        for (bad, says) in [
            ("127.0.0.1", "has no port"),
            ("http://127.0.0.1", "has no port"),
            ("ftp://127.0.0.1:21", "unsupported scheme"),
            ("127.0.0.1:0", "not a number from 1 to 65535"),
            ("127.0.0.1:http", "not a number from 1 to 65535"),
            ("not a host:80", "is not a host name"),
            (":80", "is not a host name"),
            ("[zz]:80", "is not a host name"),
        ] {
            let e = parse_node(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
        let cli = crate::Cli::try_parse_from(["bt", "metagraph", "--node", "127.0.0.1:9"])
            .expect("ip:port");
        let crate::Command::Metagraph(m) = cli.command else {
            panic!("not metagraph")
        };
        assert_eq!(m.node.node, ["http://127.0.0.1:9"]);
        let cli = crate::Cli::try_parse_from([
            "bt",
            "metagraph",
            "--node",
            "127.0.0.1:9,http://10.0.0.2:50051",
        ])
        .expect("several");
        let crate::Command::Metagraph(m) = cli.command else {
            panic!("not metagraph")
        };
        assert_eq!(m.node.node, ["http://127.0.0.1:9", "http://10.0.0.2:50051"]);
        assert!(crate::Cli::try_parse_from(["bt", "metagraph", "--node", "garbage"]).is_err());
    }

    #[test]
    fn weights_refuse_non_finite_and_negative() {
        assert_eq!(parse_weights("3:0.5"), Ok((3, 0.5)));
        for bad in ["3", "x:1", "1:NaN", "1:inf", "1:-0.5", "-1:0.5"] {
            assert!(parse_weights(bad).is_err(), "{bad}");
        }
        assert!(raw_row(&[]).is_err());
        assert!(raw_row(&[(0, 0.0)]).is_err());
        assert_eq!(
            raw_row(&[(0, 1.0), (1, 0.5)]).expect("row"),
            vec![(0, WEIGHT_ONE), (1, WEIGHT_ONE / 2)]
        );
    }

    #[test]
    fn commands_parse() {
        let alice = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
        for args in [
            vec![
                "bt",
                "chain",
                "run",
                "--genesis",
                "g.toml",
                "--data-dir",
                "d",
            ],
            vec!["bt", "chain", "verify", "--data-dir", "d"],
            vec![
                "bt", "transfer", "--to", alice, "--amount", "1.5", "--suri", "//Alice",
            ],
            vec![
                "bt",
                "stake",
                "add",
                "--amount",
                "2",
                "--hotkey-address",
                alice,
                "--suri",
                "//Alice",
            ],
            vec![
                "bt",
                "register",
                "--endpoint",
                "1.2.3.4:5",
                "--coldkey-address",
                alice,
                "--suri",
                "//Bob",
            ],
            vec![
                "bt",
                "weights",
                "set",
                "--weights",
                "0:0.5",
                "--weights",
                "1:0.5",
                "--suri",
                "//Bob",
            ],
            vec!["bt", "metagraph", "--json", "--weights"],
        ] {
            crate::Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
        assert!(
            crate::Cli::try_parse_from(["bt", "transfer", "--to", "nope", "--amount", "1"])
                .is_err()
        );
        assert!(crate::Cli::try_parse_from(["bt", "weights", "set", "--weights", "0:-1"]).is_err());
    }
}
