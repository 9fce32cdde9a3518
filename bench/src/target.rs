//! What a scenario runs against: a real `cordon serve` (SQLite or PostgreSQL),
//! the bare tonic baseline (the same service, the same encoded messages, the
//! same mutual TLS, with no storage and no policy), or NATS JetStream (a durable
//! file-backed stream and one durable consumer per subscriber).

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
use cordon_gateway::cli::client::indicator_client;
use cordon_proto::v1::indicator_service_client::IndicatorServiceClient;
use cordon_proto::v1::indicator_service_server::{IndicatorService, IndicatorServiceServer};
use cordon_proto::v1::{
    Accepted, Event, GetRequest, GetResponse, Indicator, PublishRequest, PublishResponse,
    Published, RetractRequest, RetractResponse, Signature, SubscribeRequest, event,
};
use futures::{Stream, StreamExt};
use prost::Message;
use tokio::sync::broadcast;
use tonic::transport::{Certificate, Identity as TlsIdentity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

pub type IndicatorStream = Pin<Box<dyn Stream<Item = Result<Indicator>> + Send>>;

/// Where to publish and subscribe.
#[derive(Debug, Clone)]
pub enum Target {
    /// A gRPC `IndicatorService` over mutual TLS: a gateway or the bare baseline.
    Grpc {
        endpoint: String,
        publisher: PathBuf,
        /// One identity per subscriber.
        subscribers: Vec<PathBuf>,
        /// Publish source-protected into this circle (MLS) instead of the ordinary feed;
        /// empty for the ordinary feed.
        circle: String,
    },
    Nats(NatsTarget),
}

#[derive(Debug, Clone)]
pub struct NatsTarget {
    pub context: async_nats::jetstream::Context,
    pub stream: String,
    pub subject: String,
}

/// A cheap-to-clone publisher.
#[derive(Clone)]
pub enum Publisher {
    Grpc {
        client: IndicatorServiceClient<tonic::transport::Channel>,
        /// The circle to publish into; empty for the ordinary feed.
        circle: String,
    },
    Nats(NatsTarget),
}

impl Publisher {
    /// Publishes `batch` and returns once it is acknowledged (stored, for the
    /// gateway and JetStream).
    pub async fn publish(&mut self, batch: Vec<Indicator>) -> Result<()> {
        match self {
            Publisher::Grpc { client, circle } => {
                client
                    .publish(PublishRequest {
                        indicators: batch,
                        circle: circle.clone(),
                    })
                    .await
                    .context("publish")?;
            }
            Publisher::Nats(target) => {
                let mut acks = Vec::with_capacity(batch.len());
                for indicator in batch {
                    acks.push(
                        target
                            .context
                            .publish(target.subject.clone(), indicator.encode_to_vec().into())
                            .await
                            .context("JetStream publish")?,
                    );
                }
                for ack in acks {
                    ack.await.context("JetStream publish ack")?;
                }
            }
        }
        Ok(())
    }
}

impl Target {
    pub async fn publisher(&self) -> Result<Publisher> {
        Ok(match self {
            Target::Grpc {
                endpoint,
                publisher,
                circle,
                ..
            } => Publisher::Grpc {
                client: indicator_client(endpoint, publisher).await?,
                circle: circle.clone(),
            },
            Target::Nats(target) => Publisher::Nats(target.clone()),
        })
    }

    /// Subscriber `index`'s following stream of indicators after `after` (gRPC) or
    /// from the start of the stream (JetStream, one durable consumer per index).
    pub async fn subscribe(&self, index: usize, after: u64) -> Result<IndicatorStream> {
        match self {
            Target::Grpc {
                endpoint,
                subscribers,
                ..
            } => {
                let identity = subscribers
                    .get(index % subscribers.len().max(1))
                    .context("no subscriber identity")?;
                grpc_subscribe(endpoint, identity, after).await
            }
            Target::Nats(target) => nats_subscribe(target, index).await,
        }
    }
}

async fn grpc_subscribe(endpoint: &str, identity: &Path, after: u64) -> Result<IndicatorStream> {
    let mut client = indicator_client(endpoint, identity).await?;
    let stream = client
        .subscribe(SubscribeRequest {
            after,
            follow: true,
            ..SubscribeRequest::default()
        })
        .await
        .context("subscribe")?
        .into_inner();
    Ok(Box::pin(stream.filter_map(|event| async move {
        match event {
            Ok(Event {
                body: Some(event::Body::Published(published)),
                ..
            }) => published.indicator.map(Ok),
            Ok(_) => None,
            Err(status) => Some(Err(anyhow::anyhow!("subscription failed: {status}"))),
        }
    })))
}

async fn nats_subscribe(target: &NatsTarget, index: usize) -> Result<IndicatorStream> {
    use async_nats::jetstream::consumer::{AckPolicy, pull};
    let stream = target
        .context
        .get_stream(&target.stream)
        .await
        .context("JetStream stream")?;
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(format!("subscriber-{index}")),
            // Like a Subscribe stream: delivery without per-message acknowledgement.
            ack_policy: AckPolicy::None,
            ..pull::Config::default()
        })
        .await
        .context("JetStream consumer")?;
    let messages = consumer.messages().await.context("JetStream messages")?;
    Ok(Box::pin(messages.map(|message| {
        let message = message.map_err(|error| anyhow::anyhow!("JetStream message: {error}"))?;
        Indicator::decode(message.payload.as_ref()).context("decoding a JetStream message")
    })))
}

