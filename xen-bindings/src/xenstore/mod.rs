//! A xenstore client speaking the wire protocol itself (wire.rs), over xenstored's unix socket
//! in dom0 or /dev/xen/xenbus (dom0 with a xenstore stub domain, or inside a guest).
//!
//! One connection per `Xenstore`; a reader thread routes replies to the waiting request (by
//! request id) and watch events to `next_watch`, so requests from several threads and a
//! pending watch never block each other. Values written by guests are untrusted: use
//! `read_untrusted` and the `parse_untrusted_*` helpers.
use xenstore_wire::msg as wire;
pub use xenstore_wire::{
    check_path, check_untrusted, parse_untrusted_choice, parse_untrusted_u64, Perm, WatchEvent,
    MAX_ENTRIES, MAX_VALUE,
};

use crate::error::XenError;
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
use wire::{Msg, MsgType};

/// Where xenstored listens in dom0 (Debian: /run is /var/run).
pub const DAEMON_SOCKET: &str = "/var/run/xenstored/socket";
pub const XENBUS_DEVICE: &str = "/dev/xen/xenbus";
/// How often a transaction is retried when another writer got in the way (EAGAIN).
pub const TRANSACTION_RETRIES: usize = 16;
/// Longest wait for xenstored's reply to one request. xenstored answers in milliseconds; a
/// caller stuck for ever on a wedged daemon (or a lost reply) would hang `hx run` with its
/// domain half set up, so the request fails instead and the caller cleans up.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

type Reply = Result<Msg, XenError>;

struct Shared {
    pending: Mutex<HashMap<u32, mpsc::SyncSender<Reply>>>,
    /// Why the connection ended, once it has.
    closed: Mutex<Option<String>>,
}

impl Shared {
    fn closed_error(&self) -> XenError {
        let why = self
            .closed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_default();
        XenError::Protocol(format!("connection to xenstored closed: {why}"))
    }
}

pub struct Xenstore {
    writer: Mutex<File>,
    /// Per-request reply deadline (REQUEST_TIMEOUT; tests shorten it).
    reply_timeout: Duration,
    shared: Arc<Shared>,
    next_req: AtomicU32,
    watches: Mutex<mpsc::Receiver<WatchEvent>>,
    stop_wr: OwnedFd,
}

/// Requests made inside a transaction (`Xenstore::transaction`).
pub struct Transaction<'a> {
    xs: &'a Xenstore,
    id: u32,
}

fn os_error(op: &'static str, path: &str, errno: i32) -> XenError {
    XenError::Xenstore {
        op,
        path: path.to_string(),
        source: std::io::Error::from_raw_os_error(errno),
    }
}

fn expect_ok(reply: &Msg) -> Result<(), XenError> {
    if reply.payload == b"OK\0" || reply.payload == b"OK" {
        Ok(())
    } else {
        Err(XenError::Protocol(format!(
            "expected OK, got {:?}",
            String::from_utf8_lossy(&reply.payload)
        )))
    }
}

impl Xenstore {
    /// xenstored's socket if there is one, else /dev/xen/xenbus (the order libxenstore uses).
    /// `XENSTORED_PATH` overrides the socket path, as for libxenstore.
    pub fn open() -> Result<Self, XenError> {
        let socket = std::env::var("XENSTORED_PATH").unwrap_or_else(|_| DAEMON_SOCKET.to_string());
        match Self::connect_unix(&socket) {
            Ok(xs) => Ok(xs),
            Err(_) if Path::new(XENBUS_DEVICE).exists() => Self::open_device(XENBUS_DEVICE),
            Err(e) => Err(e),
        }
    }

    pub fn connect_unix(path: impl AsRef<Path>) -> Result<Self, XenError> {
        let path = path.as_ref();
        let s = UnixStream::connect(path).map_err(|e| XenError::Xenstore {
            op: "open",
            path: path.display().to_string(),
            source: e,
        })?;
        Self::start(OwnedFd::from(s))
    }

