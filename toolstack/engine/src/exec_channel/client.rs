//! One exec session from the host's side (what `hx exec` and, next, the shim's Exec use): a
//! connection to the container's broker, the request, then output in and input out within the
//! channel's credit. The guest's frames are hostile; the broker passed only allowed kinds.
use super::broker::CLIENT_STREAM;
use anyhow::{bail, Context};
use pv_init::mux::{self, ExecRequest, Frame, Kind, Window};
use pv_init::status::{RawStatus, Status};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// What the caller uses to talk to the session while `Session::run` reads its output.
#[derive(Clone)]
pub struct Control {
    out: Arc<Mutex<UnixStream>>,
    /// What the guest lets us still send as input, and a wake-up when it grants more.
    input: Arc<(Mutex<Window>, Condvar)>,
}

pub struct Session {
    reader: UnixStream,
    control: Control,
}

/// How a session ended.
#[derive(Debug)]
pub enum End {
    /// The guest's status: the process's exit, its signal, or why it could not start.
    Status(Status),
    /// The connection closed without a status: the container stopped, or the guest broke the
    /// channel.
    Lost,
    /// The caller stopped reading once the process ran (its pid).
    Detached(u32),
}

impl Session {
    /// Connects to the broker at `socket` and asks for `req`.
    pub fn open(socket: &Path, req: &ExecRequest) -> anyhow::Result<Session> {
        let mut s = connect(socket)?;
        let payload = serde_json::to_vec(req)?;
        if payload.len() > mux::MAX_REQUEST {
            bail!(
                "exec request of {} bytes (at most {})",
                payload.len(),
                mux::MAX_REQUEST
            );
        }
        Frame::new(Kind::Open, CLIENT_STREAM, payload).write_to(&mut s)?;
        Ok(Session {
            reader: s.try_clone()?,
            control: Control {
                out: Arc::new(Mutex::new(s)),
                input: Arc::new((Mutex::new(Window::default()), Condvar::new())),
            },
        })
    }

    pub fn control(&self) -> Control {
        self.control.clone()
    }

    /// Reads the session to its end: output to `stdout`/`stderr` (credit granted back once
    /// written), `started` called with the guest pid once the process runs: if it returns
    /// false, the session is left there (`End::Detached`).
    pub fn run<'a>(
        mut self,
        stdout: &'a mut dyn Write,
        stderr: &'a mut dyn Write,
        mut started: impl FnMut(u32) -> bool,
    ) -> anyhow::Result<End> {
        loop {
            let f = match Frame::read_from(&mut self.reader) {
                Ok(Some(f)) => f,
                Ok(None) | Err(_) => return Ok(End::Lost),
            };
            match f.kind {
                Kind::Started => {
                    if !started(f.number()) {
                        self.control.detach()?;
                        return Ok(End::Detached(f.number()));
                    }
                }
                Kind::Stdout | Kind::Stderr => {
                    let to = if f.kind == Kind::Stdout {
                        &mut *stdout
                    } else {
                        &mut *stderr
                    };
                    // A reader that went away (`| head`) stops the output, not the session.
                    let _ = to.write_all(&f.payload).and_then(|_| to.flush());
                    self.control.send(Frame::u32(
                        Kind::Credit,
                        CLIENT_STREAM,
                        mux::cost(f.payload.len()),
                    ))?;
                }
                Kind::Credit => {
                    let (w, cv) = &*self.control.input;
                    w.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .grant(f.number());
                    cv.notify_all();
                }
                Kind::Exit => {
                    let status = RawStatus::parse(&f.payload)
                        .and_then(RawStatus::validate)
                        .map_err(|e| anyhow::anyhow!("exec channel: {e}"))?;
                    return Ok(End::Status(status));
                }
                _ => bail!("exec channel: unexpected {:?} frame", f.kind),
            }
        }
    }
}

/// A connection to the broker at `socket`, greeted.
fn connect(socket: &Path) -> anyhow::Result<UnixStream> {
    let (dir, name) = match (socket.parent(), socket.file_name().and_then(|n| n.to_str())) {
        (Some(d), Some(n)) => (d, n),
        _ => bail!("exec channel {}: not a socket path", socket.display()),
    };
    let short = crate::short_path::ShortPath::new(dir, name)?;
    let mut s = UnixStream::connect(short.path())
        .with_context(|| format!("exec channel {}", socket.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    Frame::hello().write_to(&mut s)?;
    match Frame::read_from(&mut s)? {
        Some(f) if f.kind == Kind::Hello => {
            f.version()?;
        }
        _ => bail!("exec channel: the container's relay did not answer"),
    }
    s.set_read_timeout(None)?;
    Ok(s)
}

/// Asks the container's pv-init `query` (`hx top`, `hx stats`): its answer, parsed strictly.
pub fn ask<T: serde::de::DeserializeOwned>(socket: &Path, query: mux::Query) -> anyhow::Result<T> {
    let mut s = connect(socket)?;
    Frame::new(Kind::Query, CLIENT_STREAM, serde_json::to_vec(&query)?).write_to(&mut s)?;
    // Bounded: a guest that never answers does not hold `hx stats` for ever.
    s.set_read_timeout(Some(Duration::from_secs(70)))?;
    loop {
        match Frame::read_from(&mut s) {
            Ok(Some(f)) if f.kind == Kind::Answer => return Ok(mux::parse_answer(&f.payload)?),
            Ok(Some(f)) if f.kind == Kind::Exit => {
                let status = RawStatus::parse(&f.payload)
                    .and_then(RawStatus::validate)
                    .map_err(|e| anyhow::anyhow!("exec channel: {e}"))?;
                match status {
                    Status::InitError { message, .. } => {
                        bail!("{}", crate::sanitize::line(&message))
                    }
                    other => bail!("exec channel: unexpected {other:?}"),
                }
            }
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => bail!("the container stopped"),
        }
    }
}

impl Control {
    fn send(&self, f: Frame) -> anyhow::Result<()> {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        f.write_to(&mut *out).context("exec channel")
    }

    /// Input for the process, waiting for the guest's credit when it has none to give.
    pub fn stdin(&self, data: &[u8]) -> anyhow::Result<()> {
        for chunk in data.chunks(mux::MAX_PAYLOAD / 2) {
            let (w, cv) = &*self.input;
            let mut window = w.lock().unwrap_or_else(|e| e.into_inner());
            while !window.take(chunk.len()) {
                window = cv
                    .wait_timeout(window, Duration::from_millis(500))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            drop(window);
            self.send(Frame::new(Kind::Stdin, CLIENT_STREAM, chunk.to_vec()))?;
        }
        Ok(())
    }

    /// The end of input.
    pub fn close_stdin(&self) -> anyhow::Result<()> {
        self.send(Frame::new(Kind::Stdin, CLIENT_STREAM, Vec::new()))
    }

    pub fn resize(&self, rows: u16, cols: u16) -> anyhow::Result<()> {
        self.send(Frame::resize(CLIENT_STREAM, rows, cols))
    }

    pub fn signal(&self, signal: i32) -> anyhow::Result<()> {
        self.send(Frame::u32(Kind::Signal, CLIENT_STREAM, signal as u32))
    }

    /// Leaves the session: its process runs on, its output is dropped (`hx exec -d`).
    pub fn detach(&self) -> anyhow::Result<()> {
        self.send(Frame::new(Kind::Close, CLIENT_STREAM, Vec::new()))
    }
}
