//! Blocks: a header and the transactions in order.
//!
//! ```text
//! header = version:u8 height:u64 parent[32] timestamp_ms:u64 tx_root[32] state_hash[32]
//! block  = header count:u32 (len:u32 transaction)*count
//! ```
//!
//! `tx_root` is BLAKE2b-256 of the concatenated transaction ids; `state_hash` is the hash of
//! the state after the block ([`crate::State::hash`]). A block's id is the hash of its header.

use crate::codec::{Hash, Reader, Writer};
use crate::error::{Error, Result};
use crate::tx::Transaction;

const HEADER_VERSION: u8 = 1;

/// A block header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The height, one more than the parent's.
    pub height: u64,
    /// The parent block's id (the genesis hash for block 1).
    pub parent: Hash,
    /// Milliseconds since the Unix epoch when the block was produced; informational.
    pub timestamp_ms: u64,
    /// The hash of the transactions.
    pub tx_root: Hash,
    /// The hash of the state after this block.
    pub state_hash: Hash,
}

/// A block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The header.
    pub header: Header,
    /// The transactions, applied in this order.
    pub txs: Vec<Transaction>,
}

impl Header {
    /// The length of an encoded header.
    pub const LEN: usize = 1 + 8 + 32 + 8 + 32 + 32;

    fn encode_into(&self, w: &mut Writer) {
        w.u8(HEADER_VERSION);
        w.u64(self.height);
        w.raw(&self.parent.0);
        w.u64(self.timestamp_ms);
        w.raw(&self.tx_root.0);
        w.raw(&self.state_hash.0);
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(Header::LEN);
        self.encode_into(&mut w);
        w.finish()
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Header> {
        let v = r.u8()?;
        if v != HEADER_VERSION {
            return Err(Error::malformed(
                "block",
                format!("header version {v}, expected {HEADER_VERSION}"),
            ));
        }
        Ok(Header {
            height: r.u64()?,
            parent: r.hash()?,
            timestamp_ms: r.u64()?,
            tx_root: r.hash()?,
            state_hash: r.hash()?,
        })
    }

    /// Decodes a header.
    pub fn decode(bytes: &[u8]) -> Result<Header> {
        let mut r = Reader::new(bytes, "header");
        let h = Header::decode_from(&mut r)?;
        r.finish()?;
        Ok(h)
    }

    /// The block id: BLAKE2b-256 of the encoded header.
    pub fn hash(&self) -> Hash {
        Hash::of(&self.encode())
    }
}

/// The transaction root of a list of transactions.
pub fn tx_root(txs: &[Transaction]) -> Hash {
    let mut w = Writer::with_capacity(32 * txs.len());
    for tx in txs {
        w.raw(&tx.hash().0);
    }
    Hash::of(&w.finish())
}

impl Block {
    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let size: usize = self.txs.iter().map(|t| 4 + t.encoded_len()).sum();
        let mut w = Writer::with_capacity(Header::LEN + 4 + size);
        self.header.encode_into(&mut w);
        w.len(self.txs.len());
        for tx in &self.txs {
            w.bytes(&tx.encode());
        }
        w.finish()
    }

    /// Decodes a block; each transaction may be at most `max_tx_bytes` long.
    pub fn decode(bytes: &[u8], max_tx_bytes: usize) -> Result<Block> {
        let mut r = Reader::new(bytes, "block");
        let header = Header::decode_from(&mut r)?;
        let n = r.len(4 + 32 + 8 + 1 + 64)?;
        let mut txs = Vec::with_capacity(n);
        for _ in 0..n {
            txs.push(Transaction::decode(r.bytes()?, max_tx_bytes)?);
        }
        r.finish()?;
        Ok(Block { header, txs })
    }

    /// The block id.
    pub fn hash(&self) -> Hash {
        self.header.hash()
    }
}
