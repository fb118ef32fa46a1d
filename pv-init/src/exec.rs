//! Starting the workload and supervising it as PID 1.
use crate::devices::{Channels, ControlSource};
use crate::users::{self, Ident};
use crate::InitError;
use nix::sys::signal::{self, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use pv_init::spec::ContainerSpec;
use pv_init::status::{Control, Status};
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The pty master of a `-t` workload (for `resize` control lines), -1 without one.
static TTY_MASTER: AtomicI32 = AtomicI32::new(-1);
/// Set by a `stdin-eof` control line: the input copier drains what is left and closes stdin.
static STDIN_EOF: AtomicBool = AtomicBool::new(false);

pub fn run_workload(
    spec: &ContainerSpec,
    channels: Channels,
    input: Option<std::fs::File>,
) -> Result<Status, InitError> {
    let ident = users::resolve(
        &spec.user,
        &std::fs::read_to_string("/etc/passwd").unwrap_or_default(),
        &std::fs::read_to_string("/etc/group").unwrap_or_default(),
    )?;
    let env = environment(spec, &ident);
    let path_var = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
        .to_string();
    let argv0 = spec
        .args
        .first()
        .ok_or_else(|| InitError::setup("no command specified"))?;
    let program = lookup(argv0, &path_var)?;
    if !Path::new(&spec.cwd).is_dir() {
        std::fs::create_dir_all(&spec.cwd)
            .map_err(|e| InitError::setup(format!("workdir {}: {e}", spec.cwd)))?;
    }

    let cstr = |s: &str| {
        CString::new(s).map_err(|_| InitError::setup(format!("argument {s:?} contains NUL")))
    };
    let c_prog = cstr(&program)?;
    let c_args = spec
        .args
        .iter()
        .map(|a| cstr(a))
        .collect::<Result<Vec<_>, _>>()?;
    let c_env = env.iter().map(|a| cstr(a)).collect::<Result<Vec<_>, _>>()?;
    let c_cwd = cstr(&spec.cwd)?;
    let limits = rlimits(spec)?;

    let mut forwarded = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        forwarded.add(s);
    }
    signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&forwarded), None)
        .map_err(|e| InitError::setup(format!("sigprocmask: {e}")))?;
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| InitError::setup(format!("pipe: {e}")))?;
    // The workload writes to pipes that pv-init copies to the channels: a channel device can be
    // opened only once, and images expect to reopen /dev/stdout (nginx logs to it, like many).
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| InitError::setup(format!("pipe: {e}")))?;
    let (errout_r, errout_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| InitError::setup(format!("pipe: {e}")))?;
    let devnull = std::fs::File::open("/dev/null")
        .map_err(|e| InitError::setup(format!("/dev/null: {e}")))?;
    // `-t`: the workload's stdin, stdout and stderr are a pty's slave; pv-init holds the master.
    let pty = match spec.tty {
        Some(size) => {
            let ws = nix::pty::Winsize {
                ws_row: size.rows,
                ws_col: size.cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            let p = nix::pty::openpty(Some(&ws), None)
                .map_err(|e| InitError::setup(format!("openpty: {e}")))?;
            for fd in [&p.master, &p.slave] {
                let _ = nix::fcntl::fcntl(
                    fd,
                    nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
                );
            }
            Some(p)
        }
        None => None,
    };
    // `-i` without `-t`: a pipe pv-init fills from the input channel.
    let stdin_pipe = match (&input, &pty) {
        (Some(_), None) => Some(
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| InitError::setup(format!("pipe: {e}")))?,
        ),
        _ => None,
    };
    let stdin_fd = stdin_pipe
        .as_ref()
        .map_or(devnull.as_raw_fd(), |(r, _)| r.as_raw_fd());

    // SAFETY: single-threaded PID 1; the child only calls async-signal-safe functions until exec.
    let child = match unsafe { fork() } {
        Err(e) => return Err(InitError::setup(format!("fork: {e}"))),
        Ok(ForkResult::Child) => {
            let fail_at = |step: u8, index: u8, errno: i32| -> ! {
                let mut msg = [0u8; 6];
                msg[0] = step;
                msg[1] = index;
                msg[2..].copy_from_slice(&errno.to_le_bytes());
                // SAFETY: writing a small buffer to our pipe, then exiting without unwinding.
                unsafe {
                    libc::write(err_w.as_raw_fd(), msg.as_ptr().cast(), msg.len());
                    libc::_exit(127);
                }
            };
            let fail = |step: u8, errno: i32| -> ! { fail_at(step, 0, errno) };
            let _ = signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
            // SAFETY: plain syscalls on valid fds/pointers in the forked child.
            unsafe {
                libc::setsid();
                if let Some(p) = &pty {
                    let slave = p.slave.as_raw_fd();
                    libc::ioctl(slave, libc::TIOCSCTTY, 0);
                    libc::dup2(slave, 0);
                    libc::dup2(slave, 1);
                    libc::dup2(slave, 2);
                } else {
                    libc::dup2(stdin_fd, 0);
                    libc::dup2(out_w.as_raw_fd(), 1);
                    libc::dup2(errout_w.as_raw_fd(), 2);
                }
                // As root, before the user changes: a hard limit may be raised here only.
                for (i, (resource, lim)) in limits.iter().enumerate() {
                    if libc::setrlimit(*resource, lim) != 0 {
                        fail_at(4, i as u8, *libc::__errno_location())
                    }
                }
                let groups: Vec<libc::gid_t> = ident.groups.clone();
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
                    fail(1, *libc::__errno_location())
                }
                if libc::setgid(ident.gid) != 0 {
                    fail(1, *libc::__errno_location())
                }
                if libc::setuid(ident.uid) != 0 {
                    fail(1, *libc::__errno_location())
                }
                if libc::chdir(c_cwd.as_ptr()) != 0 {
                    fail(2, *libc::__errno_location())
                }
                let argv: Vec<*const libc::c_char> = c_args
                    .iter()
                    .map(|a| a.as_ptr())
                    .chain(std::iter::once(std::ptr::null()))
                    .collect();
                let envp: Vec<*const libc::c_char> = c_env
                    .iter()
                    .map(|a| a.as_ptr())
                    .chain(std::iter::once(std::ptr::null()))
                    .collect();
                libc::execve(c_prog.as_ptr(), argv.as_ptr(), envp.as_ptr());
                fail(3, *libc::__errno_location())
            }
        }
        Ok(ForkResult::Parent { child }) => child,
    };
    drop(err_w);
    drop(out_w);
    drop(errout_w);
    let mut relays = vec![
        relay(out_r, &channels.stdout)?,
        relay(errout_r, &channels.stderr)?,
    ];
    if let Some(p) = pty {
        drop(p.slave);
        let dup = |fd: &std::os::fd::OwnedFd| {
            fd.try_clone()
                .map_err(|e| InitError::setup(format!("pty: {e}")))
        };
        // The master reads EIO once the last slave is closed: the relay ends there.
        relays.push(relay(dup(&p.master)?, &channels.stdout)?);
        if let Some(input) = input {
            copy_input(input, std::fs::File::from(dup(&p.master)?));
        }
        TTY_MASTER.store(p.master.as_raw_fd(), Ordering::Relaxed);
        std::mem::forget(p.master);
    } else if let (Some(input), Some((r, w))) = (input, stdin_pipe) {
        drop(r);
        copy_input(input, std::fs::File::from(w));
    }
    let mut buf = Vec::new();
    let _ = std::fs::File::from(err_r).read_to_end(&mut buf);
    if buf.len() == 6 {
        let errno = i32::from_le_bytes(buf[2..6].try_into().unwrap());
        let _ = waitpid(child, None);
        let e = std::io::Error::from_raw_os_error(errno);
        return Err(match buf[0] {
            4 => {
                let r = &spec.rlimits[usize::from(buf[1]).min(spec.rlimits.len() - 1)];
                let show = |v: u64| {
                    if v == pv_init::spec::RLIM_UNLIMITED {
                        "unlimited".to_string()
                    } else {
                        v.to_string()
                    }
                };
                InitError::setup(format!(
                    "setting ulimit {}={}:{}: {}",
                    r.name,
                    show(r.soft),
                    show(r.hard),
                    crate::errno_text(&e)
                ))
            }
            1 => InitError {
                code: 126,
                message: format!("setting user {:?}: {e}", spec.user),
            },
            2 => InitError {
                code: 126,
                message: format!(
                    "chdir to cwd ({:?}) set in config.json failed: {e}",
                    spec.cwd
                ),
            },
            _ if errno == libc::ENOENT => InitError {
                code: 127,
                message: format!("exec: {argv0:?}: stat {program}: no such file or directory"),
            },
            _ => InitError {
                code: 126,
                message: format!("exec: {argv0:?}: {}", e.to_string().to_lowercase()),
            },
        });
    }
    report_started(child);
    supervise(child, forwarded, channels, relays)
}