    pub fn open_device(path: impl AsRef<Path>) -> Result<Self, XenError> {
        let path = path.as_ref();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| XenError::Xenstore {
                op: "open",
                path: path.display().to_string(),
                source: e,
            })?;
        Self::start(OwnedFd::from(f))
    }

    fn start(fd: OwnedFd) -> Result<Self, XenError> {
        let setup = |e: std::io::Error| XenError::Xenstore {
            op: "open",
            path: String::new(),
            source: e,
        };
        let reader = File::from(fd.try_clone().map_err(setup)?);
        let mut pipe = [0; 2];
        // SAFETY: pipe2 fills two fds on success.
        if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(setup(std::io::Error::last_os_error()));
        }
        // SAFETY: fresh fds we own.
        let (stop_rd, stop_wr) =
            unsafe { (OwnedFd::from_raw_fd(pipe[0]), OwnedFd::from_raw_fd(pipe[1])) };
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            closed: Mutex::new(None),
        });
        let (watch_tx, watch_rx) = mpsc::channel();
        let s = shared.clone();
        std::thread::Builder::new()
            .name("xenstore-reader".into())
            .spawn(move || read_loop(reader, stop_rd, s, watch_tx))
            .map_err(setup)?;
        Ok(Xenstore {
            writer: Mutex::new(File::from(fd)),
            reply_timeout: REQUEST_TIMEOUT,
            shared,
            next_req: AtomicU32::new(1),
            watches: Mutex::new(watch_rx),
            stop_wr,
        })
    }

    /// Sends one request and waits for its reply; xenstored's error replies become
    /// `XenError::Xenstore` with the errno it named.
    fn request(
        &self,
        op: &'static str,
        path: &str,
        kind: MsgType,
        tx_id: u32,
        payload: Vec<u8>,
    ) -> Result<Msg, XenError> {
        let req_id = self.next_req.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::sync_channel(1);
        {
            let mut pending = self
                .shared
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(why) = self
                .shared
                .closed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
            {
                return Err(XenError::Protocol(format!(
                    "connection to xenstored closed: {why}"
                )));
            }
            pending.insert(req_id, tx);
        }
        let sent = Msg {
            kind,
            req_id,
            tx_id,
            payload,
        }
        .write_to(&mut *self.writer.lock().unwrap_or_else(|e| e.into_inner()));
        if let Err(e) = sent {
            self.shared
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&req_id);
            return Err(e.into());
        }
        let reply = match rx.recv_timeout(self.reply_timeout) {
            Ok(r) => r?,
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err(self.shared.closed_error()),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // A reply arriving later finds no waiter and is dropped by the reader.
                self.shared
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&req_id);
                return Err(XenError::Xenstore {
                    op,
                    path: path.to_string(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "xenstored did not answer within {} s",
                            self.reply_timeout.as_secs()
                        ),
                    ),
                });
            }
        };
        if reply.kind == MsgType::Error {
            let name =
                String::from_utf8_lossy(reply.payload.strip_suffix(&[0]).unwrap_or(&reply.payload))
                    .into_owned();
            return Err(os_error(op, path, wire::errno_from_name(&name)));
        }
        if reply.kind != kind {
            return Err(XenError::Protocol(format!(
                "{op} {path}: reply of type {:?}",
                reply.kind
            )));
        }
        Ok(reply)
    }

    fn path_request(
        &self,
        op: &'static str,
        path: &str,
        kind: MsgType,
        tx_id: u32,
    ) -> Result<Msg, XenError> {
        check_path(path)?;
        self.request(op, path, kind, tx_id, wire::nul_strings(&[path.as_bytes()]))
    }

    fn read_tx(&self, tx: u32, path: &str) -> Result<Option<Vec<u8>>, XenError> {
        match self.path_request("read", path, MsgType::Read, tx) {
            Ok(m) => Ok(Some(m.payload)),
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn write_tx(&self, tx: u32, path: &str, value: &[u8]) -> Result<(), XenError> {
        check_path(path)?;
        let mut payload = wire::nul_strings(&[path.as_bytes()]);
        payload.extend_from_slice(value);
        expect_ok(&self.request("write", path, MsgType::Write, tx, payload)?)
    }

    fn mkdir_tx(&self, tx: u32, path: &str) -> Result<(), XenError> {
        expect_ok(&self.path_request("mkdir", path, MsgType::Mkdir, tx)?)
    }

    fn rm_tx(&self, tx: u32, path: &str) -> Result<(), XenError> {
        match self.path_request("rm", path, MsgType::Rm, tx) {
            Ok(m) => expect_ok(&m),
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn directory_tx(&self, tx: u32, path: &str) -> Result<Vec<String>, XenError> {
        let m = self.path_request("directory", path, MsgType::Directory, tx)?;
        let entries = wire::split_nul_strings(&m.payload)?;
        if entries.len() > MAX_ENTRIES {
            return Err(XenError::Untrusted {
                path: path.to_string(),
                reason: format!("{} entries, at most {MAX_ENTRIES}", entries.len()),
            });
        }
        if let Some(bad) = entries
            .iter()
            .find(|e| e.is_empty() || e.contains('/') || check_path(e).is_err())
        {
            return Err(XenError::Protocol(format!(
                "directory {path}: bad entry {bad:?}"
            )));
        }
        Ok(entries)
    }

    fn get_perms_tx(&self, tx: u32, path: &str) -> Result<Vec<Perm>, XenError> {
        let m = self.path_request("get_perms", path, MsgType::GetPerms, tx)?;
        wire::split_nul_strings(&m.payload)?
            .iter()
            .map(|p| {
                Perm::parse(p).ok_or_else(|| {
                    XenError::Protocol(format!("get_perms {path}: bad permission {p:?}"))
                })
            })
            .collect()
    }

    fn set_perms_tx(&self, tx: u32, path: &str, perms: &[Perm]) -> Result<(), XenError> {
        check_path(path)?;
        if perms.is_empty() {
            return Err(XenError::InvalidConfig(format!(
                "xenstore set_perms {path}: no owner given"
            )));
        }
        let texts: Vec<String> = perms.iter().map(Perm::to_string).collect();
        let mut parts: Vec<&[u8]> = vec![path.as_bytes()];
        parts.extend(texts.iter().map(|t| t.as_bytes()));
        expect_ok(&self.request(
            "set_perms",
            path,
            MsgType::SetPerms,
            tx,
            wire::nul_strings(&parts),
        )?)
    }

    /// The node's value; None if it does not exist.
    pub fn read(&self, path: &str) -> Result<Option<Vec<u8>>, XenError> {
        self.read_tx(0, path)
    }

    /// Reads a node a guest may write, with the bounds and checks of `check_untrusted`.
    pub fn read_untrusted(&self, path: &str) -> Result<Option<String>, XenError> {
        Ok(self
            .read(path)?
            .map(|b| check_untrusted(path, &b))
            .transpose()?)
    }

    /// Writes a value, creating the node and missing parents.
    pub fn write(&self, path: &str, value: &[u8]) -> Result<(), XenError> {
        self.write_tx(0, path, value)
    }

    pub fn mkdir(&self, path: &str) -> Result<(), XenError> {
        self.mkdir_tx(0, path)
    }

    /// Removes a node and everything below it; a missing node is not an error.
    pub fn rm(&self, path: &str) -> Result<(), XenError> {
        self.rm_tx(0, path)
    }

    /// The names of a node's children (at most `MAX_ENTRIES`).
    pub fn directory(&self, path: &str) -> Result<Vec<String>, XenError> {
        self.directory_tx(0, path)
    }

    pub fn get_perms(&self, path: &str) -> Result<Vec<Perm>, XenError> {
        self.get_perms_tx(0, path)
    }

    /// Sets a node's permissions: `perms[0]` is the owner and everyone's default.
    pub fn set_perms(&self, path: &str, perms: &[Perm]) -> Result<(), XenError> {
        self.set_perms_tx(0, path, perms)
    }

    /// The home of a domain's nodes: `/local/domain/<domid>`.
    pub fn domain_path(&self, domid: u32) -> Result<String, XenError> {
        let m = self.request(
            "get_domain_path",
            "",
            MsgType::GetDomainPath,
            0,
            wire::nul_strings(&[domid.to_string().as_bytes()]),
        )?;
        let mut v = wire::split_nul_strings(&m.payload)?;
        match (v.pop(), v.is_empty()) {
            (Some(p), true) if check_path(&p).is_ok() => Ok(p),
            _ => Err(XenError::Protocol(
                "get_domain_path: malformed reply".into(),
            )),
        }
    }

    /// Runs `f` in a transaction and commits; when the commit fails with EAGAIN (another writer
    /// touched what `f` read) runs `f` again, up to `TRANSACTION_RETRIES` times. An error from
    /// `f` aborts the transaction.
    pub fn transaction<T>(
        &self,
        mut f: impl FnMut(&Transaction<'_>) -> Result<T, XenError>,
    ) -> Result<T, XenError> {
        for _ in 0..TRANSACTION_RETRIES {
            let m = self.request(
                "transaction_start",
                "",
                MsgType::TransactionStart,
                0,
                vec![0],
            )?;
            let id = wire::split_nul_strings(&m.payload)?
                .first()
                .and_then(|s| s.parse::<u32>().ok())
                .filter(|id| *id != 0)
                .ok_or_else(|| XenError::Protocol("transaction_start: malformed id".into()))?;
            let t = Transaction { xs: self, id };
            match f(&t) {
                Ok(v) => match self.request(
                    "transaction_end",
                    "",
                    MsgType::TransactionEnd,
                    id,
                    b"T\0".to_vec(),
                ) {
                    Ok(_) => return Ok(v),
                    Err(e) if e.errno() == Some(libc::EAGAIN) => continue,
                    Err(e) => return Err(e),
                },
                Err(e) => {
                    let _ = self.request(
                        "transaction_end",
                        "",
                        MsgType::TransactionEnd,
                        id,
                        b"F\0".to_vec(),
                    );
                    return Err(e);
                }
            }
        }
        Err(os_error(
            "transaction",
            &format!("(gave up after {TRANSACTION_RETRIES} conflicts)"),
            libc::EAGAIN,
        ))
    }

    /// Watches `path` and everything below it; events arrive through `next_watch`, the
    /// first one at once (xenstored fires every new watch).
    pub fn watch(&self, path: &str, token: &str) -> Result<(), XenError> {
        check_path(path)?;
        expect_ok(&self.request(
            "watch",
            path,
            MsgType::Watch,
            0,
            wire::nul_strings(&[path.as_bytes(), token.as_bytes()]),
        )?)
    }

    pub fn unwatch(&self, path: &str, token: &str) -> Result<(), XenError> {
        check_path(path)?;
        expect_ok(&self.request(
            "unwatch",
            path,
            MsgType::Unwatch,
            0,
            wire::nul_strings(&[path.as_bytes(), token.as_bytes()]),
        )?)
    }

    /// Blocks for the next watch event; `timeout` None waits forever. Ok(None): timed out.
    pub fn next_watch(&self, timeout: Option<Duration>) -> Result<Option<WatchEvent>, XenError> {
        let rx = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        let closed = || self.shared.closed_error();
        match timeout {
            None => rx.recv().map(Some).map_err(|_| closed()),
            Some(t) => match rx.recv_timeout(t) {
                Ok(e) => Ok(Some(e)),
                Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
                Err(mpsc::RecvTimeoutError::Disconnected) => Err(closed()),
            },
        }
    }
}

impl Transaction<'_> {
    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn read(&self, path: &str) -> Result<Option<Vec<u8>>, XenError> {
        self.xs.read_tx(self.id, path)
    }

    pub fn read_untrusted(&self, path: &str) -> Result<Option<String>, XenError> {
        Ok(self
            .read(path)?
            .map(|b| check_untrusted(path, &b))
            .transpose()?)
    }

    pub fn write(&self, path: &str, value: &[u8]) -> Result<(), XenError> {
        self.xs.write_tx(self.id, path, value)
    }

    pub fn mkdir(&self, path: &str) -> Result<(), XenError> {
        self.xs.mkdir_tx(self.id, path)
    }

    pub fn rm(&self, path: &str) -> Result<(), XenError> {
        self.xs.rm_tx(self.id, path)
    }

    pub fn directory(&self, path: &str) -> Result<Vec<String>, XenError> {
        self.xs.directory_tx(self.id, path)
    }

    pub fn get_perms(&self, path: &str) -> Result<Vec<Perm>, XenError> {
        self.xs.get_perms_tx(self.id, path)
    }

    pub fn set_perms(&self, path: &str, perms: &[Perm]) -> Result<(), XenError> {
        self.xs.set_perms_tx(self.id, path, perms)
    }
}

impl Drop for Xenstore {
    fn drop(&mut self) {
        // Wakes the reader thread, which then exits and closes its end.
        // SAFETY: one byte to our own pipe.
        unsafe { libc::write(self.stop_wr.as_raw_fd(), b"q".as_ptr().cast(), 1) };
    }
}

fn parse_watch_event(payload: &[u8]) -> Result<WatchEvent, XenError> {
    Ok(xenstore_wire::parse_watch_event(payload)?)
}

/// Waits until `fd` is readable or `stop` is signalled; false on stop.
fn wait_readable(fd: &File, stop: &OwnedFd) -> bool {
    let mut fds = [
        libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: stop.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: two valid pollfds.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if r >= 0 {
            return fds[1].revents == 0;
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return false;
        }
    }
}

fn read_loop(
    mut conn: File,
    stop: OwnedFd,
    shared: Arc<Shared>,
    watches: mpsc::Sender<WatchEvent>,
) {
    let why = loop {
        if !wait_readable(&conn, &stop) {
            break "client closed".to_string();
        }
        let msg = match Msg::read_from(&mut conn) {
            Ok(Some(m)) => m,
            Ok(None) => break "xenstored hung up".to_string(),
            Err(e) => break e.to_string(),
        };
        if msg.kind == MsgType::WatchEvent {
            match parse_watch_event(&msg.payload) {
                Ok(ev) => {
                    let _ = watches.send(ev);
                }
                Err(e) => tracing::warn!("xenstore: dropping malformed watch event: {e}"),
            }
            continue;
        }
        let waiter = shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&msg.req_id);
        match waiter {
            Some(tx) => {
                let _ = tx.send(Ok(msg));
            }
            None => tracing::warn!("xenstore: reply to unknown request {}", msg.req_id),
        }
    };
    let mut pending = shared.pending.lock().unwrap_or_else(|e| e.into_inner());
    *shared.closed.lock().unwrap_or_else(|e| e.into_inner()) = Some(why.clone());
    for (_, tx) in pending.drain() {
        let _ = tx.send(Err(XenError::Protocol(format!(
            "connection to xenstored closed: {why}"
        ))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixListener;
    use xenstore_wire::fake::FakeXenstored;

    fn connect(fake: &FakeXenstored) -> Xenstore {
        Xenstore::connect_unix(fake.path()).unwrap()
    }

    #[test]
    fn reads_writes_lists_and_removes_nodes() {
        let fake = FakeXenstored::start();
        let xs = connect(&fake);
        assert_eq!(xs.read("/local/domain/5/hx/status").unwrap(), None);
        xs.write("/local/domain/5/hx/status", b"started").unwrap();
        xs.mkdir("/local/domain/5/hx/control").unwrap();
        assert_eq!(
            xs.read("/local/domain/5/hx/status").unwrap().as_deref(),
            Some(&b"started"[..])
        );
        assert_eq!(
            xs.directory("/local/domain/5/hx").unwrap(),
            ["control", "status"]
        );
        assert_eq!(
            xs.read("/local/domain/5/hx/control").unwrap().as_deref(),
            Some(&b""[..])
        );
        xs.rm("/local/domain/5/hx").unwrap();
        xs.rm("/local/domain/5/hx").unwrap(); // already gone: fine
        assert_eq!(xs.read("/local/domain/5/hx/status").unwrap(), None);
        assert_eq!(xs.domain_path(5).unwrap(), "/local/domain/5");
    }

    #[test]
    fn errors_name_the_operation_path_and_errno() {
        let fake = FakeXenstored::start();
        let xs = connect(&fake);
        let e = xs.directory("/nowhere").unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENOENT));
        assert_eq!(
            e.to_string(),
            "xenstore directory /nowhere: No such file or directory (os error 2)"
        );
        assert!(xs.write("relative path with spaces", b"x").is_err());
        assert!(xs
            .set_perms("/local", &[])
            .unwrap_err()
            .to_string()
            .contains("no owner"));
    }

    #[test]
    fn permissions_round_trip() {
        let fake = FakeXenstored::start();
        let xs = connect(&fake);
        xs.write("/local/domain/7/hx/spec", b"{}").unwrap();
        let perms = [Perm::none(0), Perm::read(7)];
        xs.set_perms("/local/domain/7/hx/spec", &perms).unwrap();
        assert_eq!(xs.get_perms("/local/domain/7/hx/spec").unwrap(), perms);
        // Children created later inherit them.
        xs.write("/local/domain/7/hx/spec/x", b"1").unwrap();
        assert_eq!(xs.get_perms("/local/domain/7/hx/spec/x").unwrap(), perms);
    }

    #[test]
    fn transactions_commit_abort_and_retry_on_conflict() {
        let fake = FakeXenstored::start();
        let xs = connect(&fake);
        let other = connect(&fake);
        xs.write("/hx/counter", b"1").unwrap();

        let mut attempts = 0;
        let seen = xs
            .transaction(|t| {
                attempts += 1;
                let v = t.read_untrusted("/hx/counter")?.unwrap();
                if attempts == 1 {
                    // Another writer gets in between: the commit must fail and f run again.
                    other.write("/hx/counter", b"5").unwrap();
                }
                let n = parse_untrusted_u64("/hx/counter", &v, 1000)?;
                t.write("/hx/counter", (n + 1).to_string().as_bytes())?;
                Ok(n)
            })
            .unwrap();
        assert_eq!((attempts, seen), (2, 5));
        assert_eq!(xs.read("/hx/counter").unwrap().as_deref(), Some(&b"6"[..]));

        let r: Result<(), XenError> = xs.transaction(|t| {
            t.write("/hx/counter", b"999")?;
            Err(XenError::InvalidConfig("changed my mind".into()))
        });
        assert!(r.is_err());
        assert_eq!(xs.read("/hx/counter").unwrap().as_deref(), Some(&b"6"[..]));
    }

    #[test]
    fn watches_fire_on_registration_and_on_changes_below() {
        let fake = FakeXenstored::start();
        let xs = connect(&fake);
        let writer = connect(&fake);
        xs.watch("/local/domain/3/hx", "exit").unwrap();
        let first = xs.next_watch(None).unwrap().unwrap();
        assert_eq!(
            first,
            WatchEvent {
                path: "/local/domain/3/hx".into(),
                token: "exit".into()
            }
        );
        writer.write("/local/domain/3/hx/exit-code", b"0").unwrap();
        writer.write("/local/domain/3/other", b"x").unwrap();
        let ev = xs.next_watch(None).unwrap().unwrap();
        assert_eq!(
            ev,
            WatchEvent {
                path: "/local/domain/3/hx/exit-code".into(),
                token: "exit".into()
            }
        );
        // Requests still work while events are queued.
        assert_eq!(
            xs.read("/local/domain/3/hx/exit-code").unwrap().as_deref(),
            Some(&b"0"[..])
        );
        xs.unwatch("/local/domain/3/hx", "exit").unwrap();
        writer.write("/local/domain/3/hx/exit-code", b"1").unwrap();
        assert_eq!(
            xs.read("/local/domain/3/hx/exit-code").unwrap().as_deref(),
            Some(&b"1"[..])
        );
        assert_eq!(xs.next_watch(Some(Duration::ZERO)).unwrap(), None);
    }

    #[test]
    fn requests_from_several_threads_share_one_connection() {
        let fake = FakeXenstored::start();
        let xs = Arc::new(connect(&fake));
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let xs = xs.clone();
                std::thread::spawn(move || {
                    for j in 0..25 {
                        let p = format!("/t/{i}/{j}");
                        xs.write(&p, p.as_bytes()).unwrap();
                        assert_eq!(xs.read(&p).unwrap().unwrap(), p.as_bytes());
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(xs.directory("/t").unwrap().len(), 4);
    }

    /// A server that answers every request with `reply` (raw bytes), to test hostile replies.
    fn hostile_server(reply: Vec<u8>) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("socket");
        let listener = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            let mut h = [0u8; 16];
            c.read_exact(&mut h).unwrap();
            let len = u32::from_ne_bytes(h[12..16].try_into().unwrap()) as usize;
            let mut body = vec![0; len];
            c.read_exact(&mut body).unwrap();
            let mut out = reply;
            out[4..8].copy_from_slice(&h[4..8]); // echo the request id
            c.write_all(&out).unwrap();
            let _ = c.read(&mut h); // keep the connection open until the client goes
        });
        (dir, path)
    }

    fn header(kind: u32, len: u32) -> Vec<u8> {
        [kind, 0, 0, len]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect()
    }

    #[test]
    fn a_request_xenstored_never_answers_fails_after_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("socket");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            // Reads requests and never answers, until the client hangs up.
            let (mut c, _) = listener.accept().unwrap();
            let mut buf = [0u8; 256];
            while c.read(&mut buf).is_ok_and(|n| n > 0) {}
        });
        let mut xs = Xenstore::connect_unix(&path).unwrap();
        xs.reply_timeout = Duration::from_millis(300);
        let t = std::time::Instant::now();
        let e = xs.read("/local/domain/7/hx/status/0").unwrap_err();
        assert!(
            t.elapsed() >= Duration::from_millis(300),
            "{:?}",
            t.elapsed()
        );
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        let msg = e.to_string();
        assert!(
            msg.contains("/local/domain/7/hx/status/0") && msg.contains("did not answer"),
            "{msg}"
        );
        // The waiter is gone: nothing is left pending for a reply that may still come.
        assert!(xs.shared.pending.lock().unwrap().is_empty());
        drop(xs);
        server.join().unwrap();
    }

    #[test]
    fn oversized_replies_end_the_connection_with_a_protocol_error() {
        let mut reply = header(MsgType::Read as u32, 5000);
        reply.extend(vec![b'x'; 5000]);
        let (_dir, path) = hostile_server(reply);
        let xs = Xenstore::connect_unix(&path).unwrap();
        let e = xs.read("/x").unwrap_err();
        assert!(
            e.to_string()
                .contains("5000 bytes exceeds the 4096-byte payload limit"),
            "{e}"
        );
        assert!(xs
            .read("/x")
            .unwrap_err()
            .to_string()
            .contains("connection to xenstored closed"));
    }

    #[test]
    fn guest_values_with_control_bytes_are_rejected_by_read_untrusted() {
        let mut reply = header(MsgType::Read as u32, 6);
        reply.extend(b"ok\x1b[2J");
        let (_dir, path) = hostile_server(reply);
        let xs = Xenstore::connect_unix(&path).unwrap();
        let e = xs.read_untrusted("/local/domain/9/hx/status").unwrap_err();
        assert_eq!(
            e.to_string(),
            "xenstore /local/domain/9/hx/status: value from the guest rejected: control characters"
        );
    }

    #[test]
    fn directory_listings_with_bad_names_are_refused() {
        let body = b"ok\0../../etc\0";
        let mut reply = header(MsgType::Directory as u32, body.len() as u32);
        reply.extend(body);
        let (_dir, path) = hostile_server(reply);
        let xs = Xenstore::connect_unix(&path).unwrap();
        assert!(xs
            .directory("/x")
            .unwrap_err()
            .to_string()
            .contains("bad entry"));
    }

    #[test]
    fn open_fails_cleanly_without_xenstored() {
        let e = Xenstore::connect_unix("/nonexistent/xenstored/socket")
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .starts_with("xenstore open /nonexistent/xenstored/socket: "),
            "{e}"
        );
    }
}
