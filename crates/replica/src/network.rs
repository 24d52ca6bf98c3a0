//! Raft between validators over tonic: the client each validator holds to each other (one
//! [`Connection`] per target, made by [`Network`]) and the service that hands what it
//! receives to the local raft ([`RaftService`]). Every payload goes through [`crate::rpc`]'s
//! decoders; a payload that does not decode is answered `InvalidArgument`.

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::proto::raft_client::RaftClient;
use crate::proto::{Frame, raft_server};
use crate::rpc::{
    Reply, decode_append, decode_append_reply, decode_reply_frame, decode_snapshot_chunk,
    decode_snapshot_reply, decode_vote_reply, decode_vote_request, encode_append,
    encode_append_reply, encode_snapshot_chunk, encode_snapshot_reply, encode_vote_reply,
    encode_vote_request, reply_frame,
};
use crate::{NodeId, Peer, TypeConfig};

/// The most bytes of one raft message (a block entry or a snapshot chunk).
pub const MAX_MESSAGE_BYTES: usize = 512 << 20;

/// Makes a [`Connection`] to each target, at the membership's raft address unless `routes`
/// says otherwise (a test harness puts a proxy on each link to cut it).
#[derive(Clone, Debug, Default)]
pub struct Network {
    /// Where to dial a peer's raft instead of its membership address.
    pub routes: std::sync::Arc<std::collections::BTreeMap<NodeId, String>>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &Peer) -> Connection {
        Connection {
            target,
            node: node.clone(),
            dial: self
                .routes
                .get(&target)
                .cloned()
                .unwrap_or_else(|| node.raft.clone()),
            client: None,
        }
    }
}

/// One validator's client to another, connected on first use and again after a failure.
#[derive(Debug)]
pub struct Connection {
    target: NodeId,
    node: Peer,
    dial: String,
    client: Option<RaftClient<Channel>>,
}

type RpcResult<T, E = RaftError<NodeId>> = Result<T, RPCError<NodeId, Peer, E>>;

impl Connection {
    async fn client<E: std::error::Error>(&mut self) -> RpcResult<RaftClient<Channel>, E> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{}", self.dial))
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true);
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let c = RaftClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        self.client = Some(c.clone());
        Ok(c)
    }

    /// Sends `payload` with `call`, and decodes the reply frame with `decode`.
    async fn call<T, E, F, Fut>(
        &mut self,
        payload: Vec<u8>,
        ttl: Duration,
        call: F,
        decode: impl Fn(&[u8]) -> crate::Result<T>,
    ) -> RpcResult<T, E>
    where
        E: std::error::Error + serde::de::DeserializeOwned,
        F: FnOnce(RaftClient<Channel>, Request<Frame>) -> Fut,
        Fut: std::future::Future<Output = Result<Response<Frame>, Status>>,
    {
        let client = self.client().await?;
        let mut req = Request::new(Frame { payload });
        req.set_timeout(ttl);
        let reply = match call(client, req).await {
            Ok(r) => r.into_inner().payload,
            Err(status) => {
                // Reconnect next time: the peer may have restarted.
                self.client = None;
                return Err(RPCError::Network(NetworkError::new(&status)));
            }
        };
        match decode_reply_frame::<T, E>(&reply, decode) {
            Ok(Reply::Ok(v)) => Ok(v),
            Ok(Reply::Remote(e)) => Err(RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))),
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        self.call(
            encode_append(&rpc),
            option.hard_ttl(),
            |mut c, r| async move { c.append_entries(r).await },
            decode_append_reply,
        )
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
        self.call(
            encode_snapshot_chunk(&rpc),
            option.hard_ttl(),
            |mut c, r| async move { c.install_snapshot(r).await },
            decode_snapshot_reply,
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        self.call(
            encode_vote_request(&rpc),
            option.hard_ttl(),
            |mut c, r| async move { c.vote(r).await },
            decode_vote_reply,
        )
        .await
    }
}

/// The raft RPC service: decodes each request and hands it to the local raft.
#[derive(Clone)]
pub struct RaftService {
    raft: openraft::Raft<TypeConfig>,
}

impl RaftService {
    /// The service over `raft`, as a tonic server with the message size limit.
    pub fn server(raft: openraft::Raft<TypeConfig>) -> raft_server::RaftServer<RaftService> {
        raft_server::RaftServer::new(RaftService { raft })
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

fn invalid(e: crate::Error) -> Status {
    Status::invalid_argument(e.to_string())
}

#[tonic::async_trait]
impl raft_server::Raft for RaftService {
    async fn append_entries(&self, req: Request<Frame>) -> Result<Response<Frame>, Status> {
        let rpc = decode_append(&req.into_inner().payload).map_err(invalid)?;
        let r = self.raft.append_entries(rpc).await;
        Ok(Response::new(Frame {
            payload: reply_frame(&r, encode_append_reply),
        }))
    }

    async fn vote(&self, req: Request<Frame>) -> Result<Response<Frame>, Status> {
        let rpc = decode_vote_request(&req.into_inner().payload).map_err(invalid)?;
        let r = self.raft.vote(rpc).await;
        Ok(Response::new(Frame {
            payload: reply_frame(&r, encode_vote_reply),
        }))
    }

    async fn install_snapshot(&self, req: Request<Frame>) -> Result<Response<Frame>, Status> {
        let rpc = decode_snapshot_chunk(&req.into_inner().payload).map_err(invalid)?;
        let r = self.raft.install_snapshot(rpc).await;
        Ok(Response::new(Frame {
            payload: reply_frame(&r, encode_snapshot_reply),
        }))
    }
}
