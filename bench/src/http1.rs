//! A minimal HTTP/1.1 client: keep-alive, Content-Length and chunked bodies, the target's
//! cookies. Written here rather than taken from a client library so the generator spends little
//! CPU per request (one `write` per request, no pool, no header map) and stays off the core it
//! measures.

use std::io::Write as _;
use std::net::SocketAddr;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Res;
use crate::target::Target;

pub struct Response {
    pub status: u16,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap_or("<binary>")
    }
    pub fn json<'a, T: Deserialize<'a>>(&'a self) -> Res<T> {
        serde_json::from_slice(&self.body).map_err(|e| format!("bad JSON body ({e}): {}", snippet(self.text())))
    }
}

pub fn snippet(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(160).collect()
}

pub struct Conn {
    pub addr: SocketAddr,
    pub host: String,
    pub stream: Option<TcpStream>,
    pub wbuf: Vec<u8>,
    pub rbuf: Vec<u8>,
    /// The `Cookie` header: the kept cookies (`name=value; ...`), if any.
    pub cookie: Option<String>,
    /// The names of the cookies kept (the target's session and interaction cookies).
    pub cookie_names: &'static [&'static str],
}

impl Conn {
    pub fn new(target: &Target) -> Conn {
        Conn {
            addr: target.addr,
            host: target.host.clone(),
            stream: None,
            wbuf: Vec::with_capacity(4096),
            rbuf: Vec::with_capacity(16384),
            cookie: None,
            cookie_names: target.kind.cookies(),
        }
    }

    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) -> Res<Response> {
        let reused = self.stream.is_some();
        let mut r = self.exchange(method, path, headers, body).await;
        if let Err(e) = &r {
            self.stream = None;
            // A kept-alive connection the server closed while idle: the request never arrived.
            // (node closes idle connections after 5 s; a request racing that close reads a reset.)
            let closed = e.starts_with("connection closed") || e.starts_with("write:") || e.contains("reset by peer");
            if reused && closed {
                r = self.exchange(method, path, headers, body).await;
                if r.is_err() {
                    self.stream = None;
                }
            }
        }
        r
    }

    async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) -> Res<Response> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr).await.map_err(|e| format!("connect {}: {e}", self.addr))?;
            s.set_nodelay(true).map_err(|e| e.to_string())?;
            self.stream = Some(s);
            self.rbuf.clear();
        }
        let w = &mut self.wbuf;
        w.clear();
        write!(w, "{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host).ok();
        for (k, v) in headers {
            write!(w, "{k}: {v}\r\n").ok();
        }
        if let Some(c) = &self.cookie {
            write!(w, "Cookie: {c}\r\n").ok();
        }
        if let Some((ct, b)) = body {
            write!(w, "Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n", b.len()).ok();
            w.extend_from_slice(b);
        } else {
            w.extend_from_slice(b"\r\n");
        }
        let stream = self.stream.as_mut().expect("connected");
        stream.write_all(&self.wbuf).await.map_err(|e| format!("write: {e}"))?;
        let res = read_response(stream, &mut self.rbuf).await?;
        let (res, close) = res;
        if close {
            self.stream = None;
        }
        for c in &res.set_cookies {
            let first = c.split(';').next().unwrap_or("").trim();
            if let Some((name, value)) = first.split_once('=')
                && self.cookie_names.contains(&name)
            {
                let attrs = c.to_ascii_lowercase();
                let removed =
                    value.is_empty() || attrs.contains("max-age=0") || attrs.contains("expires=thu, 01 jan 1970");
                self.cookie = set_cookie(self.cookie.take(), name, (!removed).then_some(value));
            }
        }
        Ok(res)
    }

    pub async fn get(&mut self, path: &str) -> Res<Response> {
        self.request("GET", path, &[], None).await
    }

    pub async fn post_form(&mut self, path: &str, headers: &[(&str, &str)], form: &str) -> Res<Response> {
        self.request("POST", path, headers, Some(("application/x-www-form-urlencoded", form.as_bytes()))).await
    }
}

