//! The QEMU Machine Protocol, the three commands hx needs of it: `stop`, `cont` and
//! `query-status` (pause, unpause and the paused state of a container's VM). QMP is JSON lines
//! over a unix socket; QEMU greets, the client negotiates capabilities, then each command gets
//! one `return` or `error` line, with asynchronous `event` lines in between. Written here
//! rather than taken from the `qapi` crate: that crate generates bindings for every QMP
//! command (seconds of build for three commands), and what hx sends is fixed.
//!
//! The socket is QEMU's, but QEMU runs the guest: lines are bounded and parsed strictly, and
//! nothing read is printed raw.
use anyhow::{bail, Context};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// The socket's name in the container directory.
pub const SOCKET: &str = "qmp.sock";
/// Longest line accepted from QEMU (its replies to these commands are tens of bytes).
const MAX_LINE: usize = 64 * 1024;
/// Most lines (events) skipped while waiting for one reply.
const MAX_LINES: usize = 256;
const TIMEOUT: Duration = Duration::from_secs(10);

/// A listening socket for QEMU's `-chardev socket,fd=N,server=on` (bound by hx, so that the
/// path's length never matters to QEMU).
pub fn listen(dir: &Path) -> anyhow::Result<std::os::unix::net::UnixListener> {
    let p = crate::short_path::ShortPath::new(dir, SOCKET)?;
    let _ = std::fs::remove_file(p.path());
    std::os::unix::net::UnixListener::bind(p.path())
        .with_context(|| format!("QMP socket in {}", dir.display()))
}

pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

/// One QMP line: a reply, an event or the greeting. Unknown members are ignored (QEMU adds
/// some across versions); anything that is not one JSON object is an error.
#[derive(serde::Deserialize)]
struct Line {
    #[serde(rename = "QMP")]
    greeting: Option<serde_json::Value>,
    #[serde(rename = "return")]
    ret: Option<serde_json::Value>,
    error: Option<QmpError>,
    event: Option<String>,
}

#[derive(serde::Deserialize)]
struct QmpError {
    #[serde(default)]
    class: String,
    #[serde(default)]
    desc: String,
}

fn parse_line(line: &[u8]) -> anyhow::Result<Line> {
    serde_json::from_slice(line).map_err(|e| anyhow::anyhow!("QMP: malformed line ({e})"))
}

impl Qmp {
    /// Connects to the container directory's QMP socket and negotiates capabilities.
    pub fn connect(dir: &Path) -> anyhow::Result<Self> {
        let p = crate::short_path::ShortPath::new(dir, SOCKET)?;
        let s = UnixStream::connect(p.path())
            .with_context(|| format!("QMP socket {}", dir.join(SOCKET).display()))?;
        s.set_read_timeout(Some(TIMEOUT))?;
        s.set_write_timeout(Some(TIMEOUT))?;
        let mut q = Qmp {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
        };
        let greeting = q.read_line()?;
        if greeting.greeting.is_none() {
            bail!("QMP: no greeting from QEMU");
        }
        q.execute("qmp_capabilities")?;
        Ok(q)
    }

