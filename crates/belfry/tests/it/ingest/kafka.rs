//! Kafka ingestion (cargo feature `kafka`) against a real Kafka-API broker: tansu with in-memory
//! storage, started by each test on a free loopback port and killed when the test ends. Events
//! reach the user's WebSocket, a node killed with SIGKILL mid-stream and restarted loses and
//! doubles nothing, poison goes to the dead-letter topic. Without the feature, only the config
//! test runs: a config naming `[ingest.kafka]` is refused at load with a message saying why.

use belfry::Config;
use figment::Figment;

#[test]
fn a_kafka_section_is_parsed_and_refused_only_by_a_build_without_the_feature() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("belfry.toml");
    std::fs::write(&file, "[ingest.kafka]\ntopic = \"orders\"\n").unwrap();
    let loaded = Config::load(Some(&file), Figment::new());
    if cfg!(feature = "kafka") {
        assert_eq!(loaded.unwrap().ingest.kafka.unwrap().topic, "orders");
    } else {
        let error = loaded.unwrap_err().to_string();
        assert!(error.contains("--features kafka"), "{error}");
    }

    std::fs::write(&file, "[ingest.kafka]\ntopik = \"orders\"\n").unwrap();
    let error = Config::load(Some(&file), Figment::new())
        .unwrap_err()
        .to_string();
    assert!(error.contains("topik"), "a misspelt key is named: {error}");
}

#[cfg(feature = "kafka")]
mod with_broker {
    use std::process::{Child, Command, Stdio};
    use std::time::Duration;

    use belfry::config::KafkaIngestConfig;
    use rdkafka::ClientConfig;
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::{Headers, Message};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use serde_json::json;

    use super::super::{free_port, killed_mid_stream, notify_json, unique};
    use crate::support::{DEADLINE, metric, spawn_app_with, wait_until};

    /// A tansu broker with in-memory storage on a free loopback port; killed on drop. The binary
    /// is `$TANSU`, else `tansu` on the PATH (scripts/install-deps.sh installs it).
    struct Tansu {
        child: Child,
        brokers: String,
    }

    impl Tansu {
        async fn start() -> Tansu {
            let port = free_port();
            let url = format!("tcp://127.0.0.1:{port}");
            let binary = std::env::var("TANSU").unwrap_or_else(|_| "tansu".into());
            let child = Command::new(&binary)
                .args(["broker", "--storage-engine", "memory://belfry/"])
                .args(["--listener-url", &url, "--advertised-listener-url", &url])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {binary} (scripts/install-deps.sh): {e}"));
            let tansu = Tansu {
                child,
                brokers: format!("127.0.0.1:{port}"),
            };
            wait_until("tansu listens", || async {
                tokio::net::TcpStream::connect(&tansu.brokers)
                    .await
                    .ok()
                    .map(drop)
            })
            .await;
            tansu
        }

        fn client_config(&self) -> ClientConfig {
            let mut config = ClientConfig::new();
            config.set("bootstrap.servers", &self.brokers);
            config
        }

        async fn create_topic(&self, name: &str, partitions: i32) {
            let admin: AdminClient<_> = self.client_config().create().unwrap();
            let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
            let results = tokio::time::timeout(
                DEADLINE,
                admin.create_topics([&topic], &AdminOptions::new()),
            )
            .await
            .unwrap()
            .unwrap();
            for result in results {
                result.unwrap();
            }
        }

        /// One record per batch: tansu 0.6 (memory storage) returns nothing to a fetch that starts
        /// inside a multi-record batch, which is where a consumer resumes after a crash.
        fn producer(&self) -> FutureProducer {
            self.client_config()
                .set("batch.num.messages", "1")
                .create()
                .unwrap()
        }

        /// Produces `value` keyed by `key` and waits until the broker has it.
        async fn produce(producer: &FutureProducer, topic: &str, key: &str, value: &str) {
            producer
                .send(
                    FutureRecord::to(topic).key(key).payload(value),
                    Duration::from_secs(5),
                )
                .await
                .unwrap();
        }

        /// A consumer of its own group reading `topic` from the start.
        fn reader(&self, topic: &str) -> StreamConsumer {
            let consumer: StreamConsumer = self
                .client_config()
                .set("group.id", unique("reader-"))
                .set("auto.offset.reset", "earliest")
                .create()
                .unwrap();
            consumer.subscribe(&[topic]).unwrap();
            consumer
        }
    }

