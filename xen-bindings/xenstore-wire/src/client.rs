//! A blocking, single-threaded xenstore client: one request at a time, watch events that arrive
//! while waiting for a reply are queued. Enough for a guest's init (pv-init) and for tools;
//! the toolstack's multi-threaded client lives in xen-bindings.
use crate::msg::{self, Msg, MsgType};
use crate::path::check_path;
use crate::Error;
use std::collections::VecDeque;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

/// The guest's (and a dom0 without xenstored socket's) connection to xenstore.
pub const XENBUS_DEVICE: &str = "/dev/xen/xenbus";
/// Most events kept while nobody asks for them; older ones are dropped (a watch only says
/// "look again", so losing duplicates is harmless).
const MAX_QUEUED_EVENTS: usize = 256;

/// A watch fired: `path` changed (or is the watched path itself, on registration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub path: String,
    pub token: String,
}

pub fn parse_watch_event(payload: &[u8]) -> Result<WatchEvent, Error> {
    let mut parts = msg::split_nul_strings(payload)?;
    if parts.len() < 2 {
        return Err(Error::Protocol("watch event without path and token".into()));
    }
    let token = parts.swap_remove(1);
    let path = parts.swap_remove(0);
    Ok(WatchEvent { path, token })
}

pub struct Client {
    conn: File,
    next_req: u32,
    events: VecDeque<WatchEvent>,
}

fn expect_ok(op: &str, reply: &Msg) -> Result<(), Error> {
    if reply.payload == b"OK\0" || reply.payload == b"OK" {
        Ok(())
    } else {
        Err(Error::Protocol(format!(
            "{op}: expected OK, got {}",
            msg::quote(&reply.payload)
        )))
    }
}

