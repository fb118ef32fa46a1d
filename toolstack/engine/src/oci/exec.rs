//! `exec --process P [--console-socket S] [--detach] [--pid-file F] ID`: another process in
//! the container's guest, through the engine's exec channel. Like `create`, it leaves a
//! process on the host for the caller to reap — the exec keeper (`__exec-keeper`), holding
//! the stdio it was given, relaying the session, exiting with the process's code. `exec`
//! returns once the guest started the process (or with the guest's reason it could not).
use super::{console, record};
use crate::backend;
use crate::container;
use crate::exec_channel::client::{End, Session};
use anyhow::{anyhow, bail, Context};
use pv_init::mux::ExecRequest;
use pv_init::spec::TtySize;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// process.json is a Process object: a few KiB.
pub const PROCESS_MAX: u64 = 1 << 20;
/// The descriptor the exec keeper reports the start on.
const READY_FD: i32 = 3;

pub struct ExecOptions<'a> {
    pub root: &'a Path,
    pub id: &'a str,
    pub process: &'a Path,
    pub console_socket: Option<&'a Path>,
    pub detach: bool,
    pub pid_file: Option<&'a Path>,
    /// The runtime binary with its global options (`__exec-keeper ID REQUEST` is added).
    pub keeper: Command,
}

/// process.json as the guest's exec request.
pub fn parse_process(bytes: &[u8]) -> anyhow::Result<ExecRequest> {
    let p: oci_spec::runtime::Process =
        serde_json::from_slice(bytes).map_err(|e| anyhow!("invalid process JSON: {e}"))?;
    let args = p.args().clone().unwrap_or_default();
    if args.is_empty() || args[0].is_empty() {
        bail!("process.args is empty");
    }
    if args.iter().any(|a| a.contains('\0')) {
        bail!("process.args contains a NUL byte");
    }
    let env = p.env().clone().unwrap_or_default();
    for e in &env {
        match e.split_once('=') {
            Some((k, _)) if !k.is_empty() && !e.contains('\0') => {}
            _ => bail!("process.env entry {e:?} is not KEY=VALUE"),
        }
    }
    let cwd = p.cwd().to_string_lossy().into_owned();
    if !cwd.is_empty() && !cwd.starts_with('/') {
        bail!("process.cwd {cwd:?} is not absolute");
    }
    let tty = p
        .terminal()
        .unwrap_or(false)
        .then(|| match p.console_size() {
            Some(b) if b.height() > 0 && b.width() > 0 => TtySize {
                rows: b.height().min(u16::MAX as u64) as u16,
                cols: b.width().min(u16::MAX as u64) as u16,
            },
            _ => TtySize { rows: 24, cols: 80 },
        });
    Ok(ExecRequest {
        args,
        env,
        user: format!("{}:{}", p.user().uid(), p.user().gid()),
        cwd,
        tty,
        stdin: true,
        builtin: None,
        member: None,
        container: None,
        // Without any: the container's (runc's exec keeps them).
        capabilities: p
            .capabilities()
            .as_ref()
            .map(|c| crate::capabilities::from_oci(Some(c)))
            .transpose()
            .map_err(|e| anyhow!("process.capabilities: {e}"))?,
        no_new_privileges: Some(p.no_new_privileges().unwrap_or(false)),
        // An exec runs under the container's filter (runc's way: process.json has none).
        seccomp: None,
    })
}

/// Returns the exit code for a foreground exec, 0 once a detached one started.
pub fn exec(o: ExecOptions) -> anyhow::Result<i32> {
    let mut bytes = Vec::new();
    std::fs::File::open(o.process)
        .and_then(|f| f.take(PROCESS_MAX + 1).read_to_end(&mut bytes))
        .with_context(|| format!("reading {}", o.process.display()))?;
    if bytes.len() as u64 > PROCESS_MAX {
        bail!("{} is larger than {PROCESS_MAX} bytes", o.process.display());
    }
    let req = parse_process(&bytes).with_context(|| format!("{}", o.process.display()))?;
    let console = o.console_socket.map(console::ConsoleTo::Socket);
    let (mut child, _) = start_process(o.root, o.id, &req, o.keeper, console)?;
    if let Some(f) = o.pid_file {
        hx_images::store::write_atomic(f, child.id().to_string().as_bytes())
            .with_context(|| format!("writing the pid file {}", f.display()))?;
    }
    if o.detach {
        // The caller (a subreaper) reaps it.
        return Ok(0);
    }
    let st = child.wait()?;
    use std::os::unix::process::ExitStatusExt;
    Ok(st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)))
}

