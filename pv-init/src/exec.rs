//! Starting the workload and supervising it as PID 1.
use crate::devices::{Channels, ControlSource};
use crate::process;
use crate::InitError;
use nix::sys::signal::{self, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use pv_init::host_stop;
use pv_init::spec::ContainerSpec;
use pv_init::status::{Control, Status};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Instant;

/// The pty master of a `-t` workload (for `resize` control lines), -1 without one.
static TTY_MASTER: AtomicI32 = AtomicI32::new(-1);
/// Set by a `stdin-eof` control line: the input copier drains what is left and closes stdin.
static STDIN_EOF: AtomicBool = AtomicBool::new(false);

pub fn run_workload(
    spec: &ContainerSpec,
    channels: Channels,
    input: Option<std::fs::File>,
) -> Result<Status, InitError> {
    let ident = process::ident(&spec.user)?;
    let env = process::environment(&spec.env, &[], &spec.hostname, &ident);
    let mut forwarded = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGPWR,
    ] {
        forwarded.add(s);
    }
    signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&forwarded), None)
        .map_err(|e| InitError::setup(format!("sigprocmask: {e}")))?;
    accept_host_stop();
    // `--pids-limit`: the workload (and each exec, agent.rs) in a group of its own.
    let group = match spec.pids_limit {
        Some(p) => Some(crate::cgroup::create(
            crate::cgroup::WORKLOAD,
            &pv_init::mux::MemberLimits {
                pids_max: Some(p),
                ..Default::default()
            },
        )?),
        None => None,
    };
    // pv-init itself as the workload (a pod's pause, a stopped container's stand-in: both
    // /proc/1/exe) stays in pv-init's PID namespace, where /proc/1 is pv-init, whatever the
    // spec says.
    let is_pv_init = spec.args.first().is_some_and(|a| a == "/proc/1/exe");
    let enter = process::Enter::Own {
        confined: !process::is_privileged(spec.capabilities),
        own_pids: !spec.init && !is_pv_init,
    };
    let spawned = process::spawn(
        &process::Process {
            args: &spec.args,
            env: &env,
            user: &spec.user,
            cwd: &spec.cwd,
            create_cwd: true,
            rlimits: &spec.rlimits,
            tty: spec.tty,
            stdin: input.is_some(),
            setsid: true,
            enter,
            cgroups: group.as_ref().map(|fd| fd.as_raw_fd()).as_slice(),
            capabilities: spec.capabilities,
            no_new_privileges: spec.no_new_privileges,
            seccomp: spec.seccomp.as_ref(),
        },
        |_| {},
    )?;
    let child = spawned.pid;
    remember_namespaces(child);
    let mut relays = Vec::new();
    for out in [spawned.stdout, spawned.stderr].into_iter().flatten() {
        let to = if relays.is_empty() {
            &channels.stdout
        } else {
            &channels.stderr
        };
        relays.push(relay(out, to)?);
    }
    if let Some(master) = spawned.pty {
        let dup = |fd: &std::os::fd::OwnedFd| {
            fd.try_clone()
                .map_err(|e| InitError::setup(format!("pty: {e}")))
        };
        // The master reads EIO once the last slave is closed: the relay ends there.
        relays.push(relay(dup(&master)?, &channels.stdout)?);
        if let Some(input) = input {
            copy_input(input, std::fs::File::from(dup(&master)?));
        }
        TTY_MASTER.store(master.as_raw_fd(), Ordering::Relaxed);
        std::mem::forget(master);
    } else if let (Some(input), Some(w)) = (input, spawned.stdin) {
        copy_input(input, std::fs::File::from(w));
    }
    report_started(child);
    crate::agent::start(spec);
    supervise(child, forwarded, channels, relays)
}

/// The workload's mount and PID namespaces (`hx exec` joins them), held while it runs.
static WORKLOAD_NS: std::sync::Mutex<Option<(OwnedFd, Option<OwnedFd>)>> =
    std::sync::Mutex::new(None);

fn remember_namespaces(child: Pid) {
    // After its exec (spawn returns then): the namespaces are its own by now. Gone already
    // (it ended at once): execs have nothing to enter and fail as into a stopped container.
    if let Some(mnt) = crate::pod::namespace_of(child.as_raw(), "mnt") {
        let pid = crate::pod::namespace_of(child.as_raw(), "pid");
        *WORKLOAD_NS.lock().unwrap_or_else(|e| e.into_inner()) = Some((mnt, pid));
    }
}

/// Dups of the workload's namespaces for an `hx exec` (None: it is not running).
pub fn workload_namespaces() -> Option<(OwnedFd, Option<OwnedFd>)> {
    let ns = WORKLOAD_NS.lock().unwrap_or_else(|e| e.into_inner());
    let (mnt, pid) = ns.as_ref()?;
    Some((
        mnt.try_clone().ok()?,
        pid.as_ref().and_then(|p| p.try_clone().ok()),
    ))
}

