//! Prometheus metrics, kept in-process and rendered as text at `/metrics`: requests and latency per
//! endpoint, tokens issued, logins, OAuth errors by code, refresh-token reuse, rate-limit refusals.
//! Mutex-guarded maps keyed so that recording a request allocates nothing once its endpoint,
//! method and status have been seen: this runs on every request.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Latency bucket bounds, in seconds.
const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    total: u64,
}

/// One endpoint's requests by (method, status), and its latency.
#[derive(Default)]
struct Endpoint {
    requests: Vec<(String, u16, u64)>,
    latency: Histogram,
}

#[derive(Default)]
pub struct Metrics {
    endpoints: Mutex<HashMap<String, Endpoint>>,
    counters: Mutex<BTreeMap<(&'static str, String), u64>>,
}

impl Metrics {
    pub fn request(&self, endpoint: &str, method: &str, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let mut endpoints = self.endpoints.lock().expect("metrics lock");
        let e = match endpoints.get_mut(endpoint) {
            Some(e) => e,
            None => endpoints.entry(endpoint.to_string()).or_default(),
        };
        match e.requests.iter_mut().find(|(m, s, _)| *s == status && m == method) {
            Some((_, _, n)) => *n += 1,
            None => e.requests.push((method.to_string(), status, 1)),
        }
        let h = &mut e.latency;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.total += 1;
    }

    fn inc(&self, name: &'static str, label: &str) {
        *self.counters.lock().expect("metrics lock").entry((name, label.to_string())).or_default() += 1;
    }

    pub fn token_issued(&self, grant_type: &str) {
        self.inc("portcullis_tokens_issued_total", grant_type);
    }
    pub fn login(&self, result: &str) {
        self.inc("portcullis_logins_total", result);
    }
    pub fn oauth_error(&self, code: &str) {
        self.inc("portcullis_oauth_errors_total", code);
    }
    pub fn refresh_reuse(&self) {
        self.inc("portcullis_refresh_reuse_detected_total", "");
    }
    pub fn rate_limited(&self, endpoint: &str) {
        self.inc("portcullis_rate_limited_total", endpoint);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let endpoints = self.endpoints.lock().expect("metrics lock");
        let mut names: Vec<&String> = endpoints.keys().collect();
        names.sort();
        out.push_str("# HELP portcullis_http_requests_total HTTP requests by endpoint, method and status.\n");
        out.push_str("# TYPE portcullis_http_requests_total counter\n");
        for name in &names {
            let mut requests: Vec<_> = endpoints[*name].requests.iter().collect();
            requests.sort();
            for (method, status, n) in requests {
                let _ = writeln!(
                    out,
                    "portcullis_http_requests_total{{endpoint=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                    escape(name)
                );
            }
        }
        out.push_str("# HELP portcullis_http_request_duration_seconds Request latency by endpoint.\n");
        out.push_str("# TYPE portcullis_http_request_duration_seconds histogram\n");
        for name in &names {
            let h = &endpoints[*name].latency;
            let e = escape(name);
            for (bound, n) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "portcullis_http_request_duration_seconds_bucket{{endpoint=\"{e}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "portcullis_http_request_duration_seconds_bucket{{endpoint=\"{e}\",le=\"+Inf\"}} {}",
                h.total
            );
            let _ = writeln!(out, "portcullis_http_request_duration_seconds_sum{{endpoint=\"{e}\"}} {}", h.sum);
            let _ = writeln!(out, "portcullis_http_request_duration_seconds_count{{endpoint=\"{e}\"}} {}", h.total);
        }
        drop(endpoints);
        let counters = self.counters.lock().expect("metrics lock");
        let labels = [
            ("portcullis_tokens_issued_total", "grant_type", "Tokens issued by grant type."),
            ("portcullis_logins_total", "result", "Sign-in attempts by result."),
            ("portcullis_oauth_errors_total", "error", "OAuth error responses by error code."),
            (
                "portcullis_refresh_reuse_detected_total",
                "",
                "Refresh tokens presented again after rotation (grant revoked).",
            ),
            ("portcullis_rate_limited_total", "endpoint", "Requests refused by a rate limit."),
        ];
        for (name, label, help) in labels {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let mut any = false;
            for ((n, value), count) in counters.iter().filter(|((n, _), _)| *n == name) {
                any = true;
                if label.is_empty() {
                    let _ = writeln!(out, "{n} {count}");
                } else {
                    let _ = writeln!(out, "{n}{{{label}=\"{}\"}} {count}", escape(value));
                }
            }
            if !any && label.is_empty() {
                let _ = writeln!(out, "{name} 0");
            }
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.request("/token", "POST", 200, Duration::from_millis(3));
        m.token_issued("authorization_code");
        m.oauth_error("invalid_grant");
        let text = m.render();
        assert!(text.contains("portcullis_http_requests_total{endpoint=\"/token\",method=\"POST\",status=\"200\"} 1"));
        assert!(text.contains("portcullis_http_request_duration_seconds_bucket{endpoint=\"/token\",le=\"0.005\"} 1"));
        assert!(text.contains("portcullis_http_request_duration_seconds_bucket{endpoint=\"/token\",le=\"0.001\"} 0"));
        assert!(text.contains("portcullis_tokens_issued_total{grant_type=\"authorization_code\"} 1"));
        assert!(text.contains("portcullis_refresh_reuse_detected_total 0"));
    }
}
