//! A fault-injecting HTTP proxy in front of the moto server: workers talk to it as if it
//! were AWS. It can fail a share of S3 object PUTs with `503 SlowDown` (what S3 answers
//! under load) and take the whole endpoint offline for a while — every open connection
//! dropped, every new one refused — which is what a restart of the AWS endpoint looks
//! like from a client, without losing the server's state.
//!
//! Each connection carries one request (`Connection: close` is forced), so every
//! request passes the fault decision.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub struct FaultState {
    /// Fail every Nth S3 object PUT (0: never).
    pub fail_every_nth_put: AtomicU64,
    puts: AtomicU64,
    /// PUTs answered 503.
    pub failed_puts: AtomicU64,
    offline: AtomicBool,
    /// Connections refused or cut while offline.
    pub dropped: AtomicU64,
    epoch: AtomicU64,
}

pub struct FaultProxy {
    pub endpoint: String,
    pub state: Arc<FaultState>,
    stop: CancellationToken,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FaultProxy {
    /// Listen on a free loopback port and forward to `upstream` (host:port).
    pub async fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(FaultState::default());
        let stop = CancellationToken::new();
        let upstream = upstream.trim_start_matches("http://").to_string();
        let (s, st) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let conn = tokio::select! {
                    _ = st.cancelled() => return,
                    c = listener.accept() => c,
                };
                let Ok((client, _)) = conn else { continue };
                let (s, up, st) = (s.clone(), upstream.clone(), st.clone());
                tokio::spawn(async move {
                    let _ = handle(client, &up, &s, &st).await;
                });
            }
        });
        FaultProxy {
            endpoint,
            state,
            stop,
        }
    }

    /// Take the endpoint offline (cut open connections, refuse new ones) or back.
    pub fn set_offline(&self, offline: bool) {
        self.state.epoch.fetch_add(1, Ordering::SeqCst);
        self.state.offline.store(offline, Ordering::SeqCst);
    }
}

/// Read up to the end of the request head (`\r\n\r\n`); returns the head and any body
/// bytes read with it.
async fn read_head(client: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).to_string();
            return Ok(Some((head, buf[end + 4..].to_vec())));
        }
        if buf.len() > 64 * 1024 {
            return Ok(None);
        }
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// An S3 object PUT (path-style `PUT /bucket/key`), but not a multipart part copy or a
/// bucket creation.
fn is_object_put(head: &str) -> bool {
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split_whitespace();
    let (Some("PUT"), Some(path)) = (parts.next(), parts.next()) else {
        return false;
    };
    let path = path.split('?').next().unwrap_or("");
    path.trim_start_matches('/').contains('/')
}

async fn handle(
    mut client: TcpStream,
    upstream: &str,
    s: &FaultState,
    stop: &CancellationToken,
) -> std::io::Result<()> {
    let epoch = s.epoch.load(Ordering::SeqCst);
    if s.offline.load(Ordering::SeqCst) {
        s.dropped.fetch_add(1, Ordering::SeqCst);
        return Ok(()); // closed at once: connection reset / empty reply
    }
    let Some((head, early_body)) = read_head(&mut client).await? else {
        return Ok(());
    };
    let nth = s.fail_every_nth_put.load(Ordering::SeqCst);
    if nth > 0 && is_object_put(&head) {
        let n = s.puts.fetch_add(1, Ordering::SeqCst) + 1;
        if n % nth == 0 {
            s.failed_puts.fetch_add(1, Ordering::SeqCst);
            let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
                        <Message>Please reduce your request rate.</Message></Error>";
            let reply = format!(
                "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            client.write_all(reply.as_bytes()).await?;
            let _ = client.shutdown().await;
            return Ok(());
        }
    }
    // One request per connection, so the next request meets the fault decision too.
    let mut rewritten = String::with_capacity(head.len() + 20);
    for line in head.split("\r\n") {
        if line.is_empty() {
            continue;
        }
        if line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        rewritten.push_str(line);
        rewritten.push_str("\r\n");
    }
    rewritten.push_str("Connection: close\r\n\r\n");
    let mut server = TcpStream::connect(upstream).await?;
    server.write_all(rewritten.as_bytes()).await?;
    server.write_all(&early_body).await?;
    let copy = async {
        let (mut cr, mut cw) = client.split();
        let (mut sr, mut sw) = server.split();
        let up = async {
            let r = tokio::io::copy(&mut cr, &mut sw).await;
            let _ = sw.shutdown().await;
            r
        };
        let down = async {
            let r = tokio::io::copy(&mut sr, &mut cw).await;
            let _ = cw.shutdown().await;
            r
        };
        let _ = tokio::join!(up, down);
    };
    // An outage cuts connections that are open when it starts.
    let cut = async {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            if s.epoch.load(Ordering::SeqCst) != epoch && s.offline.load(Ordering::SeqCst) {
                s.dropped.fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
    };
    tokio::select! {
        _ = copy => {}
        _ = cut => {}
        _ = stop.cancelled() => {}
    }
    Ok(())
}
