//! Input into a running workload's stdin, whichever way its backend carries it: QEMU through
//! the log relay's attach socket (attach_channel), Xen through the domain's console, with a
//! `stdin-eof` control line for its end. Used by the CLI's attach/run and hx-runtime's keeper.
use crate::attach_channel::{self, Connected};
use crate::backend::Backend;
use crate::container::Container;
use anyhow::Context;
use pv_init::status::Control;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub enum Sink {
    Relay(attach_channel::Input),
    Console {
        console: DoubleCtrlO<std::fs::File>,
        container: Box<Container>,
        dir: PathBuf,
    },
}

/// The workload's input and whether it is stdin-once; None when its stdin is closed already.
pub fn open(c: &Container, dir: &Path, be: &dyn Backend) -> anyhow::Result<Option<(Sink, bool)>> {
    if be.stdin_over_socket() {
        return Ok(match attach_channel::connect(dir)? {
            Connected::Input(i) => {
                let once = i.reply.stdin_once;
                Some((Sink::Relay(i), once))
            }
            Connected::Closed => None,
        });
    }
    let domid = c
        .domid
        .ok_or_else(|| anyhow::anyhow!("container {} has no domain for its input", c.name))?;
    let tty = crate::backend::xen::console_tty(domid)?;
    Ok(Some((
        Sink::Console {
            console: console_writer(&tty)?,
            container: Box::new(c.clone()),
            dir: dir.to_path_buf(),
        },
        c.stdin_once,
    )))
}

impl Sink {
    /// Nothing may be written to a console before pv-init reports the workload started: by
    /// then the guest has made the console raw (it would echo and line-buffer earlier input);
    /// the relay waits by itself (QEMU drops what reaches a port the guest has not opened).
    /// False if the workload never started.
    pub fn wait_ready(&self) -> bool {
        match self {
            Sink::Relay(_) => true,
            Sink::Console { container, dir, .. } => wait_started(container, dir),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        match self {
            Sink::Relay(i) => Ok(i.send(bytes)?),
            Sink::Console { console, .. } => Ok(console.write_all(bytes)?),
        }
    }

    /// The end of the input is the workload's: closes its stdin. Returns whether it did.
    pub fn end(self, be: &dyn Backend) -> bool {
        match self {
            Sink::Relay(i) => i.end().is_ok(),
            Sink::Console { container, dir, .. } => be
                .send_control(&container, &dir, &Control::StdinEof.to_line())
                .is_ok(),
        }
    }
}

/// Waits (up to 10 minutes) until pv-init has reported the workload started; false if it
/// never did.
pub fn wait_started(c: &Container, dir: &Path) -> bool {
    let t0 = Instant::now();
    while !guest_started(c, dir) {
        if t0.elapsed() > Duration::from_secs(600) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// A writer into a Xen domain's console pty that the guest's hvc driver reads byte for byte.
pub fn console_writer(tty: &Path) -> anyhow::Result<DoubleCtrlO<std::fs::File>> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(tty)
        .with_context(|| format!("console {}", tty.display()))?;
    Ok(DoubleCtrlO(f))
}

/// The guest kernel's hvc console reads ^O as "the next key is a SysRq command" (its SysRq
/// hack; `c` crashes the guest) and ^O ^O as one literal ^O: doubled, every byte of the input
/// arrives as sent.
pub struct DoubleCtrlO<W>(W);

impl<W: Write> Write for DoubleCtrlO<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut out = Vec::with_capacity(buf.len() + 8);
        for &b in buf {
            out.push(b);
            if b == 0x0f {
                out.push(0x0f);
            }
        }
        self.0.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Whether pv-init has reported the workload started (or already gone: nothing to wait for).
fn guest_started(c: &Container, dir: &Path) -> bool {
    let started = |line: &str| pv_init::status::Status::parse_line(line).is_some();
    match c.domid {
        // Xen: pv-init's status nodes, read by the monitor into status.log only at the end.
        Some(domid) => {
            let node = format!("{}/0", crate::backend::xen::status_dir(domid));
            match xen_bindings::Xenstore::open().and_then(|xs| xs.read(&node)) {
                Ok(Some(v)) => started(&String::from_utf8_lossy(&v)),
                Ok(None) => false,
                Err(_) => true,
            }
        }
        None => {
            std::fs::read_to_string(dir.join("status.log")).is_ok_and(|s| s.lines().any(started))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctrl_o_is_doubled_for_the_hvc_console_and_nothing_else_changes() {
        let mut w = DoubleCtrlO(Vec::new());
        w.write_all(b"a\x0fc\x0f\x0f\x00z").unwrap();
        assert_eq!(w.0, b"a\x0f\x0fc\x0f\x0f\x0f\x0f\x00z");
    }
}
