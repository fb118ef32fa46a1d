//! Status lines (guest → host) and control lines (host → guest).
use serde::{Deserialize, Serialize};

/// A status line as pv-init writes it and hx accepts it: every value within the protocol's
/// ranges (docs/guest-protocol.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Status {
    Started {
        pid: i32,
        uptime_ms: u64,
    },
    Exited {
        code: i32,
    },
    /// `oom`: the kernel's OOM killer sent it (docker's State.OOMKilled, CRI's OOMKilled).
    Signaled {
        signal: i32,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        oom: bool,
    },
    InitError {
        code: i32,
        message: String,
    },
}

/// Longest status line (and so init error message) hx reads from a guest.
pub const MAX_LINE: usize = 4096;

/// Why a line from the guest is not a status hx can report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    #[error("status line longer than {MAX_LINE} bytes")]
    TooLong,
    #[error("status line is not UTF-8")]
    NotUtf8,
    #[error("not a status line: {0}")]
    Malformed(String),
    /// A well-formed event whose values the protocol does not allow (`exited -255`).
    #[error("{0}")]
    OutOfRange(String),
}

/// The wire shape of a status line before range checks: wide integers, so that an
/// out-of-range value is reported as such rather than as garbage, and no unknown fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawStatus {
    Started {
        pid: i64,
        uptime_ms: u64,
    },
    Exited {
        code: i64,
    },
    Signaled {
        signal: i64,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        oom: bool,
    },
    InitError {
        code: i64,
        message: String,
    },
}

impl RawStatus {
    /// One line from the guest (untrusted): bounded, UTF-8, one JSON object of a known event
    /// with exactly its fields. A trailing `\n` (and `\r`) is allowed.
    pub fn parse(line: &[u8]) -> Result<RawStatus, StatusError> {
        if line.len() > MAX_LINE {
            return Err(StatusError::TooLong);
        }
        let text = std::str::from_utf8(line).map_err(|_| StatusError::NotUtf8)?;
        let text = text.strip_suffix('\n').unwrap_or(text);
        let text = text.strip_suffix('\r').unwrap_or(text);
        serde_json::from_str(text).map_err(|e| StatusError::Malformed(e.to_string()))
    }

    /// hx's own serialisation (what the Xen monitor writes to status.log).
    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).expect("status serializes");
        s.push('\n');
        s
    }

    /// The status, if every value is within the protocol's range.
    pub fn validate(self) -> Result<Status, StatusError> {
        let bad = |what: &str, v: i64, range: &str| {
            Err(StatusError::OutOfRange(format!(
                "{what} {v} is outside {range}"
            )))
        };
        match self {
            RawStatus::Started { pid, uptime_ms } => match i32::try_from(pid) {
                Ok(pid) if pid >= 1 => Ok(Status::Started { pid, uptime_ms }),
                _ => bad("started: pid", pid, "1..=2147483647"),
            },
            RawStatus::Exited { code } if (0..=255).contains(&code) => {
                Ok(Status::Exited { code: code as i32 })
            }
            RawStatus::Exited { code } => bad("exited: code", code, "0..=255"),
            RawStatus::Signaled { signal, oom } if (1..=64).contains(&signal) => {
                Ok(Status::Signaled {
                    signal: signal as i32,
                    oom,
                })
            }
            RawStatus::Signaled { signal, .. } => bad("signaled: signal", signal, "1..=64"),
            RawStatus::InitError { code, message } if (125..=127).contains(&code) => {
                Ok(Status::InitError {
                    code: code as i32,
                    message,
                })
            }
            RawStatus::InitError { code, .. } => bad("init_error: code", code, "125..=127"),
        }
    }

    /// Whether this event ends the workload (it decides the exit code, valid or not).
    pub fn is_final(&self) -> bool {
        !matches!(self, RawStatus::Started { .. })
    }
}