/// The spec's limits as setrlimit arguments, checked before the fork (at most one per resource,
/// so their index fits the error message's byte).
fn rlimits(
    spec: &ContainerSpec,
) -> Result<Vec<(libc::__rlimit_resource_t, libc::rlimit)>, InitError> {
    let mut out: Vec<(libc::__rlimit_resource_t, libc::rlimit)> = Vec::new();
    for r in &spec.rlimits {
        let resource = match r.name.as_str() {
            "core" => libc::RLIMIT_CORE,
            "cpu" => libc::RLIMIT_CPU,
            "data" => libc::RLIMIT_DATA,
            "fsize" => libc::RLIMIT_FSIZE,
            "locks" => libc::RLIMIT_LOCKS,
            "memlock" => libc::RLIMIT_MEMLOCK,
            "msgqueue" => libc::RLIMIT_MSGQUEUE,
            "nice" => libc::RLIMIT_NICE,
            "nofile" => libc::RLIMIT_NOFILE,
            "nproc" => libc::RLIMIT_NPROC,
            "rss" => libc::RLIMIT_RSS,
            "rtprio" => libc::RLIMIT_RTPRIO,
            "rttime" => libc::RLIMIT_RTTIME,
            "sigpending" => libc::RLIMIT_SIGPENDING,
            "stack" => libc::RLIMIT_STACK,
            _ => return Err(InitError::setup(format!("unknown ulimit {:?}", r.name))),
        };
        if r.soft > r.hard {
            return Err(InitError::setup(format!(
                "ulimit {}: soft limit {} above hard limit {}",
                r.name, r.soft, r.hard
            )));
        }
        if out.iter().any(|(res, _)| *res == resource) {
            return Err(InitError::setup(format!("ulimit {} given twice", r.name)));
        }
        // RLIM_UNLIMITED is u64::MAX, which is RLIM_INFINITY.
        out.push((
            resource,
            libc::rlimit {
                rlim_cur: r.soft,
                rlim_max: r.hard,
            },
        ));
    }
    Ok(out)
}

