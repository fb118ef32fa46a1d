//! Sets of physical CPUs as xl writes and reads them: `0-3,6`, `all`, `^2` (vcpu-pin,
//! vcpu-list's affinity column, cpupool-list -c).
use crate::error::XenError;
use std::collections::BTreeSet;

/// Highest CPU number a list may name (Xen's NR_CPUS on x86 is at most 8192).
pub const MAX_CPU: u32 = 8191;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuSet(pub BTreeSet<u32>);

impl CpuSet {
    /// From a libxl bitmap's bytes (bit i of byte i/8 is CPU i).
    pub fn from_map(map: &[u8]) -> Self {
        let mut s = BTreeSet::new();
        for (i, b) in map.iter().enumerate() {
            for bit in 0..8 {
                if b & (1 << bit) != 0 {
                    s.insert(i as u32 * 8 + bit);
                }
            }
        }
        CpuSet(s)
    }

    /// Into a libxl bitmap's bytes; every CPU must fit in `bytes`.
    pub fn to_map(&self, bytes: usize) -> Result<Vec<u8>, XenError> {
        let mut map = vec![0u8; bytes];
        for &c in &self.0 {
            let slot = map.get_mut(c as usize / 8).ok_or_else(|| {
                XenError::InvalidConfig(format!("CPU {c} does not exist on this host"))
            })?;
            *slot |= 1 << (c % 8);
        }
        Ok(map)
    }

    /// xl's CPU list syntax: comma-separated `N`, `N-M`, `all`, each optionally `^`-prefixed
    /// (removed instead of added), applied in order. `host_cpus` is what `all` means.
    pub fn parse(s: &str, host_cpus: u32) -> Result<Self, XenError> {
        let bad = |m: String| XenError::InvalidConfig(format!("CPU list {s:?}: {m}"));
        if s.is_empty() || s.len() > 4096 {
            return Err(bad("empty or too long".into()));
        }
        let mut set = BTreeSet::new();
        for item in s.split(',') {
            let (remove, body) = match item.strip_prefix('^') {
                Some(b) => (true, b),
                None => (false, item),
            };
            let range = if body == "all" {
                0..=host_cpus.saturating_sub(1)
            } else {
                let num = |t: &str| -> Result<u32, XenError> {
                    if t.is_empty() || t.len() > 5 || !t.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(bad(format!("{item:?} is not N, N-M or all")));
                    }
                    let n: u32 = t.parse().map_err(|_| bad(format!("{t:?}")))?;
                    if n > MAX_CPU {
                        return Err(bad(format!("CPU {n} is above {MAX_CPU}")));
                    }
                    Ok(n)
                };
                match body.split_once('-') {
                    Some((a, b)) => {
                        let (a, b) = (num(a)?, num(b)?);
                        if a > b {
                            return Err(bad(format!("{item:?}: range goes down")));
                        }
                        a..=b
                    }
                    None => {
                        let n = num(body)?;
                        n..=n
                    }
                }
            };
            for c in range {
                if remove {
                    set.remove(&c);
                } else {
                    set.insert(c);
                }
            }
        }
        Ok(CpuSet(set))
    }

    /// As xl prints a bitmap of `nr_cpus` CPUs: `all` when every one is set, `none` when none
    /// is, else ranges `0-2,5`. CPUs at or above `nr_cpus` are not shown.
    pub fn format(&self, nr_cpus: u32) -> String {
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        for &c in self.0.iter().take_while(|&&c| c < nr_cpus) {
            match ranges.last_mut() {
                Some((_, end)) if *end + 1 == c => *end = c,
                _ => ranges.push((c, c)),
            }
        }
        match ranges.as_slice() {
            [] => "none".into(),
            [(0, end)] if *end + 1 == nr_cpus => "all".into(),
            _ => ranges
                .iter()
                .map(|&(a, b)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}-{b}")
                    }
                })
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    pub fn contains(&self, cpu: u32) -> bool {
        self.0.contains(&cpu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(v: &[u32]) -> CpuSet {
        CpuSet(v.iter().copied().collect())
    }

    #[test]
    fn formats_like_xl() {
        assert_eq!(set(&[0, 1]).format(2), "all");
        assert_eq!(set(&[0, 1]).format(4), "0-1");
        assert_eq!(set(&[]).format(4), "none");
        assert_eq!(set(&[1]).format(2), "1");
        assert_eq!(set(&[0, 1, 2, 5, 7, 8]).format(16), "0-2,5,7-8");
        assert_eq!(set(&[0, 1, 2, 3, 40]).format(4), "all");
    }

    #[test]
    fn parses_xl_lists() {
        assert_eq!(CpuSet::parse("all", 4).unwrap(), set(&[0, 1, 2, 3]));
        assert_eq!(CpuSet::parse("1", 4).unwrap(), set(&[1]));
        assert_eq!(CpuSet::parse("0-2,^1", 4).unwrap(), set(&[0, 2]));
        assert_eq!(CpuSet::parse("all,^3", 4).unwrap(), set(&[0, 1, 2]));
        for bad in [
            "", "x", "3-1", "1-", "-1", "1,,2", "nodes:0", "99999", "1 2",
        ] {
            assert!(CpuSet::parse(bad, 4).is_err(), "{bad}");
        }
    }

    #[test]
    fn maps_round_trip() {
        let s = set(&[0, 3, 9]);
        let m = s.to_map(2).unwrap();
        assert_eq!(m, [0b1001, 0b10]);
        assert_eq!(CpuSet::from_map(&m), s);
        assert!(set(&[16]).to_map(2).is_err());
    }

    proptest! {
        /// What format prints, parse reads back (for a host of `n` CPUs).
        #[test]
        fn format_then_parse(cpus in proptest::collection::btree_set(0u32..64, 1..20), n in 1u32..64) {
            let s = CpuSet(cpus.into_iter().filter(|&c| c < n).collect());
            prop_assume!(!s.0.is_empty());
            prop_assert_eq!(CpuSet::parse(&s.format(n), n).unwrap(), s);
        }

        /// Any text is a set or an error, never a panic; sets stay within MAX_CPU.
        #[test]
        fn any_text(t in ".{0,30}", n in 0u32..64) {
            if let Ok(s) = CpuSet::parse(&t, n) {
                prop_assert!(s.0.iter().all(|&c| c <= MAX_CPU));
            }
        }
    }
}
