//! The cluster file: a static membership, one `[[validator]]` table per validator.
//!
//! ```toml
//! [[validator]]
//! id = 1
//! raft = "10.0.0.1:7001"     # raft RPCs between validators
//! api = "10.0.0.1:50051"     # the ledger API clients and neurons use
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::{NodeId, Peer};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    validator: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    id: NodeId,
    raft: String,
    api: String,
}

/// Reads a cluster file's text: every validator by id. Refuses an empty list, a repeated
/// id or address, and an address that is not `host:port`.
pub fn parse_cluster(text: &str) -> Result<BTreeMap<NodeId, Peer>> {
    let bad = |reason: String| Error::Cluster { reason };
    let file: File = toml::from_str(text).map_err(|e| bad(e.message().to_string()))?;
    if file.validator.is_empty() {
        return Err(bad("no [[validator]] is listed".into()));
    }
    let mut out = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    for v in file.validator {
        for (what, addr) in [("raft", &v.raft), ("api", &v.api)] {
            if addr.parse::<SocketAddr>().is_err() && !host_port(addr) {
                return Err(bad(format!(
                    "validator {}: {what} address {addr:?} is not host:port",
                    v.id
                )));
            }
            if !seen.insert(addr.clone()) {
                return Err(bad(format!("address {addr} is listed twice")));
            }
        }
        if out
            .insert(
                v.id,
                Peer {
                    raft: v.raft,
                    api: v.api,
                },
            )
            .is_some()
        {
            return Err(bad(format!("validator id {} is listed twice", v.id)));
        }
    }
    Ok(out)
}

/// `name:port` with a non-empty name and a port number.
fn host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_file_reads_and_each_mistake_is_named() {
        let ok = "[[validator]]\nid = 1\nraft = \"127.0.0.1:7001\"\napi = \"127.0.0.1:50051\"\n\
                  [[validator]]\nid = 2\nraft = \"node2:7001\"\napi = \"node2:50051\"\n";
        let m = parse_cluster(ok).expect("reads");
        assert_eq!(m.len(), 2);
        assert_eq!(m[&2].api, "node2:50051");
        for (text, says) in [
            ("", "missing field"),
            ("validator = []", "no [[validator]]"),
            (
                "[[validator]]\nid = 1\nraft = \"x\"\napi = \"127.0.0.1:1\"\n",
                "not host:port",
            ),
            (
                "[[validator]]\nid = 1\nraft = \"a:1\"\napi = \"a:1\"\n",
                "listed twice",
            ),
            (
                "[[validator]]\nid = 1\nraft = \"a:1\"\napi = \"a:2\"\n[[validator]]\nid = 1\nraft = \"b:1\"\napi = \"b:2\"\n",
                "id 1 is listed twice",
            ),
            (
                "[[validator]]\nid = 1\nraft = \"a:1\"\napi = \"a:2\"\nport = 3\n",
                "unknown field",
            ),
        ] {
            match parse_cluster(text) {
                Err(Error::Cluster { reason }) => assert!(reason.contains(says), "{reason}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }
}
