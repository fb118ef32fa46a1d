//! `-i` / `-t` helpers: the local terminal in raw mode and its size, the Xen console as input, and
//! waiting for the workload to start before input is read (the input itself: attach.rs).
use anyhow::Context;
use hx_engine::container::Container;
use pv_init::spec::TtySize;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

/// The size of the terminal hx runs on (stdout, else stdin), if it runs on one.
pub fn terminal_size() -> Option<TtySize> {
    for fd in [libc::STDOUT_FILENO, libc::STDIN_FILENO] {
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ fills a winsize; fails harmlessly on a non-terminal.
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0
            && ws.ws_row > 0
            && ws.ws_col > 0
        {
            return Some(TtySize {
                rows: ws.ws_row,
                cols: ws.ws_col,
            });
        }
    }
    None
}

/// The local terminal in raw mode while this lives (keys, ^C included, go to the workload's
/// terminal as bytes), restored on drop.
pub struct RawTerminal {
    saved: nix::sys::termios::Termios,
}

impl RawTerminal {
    /// None when stdin is not a terminal (piped input needs no raw mode).
    pub fn enable() -> Option<Self> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let stdin = std::io::stdin();
        let _ = nix::sys::termios::tcsetattr(
            stdin.as_fd(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.saved,
        );
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
            let node = format!("{}/0", hx_engine::backend::xen::status_dir(domid));
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