fn report_started(child: Pid) {
    let uptime_ms = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|f| f.parse::<f64>().ok())
        })
        .map(|f| (f * 1000.0) as u64)
        .unwrap_or(0);
    crate::report(&Status::Started {
        pid: child.as_raw(),
        uptime_ms,
    });
}

fn environment(spec: &ContainerSpec, ident: &Ident) -> Vec<String> {
    let mut env: Vec<String> = Vec::new();
    let has = |env: &Vec<String>, k: &str| env.iter().any(|e| e.split('=').next() == Some(k));
    for e in &spec.env {
        let key = e.split('=').next().unwrap_or("");
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    if !has(&env, "PATH") {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    if !has(&env, "HOSTNAME") {
        env.push(format!("HOSTNAME={}", spec.hostname));
    }
    if !has(&env, "HOME") {
        env.push(format!(
            "HOME={}",
            if ident.home.is_empty() {
                "/"
            } else {
                &ident.home
            }
        ));
    }
    env
}

/// argv[0] as docker resolves it: a name with '/' as is, else the first executable in PATH.
fn lookup(argv0: &str, path: &str) -> Result<String, InitError> {
    if argv0.contains('/') {
        return match std::fs::metadata(argv0) {
            Ok(m) if m.is_dir() => Err(InitError {
                code: 126,
                message: format!("exec: {argv0:?}: is a directory"),
            }),
            Ok(m) if m.permissions().mode() & 0o111 == 0 => Err(InitError {
                code: 126,
                message: format!("exec: {argv0:?}: permission denied"),
            }),
            Ok(_) => Ok(argv0.to_string()),
            Err(_) => Err(InitError {
                code: 127,
                message: format!("exec: {argv0:?}: stat {argv0}: no such file or directory"),
            }),
        };
    }
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let cand = format!("{dir}/{argv0}");
        if let Ok(m) = std::fs::metadata(&cand) {
            if m.is_file() && m.permissions().mode() & 0o111 != 0 {
                return Ok(cand);
            }
        }
    }
    Err(InitError {
        code: 127,
        message: format!("exec: {argv0:?}: executable file not found in $PATH"),
    })
}

/// Copies the `-i` input to the workload (its stdin pipe or pty master) on a thread of its own,
/// until the input ends (a read of 0, or `stdin-eof` on Xen, after what is already there) or
/// the workload stops reading. Dropping `to` is the workload's EOF (a pipe; for a pty the
/// master stays open elsewhere).
fn copy_input(mut from: std::fs::File, mut to: std::fs::File) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        loop {
            let mut fds = [nix::poll::PollFd::new(
                from.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            let ready =
                nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(200u16)).unwrap_or(0) > 0;
            let eof_asked = STDIN_EOF.load(Ordering::Relaxed);
            if !ready && eof_asked {
                break;
            }
            if ready && !pass_on(&mut from, &mut to, &mut buf) {
                break;
            }
        }
    });
}

