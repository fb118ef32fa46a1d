//! The exec agent: while the workload runs, pv-init serves `hx exec` sessions over the exec
//! channel (pv_init::mux): each Open starts a process in the container (process::spawn), its
//! output goes back as frames within the host's credit, its input comes in within ours, and its
//! end is reported once its output is out. The workload's end ends every session (finish()
//! kills them; `reaped` reports them).
use crate::process;
use nix::sys::signal::{self, Signal};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use pv_init::mux::{self, ExecRequest, Frame, Kind, Window};
use pv_init::spec::ContainerSpec;
use pv_init::status::Status;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Most exits of unknown children kept for a session that has not registered its pid yet.
const MAX_UNCLAIMED: usize = 64;

struct Agent {
    out: Mutex<std::fs::File>,
    spec: ContainerSpec,
    sessions: Mutex<HashMap<u32, Arc<Session>>>,
    reaper: Mutex<Reaper>,
    /// Which host end the sessions belong to: bumped when a restore brings a new one
    /// (`host_reconnected`); frames of older sessions are not sent to the new one.
    generation: AtomicU64,
    /// Which channel `serve` reads: bumped when a restore on Xen replaces the vchan (and with
    /// it the socket the agent reads); a reader of an older one ends.
    transport: AtomicU64,
}

/// Exit statuses between the supervise loop (which reaps every child) and the sessions.
#[derive(Default)]
struct Reaper {
    waiting: HashMap<i32, mpsc::Sender<WaitStatus>>,
    /// Exits reaped before their session registered the pid (oldest first).
    unclaimed: Vec<(i32, WaitStatus)>,
}

struct Session {
    stream: u32,
    /// The host end it was opened by (`Agent::generation`).
    generation: u64,
    pid: AtomicI32,
    /// What we may still send the host on this stream, and a wake-up when it grants more.
    credit: Mutex<Window>,
    credit_granted: Condvar,
    /// What the host may still send us; a host past it loses the session.
    input_window: Mutex<Window>,
    input: Mutex<Option<mpsc::Sender<Vec<u8>>>>,
    pty: Mutex<Option<OwnedFd>>,
    /// The client went away: output is dropped from now on.
    closed: AtomicBool,
    /// A pod member's workload: its client going away (the host's keeper killed) kills it.
    member: bool,
}

static AGENT: OnceLock<Agent> = OnceLock::new();

/// Starts serving the exec channel, if this guest has one (QEMU's `hx.exec` port; on Xen a
/// vchan to dom0, bridged to a socket).
pub fn start(spec: &ContainerSpec) {
    let port = if crate::devices::Backend::detect() == crate::devices::Backend::Xen {
        crate::devices::xen_exec_channel()
    } else {
        crate::devices::exec_port()
    };
    let Some(port) = port else {
        return;
    };
    let Ok(out) = port.try_clone() else { return };
    let agent = Agent {
        out: Mutex::new(out),
        spec: spec.clone(),
        sessions: Mutex::new(HashMap::new()),
        reaper: Mutex::new(Reaper::default()),
        generation: AtomicU64::new(0),
        transport: AtomicU64::new(0),
    };
    if AGENT.set(agent).is_err() {
        return;
    }
    send(Frame::hello());
    std::thread::spawn(move || serve(port, 0));
}

fn agent() -> Option<&'static Agent> {
    AGENT.get()
}

fn send(f: Frame) {
    if let Some(a) = agent() {
        let mut out = a.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = f.write_to(&mut *out);
    }
}

/// Sends a frame of session `s`, unless the host end it was opened by has been replaced: the
/// new broker may have given its stream number to a client of its own.
fn send_for(s: &Session, f: Frame) {
    if let Some(a) = agent() {
        let mut out = a.out.lock().unwrap_or_else(|e| e.into_inner());
        if a.generation.load(Ordering::SeqCst) == s.generation {
            let _ = f.write_to(&mut *out);
        }
    }
}

