//! A typed client for a node's gRPC API: replies are decoded and checked once, here (the
//! metagraph with the ledger's [`Fixed`] and [`WEIGHT_ONE`]), and failures are typed: a node
//! that cannot be reached is [`Error::Unreachable`] with its address and the root cause, a
//! transaction whose nonce was taken is [`bt_ledger::Error::StaleNonce`].

use std::time::Duration;

use bt_keys::{Keypair, PublicKey};
use bt_ledger::{Block, Call, Fixed, Hash, Mechanism, Transaction, WEIGHT_ONE};
use tonic::transport::Channel;

use crate::error::{Error, Result};
use crate::proto;
use crate::proto::chain_client::ChainClient;

/// Largest reply (a block or a metagraph with every weight row), for both ends.
pub const MAX_REPLY_BYTES: usize = 512 << 20;

/// Where a transaction is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxStatus {
    /// Never seen.
    Unknown,
    /// In the pending pool.
    Pending,
    /// In the block at this height.
    Included(u64),
    /// Left out of a block, with the ledger's reason.
    Refused(String),
}

/// What a node says about itself.
#[derive(Debug, Clone)]
pub struct Status {
    /// The chain id.
    pub genesis: Hash,
    /// The head's height.
    pub height: u64,
    /// The head block's id.
    pub head: Hash,
    /// The state hash at the head.
    pub state_hash: Hash,
    /// The largest transaction accepted.
    pub max_tx_bytes: u32,
    /// Milliseconds between blocks.
    pub block_time_ms: u64,
    /// Transactions waiting in the pool.
    pub pending: u64,
    /// Where the node stands in a replicated ledger; `None` for a single node.
    pub replication: Option<Replication>,
}

/// A validator of a replicated ledger, as raft sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replication {
    /// Its id in the cluster.
    pub id: u64,
    /// `leader`, `follower`, `candidate`, `learner` or `stopped`.
    pub role: String,
    /// The raft term.
    pub term: u64,
    /// The leader it knows.
    pub leader: Option<u64>,
    /// The leader's API address, when known.
    pub leader_api: Option<String>,
    /// The index of the last log entry applied to the ledger.
    pub applied_index: Option<u64>,
    /// The index of the last entry in its log.
    pub last_log_index: Option<u64>,
}

/// An account as the head state has it.
#[derive(Debug, Clone)]
pub struct AccountInfo {
    /// Free balance in rao.
    pub balance: u64,
    /// The next nonce.
    pub nonce: u64,
    /// Stake positions: `(hotkey, rao)`.
    pub stakes: Vec<(PublicKey, u64)>,
}

/// One neuron of a [`Metagraph`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetagraphNeuron {
    /// Its uid (its index).
    pub uid: u32,
    /// Its hotkey.
    pub hotkey: PublicKey,
    /// The coldkey that owns it.
    pub coldkey: PublicKey,
    /// Where it serves (`ip:port`).
    pub endpoint: String,
    /// Its stake in rao.
    pub stake: u64,
    /// Its rank at the head.
    pub rank: Fixed,
    /// The block it registered in.
    pub registered_at: u64,
    /// The block of its last weight update (0: never).
    pub last_update: u64,
    /// Its weight row, `(uid, units of 2^-31)` sorted by uid, summing to [`WEIGHT_ONE`];
    /// empty when the weights were not asked for.
    pub row: Vec<(u32, u32)>,
    /// Yuma's consensus `C_i` at the last epoch (zero under the paper's mechanisms).
    pub consensus: Fixed,
    /// Yuma's trust `T_i`.
    pub trust: Fixed,
    /// Yuma's incentive `I_i`.
    pub incentive: Fixed,
    /// Yuma's dividends `D_i`.
    pub dividends: Fixed,
    /// Yuma's emission share `E_i`.
    pub emission: Fixed,
    /// Its row of Yuma's bonds, `(uid, bond)` sorted by uid; empty when the weights were not
    /// asked for or under the paper's mechanisms.
    pub bonds: Vec<(u32, Fixed)>,
}

