//! The main workload's input on QEMU (`-i`): the container's log relay holds the host end of
//! the `hx.stdin` port for the container's whole life, so the workload's stdin stays open
//! while nobody is attached (`hx run -d -i`), and lends it to one client at a time over
//! `attach.sock` (mode 0600, in the container directory): `hx run -i` itself, then any
//! `hx attach`.
//!
//! A client speaks pv_init::mux frames on stream 1: `Hello`, then an `Open` whose payload is a
//! `Request`; the relay answers `Hello` then an `Answer` (a `Reply`), or an `Exit` carrying an
//! init-error status line (refused). Then `Stdin` frames: input bytes; an empty one is the end
//! of input. A connection that closes without it has detached: the workload's stdin stays open.
//! The end of input closes the workload's stdin only when the container is "stdin once"
//! (docker's `Config.StdinOnce`, in its record: made with `-i` by `hx create` or an attached
//! `hx run`, not by `hx run -d`); otherwise it only ends that client's turn. As docker's, a
//! stdin-once container without a terminal also loses its stdin when its client goes away
//! without an end (a killed `hx run -i`): only a terminal's detach keys leave it open.
//!
//! Nothing reaches the guest before pv-init reported the workload started (the relay sees the
//! status stream go by): QEMU drops what reaches a port the guest has not opened yet.
use anyhow::{bail, Context};
use pv_init::mux::{Frame, Kind};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub const SOCKET: &str = "attach.sock";
const STREAM: u32 = 1;
/// How long a new client waits for the one holding the input to let go (a client that just
/// detached may not have been noticed yet) before it is refused.
const HOLDER_WAIT: Duration = Duration::from_secs(3);

/// What a client asks for: the input, nothing more to say yet (the container's record
/// decides what the end of it does).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {}

/// What the relay answers.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    /// false: the workload's stdin has already been closed; the client's input goes nowhere.
    pub input_open: bool,
    /// Whether the end of the client's input closes the workload's stdin.
    pub stdin_once: bool,
}

/// Set by the relay once the status stream carried `started` (or anything final).
#[derive(Default)]
pub struct GuestStarted {
    started: Mutex<bool>,
    changed: Condvar,
}

impl GuestStarted {
    pub fn set(&self) {
        *lock(&self.started) = true;
        self.changed.notify_all();
    }

    fn wait(&self) {
        let mut s = lock(&self.started);
        while !*s {
            s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Watches the guest's status stream for its first status line. The bytes are hostile: lines
/// are bounded (pv_init::status::MAX_LINE, longer ones skipped) and parsed strictly.
pub struct StatusWatch {
    line: Vec<u8>,
    skipping: bool,
    started: Arc<GuestStarted>,
    done: bool,
}

impl StatusWatch {
    pub fn new(started: Arc<GuestStarted>) -> Self {
        StatusWatch {
            line: Vec::new(),
            skipping: false,
            started,
            done: false,
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.done {
                return;
            }
            if b != b'\n' {
                if self.line.len() >= pv_init::status::MAX_LINE {
                    self.skipping = true;
                    self.line.clear();
                } else if !self.skipping {
                    self.line.push(b);
                }
                continue;
            }
            let line = std::mem::take(&mut self.line);
            if !std::mem::take(&mut self.skipping)
                && std::str::from_utf8(&line)
                    .ok()
                    .and_then(pv_init::status::Status::parse_line)
                    .is_some()
            {
                self.done = true;
                self.started.set();
            }
        }
    }
}

struct Inner {
    /// A client is attached to the input.
    holder: bool,
    /// The workload's stdin was closed (its end was sent).
    closed: bool,
}

struct Shared {
    inner: Mutex<Inner>,
    changed: Condvar,
    guest: UnixStream,
    started: Arc<GuestStarted>,
    /// The workload has a terminal (`-t`).
    tty: bool,
    /// The end of a client's input is the workload's (the container's StdinOnce).
    stdin_once: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Serves the workload's input (`guest`: the relay's end of the `hx.stdin` socket pair) on
/// `dir/attach.sock` from threads of its own; returns once listening. `tty`: the workload has
/// a terminal; `stdin_once`: the container's StdinOnce.
pub fn serve(
    guest: OwnedFd,
    dir: &Path,
    started: Arc<GuestStarted>,
    tty: bool,
    stdin_once: bool,
) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let short = crate::short_path::ShortPath::new(dir, SOCKET)?;
    let path = short.path();
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let shared = Arc::new(Shared {
        inner: Mutex::new(Inner {
            holder: false,
            closed: false,
        }),
        changed: Condvar::new(),
        guest: UnixStream::from(guest),
        started,
        tty,
        stdin_once,
    });
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let shared = shared.clone();
            std::thread::spawn(move || client(conn, &shared));
        }
    });
    Ok(())
}

fn refuse(conn: &mut UnixStream, why: &str) {
    let status = pv_init::status::Status::InitError {
        code: 125,
        message: why.into(),
    };
    let _ = Frame::new(Kind::Exit, STREAM, status.to_line().into_bytes()).write_to(conn);
}