/// One read from `from` written to `to`; false once the copy is over (end of input, an error,
/// or nobody reading `to`).
fn pass_on(from: &mut std::fs::File, to: &mut std::fs::File, buf: &mut [u8]) -> bool {
    match from.read(buf) {
        Ok(0) => false,
        Ok(n) => to.write_all(&buf[..n]).is_ok(),
        Err(e) => e.kind() == std::io::ErrorKind::Interrupted,
    }
}

/// Copies a workload pipe to its channel until every writer has closed it.
fn relay(
    from: std::os::fd::OwnedFd,
    to: &std::fs::File,
) -> Result<std::thread::JoinHandle<()>, InitError> {
    let mut to = to
        .try_clone()
        .map_err(|e| InitError::setup(format!("channel: {e}")))?;
    let mut from = std::fs::File::from(from);
    Ok(std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while pass_on(&mut from, &mut to, &mut buf) {}
    }))
}

/// PID 1's loop: forward signals and control lines to the workload, reap everything, and return
/// how the workload ended.
fn supervise(
    child: Pid,
    signals: SigSet,
    channels: Channels,
    relays: Vec<std::thread::JoinHandle<()>>,
) -> Result<Status, InitError> {
    let status = supervise_loop(child, signals, channels.control)?;
    // Every writer is dead by now (finish): the relays end at EOF.
    for r in relays {
        let _ = r.join();
    }
    // On Xen the workload's output is the console: let it reach the ring before power-off.
    let _ = nix::sys::termios::tcdrain(&channels.stdout);
    Ok(status)
}

fn deliver(child: Pid, line: &str) {
    match Control::parse_line(line) {
        Some(Control::Signal(n)) => {
            if let Ok(sig) = Signal::try_from(n) {
                let _ = signal::kill(child, sig);
            }
        }
        Some(Control::Resize { rows, cols }) => {
            let master = TTY_MASTER.load(Ordering::Relaxed);
            if master >= 0 {
                let ws = libc::winsize {
                    ws_row: rows,
                    ws_col: cols,
                    ws_xpixel: 0,
                    ws_ypixel: 0,
                };
                // SAFETY: TIOCSWINSZ on our pty master with a valid winsize; the kernel sends
                // SIGWINCH to the terminal's foreground process group.
                unsafe { libc::ioctl(master, libc::TIOCSWINSZ, &ws) };
            }
        }
        Some(Control::StdinEof) => STDIN_EOF.store(true, Ordering::Relaxed),
        None => {}
    }
}