/// The metagraph at one height, decoded and checked: uids in order, keys well formed, weight
/// rows naming known uids and summing to exactly [`WEIGHT_ONE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metagraph {
    /// Its height.
    pub height: u64,
    /// The state hash at that height.
    pub state_hash: Hash,
    /// Inflation per block.
    pub tau: Fixed,
    /// Every rao in existence.
    pub total_issuance: u64,
    /// The bound on a weight row's change, in units of 2^-31.
    pub epsilon: u64,
    /// The neurons, by uid.
    pub neurons: Vec<MetagraphNeuron>,
    /// Whether the rows were asked for.
    pub with_weights: bool,
    /// The mechanism the ledger runs.
    pub mechanism: Mechanism,
    /// Blocks per Yuma epoch.
    pub tempo: u64,
}

impl Metagraph {
    /// Decodes and checks a metagraph message (`with_weights`: the rows were asked for).
    pub fn from_proto(mg: proto::Metagraph, with_weights: bool) -> Result<Metagraph> {
        let height = mg.height;
        let bad = |m: String| Error::BadReply(format!("metagraph at height {height}: {m}"));
        let key = |b: &[u8], what: &str, k: usize| {
            <[u8; 32]>::try_from(b)
                .ok()
                .and_then(|a| PublicKey::from_bytes(a).ok())
                .ok_or_else(|| bad(format!("uid {k} has a malformed {what}")))
        };
        let n = mg.neurons.len();
        let mut neurons = Vec::with_capacity(n);
        for (k, nm) in mg.neurons.into_iter().enumerate() {
            if nm.uid as usize != k {
                return Err(bad(format!("neuron {k} has uid {}", nm.uid)));
            }
            if nm.weight_uids.len() != nm.weight_values.len() {
                return Err(bad(format!("uid {k} has mismatched weight lists")));
            }
            let row: Vec<(u32, u32)> = nm
                .weight_uids
                .iter()
                .copied()
                .zip(nm.weight_values.iter().copied())
                .collect();
            if let Some((j, _)) = row.iter().find(|(j, _)| *j as usize >= n) {
                return Err(bad(format!("uid {k} weighs unknown uid {j}")));
            }
            if row.windows(2).any(|w| w[0].0 >= w[1].0) {
                return Err(bad(format!("uid {k} has a row not sorted by uid")));
            }
            if nm.bond_uids.len() != nm.bond_values.len() {
                return Err(bad(format!("uid {k} has mismatched bond lists")));
            }
            if let Some(j) = nm.bond_uids.iter().find(|j| **j as usize >= n) {
                return Err(bad(format!("uid {k} bonds unknown uid {j}")));
            }
            if nm.bond_uids.windows(2).any(|w| w[0] >= w[1]) {
                return Err(bad(format!("uid {k} has bonds not sorted by uid")));
            }
            let bonds: Vec<(u32, Fixed)> = nm
                .bond_uids
                .iter()
                .zip(&nm.bond_values)
                .map(|(&j, &b)| (j, Fixed::from_bits(i128::from(b))))
                .collect();
            let sum: u64 = row.iter().map(|(_, w)| u64::from(*w)).sum();
            if with_weights && sum != u64::from(WEIGHT_ONE) {
                return Err(bad(format!(
                    "uid {k}'s row sums to {sum} units, not {WEIGHT_ONE}"
                )));
            }
            neurons.push(MetagraphNeuron {
                uid: nm.uid,
                hotkey: key(&nm.hotkey, "hotkey", k)?,
                coldkey: key(&nm.coldkey, "coldkey", k)?,
                endpoint: nm.endpoint,
                stake: nm.stake,
                rank: Fixed::from_bits(i128::from(nm.rank_bits)),
                registered_at: nm.registered_at,
                last_update: nm.last_update,
                row,
                consensus: Fixed::from_bits(i128::from(nm.consensus_bits)),
                trust: Fixed::from_bits(i128::from(nm.trust_bits)),
                incentive: Fixed::from_bits(i128::from(nm.incentive_bits)),
                dividends: Fixed::from_bits(i128::from(nm.dividends_bits)),
                emission: Fixed::from_bits(i128::from(nm.emission_bits)),
                bonds,
            });
        }
        // A node from before mechanisms were chosen sends no name: it runs the paper's.
        let mechanism = match mg.mechanism.as_str() {
            "" => Mechanism::Paper,
            name => name
                .parse()
                .map_err(|_| bad(format!("unknown mechanism {name:?}")))?,
        };
        Ok(Metagraph {
            mechanism,
            tempo: mg.tempo,
            height,
            state_hash: hash(&mg.state_hash)?,
            tau: Fixed::from_bits(i128::from(mg.tau_bits)),
            total_issuance: mg.total_issuance,
            epsilon: mg.epsilon_bits,
            neurons,
            with_weights,
        })
    }
}

