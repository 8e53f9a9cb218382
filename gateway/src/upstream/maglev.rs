//! Maglev consistent hashing (Eisenbud et al., NSDI 2016): a table of a
//! prime size, each slot naming an endpoint, filled so that every endpoint
//! has a near-equal share and a change of endpoints moves few slots. A
//! request's key picks the slot. Every proxy builds the same table from
//! the same endpoints (the hash is FNV-1a over the address), so a key goes
//! to the same endpoint through any of them.

use std::net::SocketAddr;

/// FNV-1a, 64 bits: stable across processes and versions.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[derive(Debug)]
pub struct Maglev {
    table: Vec<u32>,
}

impl Maglev {
    /// The table of `endpoints` with `size` slots (a prime; at least one
    /// slot per endpoint is assumed by the validation of the config).
    pub fn new(endpoints: &[SocketAddr], size: u32) -> Maglev {
        let m = u64::from(size.max(1));
        let n = endpoints.len();
        if n == 0 {
            return Maglev { table: Vec::new() };
        }
        let perm: Vec<(u64, u64)> = endpoints
            .iter()
            .map(|a| {
                let name = a.to_string();
                let offset = fnv1a(name.as_bytes()) % m;
                let skip = fnv1a(format!("{name}#skip").as_bytes()) % (m - 1).max(1) + 1;
                (offset, skip)
            })
            .collect();
        let mut next = vec![0u64; n];
        let mut table = vec![u32::MAX; m as usize];
        let mut filled = 0u64;
        'fill: loop {
            for i in 0..n {
                let (offset, skip) = perm[i];
                let mut c = (offset + next[i] * skip) % m;
                while table[c as usize] != u32::MAX {
                    next[i] += 1;
                    c = (offset + next[i] * skip) % m;
                }
                table[c as usize] = i as u32;
                next[i] += 1;
                filled += 1;
                if filled == m {
                    break 'fill;
                }
            }
        }
        Maglev { table }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The endpoint in the slot `key` picks, and the slots after it.
    pub fn walk(&self, key: u64) -> impl Iterator<Item = usize> + '_ {
        let m = self.table.len().max(1);
        let start = (key % m as u64) as usize;
        (0..self.table.len()).map(move |k| self.table[(start + k) % m] as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u16) -> Vec<SocketAddr> {
        (0..n).map(|i| ([10, 0, 0, 1], 8000 + i).into()).collect()
    }

    #[test]
    fn shares_are_near_equal() {
        let t = Maglev::new(&addrs(5), 65_537);
        let mut counts = [0usize; 5];
        for i in t.walk(0).take(t.len()) {
            counts[i] += 1;
        }
        for c in counts {
            assert!((12_000..14_300).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn removing_an_endpoint_moves_few_keys() {
        let before = Maglev::new(&addrs(5), 65_537);
        let mut fewer = addrs(5);
        fewer.remove(2);
        let after = Maglev::new(&fewer, 65_537);
        let name = |eps: &[SocketAddr], i: usize| eps[i];
        let all = addrs(5);
        let moved = (0..10_000u64)
            .map(|k| fnv1a(&k.to_be_bytes()))
            .filter(|k| {
                let was = name(&all, before.walk(*k).next().unwrap());
                let is = name(&fewer, after.walk(*k).next().unwrap());
                was != all[2] && was != is
            })
            .count();
        // Keys of the removed endpoint move; of the others, few do.
        assert!(moved < 1_000, "{moved} of 10000 keys moved");
    }

    #[test]
    fn the_same_endpoints_give_the_same_table() {
        let a = Maglev::new(&addrs(3), 251);
        let b = Maglev::new(&addrs(3), 251);
        assert!(a.walk(7).take(251).eq(b.walk(7).take(251)));
    }
}
