//! The hardened outbound fetcher against a local HTTPS server signed by a throwaway test CA.
//!
//! The server is a few lines of raw HTTP/1.1 over tokio-rustls, so each route can misbehave
//! exactly as a hostile host would (lying `Content-Length`, trickled bodies, no length at all).
//! Nothing here reaches the internet.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use portcullis::clients::fetch::{FetchConfig, FetchError, Fetcher, USER_AGENT};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::helpers::{TlsTestServer, read_request_head};

const GOOD: &str =
    r#"{"client_id":"https://client.example/cimd.json","client_name":"Test","redirect_uris":["http://127.0.0.1/cb"]}"#;
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

/// A local HTTPS server on 127.0.0.1 with a certificate for `localhost` and `127.0.0.1`, and the
/// test CA's PEM in a temp file. The server task dies with the test's runtime.
struct TestServer {
    port: u16,
    ca_file: tempfile::NamedTempFile,
}

impl TestServer {
    async fn start() -> TestServer {
        let TlsTestServer { port, ca_file } = TlsTestServer::start("Portcullis fetch test CA", serve).await;
        TestServer { port, ca_file }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    /// A fetcher that trusts the test CA, with the loopback switch as given.
    fn fetcher(&self, allow_loopback: bool) -> Fetcher {
        self.fetcher_with_timeout(allow_loopback, Duration::from_secs(5))
    }

    fn fetcher_with_timeout(&self, allow_loopback: bool, timeout: Duration) -> Fetcher {
        Fetcher::new(FetchConfig {
            test_ca_file: Some(self.ca_file.path().to_owned()),
            test_allow_loopback: allow_loopback,
            timeout,
            ..FetchConfig::default()
        })
        .expect("fetcher")
    }
}

fn head(status: &str, headers: &[(&str, String)], content_length: Option<u64>) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(len) = content_length {
        out.push_str(&format!("Content-Length: {len}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

fn full(status: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut out = head(status, headers, Some(body.len() as u64));
    out.extend_from_slice(body);
    out
}

fn http_date(t: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.to_offset(time::UtcOffset::UTC).format(&format).expect("http date")
}

fn json_array_of(len: usize) -> Vec<u8> {
    let mut body = b"[".to_vec();
    body.resize(len - 1, b'0');
    body.push(b']');
    body
}

async fn serve(stream: TcpStream, acceptor: TlsAcceptor, port: u16) {
    let Ok(Ok(mut tls)) = tokio::time::timeout(Duration::from_secs(5), acceptor.accept(stream)).await else {
        return;
    };
    let Some(request) = read_request_head(&mut tls).await else {
        return;
    };
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let header = |name: &str| {
        request.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    let json = ("Content-Type", "application/json".to_owned());

    let _ = match path.as_str() {
        "/good" => {
            tls.write_all(&full("200 OK", &[json, ("Cache-Control", "max-age=600".into())], GOOD.as_bytes())).await
        }
        "/plus-json" => {
            let ct = ("Content-Type", "application/vnd.example.client+json; charset=utf-8".to_owned());
            tls.write_all(&full("200 OK", &[ct], GOOD.as_bytes())).await
        }
        "/expires" => {
            let now = time::OffsetDateTime::now_utc();
            let headers = [json, ("Date", http_date(now)), ("Expires", http_date(now + time::Duration::seconds(300)))];
            tls.write_all(&full("200 OK", &headers, GOOD.as_bytes())).await
        }
        "/no-store" => {
            tls.write_all(&full("200 OK", &[json, ("Cache-Control", "no-store".into())], GOOD.as_bytes())).await
        }
        "/html" => {
            let ct = ("Content-Type", "text/html; charset=utf-8".to_owned());
            tls.write_all(&full("200 OK", &[ct], b"<html><body>hello</body></html>")).await
        }
        "/missing" => tls.write_all(&full("404 Not Found", &[json], br#"{"error":"not_found"}"#)).await,
        "/redirect" => {
            let location = ("Location", format!("https://127.0.0.1:{port}/good"));
            tls.write_all(&full("302 Found", &[location], b"")).await
        }
        "/big" => tls.write_all(&full("200 OK", &[json], &json_array_of(6 * 1024))).await,
        "/big-unsized" => {
            // No Content-Length: the body runs until the connection closes.
            let mut out = head("200 OK", &[json], None);
            out.extend_from_slice(&json_array_of(6 * 1024));
            tls.write_all(&out).await
        }
        "/slow" => {
            let _ = tls.write_all(&head("200 OK", &[json], Some(64))).await;
            let _ = tls.write_all(b"[").await;
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if tls.write_all(b" ").await.is_err() || tls.flush().await.is_err() {
                    return;
                }
            }
            Ok(())
        }
        "/slow-headers" => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            tls.write_all(&full("200 OK", &[json], GOOD.as_bytes())).await
        }
        "/huge-length" => {
            let _ = tls.write_all(&head("200 OK", &[json], Some(100_000_000_000))).await;
            let _ = tls.write_all(b"[").await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(())
        }
        "/echo" => {
            let body = serde_json::json!({
                "user_agent": header("user-agent"),
                "accept": header("accept"),
                "cookie": header("cookie"),
            })
            .to_string();
            tls.write_all(&full("200 OK", &[json], body.as_bytes())).await
        }
        "/logo.png" => tls.write_all(&full("200 OK", &[("Content-Type", "image/png".into())], PNG)).await,
        "/mid.png" => {
            let mut body = PNG.to_vec();
            body.resize(6 * 1024, 0);
            tls.write_all(&full("200 OK", &[("Content-Type", "image/png".into())], &body)).await
        }
        "/big.png" => {
            let mut out = head("200 OK", &[("Content-Type", "image/png".into())], None);
            out.extend_from_slice(PNG);
            out.resize(out.len() + 70 * 1024, 0);
            tls.write_all(&out).await
        }
        "/logo.svg" => {
            let ct = ("Content-Type", "image/svg+xml".to_owned());
            tls.write_all(&full("200 OK", &[ct], b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script/></svg>")).await
        }
        _ => tls.write_all(&full("404 Not Found", &[], b"")).await,
    };
    let _ = tls.shutdown().await;
}

#[tokio::test]
async fn json_document_with_max_age() {
    let server = TestServer::start().await;
    let fetched = server.fetcher(true).get_json(&server.url("/good")).await.expect("fetch");
    assert_eq!(fetched.body, GOOD.as_bytes());
    assert_eq!(fetched.content_type, "application/json");
    assert_eq!(fetched.max_age, Some(Duration::from_secs(600)));
}

#[tokio::test]
async fn json_suffix_type_with_charset_is_accepted() {
    let server = TestServer::start().await;
    let fetched = server.fetcher(true).get_json(&server.url("/plus-json")).await.expect("fetch");
    assert_eq!(fetched.content_type, "application/vnd.example.client+json");
    assert_eq!(fetched.max_age, None);
}

#[tokio::test]
async fn expires_gives_freshness() {
    let server = TestServer::start().await;
    let fetched = server.fetcher(true).get_json(&server.url("/expires")).await.expect("fetch");
    let max_age = fetched.max_age.expect("freshness from Expires");
    assert!((Duration::from_secs(298)..=Duration::from_secs(300)).contains(&max_age), "{max_age:?}");
}

#[tokio::test]
async fn no_store_means_not_fresh() {
    let server = TestServer::start().await;
    let fetched = server.fetcher(true).get_json(&server.url("/no-store")).await.expect("fetch");
    assert_eq!(fetched.max_age, Some(Duration::ZERO));
}

#[tokio::test]
async fn html_is_refused() {
    let server = TestServer::start().await;
    let err = server.fetcher(true).get_json(&server.url("/html")).await.unwrap_err();
    assert_eq!(err, FetchError::ContentType("text/html".into()));
}

#[tokio::test]
async fn not_found_is_refused() {
    let server = TestServer::start().await;
    let err = server.fetcher(true).get_json(&server.url("/missing")).await.unwrap_err();
    assert_eq!(err, FetchError::Status(404));
}

#[tokio::test]
async fn redirect_is_not_followed() {
    let server = TestServer::start().await;
    let err = server.fetcher(true).get_json(&server.url("/redirect")).await.unwrap_err();
    assert_eq!(err, FetchError::Redirect(302));
}

#[tokio::test]
async fn body_over_the_cap_is_refused() {
    let server = TestServer::start().await;
    let fetcher = server.fetcher(true);
    assert_eq!(fetcher.get_json(&server.url("/big")).await.unwrap_err(), FetchError::TooLarge);
    assert_eq!(fetcher.get_json(&server.url("/big-unsized")).await.unwrap_err(), FetchError::TooLarge);
}

#[tokio::test]
async fn huge_content_length_is_refused_at_once() {
    let server = TestServer::start().await;
    // The server sends one byte and then stalls: only the early Content-Length check gives TooLarge.
    let err = server.fetcher(true).get_json(&server.url("/huge-length")).await.unwrap_err();
    assert_eq!(err, FetchError::TooLarge);
}

#[tokio::test]
async fn slow_body_hits_the_total_timeout() {
    let server = TestServer::start().await;
    let started = Instant::now();
    let fetcher = server.fetcher_with_timeout(true, Duration::from_secs(1));
    let err = fetcher.get_json(&server.url("/slow")).await.unwrap_err();
    assert_eq!(err, FetchError::Timeout);
    // The server would take 10 s.
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
}

#[tokio::test]
async fn slow_headers_hit_the_total_timeout() {
    let server = TestServer::start().await;
    let started = Instant::now();
    let fetcher = server.fetcher_with_timeout(true, Duration::from_secs(1));
    let err = fetcher.get_json(&server.url("/slow-headers")).await.unwrap_err();
    assert_eq!(err, FetchError::Timeout);
    // The server would take 10 s.
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
}

#[tokio::test]
async fn only_https_is_fetched() {
    let server = TestServer::start().await;
    let fetcher = server.fetcher(true);
    let plain = format!("http://127.0.0.1:{}/good", server.port);
    assert_eq!(fetcher.get_json(&plain).await.unwrap_err(), FetchError::NotHttps);
    assert_eq!(fetcher.get_json("file:///etc/passwd").await.unwrap_err(), FetchError::NotHttps);
    assert_eq!(fetcher.get_image("data:image/png;base64,AAAA").await.unwrap_err(), FetchError::NotHttps);
    let with_userinfo = format!("https://user:secret@127.0.0.1:{}/good", server.port);
    assert!(matches!(fetcher.get_json(&with_userinfo).await, Err(FetchError::InvalidUrl(_))));
    assert!(matches!(fetcher.get_json("no scheme at all").await, Err(FetchError::InvalidUrl(_))));
}

#[tokio::test]
async fn loopback_is_refused_without_the_switch_even_with_the_ca() {
    let server = TestServer::start().await;
    let err = server.fetcher(false).get_json(&server.url("/good")).await.unwrap_err();
    assert_eq!(err, FetchError::ForbiddenAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_without_the_switch() {
    let server = TestServer::start().await;
    let url = format!("https://localhost:{}/good", server.port);
    match server.fetcher(false).get_json(&url).await {
        Err(FetchError::ForbiddenAddress(ip)) => assert!(ip.is_loopback(), "{ip}"),
        other => panic!("expected a forbidden address, got {:?}", other.map(|f| f.content_type)),
    }
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_fetched_with_the_switch() {
    let server = TestServer::start().await;
    let url = format!("https://localhost:{}/good", server.port);
    let fetched = server.fetcher(true).get_json(&url).await.expect("fetch");
    assert_eq!(fetched.body, GOOD.as_bytes());
}

#[tokio::test]
async fn other_special_use_addresses_stay_forbidden_with_the_switch() {
    let server = TestServer::start().await;
    let fetcher = server.fetcher(true);
    for (url, ip) in [
        ("https://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("https://10.0.0.1/client.json", "10.0.0.1"),
        ("https://0.0.0.0/client.json", "0.0.0.0"),
        ("https://[::ffff:127.0.0.1]/client.json", "::ffff:127.0.0.1"),
        ("https://[fe80::1]/client.json", "fe80::1"),
        ("https://[64:ff9b::a00:1]/client.json", "64:ff9b::a00:1"),
    ] {
        let err = fetcher.get_json(url).await.unwrap_err();
        assert_eq!(err, FetchError::ForbiddenAddress(ip.parse().unwrap()), "{url}");
    }
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    let server = TestServer::start().await;
    let fetcher = Fetcher::new(FetchConfig {
        test_allow_loopback: true,
        timeout: Duration::from_secs(1),
        ..FetchConfig::default()
    })
    .expect("fetcher");
    let err = fetcher.get_json(&server.url("/good")).await.unwrap_err();
    assert!(matches!(&err, FetchError::Connect(reason) if reason.contains("certificate")), "{err:?}");
}

#[tokio::test]
async fn request_identifies_itself_and_sends_no_cookie() {
    let server = TestServer::start().await;
    let fetched = server.fetcher(true).get_json(&server.url("/echo")).await.expect("fetch");
    let echo: serde_json::Value = serde_json::from_slice(&fetched.body).expect("json");
    assert_eq!(echo["user_agent"], USER_AGENT);
    assert!(USER_AGENT.starts_with("portcullis/"));
    assert_eq!(echo["accept"], "application/json");
    assert_eq!(echo["cookie"], serde_json::Value::Null);
}

#[tokio::test]
async fn images() {
    let server = TestServer::start().await;
    let fetcher = server.fetcher(true);
    let png = fetcher.get_image(&server.url("/logo.png")).await.expect("png");
    assert_eq!(png.content_type, "image/png");
    assert_eq!(png.body, PNG);
    // The image cap (64 KiB) is not the JSON cap (5 KiB).
    assert_eq!(fetcher.get_image(&server.url("/mid.png")).await.expect("6 KB png").body.len(), 6 * 1024);
    assert_eq!(fetcher.get_image(&server.url("/big.png")).await.unwrap_err(), FetchError::TooLarge);
    assert_eq!(
        fetcher.get_image(&server.url("/logo.svg")).await.unwrap_err(),
        FetchError::ContentType("image/svg+xml".into())
    );
    assert_eq!(
        fetcher.get_image(&server.url("/good")).await.unwrap_err(),
        FetchError::ContentType("application/json".into())
    );
    assert_eq!(
        fetcher.get_json(&server.url("/logo.png")).await.unwrap_err(),
        FetchError::ContentType("image/png".into())
    );
}

#[tokio::test]
async fn a_missing_ca_file_is_a_config_error() {
    let result = Fetcher::new(FetchConfig {
        test_ca_file: Some("/nonexistent/portcullis-ca.pem".into()),
        ..FetchConfig::default()
    });
    assert!(matches!(result, Err(FetchError::Config(_))));
}