impl Client {
    /// /dev/xen/xenbus (or another character device speaking the protocol).
    pub fn open_device(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::Xenstore {
                op: "open",
                path: path.display().to_string(),
                source: e,
            })?;
        Ok(Self::from_fd(OwnedFd::from(f)))
    }

    /// xenstored's unix socket.
    pub fn connect_unix(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let s = std::os::unix::net::UnixStream::connect(path).map_err(|e| Error::Xenstore {
            op: "open",
            path: path.display().to_string(),
            source: e,
        })?;
        Ok(Self::from_fd(OwnedFd::from(s)))
    }

    pub fn from_fd(fd: OwnedFd) -> Self {
        Client {
            conn: File::from(fd),
            next_req: 1,
            events: VecDeque::new(),
        }
    }

    /// The connection, to poll for readability (watch events). Poll only after
    /// `queued_event` returned None: events read during a request wait in the queue.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.conn.as_fd()
    }

    fn read_msg(&mut self) -> Result<Msg, Error> {
        Msg::read_from(&mut self.conn)?.ok_or_else(|| Error::Protocol("xenstored hung up".into()))
    }

    fn queue(&mut self, m: &Msg) {
        // A malformed event is dropped: there is nothing to look at again.
        if let Ok(ev) = parse_watch_event(&m.payload) {
            if self.events.len() >= MAX_QUEUED_EVENTS {
                self.events.pop_front();
            }
            self.events.push_back(ev);
        }
    }

    fn request(
        &mut self,
        op: &'static str,
        path: &str,
        kind: MsgType,
        payload: Vec<u8>,
    ) -> Result<Msg, Error> {
        let req_id = self.next_req;
        self.next_req = self.next_req.wrapping_add(1).max(1);
        Msg {
            kind,
            req_id,
            tx_id: 0,
            payload,
        }
        .write_to(&mut self.conn)?;
        loop {
            let m = self.read_msg()?;
            if m.kind == MsgType::WatchEvent {
                self.queue(&m);
                continue;
            }
            if m.req_id != req_id {
                return Err(Error::Protocol(format!(
                    "{op} {path}: reply to request {} while waiting for {req_id}",
                    m.req_id
                )));
            }
            if m.kind == MsgType::Error {
                let name =
                    String::from_utf8_lossy(m.payload.strip_suffix(&[0]).unwrap_or(&m.payload))
                        .into_owned();
                return Err(Error::os(op, path, msg::errno_from_name(&name)));
            }
            if m.kind != kind {
                return Err(Error::Protocol(format!(
                    "{op} {path}: reply of type {:?}",
                    m.kind
                )));
            }
            return Ok(m);
        }
    }

    /// The node's value; None if it does not exist.
    pub fn read(&mut self, path: &str) -> Result<Option<Vec<u8>>, Error> {
        check_path(path)?;
        match self.request(
            "read",
            path,
            MsgType::Read,
            msg::nul_strings(&[path.as_bytes()]),
        ) {
            Ok(m) => Ok(Some(m.payload)),
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes a value, creating the node and missing parents.
    pub fn write(&mut self, path: &str, value: &[u8]) -> Result<(), Error> {
        check_path(path)?;
        let mut payload = msg::nul_strings(&[path.as_bytes()]);
        payload.extend_from_slice(value);
        let m = self.request("write", path, MsgType::Write, payload)?;
        expect_ok("write", &m)
    }

    /// Removes a node and everything below it; a missing node is not an error.
    pub fn rm(&mut self, path: &str) -> Result<(), Error> {
        check_path(path)?;
        match self.request(
            "rm",
            path,
            MsgType::Rm,
            msg::nul_strings(&[path.as_bytes()]),
        ) {
            Ok(m) => expect_ok("rm", &m),
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Watches `path` and everything below it; xenstored fires once at registration.
    pub fn watch(&mut self, path: &str, token: &str) -> Result<(), Error> {
        check_path(path)?;
        let m = self.request(
            "watch",
            path,
            MsgType::Watch,
            msg::nul_strings(&[path.as_bytes(), token.as_bytes()]),
        )?;
        expect_ok("watch", &m)
    }

    /// An event already read from the connection, if any.
    pub fn queued_event(&mut self) -> Option<WatchEvent> {
        self.events.pop_front()
    }

    /// The next watch event, blocking until one arrives.
    pub fn next_event(&mut self) -> Result<WatchEvent, Error> {
        loop {
            if let Some(e) = self.events.pop_front() {
                return Ok(e);
            }
            let m = self.read_msg()?;
            if m.kind == MsgType::WatchEvent {
                self.queue(&m);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeXenstored;

    #[test]
    fn reads_writes_and_removes() {
        let fake = FakeXenstored::start();
        let mut c = Client::connect_unix(fake.path()).unwrap();
        assert_eq!(c.read("/local/domain/4/data/hx/status/0").unwrap(), None);
        c.write(
            "/local/domain/4/data/hx/status/0",
            br#"{"event":"exited","code":0}"#,
        )
        .unwrap();
        assert_eq!(
            c.read("/local/domain/4/data/hx/status/0").unwrap().unwrap(),
            br#"{"event":"exited","code":0}"#
        );
        c.rm("/local/domain/4/data").unwrap();
        c.rm("/local/domain/4/data").unwrap();
        assert_eq!(c.read("/local/domain/4/data/hx/status/0").unwrap(), None);
        let e = c.write("/bad path", b"x").unwrap_err();
        assert!(
            e.to_string().contains("only [A-Za-z0-9_@/-] allowed"),
            "{e}"
        );
    }

    #[test]
    fn watch_events_arriving_during_requests_are_queued() {
        let fake = FakeXenstored::start();
        let mut c = Client::connect_unix(fake.path()).unwrap();
        let mut host = Client::connect_unix(fake.path()).unwrap();
        c.watch("/local/domain/4/hx/control", "ctl").unwrap();
        assert_eq!(
            c.next_event().unwrap(),
            WatchEvent {
                path: "/local/domain/4/hx/control".into(),
                token: "ctl".into()
            }
        );
        host.write("/local/domain/4/hx/control", b"signal 15\n")
            .unwrap();
        // A request made after the event was sent reads the event first and queues it.
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(
            c.read("/local/domain/4/hx/control").unwrap().unwrap(),
            b"signal 15\n"
        );
        assert_eq!(c.queued_event().unwrap().path, "/local/domain/4/hx/control");
        assert_eq!(c.queued_event(), None);
    }

    #[test]
    fn error_replies_carry_the_errno() {
        let fake = FakeXenstored::start();
        let mut c = Client::connect_unix(fake.path()).unwrap();
        // The fake has no @ nodes: reading one is ENOENT, which read maps to None; rm too.
        assert_eq!(c.read("/nope").unwrap(), None);
        let e = Client::open_device("/nonexistent/xenbus").err().unwrap();
        assert!(
            e.to_string()
                .starts_with("xenstore open /nonexistent/xenbus: "),
            "{e}"
        );
    }
}
