//! How long a fetched response may be cached (RFC 9111 §4.2.1): `Cache-Control: max-age`,
//! `Expires` against `Date`, `Age`, and HTTP-date parsing (RFC 9110 §5.6.7).

use std::time::Duration;

use reqwest::header::{self, HeaderMap};
use time::OffsetDateTime;

/// RFC 9111 §1.2.2: delta-seconds beyond 2^31 are taken as 2^31.
const MAX_DELTA_SECONDS: u64 = 1 << 31;

/// Remaining freshness per RFC 9111 §4.2.1, see [`Fetched::max_age`].
pub(super) fn freshness(headers: &HeaderMap, now: OffsetDateTime) -> Option<Duration> {
    let lifetime = cache_control_max_age(headers).or_else(|| expires_lifetime(headers, now))?;
    let age = headers.get(header::AGE).and_then(|v| v.to_str().ok()).and_then(parse_delta_seconds).unwrap_or(0);
    Some(Duration::from_secs(lifetime.saturating_sub(age)))
}

/// `Some(0)` for `no-store`/`no-cache` or an invalid `max-age`; the smallest `max-age` otherwise.
fn cache_control_max_age(headers: &HeaderMap) -> Option<u64> {
    let mut max_age: Option<u64> = None;
    for value in headers.get_all(header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else {
            return Some(0);
        };
        for directive in value.split(',') {
            let (name, arg) = match directive.split_once('=') {
                Some((name, arg)) => (name.trim(), Some(arg.trim().trim_matches('"'))),
                None => (directive.trim(), None),
            };
            if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
                return Some(0);
            }
            if name.eq_ignore_ascii_case("max-age") {
                let seconds = arg.and_then(parse_delta_seconds).unwrap_or(0);
                max_age = Some(max_age.map_or(seconds, |m| m.min(seconds)));
            }
        }
    }
    max_age
}

fn parse_delta_seconds(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // All digits: only overflow can fail, and an overflow is "very large".
    Some(s.parse::<u64>().unwrap_or(MAX_DELTA_SECONDS).min(MAX_DELTA_SECONDS))
}

/// `Expires - Date` (or `- now` without a valid `Date`), in seconds; an invalid `Expires` is in the past.
fn expires_lifetime(headers: &HeaderMap, now: OffsetDateTime) -> Option<u64> {
    let expires = headers.get(header::EXPIRES)?;
    let Some(expires) = expires.to_str().ok().and_then(parse_http_date) else {
        return Some(0);
    };
    let date = headers.get(header::DATE).and_then(|v| v.to_str().ok()).and_then(parse_http_date).unwrap_or(now);
    let seconds = (expires - date).whole_seconds();
    Some(u64::try_from(seconds).unwrap_or(0).min(MAX_DELTA_SECONDS))
}

/// An HTTP-date (RFC 9110 §5.6.7): IMF-fixdate, or the obsolete RFC 850 and asctime forms.
fn parse_http_date(s: &str) -> Option<OffsetDateTime> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let (day, month, year, clock) = match parts.as_slice() {
        // Sun, 06 Nov 1994 08:49:37 GMT
        [weekday, day, month, year, clock, "GMT"] if weekday.ends_with(',') => {
            (day.parse::<u8>().ok()?, *month, year.parse::<i32>().ok()?, *clock)
        }
        // Sunday, 06-Nov-94 08:49:37 GMT
        [weekday, dmy, clock, "GMT"] if weekday.ends_with(',') => {
            let mut it = dmy.split('-');
            let (day, month, yy) = (it.next()?, it.next()?, it.next()?);
            if it.next().is_some() || yy.len() != 2 {
                return None;
            }
            let yy = yy.parse::<i32>().ok()?;
            // RFC 9110: a two-digit year more than 50 years in the future is in the past century.
            let year = if yy < 70 { 2000 + yy } else { 1900 + yy };
            (day.parse::<u8>().ok()?, month, year, *clock)
        }
        // Sun Nov  6 08:49:37 1994
        [_weekday, month, day, clock, year] => (day.parse::<u8>().ok()?, *month, year.parse::<i32>().ok()?, *clock),
        _ => return None,
    };
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month_number = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month))? as u8 + 1;
    let month = time::Month::try_from(month_number).ok()?;
    let mut hms = clock.split(':').map(|p| p.parse::<u8>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some() {
        return None;
    }
    let date = time::Date::from_calendar_date(year, month, day).ok()?;
    Some(date.with_hms(h, m, sec).ok()?.assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates() {
        let want = time::macros::datetime!(1994-11-06 08:49:37 UTC);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(want));
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), Some(want));
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), Some(want));
        for bad in ["0", "-1", "", "Sun, 06 Nov 1994 08:49:37 PST", "Sun, 31 Feb 1994 08:49:37 GMT", "tomorrow"] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn freshness_from_headers() {
        let now = time::macros::datetime!(2026-01-01 00:00:00 UTC);
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(freshness(&headers(&[]), now), None);
        assert_eq!(freshness(&headers(&[("cache-control", "public, max-age=600")]), now), secs(600));
        assert_eq!(freshness(&headers(&[("cache-control", "max-age=\"60\"")]), now), secs(60));
        assert_eq!(freshness(&headers(&[("cache-control", "s-maxage=900")]), now), None);
        assert_eq!(freshness(&headers(&[("cache-control", "s-maxage=900, max-age=30")]), now), secs(30));
        assert_eq!(freshness(&headers(&[("cache-control", "max-age=600, no-cache")]), now), secs(0));
        assert_eq!(freshness(&headers(&[("cache-control", "No-Store")]), now), secs(0));
        assert_eq!(freshness(&headers(&[("cache-control", "max-age=abc")]), now), secs(0));
        assert_eq!(freshness(&headers(&[("cache-control", "max-age=99999999999999999999999")]), now), secs(1 << 31));
        assert_eq!(freshness(&headers(&[("cache-control", "max-age=600"), ("age", "100")]), now), secs(500));
        assert_eq!(freshness(&headers(&[("cache-control", "max-age=60"), ("age", "100")]), now), secs(0));
        // max-age wins over Expires.
        assert_eq!(
            freshness(&headers(&[("cache-control", "max-age=60"), ("expires", "Thu, 01 Jan 2026 01:00:00 GMT")]), now),
            secs(60)
        );
        assert_eq!(freshness(&headers(&[("expires", "Thu, 01 Jan 2026 01:00:00 GMT")]), now), secs(3600));
        assert_eq!(
            freshness(
                &headers(&[("expires", "Mon, 01 Jan 2024 00:10:00 GMT"), ("date", "Mon, 01 Jan 2024 00:00:00 GMT")]),
                now
            ),
            secs(600)
        );
        assert_eq!(freshness(&headers(&[("expires", "Wed, 31 Dec 2025 00:00:00 GMT")]), now), secs(0));
        assert_eq!(freshness(&headers(&[("expires", "0")]), now), secs(0));
    }
}