/// A connected client.
#[derive(Debug, Clone)]
pub struct Client {
    inner: ChainClient<Channel>,
    url: String,
}

fn hash(b: &[u8]) -> Result<Hash> {
    Hash::from_slice(b).map_err(|e| Error::BadReply(e.to_string()))
}

/// The innermost cause of an error: transport errors wrap the same message several times
/// ("transport error: tcp connect error: ..."), the root says what happened.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// A gRPC failure: the node unreachable (with its address and the root cause), or what it
/// answered.
fn rpc(url: &str, s: tonic::Status) -> Error {
    let kind = s.metadata().get(crate::error::ERROR_KIND);
    if s.code() == tonic::Code::Unavailable
        && kind.is_some_and(|k| k.as_bytes() == crate::error::NO_LEADER.as_bytes())
    {
        return Error::NoLeader;
    }
    if s.code() == tonic::Code::Unavailable {
        let reason = match std::error::Error::source(&s) {
            Some(src) => root_cause(src),
            None => s.message().to_string(),
        };
        Error::Unreachable {
            url: url.to_string(),
            reason,
        }
    } else {
        Error::Rpc(s)
    }
}

/// The comma-separated addresses of one ledger node or of a replicated ledger's validators,
/// each checked to start with `http://` or `https://` (the first that does not is the error).
pub fn split_urls(list: &str) -> Result<Vec<String>> {
    check_urls(list.split(',').map(|u| u.trim().to_string()))
}

/// Ledger addresses, each checked to start with `http://` or `https://`.
pub fn check_urls(urls: impl IntoIterator<Item = String>) -> Result<Vec<String>> {
    let urls: Vec<String> = urls.into_iter().collect();
    if let Some(url) = urls
        .iter()
        .find(|u| !(u.starts_with("http://") || u.starts_with("https://")))
    {
        return Err(Error::BadAddress { url: url.clone() });
    }
    Ok(urls)
}

/// A client of the first of several ledger addresses that answers (a replicated ledger's
/// validators), which moves on to another when the node in use is lost.
#[derive(Debug)]
pub struct Failover {
    urls: Vec<String>,
    /// Where the next connection starts looking.
    next: usize,
    client: Option<Client>,
}

impl Failover {
    /// Not connected yet: the first call connects.
    pub fn new(urls: Vec<String>) -> Failover {
        Failover {
            urls,
            next: 0,
            client: None,
        }
    }

    /// The addresses, in order.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// The client in use, if connected.
    pub fn current(&self) -> Option<&Client> {
        self.client.as_ref()
    }

    /// The connected client, connecting first ([`Client::connect_first`]) if the last one was
    /// lost.
    pub async fn client(&mut self) -> Result<&mut Client> {
        if self.client.is_none() {
            self.client = Some(Client::connect_first(&self.urls, &mut self.next).await?);
        }
        Ok(self.client.as_mut().expect("connected just above"))
    }

    /// Runs `op` on the connected client (connecting first if needed); when the call fails
    /// because the node is lost, forgets the client ([`Failover::note`]), so that the next
    /// call asks another.
    pub async fn call<T>(&mut self, op: impl AsyncFnOnce(&mut Client) -> Result<T>) -> Result<T> {
        let r = match self.client().await {
            Ok(c) => op(c).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &r {
            self.note(e);
        }
        r
    }

    /// Forgets the client when `e` says its node is lost ([`Error::is_lost`]), so that the
    /// next call connects to another; whether it did.
    pub fn note(&mut self, e: &Error) -> bool {
        let lost = e.is_lost();
        if lost {
            self.client = None;
        }
        lost
    }
}

impl Client {
    /// Connects to the first of `urls` (a replicated ledger's validators) that answers a
    /// status query, trying them in turn from `*next`, which is left just past the one used:
    /// a caller that loses it and asks again starts with the next validator.
    pub async fn connect_first(urls: &[String], next: &mut usize) -> Result<Client> {
        let mut tried = Vec::new();
        for _ in 0..urls.len() {
            let url = &urls[*next % urls.len()];
            *next = (*next + 1) % urls.len();
            let answered = match Client::connect(url).await {
                Ok(mut c) => c.status().await.map(|_| c),
                Err(e) => Err(e),
            };
            match answered {
                Ok(c) => return Ok(c),
                Err(e) => tried.push(format!("{url}: {e}")),
            }
        }
        Err(Error::NoneAnswered { tried })
    }

