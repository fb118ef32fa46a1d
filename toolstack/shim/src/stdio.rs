//! The stdio containerd hands over: paths of fifos it (or ctr) already has open at the other
//! end. Without a terminal, stdout and stderr are the keeper's own descriptors (the fifos,
//! opened read-write so the open never waits for a reader) and stdin is a pipe the shim
//! feeds from the stdin fifo (so CloseIO can end it). With a terminal, the shim relays
//! between the fifos and the pty master the engine hands back.
use anyhow::{bail, Context};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::process::Stdio as ChildStdio;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug, Default)]
pub struct Paths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// The writing end of a workload's stdin, which CloseIO drops.
#[derive(Clone, Default)]
pub struct StdinFeed(Arc<Mutex<Option<File>>>);

impl StdinFeed {
    pub fn close(&self) {
        self.0.lock().unwrap().take();
    }

    fn write(&self, buf: &[u8]) -> bool {
        match self.0.lock().unwrap().as_mut() {
            Some(w) => w.write_all(buf).is_ok(),
            None => false,
        }
    }
}

/// An output path as a file to write to: a fifo or plain path, or `file://PATH` (appended).
fn open_output(path: &str) -> anyhow::Result<File> {
    if let Some(p) = path.strip_prefix("file://") {
        return std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .with_context(|| format!("opening {p}"));
    }
    if path.contains("://") {
        bail!("stdio {path:?}: only fifos and file:// are supported");
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .with_context(|| format!("opening {path}"))
}

fn output(path: &str) -> anyhow::Result<ChildStdio> {
    Ok(if path.is_empty() {
        ChildStdio::null()
    } else {
        open_output(path)?.into()
    })
}

/// Copies the stdin fifo into `feed` until its end (or CloseIO); the blocking open happens
/// on the thread, so a writer that never comes blocks nothing else.
fn feed_from(path: String, feed: StdinFeed, mut then: impl FnMut() + Send + 'static) {
    std::thread::spawn(move || {
        if let Ok(mut f) = File::open(&path) {
            let mut buf = [0u8; 16 << 10];
            loop {
                match f.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if !feed.write(&buf[..n]) {
                            break;
                        }
                    }
                }
            }
        }
        then();
    });
}

/// The keeper's stdio for a process without a terminal: (stdin, stdout, stderr, feed).
pub fn plain(p: &Paths) -> anyhow::Result<(ChildStdio, ChildStdio, ChildStdio, StdinFeed)> {
    let feed = StdinFeed::default();
    let stdin = if p.stdin.is_empty() {
        ChildStdio::null()
    } else {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        *feed.0.lock().unwrap() = Some(File::from(w));
        let f = feed.clone();
        feed_from(p.stdin.clone(), feed.clone(), move || f.close());
        ChildStdio::from(r)
    };
    Ok((stdin, output(&p.stdout)?, output(&p.stderr)?, feed))
}

/// Relays a terminal: the stdin fifo into the master, the master into the stdout fifo. The
/// returned receiver yields once the output is drained (the pty's other end all closed).
pub fn terminal(
    p: &Paths,
    master: OwnedFd,
) -> anyhow::Result<(StdinFeed, std::sync::mpsc::Receiver<()>)> {
    let master = File::from(master);
    let feed = StdinFeed::default();
    if !p.stdin.is_empty() {
        *feed.0.lock().unwrap() = Some(master.try_clone()?);
        // A terminal's input has no end of its own: the feed just stops.
        feed_from(p.stdin.clone(), feed.clone(), || {});
    }
    let mut out = if p.stdout.is_empty() {
        None
    } else {
        Some(open_output(&p.stdout)?)
    };
    let (done_tx, done) = std::sync::mpsc::channel();
    let mut reader = master;
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 << 10];
        loop {
            match reader.read(&mut buf) {
                // EIO: every slave descriptor is closed (the keeper exited).
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Some(o) = out.as_mut() {
                        if o.write_all(&buf[..n]).is_err() {
                            out = None;
                        }
                    }
                }
            }
        }
        let _ = done_tx.send(());
    });
    Ok((feed, done))
}

/// TIOCSWINSZ on the master: the keeper, the terminal's session leader, gets SIGWINCH and
/// resizes the guest's pty.
pub fn resize(master: &File, width: u32, height: u32) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;
    let ws = libc::winsize {
        ws_row: height.min(u16::MAX as u32) as u16,
        ws_col: width.min(u16::MAX as u32) as u16,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(std::io::Error::last_os_error()).context("resizing the pty");
    }
    Ok(())
}