/// Creates a fresh file-backed stream on the NATS server at `url`.
pub async fn nats_target(url: &str, label: &str) -> Result<NatsTarget> {
    use async_nats::jetstream::stream::{Config, StorageType};
    let client = async_nats::connect(url)
        .await
        .with_context(|| format!("connecting to NATS at {url}"))?;
    let context = async_nats::jetstream::new(client);
    let name = format!("CORDON_BENCH_{label}_{}", std::process::id());
    let subject = format!("cordon.bench.{label}.{}", std::process::id());
    // A leftover of an interrupted run of the same name would skew the counts.
    let _ = context.delete_stream(&name).await;
    context
        .create_stream(Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            storage: StorageType::File,
            ..Config::default()
        })
        .await
        .context("creating the JetStream stream")?;
    Ok(NatsTarget {
        context,
        stream: name,
        subject,
    })
}

pub async fn delete_nats(target: &NatsTarget) {
    let _ = target.context.delete_stream(&target.stream).await;
}

/// The bare baseline: `IndicatorService` whose Publish hands each indicator,
/// completed as a gateway would (originator, publisher, a signature-sized
/// signature), to every open Subscribe stream. No storage, no policy, no
/// decision log, no signing.
#[derive(Debug, Clone)]
pub struct BareService {
    events: broadcast::Sender<Event>,
    sequence: Arc<AtomicU64>,
}

/// Events a slow subscriber of the bare baseline may fall behind before it fails.
const BARE_BACKLOG: usize = 1 << 18;

impl BareService {
    pub fn new() -> BareService {
        let (events, _) = broadcast::channel(BARE_BACKLOG);
        BareService {
            events,
            sequence: Arc::new(AtomicU64::new(0)),
        }
    }
}

#[tonic::async_trait]
impl IndicatorService for BareService {
    async fn publish(
        &self,
        request: Request<PublishRequest>,
    ) -> Result<Response<PublishResponse>, Status> {
        let mut accepted = Vec::new();
        for mut indicator in request.into_inner().indicators {
            if indicator.id.is_empty() {
                indicator.id = uuid::Uuid::now_v7().to_string();
            }
            indicator.originator = "GH".into();
            indicator.publisher = "GH/customs".into();
            indicator.signature = Some(Signature {
                key_id: "GH:0000000000000000".into(),
                signature: vec![0; 64],
                ..Signature::default()
            });
            let sequence = self.sequence.fetch_add(1, Ordering::Relaxed) + 1;
            accepted.push(Accepted {
                id: indicator.id.clone(),
                sequence,
                warnings: Vec::new(),
            });
            // No receiver yet is not an error: nothing subscribed.
            let _ = self.events.send(Event {
                sequence,
                at: None,
                body: Some(event::Body::Published(Published {
                    indicator: Some(indicator),
                    redacted: Vec::new(),
                })),
            });
        }
        Ok(Response::new(PublishResponse { accepted }))
    }

    async fn retract(
        &self,
        _: Request<RetractRequest>,
    ) -> Result<Response<RetractResponse>, Status> {
        Err(Status::unimplemented("the bare baseline only streams"))
    }

    type SubscribeStream = Pin<Box<dyn Stream<Item = Result<Event, Status>> + Send>>;

    async fn subscribe(
        &self,
        _: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let receiver = self.events.subscribe();
        let stream = tokio_stream::wrappers::BroadcastStream::new(receiver).map(|item| {
            item.map_err(|error| {
                Status::data_loss(format!("bare baseline subscriber lagged: {error}"))
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get(&self, _: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        Err(Status::unimplemented("the bare baseline only streams"))
    }
}

/// Serves [`BareService`] on a free loopback port with the gateway identity in
/// `identity` (cert.pem, key.pem, ca.pem), client certificates required, in this
/// process. Returns the endpoint.
pub async fn start_bare(identity: &Path) -> Result<String> {
    let read = |name: &str| {
        std::fs::read(identity.join(name))
            .with_context(|| format!("reading {}", identity.join(name).display()))
    };
    let tls = ServerTlsConfig::new()
        .identity(TlsIdentity::from_pem(read("cert.pem")?, read("key.pem")?))
        .client_ca_root(Certificate::from_pem(read("ca.pem")?));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let limit = 4 * 1024 * 1024;
    let service = IndicatorServiceServer::new(BareService::new())
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let server = Server::builder()
        .tcp_nodelay(true)
        .tls_config(tls)?
        .add_service(service)
        .serve_with_incoming(cordon_gateway::server::incoming(listener));
    tokio::spawn(async move {
        if let Err(error) = server.await {
            eprintln!("bare baseline server failed: {error}");
        }
    });
    if address.port() == 0 {
        bail!("no port bound");
    }
    Ok(format!("https://{address}"))
}