    fn read_line(&mut self) -> anyhow::Result<Line> {
        let mut buf = Vec::new();
        let n = (&mut self.reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .context("QMP: reading from QEMU")?;
        if n == 0 {
            bail!("QMP: QEMU closed the connection");
        }
        if buf.last() != Some(&b'\n') {
            bail!("QMP: line longer than {MAX_LINE} bytes");
        }
        parse_line(&buf)
    }

    /// Runs a command without arguments; its `return` value.
    pub fn execute(&mut self, command: &str) -> anyhow::Result<serde_json::Value> {
        self.execute_with(command, None)
    }

    /// Runs a command with `arguments` (a JSON object); its `return` value.
    pub fn execute_with(
        &mut self,
        command: &str,
        arguments: Option<serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let msg = match arguments {
            Some(a) => serde_json::json!({ "execute": command, "arguments": a }),
            None => serde_json::json!({ "execute": command }),
        };
        let mut req = serde_json::to_vec(&msg)?;
        req.push(b'\n');
        self.writer.write_all(&req)?;
        for _ in 0..MAX_LINES {
            let l = self.read_line()?;
            if l.event.is_some() {
                continue;
            }
            if let Some(e) = l.error {
                bail!(
                    "QMP {command}: {}: {}",
                    crate::sanitize::text(&e.class).to_cow(),
                    crate::sanitize::text(&e.desc).to_cow()
                );
            }
            if let Some(r) = l.ret {
                return Ok(r);
            }
            bail!("QMP {command}: a reply that is neither return nor error");
        }
        bail!("QMP {command}: no reply among {MAX_LINES} lines");
    }

    /// Waits until the outgoing or incoming migration is over; Err unless it completed.
    pub fn wait_migration(&mut self, deadline: std::time::Duration) -> anyhow::Result<()> {
        let t = std::time::Instant::now();
        loop {
            let r = self.execute("query-migrate")?;
            match r.get("status").and_then(|v| v.as_str()) {
                Some("completed") => return Ok(()),
                Some("failed") | Some("cancelled") => bail!("QMP: the migration failed"),
                _ if t.elapsed() > deadline => bail!("QMP: the migration did not finish"),
                _ => std::thread::sleep(std::time::Duration::from_millis(2)),
            }
        }
    }

    /// Whether the VM's vCPUs are stopped (`query-status`).
    pub fn paused(&mut self) -> anyhow::Result<bool> {
        let r = self.execute("query-status")?;
        match r.get("running").and_then(|v| v.as_bool()) {
            Some(running) => Ok(!running),
            None => bail!("QMP query-status: no \"running\" in the reply"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_events_and_errors_are_told_apart() {
        let l = parse_line(br#"{"return": {"running": false, "status": "paused"}}"#).unwrap();
        assert_eq!(l.ret.unwrap()["running"], false);
        let l = parse_line(br#"{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}}"#)
            .unwrap();
        assert_eq!(l.event.as_deref(), Some("STOP"));
        let l = parse_line(br#"{"error": {"class": "GenericError", "desc": "no"}}"#).unwrap();
        assert_eq!(l.error.unwrap().desc, "no");
        assert!(parse_line(b"[1,2]").is_err());
        assert!(parse_line(b"not json").is_err());
    }

    /// A fake QEMU on a socketpair: what `execute` makes of hostile or odd answers.
    fn against(answers: &'static [u8]) -> anyhow::Result<serde_json::Value> {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let t = std::thread::spawn(move || {
            let mut b = b;
            let _ = b.write_all(answers);
            // Hold the socket until the client is done.
            let mut sink = [0u8; 1024];
            while b.read(&mut sink).is_ok_and(|n| n > 0) {}
        });
        let mut q = Qmp {
            reader: BufReader::new(a.try_clone().unwrap()),
            writer: a,
        };
        let r = q.execute("stop");
        drop(q);
        t.join().unwrap();
        r
    }

    #[test]
    fn execute_skips_events_and_refuses_what_qemu_would_never_send() {
        let r = against(b"{\"event\":\"STOP\"}\n{\"return\":{}}\n").unwrap();
        assert_eq!(r, serde_json::json!({}));
        let e = against(b"{\"error\":{\"class\":\"X\",\"desc\":\"\x1b[31mred\"}}\n").unwrap_err();
        assert!(!e.to_string().contains('\x1b'), "{e}");
        assert!(against(b"{\"odd\":1}\n").is_err());
        assert!(against(b"").is_err());
        let long: &'static [u8] = Box::leak(vec![b' '; MAX_LINE + 10].into_boxed_slice());
        let e = against(long).unwrap_err();
        assert!(e.to_string().contains("longer than"), "{e}");
        let events: &'static [u8] = Box::leak(
            b"{\"event\":\"E\"}\n"
                .repeat(MAX_LINES + 1)
                .into_boxed_slice(),
        );
        assert!(against(events)
            .unwrap_err()
            .to_string()
            .contains("no reply"));
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_parser() {
        let mut seed = 0x2545F4914F6CDD1Du64;
        for len in 0..2000usize {
            let mut v = Vec::with_capacity(len % 200);
            for _ in 0..len % 200 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let alphabet = b"{}[]\":,0aQMPreturnerrorevent \n\x00\xff";
                v.push(alphabet[(seed % alphabet.len() as u64) as usize]);
            }
            let _ = parse_line(&v);
        }
    }
}
