//! A typed client for a node's gRPC API.

use std::time::Duration;

use bt_keys::{Keypair, PublicKey};
use bt_ledger::{Block, Call, Hash, Transaction};
use tonic::transport::Channel;

use crate::error::{Error, Result};
use crate::proto;
use crate::proto::chain_client::ChainClient;
use crate::service::MAX_REPLY_BYTES;
use crate::store::TxStatus;

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

/// A connected client.
#[derive(Debug, Clone)]
pub struct Client {
    inner: ChainClient<Channel>,
}

fn hash(b: &[u8]) -> Result<Hash> {
    Hash::from_slice(b).map_err(|e| Error::BadReply(e.to_string()))
}

impl Client {
    /// Connects to `url` (e.g. `http://127.0.0.1:50051`).
    pub async fn connect(url: &str) -> Result<Client> {
        let channel = tonic::transport::Endpoint::from_shared(url.to_string())
            .map_err(|e| Error::BadReply(format!("bad node address {url}: {e}")))?
            .tcp_nodelay(true)
            .connect()
            .await?;
        let inner = ChainClient::new(channel)
            .max_decoding_message_size(MAX_REPLY_BYTES)
            .max_encoding_message_size(16 << 20);
        Ok(Client { inner })
    }

    /// The node's status.
    pub async fn status(&mut self) -> Result<Status> {
        let r = self
            .inner
            .get_status(proto::StatusRequest {})
            .await?
            .into_inner();
        Ok(Status {
            genesis: hash(&r.genesis_hash)?,
            height: r.height,
            head: hash(&r.head_hash)?,
            state_hash: hash(&r.state_hash)?,
            max_tx_bytes: r.max_tx_bytes,
            block_time_ms: r.block_time_ms,
            pending: r.pending,
        })
    }

    /// Submits a transaction; returns its id once the node has it on disk.
    pub async fn submit(&mut self, tx: &Transaction) -> Result<Hash> {
        self.submit_bytes(tx.encode()).await
    }

    /// Signs `call` with `key` at the account's next nonce and submits it; returns the
    /// transaction id and the nonce used.
    pub async fn sign_and_submit(&mut self, key: &Keypair, call: Call) -> Result<(Hash, u64)> {
        let status = self.status().await?;
        let nonce = self.account(&key.public()).await?.nonce;
        let tx = Transaction::sign(key, &status.genesis, nonce, call);
        Ok((self.submit(&tx).await?, nonce))
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
            .await?
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
            .await?
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
            .await?
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
            .await?
            .into_inner();
        Ok(Block::decode(&r.block, usize::MAX)?)
    }

    /// The metagraph (the latest when `height` is `None`), with weight rows if asked.
    pub async fn metagraph(
        &mut self,
        height: Option<u64>,
        weights: bool,
    ) -> Result<proto::Metagraph> {
        Ok(self
            .inner
            .get_metagraph(proto::MetagraphQuery { height, weights })
            .await?
            .into_inner())
    }

    /// A stream of new block headers.
    pub async fn subscribe(&mut self) -> Result<tonic::Streaming<proto::BlockHeader>> {
        Ok(self
            .inner
            .subscribe_blocks(proto::SubscribeRequest {})
            .await?
            .into_inner())
    }
}