/// A control watch fired: the node holds hx's last few numbered lines (a bounded,
/// guest-readable value; empty at the registration's initial event). `last` is the number of
/// the last line delivered.
fn deliver_from_xenstore(child: Pid, client: &mut xenstore_wire::Client, last: &mut u64) {
    if let Ok(Some(v)) = client.read(crate::devices::XEN_CONTROL_NODE) {
        if v.len() <= 4096 {
            let (lines, top) =
                pv_init::status::control_log::newer(&String::from_utf8_lossy(&v), *last);
            *last = top;
            for l in lines {
                deliver(child, &l);
            }
        }
    }
}

fn supervise_loop(
    child: Pid,
    signals: SigSet,
    control: ControlSource,
) -> Result<Status, InitError> {
    let sfd = SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| InitError::setup(format!("signalfd: {e}")))?;
    let mut control = control;
    let mut control_buf = Vec::new();
    let mut control_ok = true;
    let mut control_last = 0;
    loop {
        if let ControlSource::Xenstore(client) = &mut control {
            while client.queued_event().is_some() {
                deliver_from_xenstore(child, client, &mut control_last);
            }
        }
        let mut fds = vec![nix::poll::PollFd::new(
            sfd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        if control_ok {
            let fd = match &control {
                ControlSource::File(f) => f.as_fd(),
                ControlSource::Xenstore(c) => c.fd(),
            };
            fds.push(nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN));
        }
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(1000u16));
        let sig_ready = fds[0]
            .revents()
            .is_some_and(|r| r.contains(nix::poll::PollFlags::POLLIN));
        let ctl_ready = fds
            .get(1)
            .and_then(|f| f.revents())
            .unwrap_or(nix::poll::PollFlags::empty());
        drop(fds);
        if ctl_ready.contains(nix::poll::PollFlags::POLLIN) {
            match &mut control {
                ControlSource::File(f) => {
                    let mut buf = [0u8; 256];
                    match f.read(&mut buf) {
                        Ok(0) | Err(_) => control_ok = false,
                        Ok(n) => {
                            control_buf.extend_from_slice(&buf[..n]);
                            while let Some(pos) = control_buf.iter().position(|b| *b == b'\n') {
                                let line: Vec<u8> = control_buf.drain(..=pos).collect();
                                deliver(child, &String::from_utf8_lossy(&line));
                            }
                            control_buf.truncate(4096);
                        }
                    }
                }
                ControlSource::Xenstore(client) => match client.next_event() {
                    Ok(_) => deliver_from_xenstore(child, client, &mut control_last),
                    Err(_) => control_ok = false,
                },
            }
        } else if ctl_ready
            .intersects(nix::poll::PollFlags::POLLHUP | nix::poll::PollFlags::POLLERR)
        {
            // The host end is not connected: stop polling it so the loop doesn't spin.
            control_ok = false;
        }
        if sig_ready {
            while let Ok(Some(info)) = sfd.read_signal() {
                let signo = info.ssi_signo as i32;
                if signo != libc::SIGCHLD {
                    if let Ok(sig) = Signal::try_from(signo) {
                        let _ = signal::kill(child, sig);
                    }
                }
            }
        }
        // Reap everything; the workload's end is the container's end.
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => {
                    return Ok(finish(Status::Exited { code }))
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => {
                    return Ok(finish(Status::Signaled { signal: sig as i32 }))
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }
}

/// Kills what the workload left behind and flushes.
fn finish(status: Status) -> Status {
    let _ = signal::kill(Pid::from_raw(-1), Signal::SIGKILL);
    while waitpid(Pid::from_raw(-1), None).is_ok() {}
    let _ = std::io::stdout().flush();
    status
}