/// Routes the hypervisor's poweroff request to PID 1 (pv_init::host_stop). Best effort: a
/// kernel without the sysctl leaves `xl shutdown` unanswered, as before.
fn accept_host_stop() {
    if std::fs::write(
        "/proc/sys/kernel/poweroff_cmd",
        pv_init::host_stop::POWEROFF_CMD,
    )
    .is_err()
    {
        crate::console("cannot set kernel.poweroff_cmd: xl shutdown will be ignored");
    }
}

/// The guest kernel's OOM kills when the workload started (`u64::MAX`: not counted).
static OOM_KILLS_AT_START: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(u64::MAX);

/// The OOM kills the guest kernel has made so far (/proc/vmstat).
fn oom_kills() -> Option<u64> {
    crate::introspect::counter(&std::fs::read_to_string("/proc/vmstat").ok()?, "oom_kill ")
}

/// Whether a workload ended by `signal` was the OOM killer's: a SIGKILL after the kernel
/// counted an OOM kill in the VM (a single container's VM is its limit: docker's OOMKilled).
fn killed_by_oom(signal: i32) -> bool {
    let before = OOM_KILLS_AT_START.load(std::sync::atomic::Ordering::Relaxed);
    signal == libc::SIGKILL && before != u64::MAX && oom_kills().is_some_and(|n| n > before)
}

fn report_started(child: Pid) {
    OOM_KILLS_AT_START.store(
        oom_kills().unwrap_or(u64::MAX),
        std::sync::atomic::Ordering::Relaxed,
    );
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
        // Restored from a checkpoint: the host's clock; a new status log and log relay, which
        // holds the workload's input until it has seen `started` (attach_channel); a new exec
        // broker that waits for our Hello. Off this loop: ending the old exec sessions needs
        // their reaping, done here.
        Some(Control::Resumed { unix_nanos }) => {
            crate::warm_wait::set_wall_clock(unix_nanos);
            crate::restart_status_numbering();
            report_started(child);
            std::thread::spawn(crate::agent::host_reconnected);
        }
        // Off this loop: the NIC may take a while to appear. A failure goes to the kernel's
        // log (the console is the workload's output on Xen).
        Some(Control::NetUp {
            interface,
            mac,
            address,
            prefix,
        }) => {
            std::thread::spawn(move || {
                if let Err(e) = crate::network::hotplugged(&interface, mac, address, prefix) {
                    let _ = std::fs::write("/dev/kmsg", format!("pv-init: {}\n", e.message));
                }
            });
        }
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
    let mut stopping: Option<host_stop::Stopping> = None;
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
        let wait_ms = stopping.map_or(1000, |s| {
            s.wait(Instant::now()).as_millis().min(1000) as u16
        });
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(wait_ms));
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
                match host_stop::classify(info.ssi_signo as i32) {
                    host_stop::Action::Forward(signo) => {
                        if let Ok(sig) = Signal::try_from(signo) {
                            let _ = signal::kill(child, sig);
                        }
                    }
                    host_stop::Action::Stop if stopping.is_none() => {
                        let _ = signal::kill(child, Signal::SIGTERM);
                        stopping = Some(host_stop::Stopping::new(Instant::now()));
                    }
                    host_stop::Action::Stop | host_stop::Action::Reap => {}
                }
            }
        }
        if stopping
            .as_mut()
            .is_some_and(|s| s.kill_due(Instant::now()))
        {
            let _ = signal::kill(child, Signal::SIGKILL);
        }
        // Reap everything; the workload's end is the container's end.
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => {
                    return Ok(finish(Status::Exited { code }))
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => {
                    return Ok(finish(Status::Signaled {
                        signal: sig as i32,
                        oom: killed_by_oom(sig as i32),
                    }));
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(other) => crate::agent::reaped(other),
            }
        }
    }
}

/// Kills what the workload left behind and flushes.
fn finish(status: Status) -> Status {
    let _ = signal::kill(Pid::from_raw(-1), Signal::SIGKILL);
    while let Ok(st) = waitpid(Pid::from_raw(-1), None) {
        crate::agent::reaped(st);
    }
    // Its namespace's copies of the mounts go with it (the last reference, all its processes
    // reaped), before the volumes are released (mounts.rs).
    drop(WORKLOAD_NS.lock().unwrap_or_else(|e| e.into_inner()).take());
    // Every exec session ends with the workload: let them tell their clients how.
    crate::agent::drain(std::time::Duration::from_millis(1500));
    let _ = std::io::stdout().flush();
    status
}
