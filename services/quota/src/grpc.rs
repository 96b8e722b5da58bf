//! `sluice.quota.v1.Quota` served by tonic, with the messages of `sluice_core::quota::wire`
//! (one encoder for the filters and the service) through a small codec.

use crate::store::Scripts;
use bytes::{Buf, BufMut};
use redis::aio::ConnectionManager;
use sluice_core::quota::wire::{self, ReadRequest, ReserveRequest, SettleRequest};
use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{http, Body, BoxFuture, Context, Poll, Service, StdError};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::Status;

pub trait Message: Sized + Send + 'static {
    fn encode(&self) -> Vec<u8>;
    fn decode(b: &[u8]) -> Result<Self, sluice_core::proto::Malformed>;
}

macro_rules! message {
    ($($t:ty),*) => {$(
        impl Message for $t {
            fn encode(&self) -> Vec<u8> { <$t>::encode(self) }
            fn decode(b: &[u8]) -> Result<Self, sluice_core::proto::Malformed> { <$t>::decode(b) }
        }
    )*};
}
message!(
    wire::ReserveRequest,
    wire::ReserveReply,
    wire::SettleRequest,
    wire::SettleReply,
    wire::ReadRequest,
    wire::ReadReply
);

pub struct WireCodec<E, D>(PhantomData<(E, D)>);

impl<E, D> Default for WireCodec<E, D> {
    fn default() -> Self {
        WireCodec(PhantomData)
    }
}

pub struct Enc<E>(PhantomData<E>);
pub struct Dec<D>(PhantomData<D>);

impl<E: Message> Encoder for Enc<E> {
    type Item = E;
    type Error = Status;
    fn encode(&mut self, item: E, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item.encode());
        Ok(())
    }
}

impl<D: Message> Decoder for Dec<D> {
    type Item = D;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        D::decode(&bytes)
            .map(Some)
            .map_err(|_| Status::invalid_argument("malformed quota message"))
    }
}

impl<E: Message, D: Message> Codec for WireCodec<E, D> {
    type Encode = E;
    type Decode = D;
    type Encoder = Enc<E>;
    type Decoder = Dec<D>;
    fn encoder(&mut self) -> Enc<E> {
        Enc(PhantomData)
    }
    fn decoder(&mut self) -> Dec<D> {
        Dec(PhantomData)
    }
}

/// Counters the service reports on its `/stats` line (see main.rs).
#[derive(Default)]
pub struct Stats {
    pub reserves: AtomicU64,
    pub refused: AtomicU64,
    pub settles: AtomicU64,
    pub duplicates: AtomicU64,
    pub reads: AtomicU64,
    pub redis_errors: AtomicU64,
}

pub struct State {
    pub scripts: Scripts,
    pub redis: ConnectionManager,
    pub stats: Stats,
}

#[derive(Clone)]
pub struct Quota(pub Arc<State>);

impl NamedService for Quota {
    const NAME: &'static str = wire::SERVICE;
}

fn unavailable(state: &State, e: &redis::RedisError) -> Status {
    state.stats.redis_errors.fetch_add(1, Ordering::Relaxed);
    // The filter treats UNAVAILABLE as "the fleet store cannot answer" (its failure mode).
    Status::unavailable(format!("redis: {}", e.kind_str()))
}

trait KindStr {
    fn kind_str(&self) -> &'static str;
}
impl KindStr for redis::RedisError {
    fn kind_str(&self) -> &'static str {
        if self.is_timeout() {
            "timeout"
        } else if self.is_connection_dropped() || self.is_connection_refusal() {
            "connection"
        } else {
            "error"
        }
    }
}

/// Runs a script, once more after a dropped connection: the connection manager reconnects on
/// the first failure after Redis restarted or failed over, and every script is idempotent per
/// request id, so the second run is the one that counts.
async fn retried<T, F, Fut>(s: &Arc<State>, f: F) -> Result<T, Status>
where
    F: Fn(ConnectionManager) -> Fut,
    Fut: std::future::Future<Output = Result<T, redis::RedisError>>,
{
    let mut last = None;
    for attempt in 0..3 {
        match f(s.redis.clone()).await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_connection_dropped() || e.is_io_error() || e.is_connection_refusal() => {
                last = Some(e);
                tokio::time::sleep(std::time::Duration::from_millis(20 << attempt)).await;
            }
            Err(e) => return Err(unavailable(s, &e)),
        }
    }
    Err(match last {
        Some(e) => unavailable(s, &e),
        None => Status::unavailable("redis"),
    })
}

type Op<Req, Resp> = fn(Arc<State>, Req) -> BoxFuture<tonic::Response<Resp>, Status>;

struct Unary<Req, Resp>(Arc<State>, Op<Req, Resp>);

impl<Req, Resp> UnaryService<Req> for Unary<Req, Resp> {
    type Response = Resp;
    type Future = BoxFuture<tonic::Response<Resp>, Status>;
    fn call(&mut self, req: tonic::Request<Req>) -> Self::Future {
        (self.1)(Arc::clone(&self.0), req.into_inner())
    }
}

fn reserve(
    s: Arc<State>,
    r: ReserveRequest,
) -> BoxFuture<tonic::Response<wire::ReserveReply>, Status> {
    Box::pin(async move {
        let out = retried(&s, |mut con| {
            let (s, r) = (Arc::clone(&s), r.clone());
            async move { s.scripts.reserve(&mut con, &r).await }
        })
        .await?;
        s.stats.reserves.fetch_add(1, Ordering::Relaxed);
        if !out.admitted {
            s.stats.refused.fetch_add(1, Ordering::Relaxed);
        }
        Ok(tonic::Response::new(out))
    })
}

fn settle(
    s: Arc<State>,
    r: SettleRequest,
) -> BoxFuture<tonic::Response<wire::SettleReply>, Status> {
    Box::pin(async move {
        let out = retried(&s, |mut con| {
            let (s, r) = (Arc::clone(&s), r.clone());
            async move { s.scripts.settle(&mut con, &r).await }
        })
        .await?;
        s.stats.settles.fetch_add(1, Ordering::Relaxed);
        if out.outcome == "duplicate" {
            s.stats.duplicates.fetch_add(1, Ordering::Relaxed);
        }
        Ok(tonic::Response::new(out))
    })
}

fn read(s: Arc<State>, r: ReadRequest) -> BoxFuture<tonic::Response<wire::ReadReply>, Status> {
    Box::pin(async move {
        let out = retried(&s, |mut con| {
            let (s, r) = (Arc::clone(&s), r.clone());
            async move { s.scripts.read(&mut con, &r).await }
        })
        .await?;
        s.stats.reads.fetch_add(1, Ordering::Relaxed);
        Ok(tonic::Response::new(out))
    })
}

impl<B> Service<http::Request<B>> for Quota
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::BoxBody>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let s = Arc::clone(&self.0);
        let path = req.uri().path().to_string();
        let method = path
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(wire::SERVICE))
            .and_then(|p| p.strip_prefix('/'))
            .unwrap_or("")
            .to_string();
        Box::pin(async move {
            Ok(match method.as_str() {
                wire::RESERVE => {
                    Grpc::new(WireCodec::default())
                        .unary(Unary(s, reserve), req)
                        .await
                }
                wire::SETTLE => {
                    Grpc::new(WireCodec::default())
                        .unary(Unary(s, settle), req)
                        .await
                }
                wire::READ => {
                    Grpc::new(WireCodec::default())
                        .unary(Unary(s, read), req)
                        .await
                }
                _ => Status::unimplemented(format!("no method {path}")).into_http(),
            })
        })
    }
}
