//! NATS JetStream source: a durable pull consumer on a stream (created when missing) bound to
//! one subject. Messages are acked after they are stored; un-acked ones are re-delivered by the
//! server after `ack_wait`, so a crash loses nothing.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer, stream};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{Handled, Pipeline, backoff};
use crate::config::NatsIngestConfig;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub(super) async fn run(config: NatsIngestConfig, pipeline: Pipeline, shutdown: CancellationToken) {
    let mut delay = Duration::from_millis(100);
    loop {
        match consume(&config, &pipeline, &shutdown).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, stream = %config.stream, "nats ingest failed; reconnecting")
            }
        }
        if !backoff(&mut delay, &shutdown).await {
            return;
        }
    }
}

async fn consume(
    config: &NatsIngestConfig,
    pipeline: &Pipeline,
    shutdown: &CancellationToken,
) -> Result<(), BoxError> {
    let client = async_nats::connect(config.url.as_str()).await?;
    let js = jetstream::new(client.clone());
    let stream = js
        .get_or_create_stream(stream::Config {
            name: config.stream.clone(),
            subjects: vec![config.subject.clone()],
            ..Default::default()
        })
        .await?;
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            &config.durable,
            consumer::pull::Config {
                durable_name: Some(config.durable.clone()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(config.ack_wait_secs.max(1)),
                max_ack_pending: i64::from(config.batch.max(1)),
                ..Default::default()
            },
        )
        .await?;
    loop {
        if shutdown.is_cancelled() {
            // Acks and NAKs are buffered by the client: send them before the connection goes.
            client.flush().await?;
            return Ok(());
        }
        // Fetch one batch at a time, so that on shutdown what was fetched but not handled can
        // be handed back at once (NAK) instead of waiting out `ack_wait`.
        let mut batch = consumer
            .fetch()
            .max_messages(config.batch.max(1) as usize)
            .expires(Duration::from_secs(1))
            .messages()
            .await?;
        while let Some(message) = batch.next().await {
            let message = message?;
            if shutdown.is_cancelled() {
                message.ack_with(AckKind::Nak(None)).await?;
                continue;
            }
            let sequence = message.info().map(|i| i.stream_sequence).unwrap_or(0);
            let position = format!("ingest:nats:{}:{sequence}", config.stream);
            let Some(handled) = pipeline
                .handle_until_stored(&message.payload, &position, shutdown)
                .await
            else {
                message.ack_with(AckKind::Nak(None)).await?;
                continue;
            };
            if let Handled::Poison(reason) = handled {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Belfry-Error", reason.as_str());
                // A core publish: capture the subject with a stream of your own to keep them.
                client
                    .publish_with_headers(
                        config.dead_letter_subject.clone(),
                        headers,
                        message.payload.clone(),
                    )
                    .await?;
                client.flush().await?;
            }
            message.ack().await?;
        }
    }
}
