//! A Xen domain's console: the dom0 end of it (xenconsoled's pty), opened raw by the monitor,
//! which copies it to console.log, and written into by `hx run -i` and `hx console -i`.
use super::dom_path;
use crate::logfile::RotatingWriter;
use anyhow::{bail, Context as _};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use xen_bindings::{Context, Xenstore};

/// After the guest shut down, the console is read until it is quiet this long (xenconsoled
/// copies the last of the ring to the pty asynchronously).
pub(super) const CONSOLE_QUIET: Duration = Duration::from_millis(100);
pub(super) const CONSOLE_DRAIN_MAX: Duration = Duration::from_secs(3);
/// xenconsoled publishes the console's pty shortly after the domain appears.
const TTY_WAIT: Duration = Duration::from_secs(30);

/// The dom0 end of a domain's console (xenconsoled's pty), for `hx run -i` to write into.
pub fn console_tty(domid: u32) -> anyhow::Result<PathBuf> {
    let xs = Xenstore::open()?;
    let v = xs
        .read(&format!("{}/console/tty", dom_path(domid)))?
        .ok_or_else(|| anyhow::anyhow!("domain {domid} has no console pty"))?;
    let p = PathBuf::from(String::from_utf8(v)?);
    if !p.starts_with("/dev/pts/") {
        bail!("domain {domid}'s console {} is not a pty", p.display());
    }
    Ok(p)
}

pub(super) async fn open_console(ctx: &Context, domid: u32) -> anyhow::Result<std::fs::File> {
    let deadline = Instant::now() + TTY_WAIT;
    let tty = loop {
        match ctx.console_tty(domid) {
            Ok(t) if !t.is_empty() => break t,
            _ if Instant::now() > deadline => bail!(
                "domain {domid}: no console pty after {}s (is xenconsoled running?)",
                TTY_WAIT.as_secs()
            ),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(&tty)
        .with_context(|| format!("console {tty}"))?;
    // Raw: no echo back to the guest, no newline translation of its output.
    if let Ok(mut t) = nix::sys::termios::tcgetattr(&f) {
        nix::sys::termios::cfmakeraw(&mut t);
        let _ = nix::sys::termios::tcsetattr(&f, nix::sys::termios::SetArg::TCSANOW, &t);
    }
    tracing::info!("domain {domid} console {tty}");
    Ok(f)
}

/// Copies what the console has now to the log; false once the pty is closed.
pub(super) fn pump(
    console: &std::fs::File,
    log: &mut RotatingWriter,
) -> std::io::Result<(bool, usize)> {
    let mut buf = [0u8; 16384];
    let mut total = 0;
    loop {
        // SAFETY: reading into a local buffer from our non-blocking fd.
        let n = unsafe { libc::read(console.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            log.write(&buf[..n as usize])?;
            total += n as usize;
            continue;
        }
        let err = std::io::Error::last_os_error();
        return Ok(match (n, err.kind()) {
            (0, _) => (false, total),
            (_, std::io::ErrorKind::WouldBlock) | (_, std::io::ErrorKind::Interrupted) => {
                (true, total)
            }
            // EIO: xenconsoled closed the master (the domain is gone).
            _ => (false, total),
        });
    }
}