    impl Drop for Tansu {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    #[tokio::test]
    async fn kafka_messages_reach_the_websocket_and_poison_is_dead_lettered_before_the_next() {
        let tansu = Tansu::start().await;
        let topic = unique("notify-");
        let dead = unique("dead-");
        tansu.create_topic(&topic, 3).await;
        tansu.create_topic(&dead, 1).await;
        let source = KafkaIngestConfig {
            brokers: tansu.brokers.clone(),
            topic: topic.clone(),
            group: unique("belfry-"),
            dead_letter_topic: dead.clone(),
            ..KafkaIngestConfig::default()
        };
        let app = spawn_app_with(|c| c.ingest.kafka = Some(source)).await;
        let (mut ws, _) = app.ws_ready("alice", None).await;
        let producer = tansu.producer();

        // One key: one partition, so the four messages are handled in the order sent.
        Tansu::produce(&producer, &topic, "alice", &notify_json("alice", 1)).await;
        let frame = ws.next_of("notification").await;
        assert_eq!(frame["notification"]["type"], "ingested");
        assert_eq!(frame["notification"]["data"]["i"], 1);

        Tansu::produce(&producer, &topic, "alice", "{not json").await;
        let no_recipients = json!({"recipients": [], "type": "t"}).to_string();
        Tansu::produce(&producer, &topic, "alice", &no_recipients).await;
        Tansu::produce(&producer, &topic, "alice", &notify_json("alice", 2)).await;
        let next = ws.next_of("notification").await;
        assert_eq!(
            next["notification"]["data"]["i"], 2,
            "the good message after the poison got through"
        );

        let reader = tansu.reader(&dead);
        let mut dead_letters = Vec::new();
        for _ in 0..2 {
            let message = tokio::time::timeout(DEADLINE, reader.recv())
                .await
                .expect("a dead letter within the deadline")
                .unwrap();
            let headers = message.headers().unwrap();
            let error = headers
                .iter()
                .find(|h| h.key == "belfry-error")
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap();
            let source = headers.iter().find(|h| h.key == "belfry-source").unwrap();
            assert!(
                String::from_utf8_lossy(source.value.unwrap()).starts_with(&topic),
                "the source header names the topic"
            );
            assert_eq!(message.key(), Some(&b"alice"[..]), "the key is kept");
            dead_letters.push((message.payload().unwrap().to_vec(), error));
        }
        assert_eq!(dead_letters[0].0, b"{not json");
        assert!(dead_letters[0].1.contains("not a notify request"));
        assert_eq!(dead_letters[1].0, no_recipients.as_bytes());
        assert!(
            dead_letters[1].1.contains("recipients"),
            "{}",
            dead_letters[1].1
        );
        assert_eq!(
            metric(&app.metrics().await, "belfry_ingest_poison_total"),
            2.0
        );
    }

    #[tokio::test]
    async fn a_kafka_ingesting_node_killed_with_sigkill_loses_and_doubles_nothing() {
        let tansu = Tansu::start().await;
        let topic = unique("notify-");
        let dead = unique("dead-");
        tansu.create_topic(&topic, 3).await;
        tansu.create_topic(&dead, 1).await;
        // The killed node never leaves the group: its partitions move to the restarted node once
        // its session times out. 3 s keeps the test short (a Kafka broker's default minimum is
        // 6 s; tansu has none).
        let extra = format!(
            "[ingest.kafka]\nbrokers = \"{}\"\ntopic = \"{topic}\"\ngroup = \"{}\"\n\
             dead_letter_topic = \"{dead}\"\ncommit_batch = 20\nsession_timeout_ms = 3000\n",
            tansu.brokers,
            unique("belfry-"),
        );
        let producer = tansu.producer();
        // Published all at once, so the node is killed well before it has handled them all.
        killed_mid_stream(&extra, "frank", async |total| {
            let messages: Vec<(String, String)> = (0..total)
                .map(|i| (i.to_string(), notify_json("frank", i)))
                .collect();
            futures_util::future::join_all(
                messages
                    .iter()
                    .map(|(key, value)| Tansu::produce(&producer, &topic, key, value)),
            )
            .await;
        })
        .await;
    }
}