impl Status {
    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).expect("status serializes");
        s.push('\n');
        s
    }

    /// Parses one line written by the guest: untrusted, so bounded and strict; None unless it
    /// is a status the protocol allows (RawStatus says why not).
    pub fn parse_line(line: &str) -> Option<Status> {
        RawStatus::parse(line.as_bytes()).ok()?.validate().ok()
    }

    /// The exit code docker would report for this status, if it is final: always 0..=255.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            Status::Started { .. } => None,
            Status::Exited { code } => Some(*code),
            Status::Signaled { signal, .. } => Some(128 + signal),
            Status::InitError { code, .. } => Some(*code),
        }
    }
}

/// Control lines: `signal N`, `resize ROWS COLS` (the terminal of `-t`), `stdin-eof` (the end
/// of `-i` input where the channel cannot say so itself: Xen's console), `resumed NANOS` (the
/// VM was restored from a checkpoint: the host's wall clock in Unix nanoseconds, and new host
/// ends on the channels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    Signal(i32),
    Resize {
        rows: u16,
        cols: u16,
    },
    StdinEof,
    Resumed {
        unix_nanos: u128,
    },
    /// A NIC hot-plugged into the running VM (`hx network-attach ... ip=A/P` on a container):
    /// the one with `mac` gets `interface` as its name and `address/prefix`, and comes up.
    NetUp {
        interface: String,
        mac: [u8; 6],
        address: std::net::Ipv4Addr,
        prefix: u8,
    },
}

/// Most digits of `resumed`'s nanoseconds (u128's are 39; the year 9999 needs 21).
const MAX_NANOS_DIGITS: usize = 30;

impl Control {
    pub fn to_line(&self) -> String {
        match self {
            Control::Signal(n) => format!("signal {n}\n"),
            Control::Resize { rows, cols } => format!("resize {rows} {cols}\n"),
            Control::StdinEof => "stdin-eof\n".into(),
            Control::Resumed { unix_nanos } => format!("resumed {unix_nanos}\n"),
            Control::NetUp {
                interface,
                mac: m,
                address,
                prefix,
            } => format!(
                "net-up {interface} {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} {address}/{prefix}\n",
                m[0], m[1], m[2], m[3], m[4], m[5]
            ),
        }
    }

    pub fn parse_line(line: &str) -> Option<Control> {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["signal", n] => n
                .parse()
                .ok()
                .filter(|n| (1..=64).contains(n))
                .map(Control::Signal),
            ["resize", r, c] => match (r.parse(), c.parse()) {
                (Ok(rows), Ok(cols)) if rows > 0 && cols > 0 => {
                    Some(Control::Resize { rows, cols })
                }
                _ => None,
            },
            ["stdin-eof"] => Some(Control::StdinEof),
            ["net-up", name, mac, cidr] => {
                let (ip, prefix) = cidr.split_once('/')?;
                let address: std::net::Ipv4Addr = ip.parse().ok()?;
                let prefix: u8 = prefix
                    .parse()
                    .ok()
                    .filter(|p| (1..=32).contains(p) && !prefix.starts_with('0'))?;
                let usable = !(address.is_unspecified()
                    || address.is_broadcast()
                    || address.is_multicast()
                    || address.is_loopback());
                (usable && crate::spec::valid_ifname(name)).then_some(())?;
                let mac = crate::spec::parse_mac(mac).filter(|m| m[0] & 1 == 0)?;
                Some(Control::NetUp {
                    interface: name.to_string(),
                    mac,
                    address,
                    prefix,
                })
            }
            ["resumed", n]
                if !n.is_empty()
                    && n.len() <= MAX_NANOS_DIGITS
                    && n.bytes().all(|b| b.is_ascii_digit()) =>
            {
                n.parse()
                    .ok()
                    .map(|unix_nanos| Control::Resumed { unix_nanos })
            }
            _ => None,
        }
    }
}

/// The Xen control node holds the last few control lines, each numbered: `SEQ LINE\n...`.
/// A xenstore watch may fire once for several writes, so hx appends (in a transaction) and
/// pv-init delivers every line newer than the last it delivered, in order.
pub mod control_log {
    /// Lines kept in the node (well under xenstore's 4096-byte values).
    pub const KEEP: usize = 16;

