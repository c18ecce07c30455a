//! Brokers of a test's own, on free loopback ports, for tests that kill, restart or pause them:
//! the machine's shared Redis and NATS are never stopped.

use std::process::{Child, Command, Stdio};

use super::wait_until;

/// A free TCP port on 127.0.0.1 (the listener is closed again at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn answers(port: u16) {
    wait_until("the broker answers", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(drop)
    })
    .await;
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([name, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {name}");
}

/// A Redis server of the test's own.
pub struct OwnRedis {
    pub port: u16,
    child: Child,
}

impl OwnRedis {
    pub async fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/install-deps.sh)");
        answers(port).await;
        Self { port, child }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Pauses every client's commands for `ms` milliseconds (`CLIENT PAUSE … ALL`).
    pub async fn pause(&self, ms: u64) {
        let client = redis::Client::open(self.url()).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(ms)
            .arg("ALL")
            .query_async::<()>(&mut con)
            .await
            .unwrap();
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A NATS server of the test's own.
pub struct OwnNats {
    pub port: u16,
    child: Child,
}

impl OwnNats {
    pub async fn start(port: u16) -> Self {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server must be installed (scripts/install-deps.sh)");
        answers(port).await;
        Self { port, child }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is read or forwarded.
    pub fn pause(&self) {
        signal(&self.child, "-STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        signal(&self.child, "-CONT");
    }

    pub fn kill(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP proxy in front of a broker, for one node's link. `stall` makes it a black hole: every
/// connection through it stays open, but what the node sends is read and thrown away and
/// nothing comes back (new connections too) — publishes vanish or time out, silently. `restore`
/// closes those connections, so the node reconnects, and forwards new ones again. The broker
/// and the other nodes' links carry on.
pub struct Link {
    pub port: u16,
    open: Arc<std::sync::atomic::AtomicBool>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
    task: tokio::task::JoinHandle<()>,
}

use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Reads and drops what `inbound` sends until the link changes again (or the peer closes).
async fn swallow(
    inbound: &mut tokio::net::TcpStream,
    change: &mut tokio::sync::watch::Receiver<u64>,
) {
    let mut sink = [0u8; 4096];
    loop {
        tokio::select! {
            _ = change.changed() => return,
            read = tokio::io::AsyncReadExt::read(inbound, &mut sink) => {
                if matches!(read, Ok(0) | Err(_)) { return; }
            }
        }
    }
}

impl Link {
    /// A proxy to `127.0.0.1:target`.
    pub async fn to(target: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let generation = Arc::new(generation);
        let task = {
            let open = Arc::clone(&open);
            let generation = Arc::clone(&generation);
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    let mut change = generation.subscribe();
                    let open = Arc::clone(&open);
                    tokio::spawn(async move {
                        if !open.load(Ordering::SeqCst) {
                            swallow(&mut inbound, &mut change).await;
                            return;
                        }
                        let Ok(mut outbound) =
                            tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                        else {
                            return;
                        };
                        tokio::select! {
                            _ = change.changed() => {}
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
                        }
                        // Stalled: the broker side goes, the node's side stays open and unheard.
                        drop(outbound);
                        swallow(&mut inbound, &mut change).await;
                    });
                }
            })
        };
        Self {
            port,
            open,
            generation,
            task,
        }
    }

    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Everything the node sends through the link from now on is lost, without an error.
    pub fn stall(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Closes the stalled connections (the node reconnects) and forwards new ones again.
    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}
