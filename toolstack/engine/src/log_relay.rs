//! The log relay, run as `hx __log-relay DIR` (hidden; `spawn` starts it): writes one QEMU
//! container's guest output to its log files within caps (logfile.rs), the way podman's
//! conmon does. QEMU gets connected sockets for the
//! serial console and the hx.stdout/hx.stderr/hx.status ports instead of files it would grow
//! without bound; the relay holds their other ends as fds 3.. (STREAMS order) and holds an
//! exclusive flock on `relay.lock` (fd 7) for its whole life, so hx can tell when the last of
//! the guest's output is on disk (`Qemu::is_running`). It exits when QEMU has closed every
//! socket, i.e. when the VM is gone, however it ended.
use crate::logfile::{self, Limits, RotatingWriter};
use crate::output_log::{self, Framer, RecordBatch, Stream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// The streams, as fds FIRST_FD, FIRST_FD + 1, ... of the relay.
pub const STREAMS: [&str; 4] = ["console", "stdout", "stderr", "status"];
pub const FIRST_FD: i32 = 3;
/// The relay's end of `relay.lock`, locked by hx before it spawned the relay.
pub const LOCK_FD: i32 = FIRST_FD + STREAMS.len() as i32;
pub const LOCK_FILE: &str = "relay.lock";
/// The relay's end of the exec channel (exec_channel::broker), after the lock.
pub const EXEC_FD: i32 = LOCK_FD + 1;
/// The relay's end of QEMU's own stdout and stderr, after the exec channel: written to
/// `qemu.log` within HOST_LOG's caps (a guest can make QEMU report an error per page it
/// balloons, and QEMU's stderr is no place for an unbounded file).
pub const HOST_LOG_FD: i32 = EXEC_FD + 1;
/// The relay's end of the `hx.stdin` port (`-i` only: attach_channel), after QEMU's log.
pub const STDIN_FD: i32 = HOST_LOG_FD + 1;
/// Where QEMU's own messages go, and their caps.
pub const HOST_LOG_FILE: &str = "qemu.log";
pub const HOST_LOG: Limits = Limits {
    max_size: 1 << 20,
    max_file: 2,
};

/// The caps of a stream: the console and status logs keep to their own smaller defaults, or
/// to the configured output caps when those are smaller still.
pub fn limits(stream: &str, output: Limits) -> Limits {
    let at_most = |l: Limits| Limits {
        max_size: l.max_size.min(output.max_size),
        max_file: l.max_file.min(output.max_file),
    };
    match stream {
        "console" => at_most(logfile::CONSOLE),
        "status" => at_most(logfile::STATUS),
        _ => output,
    }
}

/// The relay process's body (`hx __log-relay DIR --max-size N --max-file N`): returns when
/// QEMU has closed every socket.
pub fn run(dir: &Path, max_size: u64, max_file: u32) -> anyhow::Result<()> {
    let output = Limits {
        max_size: max_size.max(1024),
        max_file: max_file.max(1),
    };
    relay(dir, output)
}

fn relay(dir: &Path, output_limits: Limits) -> anyhow::Result<()> {
    use anyhow::Context;
    // SAFETY: the lock fd was dup2'ed there by hx (qemu.rs) and nothing else owns it; it stays
    // open (and locked) until this process exits.
    let _lock = (unsafe { libc::fcntl(LOCK_FD, libc::F_GETFD) } >= 0)
        .then(|| unsafe { OwnedFd::from_raw_fd(LOCK_FD) });
    // SAFETY: checking whether the fd exists before taking ownership of it (hx passed it).
    if unsafe { libc::fcntl(EXEC_FD, libc::F_GETFD) } >= 0 {
        let guest = unsafe { OwnedFd::from_raw_fd(EXEC_FD) };
        crate::exec_channel::broker::serve(guest, dir).context("exec channel")?;
    }
    // SAFETY: as above.
    let mut watch = None;
    if unsafe { libc::fcntl(STDIN_FD, libc::F_GETFD) } >= 0 {
        let guest = unsafe { OwnedFd::from_raw_fd(STDIN_FD) };
        let started = std::sync::Arc::new(crate::attach_channel::GuestStarted::default());
        // Both written by hx before it started the VM: the spec (a terminal changes docker's
        // stdin-once rule) and the record (StdinOnce).
        let tty = std::fs::read(dir.join("spec.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<pv_init::spec::ContainerSpec>(&b).ok())
            .is_some_and(|s| s.tty.is_some());
        let stdin_once = std::fs::read(dir.join(crate::container::STATE_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice::<crate::container::Container>(&b).ok())
            .is_some_and(|c| c.stdin_once);
        crate::attach_channel::serve(guest, dir, started.clone(), tty, stdin_once)
            .context("input channel")?;
        watch = Some(crate::attach_channel::StatusWatch::new(started));
    }
    // stdout and stderr go to one framed log (output_log.rs), in arrival order; the console
    // and status streams to their own raw files.
    let mut open: Vec<(OwnedFd, Sink, &str)> = Vec::new();
    let mut output: Option<RotatingWriter> = None;
    for (i, name) in STREAMS.iter().enumerate() {
        let fd = FIRST_FD + i as i32;
        // SAFETY: checking whether the fd exists before taking ownership of it.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            continue;
        }
        // SAFETY: hx passed this fd to the relay alone.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let sink = match *name {
            "stdout" | "stderr" => {
                if output.is_none() {
                    let path = dir.join(output_log::FILE);
                    output = Some(
                        RotatingWriter::open(&path, output_limits)
                            .with_context(|| format!("{}", path.display()))?,
                    );
                }
                Sink::Output(if *name == "stdout" {
                    Stream::Stdout
                } else {
                    Stream::Stderr
                })
            }
            _ => {
                let path = dir.join(format!("{name}.log"));
                Sink::Raw(
                    RotatingWriter::open(&path, limits(name, output_limits))
                        .with_context(|| format!("{}", path.display()))?,
                )
            }
        };
        open.push((fd, sink, name));
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(HOST_LOG_FD, libc::F_GETFD) } >= 0 {
        let fd = unsafe { OwnedFd::from_raw_fd(HOST_LOG_FD) };
        let path = dir.join(HOST_LOG_FILE);
        let w =
            RotatingWriter::open(&path, HOST_LOG).with_context(|| format!("{}", path.display()))?;
        open.push((fd, Sink::Raw(w), "qemu"));
    }
    let mut framer = Framer::new(output_limits);
    let mut batch = RecordBatch::default();
    let mut buf = vec![0u8; 64 << 10];
    while !open.is_empty() {
        let mut fds: Vec<libc::pollfd> = open
            .iter()
            .map(|(fd, ..)| libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // An unfinished line is written as it is after a quiet spell (a prompt, a progress
        // bar): followers see it without waiting for its end.
        let timeout = if framer.has_pending() {
            LINE_WAIT_MS
        } else {
            -1
        };
        // SAFETY: fds is a valid array of pollfds for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.into());
        }
        if n == 0 {
            framer.flush(&mut batch);
        }
        let now = output_log::now_nanos();
        let mut done = Vec::new();
        for (i, p) in fds.iter().enumerate() {
            if p.revents == 0 {
                continue;
            }
            let (fd, sink, name) = &mut open[i];
            // SAFETY: reading into our buffer from a socket we own.
            let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            match n {
                n if n > 0 => {
                    let data = &buf[..n as usize];
                    if *name == "status" {
                        if let Some(watch) = watch.as_mut() {
                            watch.feed(data);
                        }
                    }
                    match sink {
                        Sink::Raw(w) => w
                            .write(data)
                            .with_context(|| format!("writing {name}.log"))?,
                        Sink::Output(stream) => framer.feed(*stream, now, data, &mut batch),
                    }
                }
                0 => done.push(i),
                _ => {
                    let e = std::io::Error::last_os_error();
                    if !matches!(
                        e.kind(),
                        std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
                    ) {
                        done.push(i);
                    }
                }
            }
        }
        if !done.is_empty() {
            framer.flush(&mut batch);
        }
        if let Some(w) = output.as_mut() {
            batch
                .write_to(w)
                .with_context(|| format!("writing {}", output_log::FILE))?;
        }
        for i in done.into_iter().rev() {
            open.remove(i);
        }
    }
    Ok(())
}

/// How long an unfinished line waits for its end before it is written as a record.
const LINE_WAIT_MS: i32 = 50;

enum Sink {
    Raw(RotatingWriter),
    Output(Stream),
}

/// QEMU's ends of the relay's sockets.
pub struct Ends {
    /// In STREAMS order then the exec channel's, then with `stdin` (`-i`) the `hx.stdin`
    /// port's: for `-chardev socket,fd=N`.
    pub chardevs: Vec<OwnedFd>,
    /// For QEMU's stdout and stderr (`qemu.log`, capped).
    pub host_log: OwnedFd,
}

/// Starts the relay for the container in `dir` (in its own session, so it outlives `hx run`
/// like QEMU does) and returns QEMU's ends of its connected, close-on-exec sockets (the relay
/// holds the workload's input for the container's life and lends it to attach clients:
/// attach_channel). Whoever holds them last (QEMU once it runs, hx until then) decides when
/// the relay sees EOF and exits, so a VM that fails to start or an hx killed before QEMU
/// started leaves no relay behind.
pub fn spawn(
    dir: &Path,
    output: Limits,
    stderr: std::fs::File,
    stdin: bool,
) -> anyhow::Result<Ends> {
    use anyhow::Context;
    use std::os::unix::process::CommandExt;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))
        .context(LOCK_FILE)?;
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(std::io::Error::last_os_error()).context("locking relay.lock");
    }
    let mut qemu_ends = Vec::new();
    let mut relay_ends = Vec::new();
    // The streams, the exec channel, QEMU's log, and with `-i` its input.
    let pairs = STREAMS.len() + 2 + usize::from(stdin);
    for _ in 0..pairs {
        let mut fds = [0i32; 2];
        // SAFETY: socketpair fills the two-element array on success.
        if unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        } != 0
        {
            return Err(std::io::Error::last_os_error()).context("socketpair");
        }
        // The serial console reaches the socket a byte per write, and a unix socket charges
        // each write's buffer overhead to the sender: with the default send buffer a console
        // flood would stall on a few hundred bytes in flight. Best effort: root may exceed
        // wmem_max, others get what the kernel allows.
        let big: libc::c_int = 4 << 20;
        for opt in [libc::SO_SNDBUFFORCE, libc::SO_SNDBUF] {
            // SAFETY: setsockopt with a c_int option value on a socket we own.
            let r = unsafe {
                libc::setsockopt(
                    fds[0],
                    libc::SOL_SOCKET,
                    opt,
                    (&big as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if r == 0 {
                break;
            }
        }
        // SAFETY: both fds were just created and are owned by nobody else.
        unsafe {
            qemu_ends.push(OwnedFd::from_raw_fd(fds[0]));
            relay_ends.push(OwnedFd::from_raw_fd(fds[1]));
        }
    }
    let mut sources: Vec<i32> = relay_ends[..STREAMS.len()]
        .iter()
        .map(|f| f.as_raw_fd())
        .collect();
    sources.push(lock.as_raw_fd());
    sources.extend(relay_ends[STREAMS.len()..].iter().map(|f| f.as_raw_fd()));
    let exe = std::env::current_exe().context("finding the hx binary")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("__log-relay")
        .arg(dir)
        .arg("--max-size")
        .arg(output.max_size.to_string())
        .arg("--max-file")
        .arg(output.max_file.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr);
    // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec. The sources
    // are first copied above the targets so that no dup2 overwrites a source.
    unsafe {
        cmd.pre_exec(move || {
            let mut high = [0i32; STREAMS.len() + 4];
            let high = &mut high[..sources.len()];
            for (h, &src) in high.iter_mut().zip(&sources) {
                *h = libc::fcntl(src, libc::F_DUPFD_CLOEXEC, 64);
                if *h < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, &h) in high.iter().enumerate() {
                if libc::dup2(h, FIRST_FD + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    // Its own session, so it outlives `hx run` like QEMU does. Not waited for: it runs as long
    // as the VM; its lock says when it is done.
    crate::process::spawn_detached(&mut cmd).context("starting the log relay")?;
    let host_log = qemu_ends.remove(STREAMS.len() + 1);
    Ok(Ends {
        chardevs: qemu_ends,
        host_log,
    })
}

/// Whether the relay of the container in `dir` is still writing (its lock is held) after
/// waiting up to `wait` for it to finish. Once QEMU is gone the relay only drains what its
/// sockets still hold, so a short wait here saves callers a poll interval.
pub fn busy(dir: &Path, wait: std::time::Duration) -> bool {
    let Ok(f) = std::fs::File::open(dir.join(LOCK_FILE)) else {
        return false;
    };
    let deadline = std::time::Instant::now() + wait;
    loop {
        // SAFETY: flock on an fd we own; the shared lock (if taken) goes with the fd.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
        let held =
            r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EWOULDBLOCK);
        if !held || std::time::Instant::now() >= deadline {
            return held;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}
