//! Small checks of access policy fields: Go durations, CIDRs, header names,
//! the headers a claim may not be written to, and authorization path
//! patterns. Each says in its error what is wrong.

use std::net::IpAddr;
use std::time::Duration;

/// A Go duration: one or more `<number><unit>` (`300s`, `1.5h`, `1h30m`),
/// units `h`, `m`, `s`, `ms`, `us` (`µs`), `ns`; it must be more than zero.
pub fn duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration (such as 300s, 5m or 1h30m)");
    if s.is_empty() {
        return Err(bad());
    }
    let is_number = |c: char| c.is_ascii_digit() || c == '.';
    let mut nanos: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        // A number must be followed by a unit.
        let end = rest.find(|c| !is_number(c)).ok_or_else(bad)?;
        let (number, tail) = rest.split_at(end);
        let unit_end = tail.find(is_number).unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(bad()),
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(bad());
        }
        let whole: u128 = match whole {
            "" => 0,
            w => w.parse().map_err(|_| bad())?,
        };
        let mut value = whole.checked_mul(scale).ok_or_else(bad)?;
        // Digits past a nanosecond are dropped, as Go does.
        let mut place = scale;
        for digit in fraction.bytes() {
            place /= 10;
            let add = u128::from(digit - b'0') * place;
            value = value.checked_add(add).ok_or_else(bad)?;
        }
        nanos = nanos.checked_add(value).ok_or_else(bad)?;
        rest = tail;
    }
    if nanos == 0 {
        return Err(format!("{s:?} must be more than zero"));
    }
    u64::try_from(nanos)
        .map(Duration::from_nanos)
        .map_err(|_| format!("{s:?} is too long"))
}

/// Whole seconds, rounded up (a cache of 500ms keeps keys a second).
pub fn ceil_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// An address with its prefix length: `10.0.0.0/8`, `fd00::/64`.
pub fn cidr(s: &str) -> Result<(), String> {
    let bad = |why: &str| format!("{s:?} is not a CIDR: {why}");
    let (addr, len) = s.split_once('/').ok_or_else(|| bad("no /prefix length"))?;
    let ip: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let digits = !len.is_empty() && len.len() <= 3 && len.bytes().all(|b| b.is_ascii_digit());
    match len.parse::<u32>() {
        Ok(n) if digits && n <= max => Ok(()),
        _ => Err(bad(&format!("the prefix length must be 0 to {max}"))),
    }
}

/// An HTTP header name (a token), lowercased.
pub fn header_name(name: &str) -> Result<String, String> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(format!("{name:?} is not a valid header name"));
    }
    Ok(name.to_ascii_lowercase())
}

/// Headers that belong to the connection or the proxy: a claim may not be
/// written to them.
const RESERVED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// A header a claim may be written to, lowercased.
pub fn claim_header(name: &str) -> Result<String, String> {
    if name.starts_with(':') {
        return Err(format!("{name:?} is a pseudo-header"));
    }
    let lower = header_name(name)?;
    if RESERVED.contains(&lower.as_str()) {
        return Err(format!("{name:?} is a hop-by-hop or reserved header"));
    }
    Ok(lower)
}

/// An authorization path: `/exact`, `/prefix*`, `*suffix`, or `*`.
pub fn path_pattern(p: &str) -> Result<(), String> {
    let stars = p.matches('*').count();
    let ok = match stars {
        0 => p.starts_with('/'),
        1 if p == "*" => true,
        1 if p.ends_with('*') => p.starts_with('/'),
        1 => p.starts_with('*'),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "path {p:?} must be /exact, /prefix*, *suffix or * (one * at an end)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let secs = |s| duration(s).map(|d| d.as_secs_f64());
        assert_eq!(secs("300s"), Ok(300.0));
        assert_eq!(secs("5m"), Ok(300.0));
        assert_eq!(secs("1h30m"), Ok(5400.0));
        assert_eq!(secs("1.5h"), Ok(5400.0));
        assert_eq!(secs("1m0.5s"), Ok(60.5));
        assert_eq!(secs("250ms"), Ok(0.25));
        assert_eq!(secs(".5s"), Ok(0.5));
        for bad in [
            "", "0", "0s", "300", "s", "5x", "-5s", "1..5s", "1h 30m", "5 s", ".s",
        ] {
            assert!(duration(bad).is_err(), "{bad:?} accepted");
        }
        assert!(duration("99999999999999999999999h").is_err());
        assert_eq!(ceil_seconds(duration("250ms").unwrap()), 1);
        assert_eq!(ceil_seconds(duration("5m").unwrap()), 300);
    }

    #[test]
    fn cidrs() {
        for good in [
            "10.0.0.0/8",
            "0.0.0.0/0",
            "192.168.1.1/32",
            "fd00::/64",
            "::/128",
        ] {
            assert_eq!(cidr(good), Ok(()), "{good}");
        }
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "fd00::/129",
            "10.0.0/8",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "host/8",
        ] {
            assert!(cidr(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn headers_and_claim_headers() {
        assert_eq!(header_name("X-User"), Ok("x-user".into()));
        assert!(header_name("x user").is_err());
        assert!(header_name("").is_err());
        assert_eq!(claim_header("X-Org"), Ok("x-org".into()));
        for bad in ["Connection", "host", ":path", "Transfer-Encoding", "te"] {
            assert!(claim_header(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn path_patterns() {
        for good in ["/reviews", "/reviews/*", "/r*", "*.css", "*"] {
            assert_eq!(path_pattern(good), Ok(()), "{good}");
        }
        for bad in ["/a/*/b", "**", "reviews", "/a*b", "*a*", ""] {
            assert!(path_pattern(bad).is_err(), "{bad} accepted");
        }
    }
}
