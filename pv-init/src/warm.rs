//! Warm start: the line with which the host releases a guest restored from a template
//! (docs/warm-start.md). A template guest boots with `hx.warm=1`, opens its channels and waits
//! on `hx.control` for one line `go <unix-nanoseconds> <64 hex digits>` before it reads any
//! disk: the host's wall clock (the snapshot's is as old as the template) and fresh entropy
//! (every clone starts from the same random state). On Xen a warm guest is a pre-booted
//! domain of a pool whose disks are hot-plugged when it is taken: its go line comes through
//! the control log and ends with the number of disks to wait for (`go NANOS HEX DISKS`).

/// The kernel command-line flag of a template guest.
pub const CMDLINE_FLAG: &str = "hx.warm=1";
/// What pv-init prints on the console once it waits (the host's cue to snapshot it).
pub const READY: &str = "warm: waiting for a container";
/// Longest go line accepted, newline included.
pub const MAX_LINE: usize = 128;
/// Most hot-plugged disks a go line may announce (a container's rootfs, config, layer, volumes).
pub const MAX_DISKS: u32 = 64;
/// The xenstore node (under the guest's own `data/`) a waiting Xen pool guest writes.
pub const XEN_READY_NODE: &str = "data/hx/warm";
/// Its value once pv-init waits for the go line.
pub const XEN_READY_VALUE: &str = "waiting";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Go {
    pub unix_nanos: u128,
    pub entropy: [u8; 32],
    /// Disks hot-plugged before the go (Xen's pool); 0 when they were there at boot (QEMU).
    pub disks: u32,
}

impl Go {
    /// The host's go line now: its wall clock and 32 bytes of /dev/urandom; `disks` as above.
    pub fn fresh(disks: u32) -> std::io::Result<Go> {
        use std::io::Read;
        let mut entropy = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut entropy)?;
        let unix_nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(std::io::Error::other)?
            .as_nanos();
        Ok(Go {
            unix_nanos,
            entropy,
            disks,
        })
    }

    pub fn line(&self) -> String {
        let mut l = format!("go {} {}", self.unix_nanos, hex_encode(&self.entropy));
        if self.disks > 0 {
            l.push_str(&format!(" {}", self.disks));
        }
        l.push('\n');
        l
    }

    /// The line without its newline; None unless it is exactly `go NANOS HEX64` or
    /// `go NANOS HEX64 DISKS` with DISKS in 1..=MAX_DISKS, no leading zero.
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
        if hex.len() != 64 {
            return None;
        }
        let disks = match parts.next() {
            None => 0,
            Some(d) => {
                if d.is_empty() || d.len() > 2 || d.starts_with('0') {
                    return None;
                }
                if !d.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let n: u32 = d.parse().ok()?;
                if n > MAX_DISKS {
                    return None;
                }
                n
            }
        };
        if parts.next().is_some() {
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
            disks,
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
            disks: 0,
        };
        let line = go.line();
        assert!(line.len() <= MAX_LINE);
        assert_eq!(Go::parse(line.trim_end().as_bytes()), Some(go.clone()));
        let xen = Go { disks: 64, ..go };
        let line = xen.line();
        assert!(line.len() <= MAX_LINE && line.ends_with(" 64\n"));
        assert_eq!(Go::parse(line.trim_end().as_bytes()), Some(xen));
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
            "go 1 0000000000000000000000000000000000000000000000000000000000000000 0",
            "go 1 0000000000000000000000000000000000000000000000000000000000000000 07",
            "go 1 0000000000000000000000000000000000000000000000000000000000000000 65",
            "go 1 0000000000000000000000000000000000000000000000000000000000000000 -1",
            "go 1 0000000000000000000000000000000000000000000000000000000000000000 3 4",
            "go 1 0000000000000000000000000000000000000000000000000000000000000000 ",
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
        fn every_go_round_trips(
            nanos in any::<u64>(),
            entropy in any::<[u8; 32]>(),
            disks in 0..=MAX_DISKS,
        ) {
            let go = Go { unix_nanos: nanos as u128, entropy, disks };
            prop_assert_eq!(Go::parse(go.line().trim_end().as_bytes()), Some(go));
        }
    }
}
