//! The host end of a container's exec channel, run inside its log relay (the container's
//! conmon): it owns the one byte stream to the guest and lets any number of `hx exec` clients
//! (at most mux::MAX_STREAMS at once) share it, each connecting to `exec.sock` in the
//! container directory. A client speaks the channel's own frames on stream 1; the broker gives
//! it a stream of its own on the guest side. Frames from the guest are hostile: only the kinds
//! a guest may send, only for streams that are open, only within the credit their client gave.
use pv_init::mux::{self, Frame, Kind, Window};
use std::collections::HashMap;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};

pub const SOCKET: &str = "exec.sock";
/// The stream number a client uses for its own session.
pub const CLIENT_STREAM: u32 = 1;

struct Client {
    queue: mpsc::Sender<Frame>,
    /// What the guest may still send this client.
    window: Window,
    socket: UnixStream,
}

#[derive(Default)]
struct Shared {
    clients: Mutex<HashMap<u32, Client>>,
    next: Mutex<u32>,
    /// Where the guest side is: the guest drops what reaches its port before pv-init opened
    /// it, so nothing is sent before its Hello says it listens.
    guest: Mutex<GuestSide>,
    guest_changed: std::sync::Condvar,
}

#[derive(Default, Clone)]
enum GuestSide {
    #[default]
    NotYet,
    Listening,
    /// Why it is unusable (a bad Hello, a broken frame, the VM gone): told to new clients.
    Gone(String),
}

/// How long a client waits for a booting guest's agent.
const GUEST_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Serves the channel `guest` (a connected socket to QEMU's `hx.exec` port) on `dir/exec.sock`
/// from threads of its own; returns once listening.
pub fn serve(guest: std::os::fd::OwnedFd, dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let short = crate::short_path::ShortPath::new(dir, SOCKET)?;
    let path = short.path();
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let guest = UnixStream::from(guest);
    let to_guest = Arc::new(Mutex::new(guest.try_clone()?));
    let shared = Arc::new(Shared::default());
    *lock(&shared.next) = 1;
    {
        let shared = shared.clone();
        std::thread::spawn(move || from_guest(guest, &shared));
    }
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let (shared, to_guest) = (shared.clone(), to_guest.clone());
            std::thread::spawn(move || from_client(conn, &shared, &to_guest));
        }
    });
    Ok(())
}

/// Frames from the guest to their clients, until the guest's end closes (the VM is gone).
fn from_guest(mut guest: UnixStream, shared: &Shared) {
    let why = serve_guest(&mut guest, shared);
    *lock(&shared.guest) = GuestSide::Gone(why);
    shared.guest_changed.notify_all();
    // The VM is gone (or unusable): every client learns it from its connection closing.
    for (_, c) in lock(&shared.clients).drain() {
        let _ = c.socket.shutdown(std::net::Shutdown::Both);
    }
}

/// Returns why the guest side ended.
fn serve_guest(guest: &mut UnixStream, shared: &Shared) -> String {
    let mut greeted = false;
    loop {
        let f = match Frame::read_from(guest) {
            Ok(Some(f)) => f,
            Ok(None) => return "the container stopped".into(),
            Err(e) => {
                tracing::warn!("{e}");
                return format!("the guest broke the exec channel: {e}");
            }
        };
        if f.kind == Kind::Hello {
            if let Err(e) = f.version() {
                return format!("guest: {e}");
            }
            greeted = true;
            *lock(&shared.guest) = GuestSide::Listening;
            shared.guest_changed.notify_all();
            continue;
        }
        if !greeted {
            // What a guest restored from a checkpoint still sent for the old host end before
            // it heard of this one (pv-init greets again on the `resumed` line): nobody's.
            continue;
        }
        let allowed = matches!(
            f.kind,
            Kind::Started | Kind::Stdout | Kind::Stderr | Kind::Exit | Kind::Credit | Kind::Answer
        );
        if !allowed {
            return format!(
                "the guest sent a {:?} frame the channel does not allow",
                f.kind
            );
        }
        let mut clients = lock(&shared.clients);
        let Some(c) = clients.get_mut(&f.stream) else {
            // A stream whose client is gone: its output is dropped.
            continue;
        };
        if matches!(f.kind, Kind::Stdout | Kind::Stderr) && !c.window.take(f.payload.len()) {
            // Past the credit its client gave: the guest ignores flow control. That session
            // ends here rather than the broker buffering without bound.
            let c = clients.remove(&f.stream).expect("present");
            let _ = c.socket.shutdown(std::net::Shutdown::Both);
            continue;
        }
        let last = matches!(f.kind, Kind::Exit | Kind::Answer);
        let stream = f.stream;
        let _ = c.queue.send(Frame {
            stream: CLIENT_STREAM,
            ..f
        });
        if last {
            clients.remove(&stream);
        }
    }
}

