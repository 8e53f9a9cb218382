//! Rate limits on the request path. A rule applies to a request when every
//! selector matches its client (a header, the client's address, its SPIFFE
//! ID, a claim of its verified JWT); its `Distinct` selectors name the
//! bucket (one per value). Local rules count in token buckets of this
//! proxy (refilled continuously: `requests` per unit, at most `requests`
//! saved up); global rules count in fixed windows in Redis
//! (`crate::policy::global`), shared by every proxy.
//!
//! Buckets outlive snapshots: `Limiters` hands the same ones to every
//! snapshot whose rule is the same, and forgets them when no snapshot
//! holds them. Distinct values are bounded (`MAX_DISTINCT` per rule):
//! past that, new values share one bucket, so no client can grow memory
//! without bound.

use ipnet::IpNet;
use regex::Regex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use weft_api::{ClientMatch, RateLimitRule, RateLimits, ValueMatch};

/// Distinct values one local rule keeps a bucket for.
const MAX_DISTINCT: usize = 10_000;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a request shows of its client.
pub struct Client<'a> {
    pub headers: &'a http::HeaderMap,
    pub ip: Option<IpAddr>,
    /// The SPIFFE ID of a mutual-TLS peer.
    pub spiffe: Option<&'a str>,
    /// The claims of the JWT a policy verified.
    pub claims: Option<&'a serde_json::Value>,
}

enum Matcher {
    Exact(String),
    Regex(Regex),
    Distinct,
}

impl Matcher {
    fn compile(v: &ValueMatch) -> Result<Matcher, String> {
        Ok(match v {
            ValueMatch::Exact(s) => Matcher::Exact(s.clone()),
            ValueMatch::Regex(r) => {
                Matcher::Regex(Regex::new(&format!("^(?:{r})$")).map_err(|e| e.to_string())?)
            }
            ValueMatch::Distinct => Matcher::Distinct,
        })
    }

    /// Whether `value` matches, adding it to `key` when distinct.
    fn test(&self, value: Option<&str>, key: &mut String) -> bool {
        let Some(value) = value else {
            return false;
        };
        match self {
            Matcher::Exact(s) => s == value,
            Matcher::Regex(r) => r.is_match(value),
            Matcher::Distinct => {
                key.push_str(value);
                key.push('\u{1f}');
                true
            }
        }
    }
}

enum Selector {
    Header(http::HeaderName, Matcher),
    Cidr(IpNet, bool),
    Spiffe(Matcher),
    Claim(String, Matcher),
}

/// One rule, compiled: its selectors, its limit, and (local) its buckets.
pub struct Rule {
    selectors: Vec<Selector>,
    pub requests: u64,
    pub unit: Duration,
    /// Names the rule in Redis keys: `<policy>/<index>`.
    pub id: String,
    buckets: Option<Arc<Buckets>>,
}

impl Rule {
    fn compile(
        id: String,
        r: &RateLimitRule,
        buckets: Option<Arc<Buckets>>,
    ) -> Result<Rule, String> {
        let selectors = r
            .selectors
            .iter()
            .map(|s| {
                Ok(match s {
                    ClientMatch::Header { name, value } => Selector::Header(
                        http::HeaderName::try_from(name.as_str()).map_err(|e| e.to_string())?,
                        Matcher::compile(value)?,
                    ),
                    ClientMatch::SourceCidr { cidr, distinct } => {
                        let net = cidr
                            .parse::<IpNet>()
                            .or_else(|_| cidr.parse::<IpAddr>().map(IpNet::from))
                            .map_err(|e| format!("{cidr}: {e}"))?;
                        Selector::Cidr(net, *distinct)
                    }
                    ClientMatch::SpiffeId(v) => Selector::Spiffe(Matcher::compile(v)?),
                    ClientMatch::JwtClaim { name, value } => {
                        Selector::Claim(name.clone(), Matcher::compile(value)?)
                    }
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Rule {
            selectors,
            requests: r.requests,
            unit: Duration::from_secs(r.unit_seconds),
            id,
            buckets,
        })
    }

    /// The bucket's name for this client (empty without distinct
    /// selectors); `None` when the rule does not apply to it.
    pub fn key(&self, client: &Client<'_>) -> Option<String> {
        let mut key = String::new();
        for s in &self.selectors {
            let matched = match s {
                Selector::Header(name, m) => {
                    let value = client.headers.get(name).and_then(|v| v.to_str().ok());
                    m.test(value, &mut key)
                }
                Selector::Cidr(net, distinct) => match client.ip {
                    Some(ip) if net.contains(&ip) => {
                        if *distinct {
                            key.push_str(&ip.to_string());
                            key.push('\u{1f}');
                        }
                        true
                    }
                    _ => false,
                },
                Selector::Spiffe(m) => m.test(client.spiffe, &mut key),
                Selector::Claim(name, m) => {
                    let value = client
                        .claims
                        .and_then(|c| crate::policy::jwt::claim_text(c, name));
                    m.test(value.as_deref(), &mut key)
                }
            };
            if !matched {
                return None;
            }
        }
        Some(key)
    }
}

/// A verdict's numbers, for the `x-ratelimit-*` headers: the limit, what
/// is left of it, and the seconds until it is whole again.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quota {
    pub limit: u64,
    pub remaining: u64,
    pub reset_secs: u64,
}

/// The compiled rate limits of one policy.
pub struct Limits {
    pub policy: String,
    pub local: Vec<Rule>,
    pub global: Vec<Rule>,
    pub fail_closed: bool,
}

impl Limits {
    pub fn compile(r: &RateLimits, limiters: &Limiters) -> Result<Limits, String> {
        let local = r
            .local
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                let id = format!("{}/local/{i}", r.policy);
                let buckets = limiters.buckets(&id, rule);
                Rule::compile(id, rule, Some(buckets))
            })
            .collect::<Result<_, _>>()?;
        let global = r
            .global
            .iter()
            .enumerate()
            .map(|(i, rule)| Rule::compile(format!("{}/{i}", r.policy), rule, None))
            .collect::<Result<_, _>>()?;
        Ok(Limits {
            policy: r.policy.clone(),
            local,
            global,
            fail_closed: r.fail_closed,
        })
    }