/// The `Cookie` header `header` with cookie `name` replaced by `value`, or removed.
fn set_cookie(header: Option<String>, name: &str, value: Option<&str>) -> Option<String> {
    let mut pairs: Vec<&str> = match &header {
        Some(h) => h.split("; ").filter(|p| p.split_once('=').is_some_and(|(n, _)| n != name)).collect(),
        None => Vec::new(),
    };
    let new = value.map(|v| format!("{name}={v}"));
    if let Some(n) = &new {
        pairs.push(n);
    }
    (!pairs.is_empty()).then(|| pairs.join("; "))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Res<()> {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(16384);
    }
    let n = stream.read_buf(buf).await.map_err(|e| format!("read: {e}"))?;
    if n == 0 {
        return Err("connection closed by the server".into());
    }
    Ok(())
}

/// Reads one response; `buf` may hold bytes already received. Returns the response and whether the
/// server will close the connection.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Res<(Response, bool)> {
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i;
        }
        fill(stream, buf).await?;
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| "response head is not UTF-8".to_string())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut length = None;
    let mut chunked = false;
    let mut close = false;
    let mut location = None;
    let mut set_cookies = Vec::new();
    for line in lines {
        let Some((k, v)) = line.split_once(':') else { continue };
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            length = v.parse::<usize>().ok();
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.to_ascii_lowercase().contains("chunked");
        } else if k.eq_ignore_ascii_case("connection") {
            close = v.eq_ignore_ascii_case("close");
        } else if k.eq_ignore_ascii_case("location") {
            location = Some(v.to_string());
        } else if k.eq_ignore_ascii_case("set-cookie") {
            set_cookies.push(v.to_string());
        }
    }
    let mut pos = head_end + 4;
    let body = if chunked {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = find(&buf[pos..], b"\r\n") {
                    break pos + i;
                }
                fill(stream, buf).await?;
            };
            let size_text = std::str::from_utf8(&buf[pos..line_end]).unwrap_or("");
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| format!("bad chunk size {size_text:?}"))?;
            let data_start = line_end + 2;
            while buf.len() < data_start + size + 2 {
                fill(stream, buf).await?;
            }
            body.extend_from_slice(&buf[data_start..data_start + size]);
            pos = data_start + size + 2;
            if size == 0 {
                break;
            }
        }
        body
    } else {
        let n = length.unwrap_or(0);
        while buf.len() < pos + n {
            fill(stream, buf).await?;
        }
        let body = buf[pos..pos + n].to_vec();
        pos += n;
        body
    };
    buf.drain(..pos);
    Ok((Response { status, location, set_cookies, body }, close))
}

pub fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

pub fn expect_status(r: &Response, want: u16, what: &str) -> Res<()> {
    if r.status == want {
        Ok(())
    } else {
        Err(format!("{what}: status {} (want {want}): {}", r.status, snippet(r.text())))
    }
}

#[cfg(test)]
mod tests {
    use super::set_cookie;

    #[test]
    fn set_cookie_replaces_adds_and_removes_by_name() {
        let h = set_cookie(None, "a", Some("1"));
        assert_eq!(h.as_deref(), Some("a=1"));
        let h = set_cookie(h, "b", Some("2"));
        assert_eq!(h.as_deref(), Some("a=1; b=2"));
        let h = set_cookie(h, "a", Some("3"));
        assert_eq!(h.as_deref(), Some("b=2; a=3"));
        let h = set_cookie(h, "a.sig", Some("x"));
        assert_eq!(h.as_deref(), Some("b=2; a=3; a.sig=x"));
        let h = set_cookie(h, "a", None);
        assert_eq!(h.as_deref(), Some("b=2; a.sig=x"));
        let h = set_cookie(set_cookie(h, "b", None), "a.sig", None);
        assert_eq!(h, None);
    }
}
