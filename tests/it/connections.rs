//! Slow clients (the round-two review's item 13): `portcullis::serve::run` closes a connection
//! whose request headers do not arrive within `header_read_timeout`, and serves at most
//! `max_connections` at once (the rest wait in the listen backlog until one ends).

use std::time::Duration;

use portcullis::config::{Seconds, ServeSettings};
use portcullis::state::AppState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Engine, TestDb, settings_for};

async fn serving(settings: ServeSettings) -> (std::net::SocketAddr, TestDb, tokio::task::JoinHandle<()>) {
    let db = TestDb::new(Engine::Sqlite).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (state, _) = AppState::start(settings_for(&db.url, &format!("http://{addr}"), addr, |_| {})).await.unwrap();
    let app = portcullis::app(state);
    let server = tokio::spawn(portcullis::serve::run(
        listener,
        app,
        settings,
        portcullis::serve::tcp_peer,
        std::future::pending(),
    ));
    (addr, db, server)
}

/// Reads until the peer closes (`Some(what was read)`) or `wait` passes (`None`).
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    let mut out = Vec::new();
    let read = tokio::time::timeout(wait, async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok().map(|()| String::from_utf8_lossy(&out).into_owned())
}

async fn healthz(addr: std::net::SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    closed_within(&mut s, Duration::from_secs(5)).await.expect("answered")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_must_arrive_within_the_timeout() {
    let (addr, _db, _server) = serving(ServeSettings { header_read_timeout: Seconds(1), max_connections: 0 }).await;
    // A slowloris: half a request head, then nothing.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let answer = closed_within(&mut slow, Duration::from_secs(4)).await;
    assert!(answer.is_some(), "the connection was still open after 4 s");
    assert!(!answer.unwrap().contains("200 OK"), "nothing served");
    // Prompt clients are served as usual.
    assert!(healthz(addr).await.starts_with("HTTP/1.1 200 OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_for_one_to_end() {
    let (addr, _db, _server) = serving(ServeSettings { header_read_timeout: Seconds(30), max_connections: 2 }).await;
    let mut held: Vec<TcpStream> = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The third connects (the kernel's backlog) but is not served while two are held.
    let mut third = TcpStream::connect(addr).await.unwrap();
    third.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    assert_eq!(closed_within(&mut third, Duration::from_millis(700)).await, None, "served beyond the cap");
    // One held connection ends: the third is served.
    drop(held.pop());
    let answer = closed_within(&mut third, Duration::from_secs(5)).await.expect("served once a slot freed");
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
}