    /// Connects to `url` (e.g. `http://127.0.0.1:50051`).
    pub async fn connect(url: &str) -> Result<Client> {
        let channel = tonic::transport::Endpoint::from_shared(url.to_string())
            .map_err(|e| Error::BadReply(format!("bad node address {url}: {e}")))?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| Error::Unreachable {
                url: url.to_string(),
                reason: root_cause(&e),
            })?;
        let inner = ChainClient::new(channel)
            .max_decoding_message_size(MAX_REPLY_BYTES)
            .max_encoding_message_size(16 << 20);
        Ok(Client {
            inner,
            url: url.to_string(),
        })
    }

    /// The node's address.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The node's status.
    pub async fn status(&mut self) -> Result<Status> {
        let r = self
            .inner
            .get_status(proto::StatusRequest {})
            .await
            .map_err(|s| rpc(&self.url, s))?
            .into_inner();
        Ok(Status {
            genesis: hash(&r.genesis_hash)?,
            height: r.height,
            head: hash(&r.head_hash)?,
            state_hash: hash(&r.state_hash)?,
            max_tx_bytes: r.max_tx_bytes,
            block_time_ms: r.block_time_ms,
            pending: r.pending,
            replication: r.replication.map(|p| Replication {
                id: p.id,
                role: p.role,
                term: p.term,
                leader: p.leader,
                leader_api: (!p.leader_api.is_empty()).then_some(p.leader_api),
                applied_index: p.applied_index,
                last_log_index: p.last_log_index,
            }),
        })
    }

    /// Submits a transaction; returns its id once the node has it on disk.
    pub async fn submit(&mut self, tx: &Transaction) -> Result<Hash> {
        self.submit_bytes(tx.encode()).await
    }

