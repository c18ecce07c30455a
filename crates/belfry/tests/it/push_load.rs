//! One user must not be able to stall everyone's pushes: a bounded number of subscriptions per
//! user, each sent on its own, and a push service that never answers holding only its own
//! lane's slots.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::push::{Receiver, push_app_with};
use crate::support::{metric, wait_until};

/// A push service that accepts connections and never answers; counts what it accepted.
struct BlackHole {
    base: String,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl BlackHole {
    async fn start() -> BlackHole {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                held.push(socket);
            }
        });
        BlackHole {
            base,
            accepted,
            task,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn names_of(received: &[Value], prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = received
        .iter()
        .filter_map(|r| r["name"].as_str())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_user_keeps_only_their_most_recently_saved_subscriptions() {
    let receiver = Receiver::start();
    let app = push_app_with(|_| {}).await; // the default cap, 10
    for i in 0..12 {
        let (status, body) = app
            .post_as(
                "quinn",
                "/v1/me/push-subscriptions",
                receiver.subscription(&format!("q{i:02}")),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    // Saving q02 again makes it the most recent: the next save removes q03, not q02.
    for name in ["q02", "q12"] {
        let (status, _) = app
            .post_as(
                "quinn",
                "/v1/me/push-subscriptions",
                receiver.subscription(name),
            )
            .await;
        assert_eq!(status, 201);
    }
    for gone in ["q00", "q01", "q03"] {
        let (status, _) = app
            .user_request(
                reqwest::Method::DELETE,
                "quinn",
                "/v1/me/push-subscriptions",
                Some(receiver.subscription(gone)),
            )
            .await;
        assert_eq!(status, 404, "{gone} was removed");
    }

    app.backend_post(
        "/v1/notifications",
        &json!({"recipients": ["quinn"], "type": "t"}),
    )
    .await;
    let received = wait_until("ten pushes are sent", || async {
        (metric(&app.metrics().await, "belfry_push_sent_total") == 10.0).then_some(())?;
        Some(receiver.received().await)
    })
    .await;
    let expected: Vec<String> = [2, 4, 5, 6, 7, 8, 9, 10, 11, 12]
        .iter()
        .map(|i| format!("q{i:02}"))
        .collect();
    assert_eq!(names_of(&received, "q"), expected);
}

#[tokio::test]
async fn a_push_service_that_never_answers_delays_no_other_push() {
    let receiver = Receiver::start();
    let hole = BlackHole::start().await;
    // Two shared slots, one per push service; the silent one holds its attempt for a minute.
    let app = push_app_with(|c| {
        c.push.concurrency = 2;
        c.push.per_host_concurrency = 1;
        c.push.request_timeout_secs = 60;
        c.push.max_attempts = 1;
    })
    .await;
    let silent = receiver.subscription_at(&format!("{}/push/ann-silent", hole.base));
    for (user, subscription) in [
        ("ann", silent),
        ("ann", receiver.subscription("ann-ok")),
        ("ben", receiver.subscription("ben")),
    ] {
        let (status, body) = app
            .post_as(user, "/v1/me/push-subscriptions", subscription)
            .await;
        assert_eq!(status, 201, "{body}");
    }

    // Ann's notifications (more than all the shared slots) go first.
    for i in 0..3 {
        let (status, _) = app
            .backend_post(
                "/v1/notifications",
                &json!({"recipients": ["ann"], "type": "t", "data": {"i": i}}),
            )
            .await;
        assert_eq!(status, 201);
    }
    wait_until("the silent push service holds a request", || async {
        (hole.accepted() >= 1).then_some(())
    })
    .await;
    let (status, _) = app
        .backend_post(
            "/v1/notifications",
            &json!({"recipients": ["ben"], "type": "t"}),
        )
        .await;
    assert_eq!(status, 201);

    let received = wait_until(
        "ben's push, and ann's to her other browser, arrive",
        || async {
            let got = receiver.received().await;
            (names_of(&got, "ben").len() == 1 && names_of(&got, "ann-ok").len() == 3).then_some(got)
        },
    )
    .await;
    // …while ann's first push to the silent service is still waiting for an answer, and her
    // others to it wait in its lane without a connection.
    let text = app.metrics().await;
    assert_eq!(
        metric(&text, "belfry_push_failed_total"),
        0.0,
        "{received:?}"
    );
    assert_eq!(hole.accepted(), 1);
}

#[tokio::test]
async fn one_user_with_many_silent_push_services_holds_only_their_share_of_the_slots() {
    let receiver = Receiver::start();
    let holes = [
        BlackHole::start().await,
        BlackHole::start().await,
        BlackHole::start().await,
    ];
    let accepted = || holes.iter().map(BlackHole::accepted).sum::<usize>();
    // Four shared slots; ann's three push services could take two each, but ann gets three.
    let app = push_app_with(|c| {
        c.push.concurrency = 4;
        c.push.per_host_concurrency = 2;
        c.push.max_subscriptions_per_user = 3;
        c.push.request_timeout_secs = 60;
        c.push.max_attempts = 1;
    })
    .await;
    for (i, hole) in holes.iter().enumerate() {
        let silent = receiver.subscription_at(&format!("{}/push/ann-{i}", hole.base));
        let (status, body) = app
            .post_as("ann", "/v1/me/push-subscriptions", silent)
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, _) = app
        .post_as(
            "ben",
            "/v1/me/push-subscriptions",
            receiver.subscription("ben"),
        )
        .await;
    assert_eq!(status, 201);

    for i in 0..3 {
        app.backend_post(
            "/v1/notifications",
            &json!({"recipients": ["ann"], "type": "t", "data": {"i": i}}),
        )
        .await;
    }
    wait_until("ann's silent push services hold three requests", || async {
        (accepted() >= 3).then_some(())
    })
    .await;
    app.backend_post(
        "/v1/notifications",
        &json!({"recipients": ["ben"], "type": "t"}),
    )
    .await;
    wait_until("ben's push arrives", || async {
        (names_of(&receiver.received().await, "ben").len() == 1).then_some(())
    })
    .await;
    assert_eq!(
        metric(&app.metrics().await, "belfry_push_failed_total"),
        0.0
    );
    assert_eq!(accepted(), 3, "ann has three requests in flight, no more");
}