/// Starts `req` in the running container `id`: spawns the exec keeper (`keeper` with
/// `__exec-keeper ID REQUEST` added; its stdio is the caller's unless the process has a
/// terminal) and returns once the guest started the process, with the keeper — the caller
/// reaps it; its exit code is the process's — and the pty master when `console` is `Caller`.
pub fn start_process(
    root: &Path,
    id: &str,
    req: &ExecRequest,
    mut keeper: Command,
    console: Option<console::ConsoleTo>,
) -> anyhow::Result<(std::process::Child, Option<OwnedFd>)> {
    let rec = record::load(root, id)?;
    if super::status(root, &rec) != record::Status::Running {
        bail!("cannot exec in a stopped container");
    }
    if req.tty.is_some() && console.is_none() {
        bail!("process.terminal is set: --console-socket is required");
    }
    let pty = match req.tty {
        Some(size) => Some(console::open(size)?),
        None => None,
    };
    let (ready_r, ready_w) = pipe()?;
    let cmd = &mut keeper;
    cmd.arg("__exec-keeper")
        .arg(id)
        .arg(serde_json::to_string(req)?);
    if let Some(p) = &pty {
        cmd.stdin(Stdio::from(p.slave.try_clone()?))
            .stdout(Stdio::from(p.slave.try_clone()?))
            .stderr(Stdio::from(p.slave.try_clone()?));
    }
    let tty = pty.is_some();
    let w = ready_w.as_raw_fd();
    // SAFETY: only async-signal-safe calls (setsid, ioctl, dup2) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            if tty && libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::dup2(w, READY_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting the exec keeper")?;
    drop(ready_w);
    let master = match (&pty, console) {
        (Some(p), Some(to)) => to.deliver(p)?,
        _ => None,
    };
    drop(pty);
    let mut answer = String::new();
    std::fs::File::from(ready_r)
        .take(8192)
        .read_to_string(&mut answer)?;
    match answer.split_once(' ') {
        _ if answer == "ok\n" => Ok((child, master)),
        Some(("err", why)) => {
            let _ = child.wait();
            bail!("exec failed: {}", why.trim_end());
        }
        _ => {
            let _ = child.wait();
            bail!("exec failed: the exec keeper ended before the process started");
        }
    }
}