/// The VM was restored from a checkpoint (the `resumed` control line): its exec channel has a
/// new host end, a broker that knows none of our sessions and waits for our Hello. The old
/// sessions' clients went with the old host: their processes are killed and nothing more is
/// sent for them, then the Hello opens the channel to the new broker.
pub fn host_reconnected() {
    let Some(a) = agent() else { return };
    {
        let mut out = a.out.lock().unwrap_or_else(|e| e.into_inner());
        a.generation.fetch_add(1, Ordering::SeqCst);
        // QEMU's port survives a migration; Xen's vchan does not (its grants and event channel
        // were the saved domain's): a new one, and a new reader, whose first frame is a whole
        // one (what the old socket held, maybe half a frame, goes with it).
        if crate::devices::Backend::detect() == crate::devices::Backend::Xen {
            if let Some(port) = crate::devices::reoffer_xen_exec_channel() {
                if let Ok(o) = port.try_clone() {
                    *out = o;
                    let t = a.transport.fetch_add(1, Ordering::SeqCst) + 1;
                    std::thread::spawn(move || serve(port, t));
                }
            }
        }
        let _ = Frame::hello().write_to(&mut *out);
    }
    let old: Vec<Arc<Session>> = a
        .sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain()
        .map(|(_, s)| s)
        .collect();
    for s in old {
        s.closed.store(true, Ordering::Relaxed);
        s.input.lock().unwrap_or_else(|e| e.into_inner()).take();
        s.credit_granted.notify_all();
        let pid = s.pid.load(Ordering::Relaxed);
        if pid > 0 {
            let _ = signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

fn serve(mut port: std::fs::File, transport: u64) {
    let Some(a) = agent() else { return };
    loop {
        let frame = Frame::read_from(&mut port);
        if a.transport.load(Ordering::SeqCst) != transport {
            return;
        }
        let frame = match frame {
            Ok(Some(f)) => f,
            Ok(None) => {
                // No host end connected yet (or it went away): read again later.
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            Err(e) => {
                crate::console(&format!("{e}; exec channel closed"));
                return;
            }
        };
        let session = a
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&frame.stream)
            .cloned();
        match (frame.kind, session) {
            (Kind::Hello, _) => {
                if let Err(e) = frame.version() {
                    crate::console(&format!("{e}; exec channel closed"));
                    return;
                }
            }
            (Kind::Open, None) => open(a, frame),
            (Kind::Query, None) => {
                std::thread::spawn(move || answer(frame));
            }
            (Kind::Stdin, Some(s)) => {
                let within = s
                    .input_window
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take(frame.payload.len());
                let mut input = s.input.lock().unwrap_or_else(|e| e.into_inner());
                if !within || frame.payload.is_empty() {
                    // The end of input (or a host past its window, which ends it too).
                    input.take();
                } else if let Some(tx) = input.as_ref() {
                    let _ = tx.send(frame.payload);
                }
            }
            (Kind::Resize, Some(s)) => {
                let (rows, cols) = frame.size();
                if let Some(m) = s.pty.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                    let ws = libc::winsize {
                        ws_row: rows,
                        ws_col: cols,
                        ws_xpixel: 0,
                        ws_ypixel: 0,
                    };
                    // SAFETY: TIOCSWINSZ on our pty master with a valid winsize.
                    unsafe { libc::ioctl(m.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
                }
            }
            (Kind::Signal, Some(s)) => {
                let pid = s.pid.load(Ordering::Relaxed);
                if let (true, Ok(sig)) = (pid > 0, Signal::try_from(frame.number() as i32)) {
                    let _ = signal::kill(Pid::from_raw(pid), sig);
                }
            }
            (Kind::Close, Some(s)) => {
                let pid = s.pid.load(Ordering::Relaxed);
                if s.member && pid > 0 {
                    let _ = signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                s.closed.store(true, Ordering::Relaxed);
                s.input.lock().unwrap_or_else(|e| e.into_inner()).take();
                s.credit_granted.notify_all();
            }
            (Kind::Credit, Some(s)) => {
                s.credit
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .grant(frame.number());
                s.credit_granted.notify_all();
            }
            // A duplicate Open, or frames for a session that has ended: nothing to do.
            _ => {}
        }
    }
}

/// A request refused: its stream ends with an init error (125) saying why.
fn refuse(stream: u32, message: String) {
    let status = Status::InitError { code: 125, message };
    send(Frame::new(
        Kind::Exit,
        stream,
        status.to_line().into_bytes(),
    ));
}

/// `hx top` / `hx stats`: one Answer frame (a Top answer trimmed to fit one).
fn answer(frame: Frame) {
    let stream = frame.stream;
    let refuse = |message: String| refuse(stream, message);
    let json = match mux::Query::parse(&frame.payload) {
        Ok(mux::Query::Stats { member: None }) => serde_json::to_vec(&crate::introspect::stats()),
        Ok(mux::Query::Stats {
            member: Some(member),
        }) => {
            if let Err(e) = crate::pod::lookup(&member) {
                return refuse(e.message);
            }
            serde_json::to_vec(&crate::cgroup::stats(&member, crate::introspect::stats()))
        }
        Ok(mux::Query::Limits { member, limits }) => {
            if member == mux::WORKLOAD_GROUP {
                if !crate::cgroup::dir(&member).is_dir() {
                    return refuse(
                        "the container was started without a pids limit: stop and start it \
                         to give it one"
                            .to_string(),
                    );
                }
            } else if let Err(e) = crate::pod::lookup(&member) {
                return refuse(e.message);
            }
            if let Err(e) = crate::cgroup::apply(&member, &limits) {
                return refuse(e.message);
            }
            serde_json::to_vec(&mux::LimitsAnswer { applied: limits })
        }
        Ok(mux::Query::Top) => {
            let mut top = crate::introspect::top();
            loop {
                let j = serde_json::to_vec(&top);
                match j {
                    Ok(ref b) if b.len() > mux::MAX_PAYLOAD && !top.processes.is_empty() => {
                        top.processes.pop();
                        top.more += 1;
                    }
                    _ => break j,
                }
            }
        }
        Err(e) => return refuse(format!("exec channel: bad query: {e}")),
    };
    if let Ok(json) = json {
        send(Frame::new(Kind::Answer, stream, json));
    }
}

fn open(a: &'static Agent, frame: Frame) {
    let stream = frame.stream;
    let refuse = |message: String| refuse(stream, message);
    let req = match ExecRequest::parse(&frame.payload) {
        Ok(r) => r,
        Err(e) => return refuse(e.to_string()),
    };
    let session = Arc::new(Session {
        stream,
        generation: a.generation.load(Ordering::SeqCst),
        pid: AtomicI32::new(0),
        credit: Mutex::new(Window::default()),
        credit_granted: Condvar::new(),
        input_window: Mutex::new(Window::default()),
        input: Mutex::new(None),
        pty: Mutex::new(None),
        closed: AtomicBool::new(false),
        member: req.member.is_some(),
    });
    {
        let mut sessions = a.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if sessions.len() >= mux::MAX_STREAMS {
            return refuse(format!(
                "too many exec sessions (at most {})",
                mux::MAX_STREAMS
            ));
        }
        sessions.insert(stream, session.clone());
    }
    // Input may follow the Open at once: it waits in the channel until the process is there.
    let input_rx = req.stdin.then(|| {
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        *session.input.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        rx
    });
    std::thread::spawn(move || {
        let status = run(a, &session, &req, input_rx);
        if let Some(m) = &req.member {
            crate::pod::teardown(&m.id);
        }
        {
            let mut sessions = a.sessions.lock().unwrap_or_else(|e| e.into_inner());
            // Not a session of a new host end that took the number after a restore.
            if sessions
                .get(&stream)
                .is_some_and(|s| Arc::ptr_eq(s, &session))
            {
                sessions.remove(&stream);
            }
        }
        send_for(
            &session,
            Frame::new(Kind::Exit, stream, status.to_line().into_bytes()),
        );
    });
}

/// One session from start to end: its status.
fn run(
    a: &'static Agent,
    s: &Arc<Session>,
    req: &ExecRequest,
    input_rx: Option<mpsc::Receiver<Vec<u8>>>,
) -> Status {
    if let Some(b) = &req.builtin {
        return builtin(s, b, input_rx);
    }
    let init_error = |e: crate::InitError| Status::InitError {
        code: e.code,
        message: e.message,
    };
    // Whose process this is: the container's (pv-init's root), or a pod member's.
    let mut base = (a.spec.user.clone(), a.spec.cwd.clone(), a.spec.env.clone());
    // An exec gets the workload's capabilities unless it asks for its own.
    let mut privileges = crate::pod::Privileges {
        capabilities: a.spec.capabilities,
        no_new_privileges: a.spec.no_new_privileges,
        seccomp: a.spec.seccomp.clone().map(std::sync::Arc::new),
    };
    let member_root: Option<std::path::PathBuf>;
    let mut member_ns = None;
    let mut member_pid_ns = None;
    let mut cgroup = None;
    let mut devices = None;
    // A member that is not --privileged gets docker's confinement: no devices but its own, a
    // read-only /sys, docker's read-only and masked /proc paths.
    let confined = req.member.is_some() && !process::is_privileged(req.capabilities);
    if let Some(m) = &req.member {
        match crate::cgroup::create(&m.id, &m.limits) {
            Ok(fd) => cgroup = Some(fd),
            // A kernel without cgroups (an older hyper kernel) runs members without limits.
            Err(_) if m.limits.is_none() => {}
            Err(e) => return init_error(e),
        }
        if confined {
            match guard_devices(&m.id, req.capabilities) {
                Ok(fd) => devices = fd,
                Err(e) => return init_error(e),
            }
        }
        match crate::pod::assemble(m, confined) {
            Ok(root) => member_root = Some(root),
            Err(e) => return init_error(e),
        }
        base = ("".into(), "/".into(), Vec::new());
        // A member's start carries its workload's own (None: all, from an older host).
        privileges = crate::pod::Privileges {
            capabilities: req.capabilities,
            no_new_privileges: false,
            seccomp: None,
        };
    } else if let Some(id) = &req.container {
        match crate::pod::lookup(id) {
            Ok(m) => {
                member_root = Some(m.root);
                member_ns = Some(m.ns);
                member_pid_ns = m.pid_ns;
                base = (m.user, m.cwd, m.env);
                privileges = m.privileges;
            }
            Err(e) => return init_error(e),
        }
        // The member's groups, where it has them (see above).
        cgroup = crate::cgroup::procs(id).ok();
        devices = crate::device_filter::procs(id);
    } else {
        // A single container's, where `--pids-limit` made one.
        cgroup = crate::cgroup::workload_procs();
        // Its workload's namespaces.
        match crate::exec::workload_namespaces() {
            Some((mnt, pid)) => {
                member_root = Some(std::path::PathBuf::from("/"));
                member_ns = Some(mnt);
                member_pid_ns = pid;
            }
            None => {
                return init_error(crate::InitError::setup(
                    "the container's workload is not running",
                ))
            }
        }
    }
    // CRI's TARGET: the member is born in a running member's PID namespace.
    let target_pid_ns = match req.member.as_ref().and_then(|m| m.pid_target.as_deref()) {
        Some(t) => match crate::pod::lookup(t) {
            Ok(e) => match e.pid_ns {
                Some(fd) => Some(fd),
                None => {
                    return init_error(crate::InitError::setup(format!(
                        "the target container {t} has no PID namespace of its own"
                    )))
                }
            },
            Err(_) => {
                return init_error(crate::InitError::setup(format!(
                    "the target container {t} is not running in this pod"
                )))
            }
        },
        None => None,
    };
    let enter = match (&member_root, &member_ns) {
        (Some(root), Some(ns)) => process::Enter::Namespace {
            mnt: ns.as_raw_fd(),
            pid: member_pid_ns.as_ref().map(|fd| fd.as_raw_fd()),
            root,
        },
        (Some(root), None) => process::Enter::NewRoot {
            root,
            confined,
            shared_pids: req.member.as_ref().is_some_and(|m| m.shared_pids),
            join_pid: target_pid_ns.as_ref().map(|fd| fd.as_raw_fd()),
        },
        _ => process::Enter::Current,
    };
    let user = if req.user.is_empty() {
        &base.0
    } else {
        &req.user
    };
    let cwd = if req.cwd.is_empty() {
        &base.1
    } else {
        &req.cwd
    };
    if req.capabilities.is_some() {
        privileges.capabilities = req.capabilities;
    }
    if let Some(nnp) = req.no_new_privileges {
        privileges.no_new_privileges = nnp;
    }
    if let Some(s) = &req.seccomp {
        privileges.seccomp = Some(std::sync::Arc::new(s.clone()));
    }
    let ident = match process::ident_in(user, enter.files()) {
        Ok(i) => i,
        Err(e) => return init_error(e),
    };
    let env = process::environment(&base.2, &req.env, &a.spec.hostname, &ident);
    let member_id = req
        .member
        .as_ref()
        .map(|m| m.id.as_str())
        .or(req.container.as_deref());
    let ooms_before = member_id.map_or(0, crate::cgroup::oom_kills);
    let (tx, rx) = mpsc::channel();
    let spawned = process::spawn(
        &process::Process {
            args: &req.args,
            env: &env,
            user,
            cwd,
            create_cwd: req.member.is_some(),
            rlimits: if req.member.is_some() {
                &[]
            } else {
                &a.spec.rlimits
            },
            tty: req.tty,
            stdin: req.stdin,
            setsid: req.tty.is_some() || req.member.is_some(),
            enter,
            cgroups: &[&cgroup, &devices]
                .iter()
                .filter_map(|g| g.as_ref().map(|fd| fd.as_raw_fd()))
                .collect::<Vec<_>>(),
            capabilities: privileges.capabilities,
            no_new_privileges: privileges.no_new_privileges,
            seccomp: privileges.seccomp.as_deref(),
        },
        |pid| register(a, pid, tx),
    );
    let spawned = match spawned {
        Ok(sp) => sp,
        Err(e) => {
            return Status::InitError {
                code: e.code,
                message: e.message,
            }
        }
    };
    let pid = spawned.pid;
    // The namespaces were for the fork: a single container's, held on, would keep its copies
    // of the volumes mounted past the workload's end (exec.rs, finish).
    drop(member_ns);
    drop(member_pid_ns);
    if let (Some(m), Some(root)) = (&req.member, member_root) {
        // The workload has exec'd (spawn returned): its namespace is the member's now.
        crate::pod::register(
            &m.id,
            crate::pod::Member {
                root,
                ns: crate::pod::namespace_of(pid.as_raw(), "mnt"),
                pid_ns: crate::pod::namespace_of(pid.as_raw(), "pid"),
                user: user.clone(),
                cwd: cwd.clone(),
                env: req.env.clone(),
                privileges,
            },
        );
    }
    // The terminal and the pid are in place before the host hears of the start: a resize or
    // signal it sends on hearing finds them.
    if let Some(master) = &spawned.pty {
        *s.pty.lock().unwrap_or_else(|e| e.into_inner()) = master.try_clone().ok();
    }
    s.pid.store(pid.as_raw(), Ordering::Relaxed);
    send_for(s, Frame::u32(Kind::Started, s.stream, pid.as_raw() as u32));
    let mut outputs = Vec::new();
    let mut input_to = spawned.stdin.map(std::fs::File::from);
    if let Some(master) = spawned.pty {
        if let Ok(dup) = master.try_clone() {
            outputs.push(pump(s.clone(), dup, Kind::Stdout));
        }
        if req.stdin {
            input_to = master.try_clone().ok().map(std::fs::File::from);
        }
    }
    for (fd, kind) in [
        (spawned.stdout, Kind::Stdout),
        (spawned.stderr, Kind::Stderr),
    ] {
        if let Some(fd) = fd {
            outputs.push(pump(s.clone(), fd, kind));
        }
    }
    if let (Some(to), Some(input_rx)) = (input_to, input_rx) {
        feed(s, to, input_rx);
    }
    let status = rx.recv().ok();
    // Output still in the pipes is sent before the end; a background process that keeps them
    // open does not hold the session longer than a moment.
    let deadline = Instant::now() + Duration::from_secs(1);
    for o in outputs {
        while !o.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    s.closed.store(true, Ordering::Relaxed);
    s.credit_granted.notify_all();
    s.pty.lock().unwrap_or_else(|e| e.into_inner()).take();
    // Killed by the OOM killer: a SIGKILL while the member's group counted a new OOM kill.
    let oom = |sig: i32| {
        sig == libc::SIGKILL
            && member_id.is_some_and(|id| crate::cgroup::oom_kills(id) > ooms_before)
    };
    match status {
        Some(WaitStatus::Exited(_, code)) => Status::Exited { code },
        Some(WaitStatus::Signaled(_, sig, _)) => Status::Signaled {
            signal: sig as i32,
            oom: oom(sig as i32),
        },
        _ => Status::Signaled {
            signal: libc::SIGKILL,
            oom: false,
        },
    }
}

/// `hx cp`: pv-init packs or unpacks in a thread of its own, through a pipe like a process's.
fn builtin(
    s: &Arc<Session>,
    b: &mux::Builtin,
    input_rx: Option<mpsc::Receiver<Vec<u8>>>,
) -> Status {
    let (r, w) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => {
            return Status::InitError {
                code: 125,
                message: format!("pipe: {e}"),
            }
        }
    };
    send_for(s, Frame::u32(Kind::Started, s.stream, 1));
    let result = match (b.clone(), input_rx) {
        (mux::Builtin::TarFrom { path }, _) => {
            let out = pump(s.clone(), r, Kind::Stdout);
            let packed = pv_init::copy::pack(&path, std::fs::File::from(w));
            let _ = out.join();
            packed
        }
        (mux::Builtin::TarInto { path }, Some(rx)) => {
            feed(s, std::fs::File::from(w), rx);
            pv_init::copy::unpack(std::fs::File::from(r), std::path::Path::new(&path)).map(drop)
        }
        (mux::Builtin::TarInto { .. }, None) => Ok(()),
        (mux::Builtin::ExportRoot, _) => {
            let out = pump(s.clone(), r, Kind::Stdout);
            let packed = pv_init::layer::export_root(std::fs::File::from(w));
            let _ = out.join();
            packed
        }
        (mux::Builtin::Freeze { path }, rx) => {
            let out = pump(s.clone(), r, Kind::Stdout);
            let mut w = std::fs::File::from(w);
            let held = pv_init::freeze::freeze(std::path::Path::new(&path)).map(|frozen| {
                let _ = w.write_all(b"frozen\n");
                drop(w);
                let deadline = Instant::now() + pv_init::freeze::MAX_HOLD;
                if let Some(rx) = rx {
                    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                        if let Err(mpsc::RecvTimeoutError::Disconnected) = rx.recv_timeout(left) {
                            break;
                        }
                    }
                }
                drop(frozen);
            });
            let _ = out.join();
            held
        }
        (mux::Builtin::UpperDiff { pause }, _) => {
            let out = pump(s.clone(), r, Kind::Stdout);
            let packed = pv_init::layer::upper_diff(std::fs::File::from(w), pause);
            let _ = out.join();
            packed
        }
    };
    s.closed.store(true, Ordering::Relaxed);
    match result {
        Ok(()) => Status::Exited { code: 0 },
        Err(e) => Status::InitError {
            code: 125,
            message: e.to_string(),
        },
    }
}

fn register(a: &Agent, pid: Pid, tx: mpsc::Sender<WaitStatus>) {
    let mut r = a.reaper.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(i) = r.unclaimed.iter().position(|(p, _)| *p == pid.as_raw()) {
        let (_, st) = r.unclaimed.remove(i);
        let _ = tx.send(st);
    } else {
        r.waiting.insert(pid.as_raw(), tx);
    }
}

/// A child that is not the workload was reaped (by the supervise loop, or by finish()).
pub fn reaped(st: WaitStatus) {
    let (Some(a), Some(pid)) = (agent(), st.pid()) else {
        return;
    };
    if !matches!(st, WaitStatus::Exited(..) | WaitStatus::Signaled(..)) {
        return;
    }
    let mut r = a.reaper.lock().unwrap_or_else(|e| e.into_inner());
    match r.waiting.remove(&pid.as_raw()) {
        Some(tx) => {
            let _ = tx.send(st);
        }
        None => {
            if r.unclaimed.len() >= MAX_UNCLAIMED {
                r.unclaimed.remove(0);
            }
            r.unclaimed.push((pid.as_raw(), st));
        }
    }
}

/// Waits (at most `wait`) for the sessions to report their ends: the workload has ended and
/// finish() killed their processes.
pub fn drain(wait: Duration) {
    let Some(a) = agent() else { return };
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline
        && !a
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Copies one output of the process to the host as `kind` frames, within the host's credit.
fn pump(s: Arc<Session>, from: OwnedFd, kind: Kind) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut from = std::fs::File::from(from);
        let mut buf = vec![0u8; 32 << 10];
        let mut ended = false;
        while !ended {
            let mut n = match from.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // EIO: a pty whose last slave closed.
                Err(_) => return,
            };
            // Every frame costs the guest an exit to the device model: output that comes in
            // small writes is gathered for up to a millisecond into fewer, fuller frames.
            while n < buf.len() && readable_within(&from, 1) {
                match from.read(&mut buf[n..]) {
                    Ok(0) | Err(_) => {
                        ended = true;
                        break;
                    }
                    Ok(m) => n += m,
                }
            }
            let mut credit = s.credit.lock().unwrap_or_else(|e| e.into_inner());
            while !s.closed.load(Ordering::Relaxed) && !credit.take(n) {
                credit = s
                    .credit_granted
                    .wait_timeout(credit, Duration::from_millis(500))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            drop(credit);
            if !s.closed.load(Ordering::Relaxed) {
                send_for(&s, Frame::new(kind, s.stream, buf[..n].to_vec()));
            }
        }
    })
}

fn readable_within(f: &std::fs::File, ms: u16) -> bool {
    use std::os::fd::AsFd;
    let mut fds = [nix::poll::PollFd::new(
        f.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)).unwrap_or(0) > 0
        && fds[0]
            .revents()
            .is_some_and(|r| r.contains(nix::poll::PollFlags::POLLIN))
}

/// Writes the host's input into the process on a thread of its own, granting the host credit
/// for what was written; the end of input closes the process's stdin (a pipe).
fn feed(s: &Arc<Session>, mut to: std::fs::File, rx: mpsc::Receiver<Vec<u8>>) {
    let s = s.clone();
    std::thread::spawn(move || {
        for data in rx {
            if to.write_all(&data).is_err() {
                break;
            }
            s.input_window
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .grant(mux::cost(data.len()));
            send_for(
                &s,
                Frame::u32(Kind::Credit, s.stream, mux::cost(data.len())),
            );
        }
    });
}

/// A confined member's device cgroup (device_filter.rs): its `cgroup.procs`. Where the kernel
/// has none (an older hyper kernel), a member without CAP_SYS_ADMIN is still kept from devices
/// by its `nodev` mounts; one holding it is refused, naming why.
fn guard_devices(
    id: &str,
    caps: Option<pv_init::spec::Capabilities>,
) -> Result<Option<OwnedFd>, crate::InitError> {
    const CAP_SYS_ADMIN: u32 = 21;
    let sys_admin = caps.is_none_or(|c| c.bounding & (1 << CAP_SYS_ADMIN) != 0);
    match crate::device_filter::create(id) {
        Ok(fd) => Ok(Some(fd)),
        Err(crate::device_filter::FilterError::Unsupported) if !sys_admin => Ok(None),
        Err(e) => Err(crate::InitError::setup(format!(
            "container {id}: its device cgroup{}: {e}",
            if sys_admin {
                " (it holds CAP_SYS_ADMIN)"
            } else {
                ""
            }
        ))),
    }
}