    /// The node's new value: `old` plus `line` under the next number, oldest lines dropped.
    pub fn append(old: &str, line: &str) -> String {
        let entries = parse(old);
        let next = entries.last().map_or(1, |(n, _)| n + 1);
        let mut out: Vec<String> = entries
            .into_iter()
            .map(|(n, l)| format!("{n} {l}"))
            .collect();
        out.push(format!("{next} {}", line.trim()));
        let skip = out.len().saturating_sub(KEEP);
        out[skip..].iter().map(|l| format!("{l}\n")).collect()
    }

    /// The numbered lines of a node value, in order; malformed lines are skipped.
    pub fn parse(value: &str) -> Vec<(u64, String)> {
        value
            .lines()
            .filter_map(|l| {
                let (n, rest) = l.split_once(' ')?;
                Some((n.parse().ok()?, rest.to_string()))
            })
            .collect()
    }

    /// The lines after number `last`, and the new `last`.
    pub fn newer(value: &str, last: u64) -> (Vec<String>, u64) {
        let mut top = last;
        let lines = parse(value)
            .into_iter()
            .filter(|(n, _)| *n > last)
            .map(|(n, l)| {
                top = top.max(n);
                l
            })
            .collect();
        (lines, top)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_log_keeps_every_line_a_single_watch_event_may_cover() {
        let mut v = String::new();
        for sig in [10, 12, 15] {
            v = control_log::append(&v, &format!("signal {sig}\n"));
        }
        assert_eq!(v, "1 signal 10\n2 signal 12\n3 signal 15\n");
        // Both writes landed before pv-init read once: both are delivered, in order.
        let (lines, last) = control_log::newer(&v, 1);
        assert_eq!(
            (lines, last),
            (vec!["signal 12".to_string(), "signal 15".to_string()], 3)
        );
        assert_eq!(control_log::newer(&v, 3), (vec![], 3));
        assert_eq!(control_log::newer("", 0), (vec![], 0));
        for _ in 0..40 {
            v = control_log::append(&v, "signal 1");
        }
        assert_eq!(control_log::parse(&v).len(), control_log::KEEP);
        assert_eq!(control_log::parse(&v).last().unwrap().0, 43);
        assert!(v.len() < 512);
        assert_eq!(
            control_log::parse("x y\n7 signal 9\n"),
            vec![(7, "signal 9".to_string())]
        );
    }

    #[test]
    fn status_round_trip() {
        for s in [
            Status::Started {
                pid: 2,
                uptime_ms: 900,
            },
            Status::Exited { code: 3 },
            Status::Signaled {
                signal: 9,
                oom: false,
            },
            Status::InitError {
                code: 127,
                message: "nope: not found".into(),
            },
        ] {
            assert_eq!(Status::parse_line(&s.to_line()), Some(s));
        }
        assert_eq!(
            Status::Signaled {
                signal: 9,
                oom: true
            }
            .exit_code(),
            Some(137)
        );
        assert_eq!(Status::parse_line("garbage"), None);
    }

    #[test]
    fn only_what_the_protocol_defines_is_a_status() {
        let parse = |l: &str| RawStatus::parse(l.as_bytes()).and_then(RawStatus::validate);
        assert_eq!(
            parse("{\"event\":\"exited\",\"code\":255}\r\n"),
            Ok(Status::Exited { code: 255 })
        );
        assert_eq!(
            parse(r#"{"event":"signaled","signal":64}"#),
            Ok(Status::Signaled {
                signal: 64,
                oom: false
            })
        );
        for (line, why) in [
            (
                r#"{"event":"signaled","signal":2147483647}"#,
                "signaled: signal 2147483647 is outside 1..=64",
            ),
            (
                r#"{"event":"signaled","signal":0}"#,
                "signaled: signal 0 is outside 1..=64",
            ),
            (
                r#"{"event":"exited","code":-255}"#,
                "exited: code -255 is outside 0..=255",
            ),
            (
                r#"{"event":"exited","code":256}"#,
                "exited: code 256 is outside 0..=255",
            ),
            (
                r#"{"event":"exited","code":9223372036854775807}"#,
                "exited: code 9223372036854775807 is outside 0..=255",
            ),
            (
                r#"{"event":"init_error","code":0,"message":"x"}"#,
                "init_error: code 0 is outside 125..=127",
            ),
            (
                r#"{"event":"started","pid":0,"uptime_ms":1}"#,
                "started: pid 0 is outside 1..=2147483647",
            ),
        ] {
            assert_eq!(
                parse(line),
                Err(StatusError::OutOfRange(why.into())),
                "{line}"
            );
            assert!(
                RawStatus::parse(line.as_bytes()).unwrap().is_final() || line.contains("started")
            );
        }
        for line in [
            r#"{"event":"exited","code":5,"extra":1}"#,
            r#"{"event":"exited","code":5,"code":6}"#,
            r#"{"event":"exited","code":"5"}"#,
            r#"{"event":"exited","code":5.0}"#,
            r#"{"event":"exited"}"#,
            r#"{"event":"reboot"}"#,
            r#"{"event":"exited","code":1} {"event":"exited","code":0}"#,
            "",
        ] {
            assert!(
                matches!(parse(line), Err(StatusError::Malformed(_))),
                "{line}: {:?}",
                parse(line)
            );
        }
        assert_eq!(
            RawStatus::parse(b"{\"event\":\"exited\",\"code\":0}\xff"),
            Err(StatusError::NotUtf8)
        );
        let long = format!(
            r#"{{"event":"init_error","code":125,"message":"{}"}}"#,
            "a".repeat(MAX_LINE)
        );
        assert_eq!(RawStatus::parse(long.as_bytes()), Err(StatusError::TooLong));
        // What the Xen monitor writes back is hx's serialisation, parsed the same way.
        let raw = RawStatus::parse(br#"{"code":-1,"event":"exited"}"#).unwrap();
        assert_eq!(raw.to_line(), "{\"event\":\"exited\",\"code\":-1}\n");
    }

    mod fuzz {
        use super::super::*;
        use proptest::prelude::*;

        fn valid_line() -> impl Strategy<Value = String> {
            prop_oneof![
                (any::<i32>(), any::<u64>()).prop_map(|(pid, uptime_ms)| Status::Started {
                    pid,
                    uptime_ms
                }
                .to_line()),
                any::<i32>().prop_map(|code| Status::Exited { code }.to_line()),
                (any::<i32>(), any::<bool>()).prop_map(|(signal, oom)| Status::Signaled {
                    signal,
                    oom
                }
                .to_line()),
                (any::<i32>(), ".{0,40}").prop_map(|(code, message)| Status::InitError {
                    code,
                    message
                }
                .to_line()),
            ]
        }

        /// Whatever parses is inside the protocol's ranges and maps to an exit code 0..=255.
        fn check(bytes: &[u8]) {
            if let Ok(raw) = RawStatus::parse(bytes) {
                if let Ok(s) = raw.validate() {
                    if let Some(code) = s.exit_code() {
                        assert!((0..=255).contains(&code), "{s:?}");
                    }
                    match s {
                        Status::Signaled { signal, .. } => assert!((1..=64).contains(&signal)),
                        Status::InitError { code, .. } => assert!((125..=127).contains(&code)),
                        Status::Started { pid, .. } => assert!(pid >= 1),
                        Status::Exited { .. } => {}
                    }
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
            #[test]
            fn random_bytes_never_panic_or_escape_the_ranges(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
                check(&bytes);
            }

            #[test]
            fn mutated_valid_lines_never_panic_or_escape_the_ranges(
                line in valid_line(),
                edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..6),
            ) {
                let mut b = line.into_bytes();
                for (at, byte, op) in edits {
                    match op {
                        0 if !b.is_empty() => { let i = at.index(b.len()); b[i] = byte; }
                        1 => { let i = at.index(b.len() + 1); b.insert(i, byte); }
                        _ if !b.is_empty() => { let i = at.index(b.len()); b.remove(i); }
                        _ => {}
                    }
                }
                check(&b);
            }
        }
    }

    #[test]
    fn control_parse() {
        assert_eq!(
            Control::parse_line("signal 15\n"),
            Some(Control::Signal(15))
        );
        assert_eq!(Control::parse_line("signal 0"), None);
        assert_eq!(Control::parse_line("signal 15 x"), None);
        assert_eq!(Control::parse_line("reboot"), None);
        for c in [
            Control::Resize {
                rows: 50,
                cols: 132,
            },
            Control::StdinEof,
            Control::Signal(28),
            Control::Resumed {
                unix_nanos: 1_796_000_000_123_456_789,
            },
            Control::NetUp {
                interface: "eth1".into(),
                mac: [0, 0x16, 0x3e, 1, 2, 0xab],
                address: std::net::Ipv4Addr::new(10, 99, 0, 2),
                prefix: 24,
            },
        ] {
            assert_eq!(Control::parse_line(&c.to_line()), Some(c));
        }
        assert_eq!(Control::parse_line("resize 0 80"), None);
        assert_eq!(Control::parse_line("resize 24 x"), None);
        assert_eq!(Control::parse_line("resumed"), None);
        assert_eq!(Control::parse_line("resumed -5"), None);
        assert_eq!(Control::parse_line("resumed +5"), None);
        assert_eq!(Control::parse_line("resumed 1 2"), None);
        for bad in [
            "net-up eth1 00:16:3e:01:02:03 10.99.0.2",
            "net-up eth1 00:16:3e:01:02:03 10.99.0.2/0",
            "net-up eth1 00:16:3e:01:02:03 10.99.0.2/33",
            "net-up eth1 00:16:3e:01:02:03 10.99.0.2/024",
            "net-up eth1 00:16:3e:01:02:03 0.0.0.0/24",
            "net-up eth1 00:16:3e:01:02:03 127.0.0.2/8",
            "net-up eth1 01:16:3e:01:02:03 10.99.0.2/24",
            "net-up a/b 00:16:3e:01:02:03 10.99.0.2/24",
            "net-up averyveryverylongname 00:16:3e:01:02:03 10.99.0.2/24",
            "net-up eth1 00:16:3e:01:02 10.99.0.2/24",
        ] {
            assert_eq!(Control::parse_line(bad), None, "{bad}");
        }
        assert_eq!(
            Control::parse_line(&format!("resumed {}", "9".repeat(31))),
            None
        );
    }

    mod control_prop {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
            /// Whatever parses is in range and prints back to the line it came from (modulo
            /// the spacing split_whitespace forgives).
            #[test]
            fn any_line_parses_strictly(line in "(signal|resize|stdin-eof|resumed|net-up)?[ 0-9a-z+:./-]{0,50}") {
                if let Some(c) = Control::parse_line(&line) {
                    match &c {
                        Control::Signal(n) => prop_assert!((1..=64).contains(n)),
                        Control::Resize { rows, cols } => prop_assert!(*rows > 0 && *cols > 0),
                        Control::Resumed { unix_nanos } => {
                            prop_assert!(unix_nanos.to_string().len() <= MAX_NANOS_DIGITS)
                        }
                        Control::StdinEof => {}
                        Control::NetUp { interface, prefix, .. } => {
                            prop_assert!(crate::spec::valid_ifname(interface));
                            prop_assert!((1..=32).contains(prefix));
                        }
                    }
                    prop_assert_eq!(Control::parse_line(&c.to_line()), Some(c));
                }
            }

            #[test]
            fn resumed_round_trips(unix_nanos in 0u128..10u128.pow(30)) {
                let c = Control::Resumed { unix_nanos };
                prop_assert_eq!(Control::parse_line(&c.to_line()), Some(c));
            }
        }
    }
}
