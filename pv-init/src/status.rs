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

/// Control lines: `signal N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    Signal(i32),
}

impl Control {
    pub fn to_line(&self) -> String {
        match self {
            Control::Signal(n) => format!("signal {n}\n"),
        }
    }

    pub fn parse_line(line: &str) -> Option<Control> {
        let mut it = line.split_whitespace();
        match (it.next(), it.next(), it.next()) {
            (Some("signal"), Some(n), None) => n.parse().ok().filter(|n| (1..=64).contains(n)).map(Control::Signal),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