    /// Takes a token from the bucket of every local rule that applies:
    /// `Err` with the exhausted rule's numbers if one is empty, else the
    /// tightest rule's numbers (if any applied).
    pub fn take_local(&self, client: &Client<'_>) -> Result<Option<Quota>, Quota> {
        let mut tightest: Option<Quota> = None;
        for rule in &self.local {
            let (Some(key), Some(buckets)) = (rule.key(client), &rule.buckets) else {
                continue;
            };
            let quota = buckets.take(&key)?;
            if tightest.is_none_or(|t| quota.remaining < t.remaining) {
                tightest = Some(quota);
            }
        }
        Ok(tightest)
    }
}

/// One token bucket.
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of one local rule, by distinct key.
pub struct Buckets {
    requests: u64,
    unit: Duration,
    map: Mutex<HashMap<String, Bucket>>,
}

impl Buckets {
    fn take(&self, key: &str) -> Result<Quota, Quota> {
        let now = Instant::now();
        let capacity = self.requests as f64;
        let per_sec = capacity / self.unit.as_secs_f64();
        let mut map = lock(&self.map);
        if !map.contains_key(key) && map.len() >= MAX_DISTINCT {
            // Forget the buckets that have filled up again; if none has,
            // the new value shares the overflow bucket.
            map.retain(|_, b| b.tokens + (now - b.at).as_secs_f64() * per_sec < capacity);
        }
        let key = if map.contains_key(key) || map.len() < MAX_DISTINCT {
            key
        } else {
            "\u{0}overflow"
        };
        // A known key (nearly every request's) is found without a copy.
        if !map.contains_key(key) {
            let full = Bucket {
                tokens: capacity,
                at: now,
            };
            map.insert(key.to_string(), full);
        }
        let Some(b) = map.get_mut(key) else {
            unreachable!("inserted above")
        };
        b.tokens = (b.tokens + (now - b.at).as_secs_f64() * per_sec).min(capacity);
        b.at = now;
        let quota = |tokens: f64| Quota {
            limit: self.requests,
            remaining: tokens.floor() as u64,
            reset_secs: ((capacity - tokens) / per_sec).ceil() as u64,
        };
        if b.tokens < 1.0 {
            let mut q = quota(b.tokens);
            // When the next token comes.
            q.reset_secs = ((1.0 - b.tokens) / per_sec).ceil().max(1.0) as u64;
            return Err(q);
        }
        b.tokens -= 1.0;
        Ok(quota(b.tokens))
    }
}

/// The buckets of every local rule of one proxy, by rule, shared by the
/// snapshots that have the same rule.
#[derive(Default)]
pub struct Limiters {
    rules: Mutex<HashMap<String, Weak<Buckets>>>,
}

impl Limiters {
    fn buckets(&self, id: &str, rule: &RateLimitRule) -> Arc<Buckets> {
        // The same rule (its text included) keeps its buckets.
        let key = format!("{id}:{rule:?}");
        let mut rules = lock(&self.rules);
        rules.retain(|_, w| w.strong_count() > 0);
        if let Some(b) = rules.get(&key).and_then(Weak::upgrade) {
            return b;
        }
        let b = Arc::new(Buckets {
            requests: rule.requests,
            unit: Duration::from_secs(rule.unit_seconds),
            map: Mutex::default(),
        });
        rules.insert(key, Arc::downgrade(&b));
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rules: Vec<RateLimitRule>, limiters: &Limiters) -> Limits {
        let r = RateLimits {
            policy: "default/p".into(),
            local: rules,
            global: vec![],
            fail_closed: false,
        };
        Limits::compile(&r, limiters).unwrap()
    }