/// One client's turn at the input.
fn client(mut conn: UnixStream, shared: &Shared) {
    // The greeting is due at once; after it the client may be silent for as long as it likes.
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    match (Frame::read_from(&mut conn), Frame::read_from(&mut conn)) {
        (Ok(Some(h)), Ok(Some(o)))
            if h.kind == Kind::Hello && h.version().is_ok() && o.kind == Kind::Open =>
        {
            if serde_json::from_slice::<Request>(&o.payload).is_err() {
                return refuse(&mut conn, "not an hx attach client");
            }
        }
        _ => return refuse(&mut conn, "not an hx attach client"),
    }
    let _ = conn.set_read_timeout(None);
    let reply = {
        let mut inner = lock(&shared.inner);
        let deadline = Instant::now() + HOLDER_WAIT;
        while inner.holder && !inner.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                drop(inner);
                return refuse(
                    &mut conn,
                    "another client is attached to the container's input",
                );
            }
            inner = shared
                .changed
                .wait_timeout(inner, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let reply = Reply {
            input_open: !inner.closed,
            stdin_once: shared.stdin_once,
        };
        if reply.input_open {
            inner.holder = true;
        }
        reply
    };
    let answer = serde_json::to_vec(&reply).expect("reply serializes");
    if Frame::hello()
        .write_to(&mut conn)
        .and_then(|_| Frame::new(Kind::Answer, STREAM, answer).write_to(&mut conn))
        .is_err()
        || !reply.input_open
    {
        if reply.input_open {
            release(shared, false);
        }
        return;
    }
    shared.started.wait();
    let mut guest = &shared.guest;
    let mut ended = false;
    loop {
        match Frame::read_from(&mut conn) {
            Ok(Some(f)) if f.kind == Kind::Stdin && f.payload.is_empty() => {
                ended = true;
                break;
            }
            Ok(Some(f)) if f.kind == Kind::Stdin => {
                if guest.write_all(&f.payload).is_err() {
                    break;
                }
            }
            // Closed (detached), broken, or a frame this channel does not carry.
            _ => break,
        }
    }
    // Gone without an end: a detach, unless docker would close a stdin-once input here.
    release(shared, ended || !shared.tty);
}

/// The client's turn is over; `ended`: it sent the end of its input.
fn release(shared: &Shared, ended: bool) {
    let mut inner = lock(&shared.inner);
    inner.holder = false;
    if ended && shared.stdin_once && !inner.closed {
        // A half-close, and the socket stays open for the relay's life: QEMU passes on what
        // the socket still holds, then the end; a hang-up would make it drop that tail.
        let _ = shared.guest.shutdown(std::net::Shutdown::Write);
        inner.closed = true;
    }
    shared.changed.notify_all();
}

/// A client holding the workload's input.
pub struct Input {
    conn: UnixStream,
    pub reply: Reply,
}

/// The outcome of connecting to a container's input.
pub enum Connected {
    Input(Input),
    /// The workload's stdin is closed already (a stdin-once container whose input ended).
    Closed,
}

/// Connects to the input of the container in `dir` (its relay is listening, or about to: a
/// freshly started one gets a few seconds).
pub fn connect(dir: &Path) -> anyhow::Result<Connected> {
    let short = crate::short_path::ShortPath::new(dir, SOCKET)?;
    let t0 = Instant::now();
    let mut conn = loop {
        match UnixStream::connect(short.path()) {
            Ok(c) => break c,
            Err(e)
                if t0.elapsed() < Duration::from_secs(10)
                    && matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                    ) =>
            {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => return Err(e).context("the container's input (attach.sock)"),
        }
    };
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    Frame::hello().write_to(&mut conn)?;
    let req = serde_json::to_vec(&Request {}).expect("request serializes");
    Frame::new(Kind::Open, STREAM, req).write_to(&mut conn)?;
    let first = Frame::read_from(&mut conn)?;
    match first {
        Some(f) if f.kind == Kind::Hello => {
            f.version()?;
        }
        Some(f) if f.kind == Kind::Exit => {
            let line = String::from_utf8_lossy(&f.payload);
            match pv_init::status::Status::parse_line(line.trim_end()) {
                Some(pv_init::status::Status::InitError { message, .. }) => bail!("{message}"),
                _ => bail!("the container's relay refused the attach"),
            }
        }
        _ => bail!("the container's relay did not answer"),
    }
    let reply = match Frame::read_from(&mut conn)? {
        Some(f) if f.kind == Kind::Answer => serde_json::from_slice::<Reply>(&f.payload)
            .context("the container's relay answered nonsense")?,
        _ => bail!("the container's relay did not answer"),
    };
    conn.set_read_timeout(None)?;
    if !reply.input_open {
        return Ok(Connected::Closed);
    }
    Ok(Connected::Input(Input { conn, reply }))
}

