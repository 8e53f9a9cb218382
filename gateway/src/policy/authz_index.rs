//! Path patterns of authorization rules, and an index of the rules by
//! them, so that a request is checked only against the rules whose paths
//! it can match. The first rule that matches decides, as in a scan of
//! every rule: each list holds rule numbers in order, and the lowest that
//! matches wins.

use std::collections::HashMap;

/// `*` any; `x*` a prefix; `*x` a suffix; else exact.
pub(super) enum Pattern {
    Any,
    Prefix(String),
    Suffix(String),
    Exact(String),
}

impl Pattern {
    pub(super) fn new(p: &str) -> Pattern {
        if p == "*" {
            Pattern::Any
        } else if let Some(prefix) = p.strip_suffix('*') {
            Pattern::Prefix(prefix.to_string())
        } else if let Some(suffix) = p.strip_prefix('*') {
            Pattern::Suffix(suffix.to_string())
        } else {
            Pattern::Exact(p.to_string())
        }
    }

    pub(super) fn matches(&self, s: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Prefix(p) => s.starts_with(p.as_str()),
            Pattern::Suffix(p) => s.ends_with(p.as_str()),
            Pattern::Exact(p) => s == p,
        }
    }
}

/// Rule numbers, ascending, by the strings their patterns name.
type Lists = HashMap<Box<str>, Vec<u32>>;

/// Rule numbers, ascending, by what their paths say.
#[derive(Default)]
pub(super) struct PathIndex {
    /// Rules without a path condition (or with `*`): candidates for every
    /// request.
    any: Vec<u32>,
    exact: Lists,
    /// By length: the prefixes (suffixes) of that length, and their rules.
    prefixes: Vec<(usize, Lists)>,
    suffixes: Vec<(usize, Lists)>,
}

impl PathIndex {
    /// Adds rule number `rule` (added in order) with its path patterns.
    pub(super) fn add(&mut self, rule: u32, paths: &[Pattern]) {
        if paths.is_empty() || paths.iter().any(|p| matches!(p, Pattern::Any)) {
            self.any.push(rule);
            return;
        }
        for p in paths {
            let list = match p {
                Pattern::Any => unreachable!("handled above"),
                Pattern::Exact(s) => self.exact.entry(s.as_str().into()).or_default(),
                Pattern::Prefix(s) => by_length(&mut self.prefixes, s),
                Pattern::Suffix(s) => by_length(&mut self.suffixes, s),
            };
            // A rule naming one path twice is listed once.
            if list.last() != Some(&rule) {
                list.push(rule);
            }
        }
    }

    /// The lowest rule number among the candidates for `path` for which
    /// `check` holds; `check` is asked only of candidates below the best
    /// found so far.
    pub(super) fn first(&self, path: &str, mut check: impl FnMut(usize) -> bool) -> Option<usize> {
        let mut best = usize::MAX;
        let mut scan = |list: &[u32]| {
            for &i in list {
                let i = i as usize;
                if i >= best {
                    return;
                }
                if check(i) {
                    best = i;
                    return;
                }
            }
        };
        scan(&self.any);
        if let Some(list) = self.exact.get(path) {
            scan(list);
        }
        for (len, map) in &self.prefixes {
            if let Some(list) = path.get(..*len).and_then(|p| map.get(p)) {
                scan(list);
            }
        }
        for (len, map) in &self.suffixes {
            let start = path.len().checked_sub(*len);
            if let Some(list) = start.and_then(|s| path.get(s..)).and_then(|s| map.get(s)) {
                scan(list);
            }
        }
        (best != usize::MAX).then_some(best)
    }
}

fn by_length<'a>(groups: &'a mut Vec<(usize, Lists)>, s: &str) -> &'a mut Vec<u32> {
    let at = match groups.iter().position(|(len, _)| *len == s.len()) {
        Some(at) => at,
        None => {
            groups.push((s.len(), HashMap::new()));
            groups.len() - 1
        }
    };
    groups[at].1.entry(s.into()).or_default()
}