    fn per_user(requests: u64) -> RateLimitRule {
        RateLimitRule {
            selectors: vec![ClientMatch::Header {
                name: "x-user".into(),
                value: ValueMatch::Distinct,
            }],
            requests,
            unit_seconds: 3600,
        }
    }

    fn client(headers: &http::HeaderMap) -> Client<'_> {
        Client {
            headers,
            ip: Some("10.1.2.3".parse().unwrap()),
            spiffe: None,
            claims: None,
        }
    }

    #[test]
    fn each_distinct_value_has_its_own_bucket() {
        let l = limits(vec![per_user(2)], &Limiters::default());
        let mut alice = http::HeaderMap::new();
        alice.insert("x-user", "alice".parse().unwrap());
        let mut bob = http::HeaderMap::new();
        bob.insert("x-user", "bob".parse().unwrap());
        let none = http::HeaderMap::new();
        assert_eq!(l.take_local(&client(&alice)).unwrap().unwrap().remaining, 1);
        assert_eq!(l.take_local(&client(&alice)).unwrap().unwrap().remaining, 0);
        let refused = l.take_local(&client(&alice)).unwrap_err();
        assert_eq!((refused.limit, refused.remaining), (2, 0));
        assert!(refused.reset_secs >= 1);
        assert!(l.take_local(&client(&bob)).is_ok());
        // Without the header the rule does not apply.
        assert_eq!(l.take_local(&client(&none)), Ok(None));
    }

    #[test]
    fn buckets_outlive_a_snapshot_with_the_same_rule() {
        let limiters = Limiters::default();
        let mut h = http::HeaderMap::new();
        h.insert("x-user", "alice".parse().unwrap());
        let first = limits(vec![per_user(1)], &limiters);
        first.take_local(&client(&h)).unwrap();
        let second = limits(vec![per_user(1)], &limiters);
        assert!(second.take_local(&client(&h)).is_err());
        // A changed rule starts afresh.
        let changed = limits(vec![per_user(5)], &limiters);
        assert!(changed.take_local(&client(&h)).is_ok());
    }

    #[test]
    fn cidr_and_exact_selectors_must_all_hold() {
        let rule = RateLimitRule {
            selectors: vec![
                ClientMatch::SourceCidr {
                    cidr: "10.0.0.0/8".into(),
                    distinct: true,
                },
                ClientMatch::Header {
                    name: "x-plan".into(),
                    value: ValueMatch::Regex("free|trial".into()),
                },
            ],
            requests: 1,
            unit_seconds: 60,
        };
        let l = limits(vec![rule], &Limiters::default());
        let mut free = http::HeaderMap::new();
        free.insert("x-plan", "free".parse().unwrap());
        let mut paid = http::HeaderMap::new();
        paid.insert("x-plan", "freebie".parse().unwrap());
        assert_eq!(
            l.local[0].key(&client(&free)).as_deref(),
            Some("10.1.2.3\u{1f}")
        );
        assert_eq!(l.local[0].key(&client(&paid)), None, "the regex is whole");
        let outside = Client {
            ip: Some("192.168.0.1".parse().unwrap()),
            ..client(&free)
        };
        assert_eq!(l.local[0].key(&outside), None);
    }

    #[test]
    fn spiffe_ids_and_claims_select_and_name_buckets() {
        let rule = RateLimitRule {
            selectors: vec![
                ClientMatch::SpiffeId(ValueMatch::Distinct),
                ClientMatch::JwtClaim {
                    name: "org.tier".into(),
                    value: ValueMatch::Exact("free".into()),
                },
            ],
            requests: 1,
            unit_seconds: 60,
        };
        let l = limits(vec![rule], &Limiters::default());
        let headers = http::HeaderMap::new();
        let claims = serde_json::json!({"org": {"tier": "free"}});
        let caller = Client {
            spiffe: Some("spiffe://td/ns/a/sa/b"),
            claims: Some(&claims),
            ..client(&headers)
        };
        assert_eq!(
            l.local[0].key(&caller).as_deref(),
            Some("spiffe://td/ns/a/sa/b\u{1f}")
        );
        let paid = serde_json::json!({"org": {"tier": "paid"}});
        let other = Client {
            claims: Some(&paid),
            ..caller
        };
        assert_eq!(l.local[0].key(&other), None);
        let anonymous = Client {
            spiffe: None,
            ..caller
        };
        assert_eq!(l.local[0].key(&anonymous), None, "no identity, no match");
    }

    #[test]
    fn distinct_values_are_bounded() {
        let l = limits(vec![per_user(1)], &Limiters::default());
        for i in 0..MAX_DISTINCT + 5 {
            let mut h = http::HeaderMap::new();
            h.insert("x-user", i.to_string().parse().unwrap());
            let _ = l.take_local(&client(&h));
        }
        let buckets = l.local[0].buckets.as_ref().unwrap();
        assert!(lock(&buckets.map).len() <= MAX_DISTINCT + 1);
    }
}
