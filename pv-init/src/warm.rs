//! Warm start: the line with which the host releases a guest restored from a template
//! (docs/warm-start.md). A template guest boots with `hx.warm=1`, opens its channels and waits
//! on `hx.control` for one line `go <unix-nanoseconds> <64 hex digits>` before it reads any
//! disk: the host's wall clock (the snapshot's is as old as the template) and fresh entropy
//! (every clone starts from the same random state).

/// The kernel command-line flag of a template guest.
pub const CMDLINE_FLAG: &str = "hx.warm=1";
/// What pv-init prints on the console once it waits (the host's cue to snapshot it).
pub const READY: &str = "warm: waiting for a container";
/// Longest go line accepted, newline included.
pub const MAX_LINE: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Go {
    pub unix_nanos: u128,
    pub entropy: [u8; 32],
}

impl Go {
    pub fn line(&self) -> String {
        format!("go {} {}\n", self.unix_nanos, hex_encode(&self.entropy))
    }

    /// The line without its newline; None unless it is exactly `go NANOS HEX64`.
    pub fn parse(line: &[u8]) -> Option<Go> {
        let text = std::str::from_utf8(line).ok()?;
        let mut parts = text.split(' ');
        if parts.next()? != "go" {
            return None;
        }
        let nanos = parts.next()?;
        if nanos.is_empty() || nanos.len() > 30 || !nanos.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let hex = parts.next()?;
        if parts.next().is_some() || hex.len() != 64 {
            return None;
        }
        let mut entropy = [0u8; 32];
        for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
            let digit = |b: u8| (b as char).to_digit(16);
            entropy[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
        }
        Some(Go {
            unix_nanos: nanos.parse().ok()?,
            entropy,
        })
    }
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_go_line_round_trips() {
        let go = Go {
            unix_nanos: 1_764_800_000_123_456_789,
            entropy: [0xa5; 32],
        };
        let line = go.line();
        assert!(line.len() <= MAX_LINE);
        assert_eq!(Go::parse(line.trim_end().as_bytes()), Some(go));
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            "go",
            "go 1",
            "go 1 00",
            "go -1 0000000000000000000000000000000000000000000000000000000000000000",
            "go 1 000000000000000000000000000000000000000000000000000000000000000g",
            "go 1 0000000000000000000000000000000000000000000000000000000000000000 x",
            "1 signal 15",
        ] {
            assert_eq!(Go::parse(bad.as_bytes()), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..MAX_LINE)) {
            let _ = Go::parse(&bytes);
        }

        #[test]
        fn every_go_round_trips(nanos in any::<u64>(), entropy in any::<[u8; 32]>()) {
            let go = Go { unix_nanos: nanos as u128, entropy };
            prop_assert_eq!(Go::parse(go.line().trim_end().as_bytes()), Some(go));
        }
    }
}