/// Waits until the guest listens; Err(why) if it never will.
fn guest_listening(shared: &Shared) -> Result<(), String> {
    let deadline = std::time::Instant::now() + GUEST_WAIT;
    let mut side = lock(&shared.guest);
    loop {
        match &*side {
            GuestSide::Listening => return Ok(()),
            GuestSide::Gone(why) => return Err(why.clone()),
            GuestSide::NotYet => {}
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err("the container's exec channel did not come up".into());
        }
        side = shared
            .guest_changed
            .wait_timeout(side, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// One client's frames to the guest, under the stream the broker gave it.
fn from_client(conn: UnixStream, shared: &Shared, to_guest: &Mutex<UnixStream>) {
    let Ok(mut reader) = conn.try_clone() else {
        return;
    };
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let refuse = |writer: &mut UnixStream, why: String| {
        let status = pv_init::status::Status::InitError {
            code: 125,
            message: why,
        };
        let _ =
            Frame::new(Kind::Exit, CLIENT_STREAM, status.to_line().into_bytes()).write_to(writer);
    };
    match Frame::read_from(&mut reader) {
        Ok(Some(f)) if f.kind == Kind::Hello && f.version().is_ok() => {}
        _ => return refuse(&mut writer, "not an hx exec client".into()),
    }
    let _ = Frame::hello().write_to(&mut writer);
    if let Err(why) = guest_listening(shared) {
        return refuse(&mut writer, why);
    }
    let (tx, rx) = mpsc::channel::<Frame>();
    let stream = {
        let mut clients = lock(&shared.clients);
        if clients.len() >= mux::MAX_STREAMS {
            drop(clients);
            return refuse(
                &mut writer,
                format!("too many exec sessions (at most {})", mux::MAX_STREAMS),
            );
        }
        let mut next = lock(&shared.next);
        while *next == 0 || clients.contains_key(&*next) {
            *next = next.wrapping_add(1);
        }
        let stream = *next;
        *next = next.wrapping_add(1);
        clients.insert(
            stream,
            Client {
                queue: tx,
                window: Window::default(),
                socket: conn,
            },
        );
        stream
    };
    // The client's writer: what the guest sent it, in order; ends when the broker drops the
    // client (its Exit, or the guest gone).
    std::thread::spawn(move || {
        for f in rx {
            if f.write_to(&mut writer).is_err() {
                break;
            }
        }
    });
    let to_guest_frame = |f: Frame| {
        let mut g = lock(to_guest);
        f.write_to(&mut *g)
    };
    loop {
        let f = match Frame::read_from(&mut reader) {
            Ok(Some(f)) if f.stream == CLIENT_STREAM => f,
            _ => break,
        };
        match f.kind {
            Kind::Open | Kind::Query | Kind::Stdin | Kind::Resize | Kind::Signal | Kind::Close => {}
            Kind::Credit => {
                if let Some(c) = lock(&shared.clients).get_mut(&stream) {
                    c.window.grant(f.number());
                }
            }
            _ => break,
        }
        if to_guest_frame(Frame { stream, ..f }).is_err() {
            break;
        }
    }
    // The client went away: the guest stops sending it output (its process runs on).
    if lock(&shared.clients).remove(&stream).is_some() {
        let _ = to_guest_frame(Frame::new(Kind::Close, stream, Vec::new()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A guest restored from a checkpoint may still send frames of its old host end before it
    /// greets the new broker: they are dropped, and the channel works once it has greeted.
    #[test]
    fn frames_before_the_guests_hello_are_dropped_not_fatal() {
        let d = tempfile::tempdir().unwrap();
        let (broker_end, mut guest) = UnixStream::pair().unwrap();
        guest
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        serve(std::os::fd::OwnedFd::from(broker_end), d.path()).unwrap();
        Frame::new(Kind::Stdout, 3, b"old session".to_vec())
            .write_to(&mut guest)
            .unwrap();
        Frame::new(Kind::Exit, 1, b"x".to_vec())
            .write_to(&mut guest)
            .unwrap();
        Frame::hello().write_to(&mut guest).unwrap();

        let mut client = UnixStream::connect(d.path().join(SOCKET)).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Frame::hello().write_to(&mut client).unwrap();
        let hello = Frame::read_from(&mut client).unwrap().unwrap();
        assert_eq!(hello.kind, Kind::Hello);
        Frame::new(Kind::Query, CLIENT_STREAM, b"{}".to_vec())
            .write_to(&mut client)
            .unwrap();
        // The guest gets the client's frame: the broker took the guest as listening.
        let f = Frame::read_from(&mut guest).unwrap().unwrap();
        assert_eq!(f.kind, Kind::Query);
        Frame::new(Kind::Answer, f.stream, b"{}".to_vec())
            .write_to(&mut guest)
            .unwrap();
        let answer = Frame::read_from(&mut client).unwrap().unwrap();
        assert_eq!((answer.kind, answer.stream), (Kind::Answer, CLIENT_STREAM));
    }
}