    /// Signs `call` with `key` at the account's next nonce and submits it; returns the
    /// transaction id and the nonce used. When the node refuses it and the account's nonce
    /// has moved past the one used (another submitter took it), the refusal is
    /// [`bt_ledger::Error::StaleNonce`], which the caller may retry.
    pub async fn sign_and_submit(&mut self, key: &Keypair, call: Call) -> Result<(Hash, u64)> {
        let status = self.status().await?;
        let nonce = self.account(&key.public()).await?.nonce;
        let tx = Transaction::sign(key, &status.genesis, nonce, call);
        match self.submit(&tx).await {
            Ok(id) => Ok((id, nonce)),
            Err(Error::Rpc(s)) if s.code() == tonic::Code::FailedPrecondition => {
                let expected = self.account(&key.public()).await?.nonce;
                if expected > nonce {
                    Err(Error::Ledger(bt_ledger::Error::StaleNonce {
                        account: key.public(),
                        expected,
                        got: nonce,
                    }))
                } else {
                    Err(Error::Rpc(s))
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Waits until transaction `id` is in a block and returns the height; `Ok(None)` when it
    /// is still pending after `timeout`, [`Error::Refused`] when the ledger left it out.
    pub async fn wait_included(&mut self, id: &Hash, timeout: Duration) -> Result<Option<u64>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let poll = Duration::from_millis((self.status().await?.block_time_ms / 4).clamp(5, 250));
        loop {
            match self.tx_status(id).await? {
                TxStatus::Included(h) => return Ok(Some(h)),
                TxStatus::Refused(reason) => return Err(Error::Refused { reason }),
                TxStatus::Pending | TxStatus::Unknown => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Submits an encoded transaction.
    pub async fn submit_bytes(&mut self, bytes: Vec<u8>) -> Result<Hash> {
        let r = self
            .inner
            .submit_transaction(proto::SubmitRequest { transaction: bytes })
            .await
            .map_err(|s| rpc(&self.url, s))?
            .into_inner();
        hash(&r.tx_hash)
    }

    /// Where a transaction is.
    pub async fn tx_status(&mut self, id: &Hash) -> Result<TxStatus> {
        let r = self
            .inner
            .get_transaction(proto::TransactionQuery {
                tx_hash: id.0.to_vec(),
            })
            .await
            .map_err(|s| rpc(&self.url, s))?
            .into_inner();
        Ok(match proto::TxState::try_from(r.state) {
            Ok(proto::TxState::Pending) => TxStatus::Pending,
            Ok(proto::TxState::Included) => TxStatus::Included(r.height),
            Ok(proto::TxState::Refused) => TxStatus::Refused(r.reason),
            _ => TxStatus::Unknown,
        })
    }

    /// An account.
    pub async fn account(&mut self, who: &PublicKey) -> Result<AccountInfo> {
        let r = self
            .inner
            .get_account(proto::AccountQuery {
                account: who.as_bytes().to_vec(),
            })
            .await
            .map_err(|s| rpc(&self.url, s))?
            .into_inner();
        let mut stakes = Vec::with_capacity(r.stakes.len());
        for p in r.stakes {
            let arr: [u8; 32] = p
                .hotkey
                .as_slice()
                .try_into()
                .map_err(|_| Error::BadReply("hotkey length".into()))?;
            stakes.push((
                PublicKey::from_bytes(arr).map_err(|e| Error::BadReply(e.to_string()))?,
                p.rao,
            ));
        }
        Ok(AccountInfo {
            balance: r.balance,
            nonce: r.nonce,
            stakes,
        })
    }

    /// A block (the latest when `height` is `None`).
    pub async fn block(&mut self, height: Option<u64>) -> Result<Block> {
        let r = self
            .inner
            .get_block(proto::BlockQuery { height })
            .await
            .map_err(|s| rpc(&self.url, s))?
            .into_inner();
        Ok(Block::decode(&r.block, usize::MAX)?)
    }

    /// The metagraph (the latest when `height` is `None`), with weight rows if asked,
    /// decoded and checked.
    pub async fn metagraph(&mut self, height: Option<u64>, weights: bool) -> Result<Metagraph> {
        Metagraph::from_proto(self.metagraph_message(height, weights).await?, weights)
    }

    /// The metagraph message as the node sent it (for displays that show its raw fields).
    pub async fn metagraph_message(
        &mut self,
        height: Option<u64>,
        weights: bool,
    ) -> Result<proto::Metagraph> {
        Ok(self
            .inner
            .get_metagraph(proto::MetagraphQuery { height, weights })
            .await
            .map_err(|s| rpc(&self.url, s))?
            .into_inner())
    }

    /// A stream of new block headers.
    pub async fn subscribe(&mut self) -> Result<tonic::Streaming<proto::BlockHeader>> {
        Ok(self
            .inner
            .subscribe_blocks(proto::SubscribeRequest {})
            .await
            .map_err(|s| rpc(&self.url, s))?
            .into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "server")]
    #[test]
    fn no_leader_crosses_the_wire_as_itself() {
        // A validator's "no leader" answer comes back typed, so that clients retry it.
        let status = crate::service::to_status(Error::NoLeader);
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(matches!(rpc("http://v1", status), Error::NoLeader));
        // A validator that cannot reach the leader it forwards to: unavailable, not internal.
        let status = crate::service::to_status(Error::Unreachable {
            url: "http://leader".into(),
            reason: "Connection refused".into(),
        });
        assert_eq!(status.code(), tonic::Code::Unavailable);
        let err = rpc("http://v2", status);
        assert!(
            matches!(&err, Error::Unreachable { url, .. } if url == "http://v2"),
            "{err:?}"
        );
        assert!(err.to_string().contains("http://leader"), "{err}");
        // Any other unavailable answer without the marker stays a transport failure.
        let err = rpc("http://v3", tonic::Status::unavailable("down"));
        assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn an_unreachable_node_is_named_with_the_root_cause_once() {
        // A port that was free a moment ago: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let url = format!("http://127.0.0.1:{port}");
        let err = Client::connect(&url).await.expect_err("nothing listens");
        let Error::Unreachable { url: u, reason } = &err else {
            panic!("expected Unreachable, got {err:?}");
        };
        assert_eq!(u, &url);
        let text = err.to_string();
        assert!(text.contains(&url), "{text}");
        assert!(!text.contains("transport error"), "{text}");
        assert!(!reason.is_empty(), "{text}");
        assert_eq!(
            text.matches(reason.as_str()).count(),
            1,
            "the cause is said once: {text}"
        );
    }

    fn neuron(uid: u32, row: &[(u32, u32)]) -> proto::Neuron {
        let key = bt_keys::Keypair::from_uri(&format!("//Alice//n{uid}"))
            .expect("key")
            .public();
        proto::Neuron {
            uid,
            hotkey: key.as_bytes().to_vec(),
            coldkey: key.as_bytes().to_vec(),
            endpoint: "127.0.0.1:1".into(),
            stake: 5,
            rank_bits: 1 << 31,
            registered_at: 1,
            last_update: 0,
            weight_uids: row.iter().map(|r| r.0).collect(),
            weight_values: row.iter().map(|r| r.1).collect(),
            ..proto::Neuron::default()
        }
    }

    fn graph(neurons: Vec<proto::Neuron>) -> proto::Metagraph {
        proto::Metagraph {
            height: 9,
            state_hash: vec![0; 32],
            tau_bits: 1 << 32,
            total_issuance: 10,
            neurons,
            epsilon_bits: 1 << 30,
            mechanism: "yuma".into(),
            tempo: 3,
        }
    }

    #[test]
    fn a_metagraph_is_decoded_with_the_ledger_units_and_checked() {
        let half = WEIGHT_ONE / 2;
        let mg = Metagraph::from_proto(
            graph(vec![
                neuron(0, &[(0, WEIGHT_ONE)]),
                neuron(1, &[(0, half), (1, half)]),
            ]),
            true,
        )
        .expect("a good metagraph");
        assert_eq!(mg.tau, Fixed::ONE);
        assert_eq!(mg.neurons[0].rank.to_f64(), 0.5);
        assert_eq!(mg.neurons[1].row, vec![(0, half), (1, half)]);

        let refused = |neurons, what: &str| {
            let e = Metagraph::from_proto(graph(neurons), true).expect_err(what);
            assert!(matches!(e, Error::BadReply(_)), "{e:?}");
            assert!(e.to_string().contains(what), "{e} lacks {what:?}");
        };
        refused(vec![neuron(1, &[(0, WEIGHT_ONE)])], "neuron 0 has uid 1");
        refused(vec![neuron(0, &[(3, WEIGHT_ONE)])], "weighs unknown uid 3");
        refused(vec![neuron(0, &[(0, half)])], "sums to");
        let mut bad_key = neuron(0, &[(0, WEIGHT_ONE)]);
        bad_key.hotkey.pop();
        refused(vec![bad_key], "malformed hotkey");
        let mut uneven = neuron(0, &[(0, WEIGHT_ONE)]);
        uneven.weight_values.push(1);
        refused(vec![uneven], "mismatched weight lists");
    }

    #[test]
    fn yuma_fields_and_bonds_are_decoded_and_checked() {
        let mut n0 = neuron(0, &[(1, WEIGHT_ONE)]);
        n0.incentive_bits = 1 << 31;
        n0.emission_bits = 1 << 30;
        n0.bond_uids = vec![1];
        n0.bond_values = vec![1 << 32];
        let mg =
            Metagraph::from_proto(graph(vec![n0.clone(), neuron(1, &[(0, WEIGHT_ONE)])]), true)
                .expect("a good metagraph");
        assert_eq!(mg.mechanism, Mechanism::Yuma);
        assert_eq!(mg.tempo, 3);
        assert_eq!(mg.neurons[0].incentive.to_f64(), 0.5);
        assert_eq!(mg.neurons[0].emission.to_f64(), 0.25);
        assert_eq!(mg.neurons[0].bonds, vec![(1, Fixed::ONE)]);

        let refused = |n: proto::Neuron, what: &str| {
            let e = Metagraph::from_proto(graph(vec![n, neuron(1, &[(0, WEIGHT_ONE)])]), true)
                .expect_err(what);
            assert!(matches!(e, Error::BadReply(_)), "{e:?}");
            assert!(e.to_string().contains(what), "{e} lacks {what:?}");
        };
        let mut uneven = n0.clone();
        uneven.bond_values.push(1);
        refused(uneven, "mismatched bond lists");
        let mut unknown = n0.clone();
        unknown.bond_uids = vec![7];
        refused(unknown, "bonds unknown uid 7");
        let mut unsorted = n0.clone();
        unsorted.bond_uids = vec![1, 0];
        unsorted.bond_values = vec![1, 1];
        refused(unsorted, "not sorted");
        let mut g = graph(vec![n0, neuron(1, &[(0, WEIGHT_ONE)])]);
        g.mechanism = "proof_of_work".into();
        let e = Metagraph::from_proto(g, true).expect_err("unknown mechanism");
        assert!(e.to_string().contains("unknown mechanism"), "{e}");
    }
}
