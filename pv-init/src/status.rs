//! Status lines (guest → host) and control lines (host → guest).
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Status {
    Started { pid: i32, uptime_ms: u64 },
    Exited { code: i32 },
    Signaled { signal: i32 },
    InitError { code: i32, message: String },
}

impl Status {
    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).expect("status serializes");
        s.push('\n');
        s
    }

    /// Parses one line written by the guest: untrusted, so bounded and strict.
    pub fn parse_line(line: &str) -> Option<Status> {
        if line.len() > 4096 {
            return None;
        }
        serde_json::from_str(line.trim_end()).ok()
    }

    /// The exit code docker would report for this status, if it is final.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            Status::Started { .. } => None,
            Status::Exited { code } => Some(*code),
            Status::Signaled { signal } => Some(128 + signal),
            Status::InitError { code, .. } => Some(*code),
        }
    }
}

/// Control lines: `signal N`, `resize ROWS COLS` (the terminal of `-t`), `stdin-eof` (the end
/// of `-i` input where the channel cannot say so itself: Xen's console).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    Signal(i32),
    Resize { rows: u16, cols: u16 },
    StdinEof,
}

impl Control {
    pub fn to_line(&self) -> String {
        match self {
            Control::Signal(n) => format!("signal {n}\n"),
            Control::Resize { rows, cols } => format!("resize {rows} {cols}\n"),
            Control::StdinEof => "stdin-eof\n".into(),
        }
    }

    pub fn parse_line(line: &str) -> Option<Control> {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["signal", n] => n.parse().ok().filter(|n| (1..=64).contains(n)).map(Control::Signal),
            ["resize", r, c] => match (r.parse(), c.parse()) {
                (Ok(rows), Ok(cols)) if rows > 0 && cols > 0 => Some(Control::Resize { rows, cols }),
                _ => None,
            },
            ["stdin-eof"] => Some(Control::StdinEof),
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
        let mut out: Vec<String> = entries.into_iter().map(|(n, l)| format!("{n} {l}")).collect();
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
        assert_eq!((lines, last), (vec!["signal 12".to_string(), "signal 15".to_string()], 3));
        assert_eq!(control_log::newer(&v, 3), (vec![], 3));
        assert_eq!(control_log::newer("", 0), (vec![], 0));
        for _ in 0..40 {
            v = control_log::append(&v, "signal 1");
        }
        assert_eq!(control_log::parse(&v).len(), control_log::KEEP);
        assert_eq!(control_log::parse(&v).last().unwrap().0, 43);
        assert!(v.len() < 512);
        assert_eq!(control_log::parse("x y\n7 signal 9\n"), vec![(7, "signal 9".to_string())]);
    }

    #[test]
    fn status_round_trip() {
        for s in [
            Status::Started { pid: 2, uptime_ms: 900 },
            Status::Exited { code: 3 },
            Status::Signaled { signal: 9 },
            Status::InitError { code: 127, message: "nope: not found".into() },
        ] {
            assert_eq!(Status::parse_line(&s.to_line()), Some(s));
        }
        assert_eq!(Status::Signaled { signal: 9 }.exit_code(), Some(137));
        assert_eq!(Status::parse_line("garbage"), None);
    }

    #[test]
    fn control_parse() {
        assert_eq!(Control::parse_line("signal 15\n"), Some(Control::Signal(15)));
        assert_eq!(Control::parse_line("signal 0"), None);
        assert_eq!(Control::parse_line("signal 15 x"), None);
        assert_eq!(Control::parse_line("reboot"), None);
        for c in [Control::Resize { rows: 50, cols: 132 }, Control::StdinEof, Control::Signal(28)] {
            assert_eq!(Control::parse_line(&c.to_line()), Some(c));
        }
        assert_eq!(Control::parse_line("resize 0 80"), None);
        assert_eq!(Control::parse_line("resize 24 x"), None);
    }
}