impl Input {
    /// Passes input on (in frames of at most mux::MAX_PAYLOAD bytes).
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        for chunk in bytes.chunks(pv_init::mux::MAX_PAYLOAD) {
            Frame::new(Kind::Stdin, STREAM, chunk.to_vec()).write_to(&mut self.conn)?;
        }
        Ok(())
    }

    /// The end of input: closes the workload's stdin if the container is stdin-once.
    pub fn end(mut self) -> std::io::Result<()> {
        Frame::new(Kind::Stdin, STREAM, Vec::new()).write_to(&mut self.conn)?;
        // Closing now is fine: the relay has the end frame before it sees the close.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(dir: &Path, tty: bool, stdin_once: bool) -> (UnixStream, Arc<GuestStarted>) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let started = Arc::new(GuestStarted::default());
        serve(OwnedFd::from(theirs), dir, started.clone(), tty, stdin_once).unwrap();
        (ours, started)
    }

    fn read_all(mut s: &UnixStream) -> Vec<u8> {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut s, &mut out).unwrap();
        out
    }

    #[test]
    fn status_watch_needs_a_whole_valid_line() {
        let started = Arc::new(GuestStarted::default());
        let mut w = StatusWatch::new(started.clone());
        w.feed(b"{\"event\":\"started\",\"pid\":1,");
        assert!(!*lock(&started.started));
        w.feed(&vec![b'x'; 10_000]);
        w.feed(b"\n{\"event\":\"bogus\"}\n");
        assert!(!*lock(&started.started));
        w.feed(b"{\"event\":\"started\",\"pid\":1,\"uptime_ms\":5}\n");
        assert!(*lock(&started.started));
    }

    fn input(dir: &Path) -> Input {
        match connect(dir).unwrap() {
            Connected::Input(i) => i,
            Connected::Closed => panic!("input closed"),
        }
    }

    #[test]
    fn input_waits_for_the_guest_and_ends_only_when_stdin_once() {
        // Not stdin-once: an end only ends that client's turn.
        let d = tempfile::tempdir().unwrap();
        let (guest, started) = relay(d.path(), false, false);
        guest
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut a = input(d.path());
        assert!(!a.reply.stdin_once);
        a.send(b"one ").unwrap();
        let mut buf = [0u8; 64];
        assert!(
            std::io::Read::read(&mut &guest, &mut buf).is_err(),
            "nothing before the guest started"
        );
        started.set();
        a.end().unwrap();
        // A second client gets the input once the first let go; a third one, while the
        // second holds it, is refused.
        let mut b = input(d.path());
        let e = connect(d.path()).err().unwrap();
        assert!(e.to_string().contains("another client"), "{e}");
        b.send(b"two").unwrap();
        b.end().unwrap();
        let mut c = input(d.path());
        c.send(b" three").unwrap();
        drop(c);
        let mut got = [0u8; 64];
        let mut n = 0;
        while n < 13 {
            n += std::io::Read::read(&mut &guest, &mut got[n..]).unwrap();
        }
        assert_eq!(&got[..n], b"one two three");
        assert!(matches!(connect(d.path()).unwrap(), Connected::Input(_)));

        // Stdin-once: the first end is the workload's, and later clients learn it.
        let d = tempfile::tempdir().unwrap();
        let (guest, started) = relay(d.path(), false, true);
        started.set();
        let mut a = input(d.path());
        assert!(a.reply.stdin_once);
        a.send(b"four").unwrap();
        a.end().unwrap();
        assert_eq!(read_all(&guest), b"four");
        assert!(matches!(connect(d.path()).unwrap(), Connected::Closed));
    }

    #[test]
    fn a_client_that_goes_away_without_an_end_leaves_a_terminal_input_open() {
        let d = tempfile::tempdir().unwrap();
        let (guest, started) = relay(d.path(), true, true);
        started.set();
        let mut a = input(d.path());
        a.send(b"x").unwrap();
        drop(a);
        input(d.path()).end().unwrap();
        assert_eq!(read_all(&guest), b"x");
        // Without a terminal, a stdin-once client that goes away ends the input (docker's).
        let d = tempfile::tempdir().unwrap();
        let (guest, started) = relay(d.path(), false, true);
        started.set();
        let mut a = input(d.path());
        a.send(b"y").unwrap();
        drop(a);
        assert_eq!(read_all(&guest), b"y");
        // Not stdin-once: going away is a detach.
        let d = tempfile::tempdir().unwrap();
        let (guest, started) = relay(d.path(), false, false);
        started.set();
        drop(input(d.path()));
        assert!(matches!(connect(d.path()).unwrap(), Connected::Input(_)));
        drop(guest);
    }

    #[test]
    fn strangers_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let (_guest, _) = relay(d.path(), false, false);
        let short = crate::short_path::ShortPath::new(d.path(), SOCKET).unwrap();
        let mut s = UnixStream::connect(short.path()).unwrap();
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let f = Frame::read_from(&mut s).unwrap().unwrap();
        assert_eq!(f.kind, Kind::Exit);
    }
}