fn pipe() -> anyhow::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the array on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: fresh descriptors we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `hx-runtime __exec-keeper ID REQUEST`: one exec session, its output to the keeper's stdio,
/// its exit code the keeper's.
pub async fn keep(root: &Path, id: &str, request: &str) -> anyhow::Result<i32> {
    use tokio::signal::unix::{signal, SignalKind};
    // Before the ready answer: a resize sent right after the start must find the handler.
    let mut winch = signal(SignalKind::window_change())?;
    // SAFETY: the runtime's exec passed the ready pipe as descriptor 3; owned from here.
    let mut ready = Some(unsafe { std::fs::File::from_raw_fd(READY_FD) });
    let mut fail = |why: &str| {
        if let Some(mut r) = ready.take() {
            let _ = write!(r, "err {}", crate::sanitize::line(why));
        }
    };
    let session = (|| -> anyhow::Result<(Session, bool)> {
        let mut req: ExecRequest = serde_json::from_str(request)?;
        let rec = record::load(root, id)?;
        let engine_id = rec.engine_id.clone().context("not created")?;
        let c = container::load(root, &engine_id)?;
        if c.is_pod_member() {
            // A pod member's processes run in its own root inside the pod's VM.
            req.container = Some(c.id.clone());
            crate::pod::wait_member_started(root, &c)?;
        }
        let be = backend::for_container(&c, root)?;
        let dir = container::dir(root, &c.id);
        let socket = be
            .exec_socket(&dir)
            .ok_or_else(|| anyhow!("this backend has no exec channel"))?;
        Ok((Session::open(&socket, &req)?, req.tty.is_some()))
    })();
    let (session, tty) = match session {
        Ok(s) => s,
        Err(e) => {
            fail(&format!("{e:#}"));
            return Err(e);
        }
    };
    let control = session.control();
    {
        let control = control.clone();
        std::thread::spawn(move || {
            // SAFETY: descriptor 0 is open for the keeper's life; ManuallyDrop never closes it.
            let stdin = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(0) });
            if crate::input_copy::copy_until_eof(&*stdin, 16 << 10, |b| control.stdin(b)) {
                let _ = control.close_stdin();
            }
        });
    }
    let reading = tokio::task::spawn_blocking(move || {
        let (mut out, mut err) = (super::keeper::Fd::new(1), super::keeper::Fd::new(2));
        let mut ready = ready;
        let end = session.run(&mut out, &mut err, |_| {
            if let Some(mut r) = ready.take() {
                let _ = r.write_all(b"ok\n");
            }
            true
        });
        (end, ready)
    });
    tokio::pin!(reading);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let (end, mut ready) = loop {
        tokio::select! {
            r = &mut reading => break r?,
            _ = winch.recv(), if tty => {
                if let Some((rows, cols)) = super::keeper::terminal_size() {
                    let _ = control.resize(rows, cols);
                }
            }
            _ = term.recv() => { let _ = control.signal(libc::SIGTERM); }
            _ = int.recv() => { let _ = control.signal(libc::SIGINT); }
            _ = hup.recv() => { let _ = control.signal(libc::SIGHUP); }
        }
    };
    let mut fail = |why: &str| {
        if let Some(mut r) = ready.take() {
            let _ = write!(r, "err {}", crate::sanitize::line(why));
        }
    };
    match end? {
        End::Status(pv_init::status::Status::InitError { code, message }) => {
            fail(&message);
            Ok(code)
        }
        End::Status(s) => Ok(s.exit_code().unwrap_or(125)),
        End::Detached(_) => Ok(0),
        End::Lost => {
            fail("the container stopped");
            Ok(137)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_shim_process_becomes_an_exec_request() {
        let p = serde_json::json!({
            "terminal": true, "consoleSize": {"height": 30, "width": 100},
            "user": {"uid": 1000, "gid": 10}, "args": ["sh", "-c", "id"],
            "env": ["PATH=/bin", "A=b=c"], "cwd": "/tmp", "futureField": true
        });
        let r = parse_process(p.to_string().as_bytes()).unwrap();
        assert_eq!(r.args, ["sh", "-c", "id"]);
        assert_eq!(r.user, "1000:10");
        assert_eq!(r.cwd, "/tmp");
        assert_eq!(
            r.tty,
            Some(TtySize {
                rows: 30,
                cols: 100
            })
        );
        assert!(r.stdin);
    }

    #[test]
    fn a_bad_process_is_named() {
        let bad = |p: serde_json::Value| {
            format!("{:#}", parse_process(p.to_string().as_bytes()).unwrap_err())
        };
        assert!(bad(serde_json::json!({"user": {}, "args": [], "cwd": "/"})).contains("args"));
        assert!(bad(serde_json::json!({"user": {}, "args": ["x"], "cwd": "rel"})).contains("cwd"));
        assert!(
            bad(serde_json::json!({"user": {}, "args": ["x"], "cwd": "/", "env": ["NOEQ"]}))
                .contains("NOEQ")
        );
        assert!(bad(serde_json::json!({"args": "x", "cwd": "/"})).contains("invalid"));
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_process(&bytes);
        }

        #[test]
        fn any_process_shape_parses_or_is_refused(
            args in proptest::collection::vec("[a-z\\x00 ]{0,4}", 0..3),
            env in proptest::collection::vec("[A-Z=\\x00]{0,4}", 0..3),
            cwd in "[a-z/]{0,4}",
            rows in 0u64..100_000,
        ) {
            let p = serde_json::json!({"terminal": true, "consoleSize": {"height": rows, "width": 80},
                "user": {"uid": 0, "gid": 0}, "args": args, "env": env, "cwd": cwd});
            if let Ok(r) = parse_process(p.to_string().as_bytes()) {
                prop_assert!(!r.args.is_empty());
                prop_assert!(r.tty.is_some());
            }
        }
    }
}
