//! Streams transactions at a node that may crash, and checks afterwards that every
//! acknowledged one survived: the client side of the crash test.
//!
//! [`stream_transfers`] sends 1-rao transfers one after another. Each transaction's bytes
//! are fixed once signed; on any transport failure it reconnects and resends the same bytes
//! until the node acknowledges them. Resending is safe: the node answers a transaction it
//! already holds (pending or included) with success instead of storing it twice. Only
//! acknowledged ids are recorded, so [`check_acked`] can then demand that each one is in a
//! block.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use bt_keys::{Keypair, PublicKey};
use bt_ledger::{Call, Hash, Transaction};

use crate::client::{Client, TxStatus};
use crate::error::{Error, Result};

/// What a load run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Transactions acknowledged.
    pub acked: u64,
    /// Submissions that failed in transport and were resent.
    pub retries: u64,
}

/// Connects to the first of `urls` that answers, starting after the one used last (`*next`),
/// going round them up to `attempts` times 50 ms apart: with a replicated ledger's
/// validators, a client fails over to the next when one goes away.
async fn connect_retrying(urls: &[String], next: &mut usize, attempts: u32) -> Result<Client> {
    let mut last = None;
    for _ in 0..attempts {
        match Client::connect_first(urls, next).await {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(last.unwrap_or(Error::Stopped))
}

fn transient(e: &Error) -> bool {
    match e {
        e if e.is_lost() => true,
        Error::Rpc(s) => matches!(
            s.code(),
            tonic::Code::Unknown
                | tonic::Code::Internal
                | tonic::Code::Cancelled
                | tonic::Code::ResourceExhausted
                | tonic::Code::DeadlineExceeded
        ),
        _ => false,
    }
}

/// Sends up to `count` transfers of 1 rao from `from` to `to`, recording each acknowledged
/// id (hex, one per line) in `acked`, until `count` is reached or `stop()` is true.
/// Survives the node going away for up to `patience` (reconnecting every 50 ms, to the next
/// of `urls` each time).
pub async fn stream_transfers(
    urls: &[String],
    from: &Keypair,
    to: PublicKey,
    count: u64,
    acked: &Path,
    patience: Duration,
    mut stop: impl FnMut() -> bool,
) -> Result<LoadReport> {
    if urls.is_empty() {
        return Err(Error::NoLeader);
    }
    let attempts = (patience.as_millis() / 50).max(1) as u32;
    let mut next = 0;
    let mut client = connect_retrying(urls, &mut next, attempts).await?;
    let status = client.status().await?;
    let mut nonce = client.account(&from.public()).await?.nonce;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(acked)
        .map_err(|source| Error::Io {
            path: acked.to_path_buf(),
            source,
        })?;
    let mut report = LoadReport::default();
    while report.acked < count && !stop() {
        let tx = Transaction::sign(
            from,
            &status.genesis,
            nonce,
            Call::Transfer { to, amount: 1 },
        );
        let bytes = tx.encode();
        let id = loop {
            match client.submit_bytes(bytes.clone()).await {
                Ok(id) => break id,
                Err(e) if transient(&e) => {
                    report.retries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    client = connect_retrying(urls, &mut next, attempts).await?;
                }
                Err(e) => return Err(e),
            }
        };
        writeln!(file, "{}", id.to_hex()).map_err(|source| Error::Io {
            path: acked.to_path_buf(),
            source,
        })?;
        report.acked += 1;
        nonce += 1;
    }
    file.sync_all().map_err(|source| Error::Io {
        path: acked.to_path_buf(),
        source,
    })?;
    Ok(report)
}

/// What [`check_acked`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AckCheck {
    /// Ids in the file.
    pub acked: u64,
    /// Of those, in a block.
    pub included: u64,
    /// Still pending when the wait ran out.
    pub pending: u64,
    /// Refused by the ledger.
    pub refused: u64,
    /// Unknown to the node: lost.
    pub lost: u64,
}

/// Reads the acknowledged ids in `acked` and asks the node about each, waiting up to
/// `wait` for pending ones to be included.
pub async fn check_acked(url: &str, acked: &Path, wait: Duration) -> Result<AckCheck> {
    let text = std::fs::read_to_string(acked).map_err(|source| Error::Io {
        path: acked.to_path_buf(),
        source,
    })?;
    let mut ids = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let bytes: std::result::Result<Vec<u8>, _> = (0..line.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(line.get(i..i + 2).unwrap_or("zz"), 16))
            .collect();
        let bytes = bytes.map_err(|_| Error::BadReply(format!("bad id line {line:?}")))?;
        ids.push(Hash::from_slice(&bytes)?);
    }
    let mut client = connect_retrying(&[url.to_string()], &mut 0, 100).await?;
    let deadline = tokio::time::Instant::now() + wait;
    let mut check;
    loop {
        check = AckCheck {
            acked: ids.len() as u64,
            ..AckCheck::default()
        };
        for id in &ids {
            match client.tx_status(id).await? {
                TxStatus::Included(_) => check.included += 1,
                TxStatus::Pending => check.pending += 1,
                TxStatus::Refused(_) => check.refused += 1,
                TxStatus::Unknown => check.lost += 1,
            }
        }
        if check.pending == 0 || tokio::time::Instant::now() >= deadline {
            return Ok(check);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
