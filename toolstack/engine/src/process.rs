//! The host processes hx starts and leaves running (QEMU, the Xen monitor, the log relay, the
//! restart supervisors), handled one way: named by pid + start time so that a reused pid never
//! looks alive, started in a session of their own so that they outlive the hx that started
//! them, reaped when they are our own children, signalled through a pidfd and waited for with
//! a deadline.
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// How often a wait without a pidfd looks again.
const POLL: Duration = Duration::from_millis(20);

struct Stat {
    /// Exited, not yet reaped (or being reaped).
    zombie: bool,
    /// Clock ticks since boot.
    start: u64,
}

fn stat(pid: i32) -> Option<Stat> {
    if pid <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields follow the last ')'.
    let after = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    Some(Stat {
        zombie: matches!(fields.first(), Some(&"Z") | Some(&"X")),
        start: fields.get(19)?.parse().ok()?,
    })
}

/// Start time of process `pid` in clock ticks since boot, if it exists and has not exited.
pub fn start_time(pid: i32) -> Option<u64> {
    stat(pid).filter(|s| !s.zombie).map(|s| s.start)
}

/// A process as a record names it: its pid and its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracked {
    pub pid: i32,
    pub start: u64,
}

impl Tracked {
    /// From a record's fields; None when either is missing.
    pub fn new(pid: Option<i32>, start: Option<u64>) -> Option<Tracked> {
        Some(Tracked {
            pid: pid?,
            start: start?,
        })
    }

    /// This process (hx itself).
    pub fn current() -> Option<Tracked> {
        let pid = std::process::id() as i32;
        Some(Tracked {
            pid,
            start: start_time(pid)?,
        })
    }

    /// Whether it still runs (a zombie does not). Reaps it first if it is our own child that
    /// exited, so that it does not linger as a zombie.
    pub fn is_alive(&self) -> bool {
        self.reap();
        start_time(self.pid) == Some(self.start)
    }

    /// Reaps it if it is our own child and has exited; anything else (someone else's
    /// process, a reused pid, a live one) is left alone.
    pub fn reap(&self) {
        if stat(self.pid).is_some_and(|s| s.zombie && s.start == self.start) {
            let _ = nix::sys::wait::waitpid(
                nix::unistd::Pid::from_raw(self.pid),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
        }
    }

    /// A pidfd for this very process (readable once it exits): None if it is gone, its pid
    /// now names another process, or pidfds are not supported.
    pub fn pidfd(&self) -> Option<OwnedFd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, self.pid, 0) };
        if fd < 0 {
            return None;
        }
        // SAFETY: fd was just returned by pidfd_open and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        // Checked after opening: the pidfd holds on to whichever process had the pid then.
        (stat(self.pid)?.start == self.start).then_some(fd)
    }

    /// Sends `signal` if it still runs (through its pidfd, so never to a process that took
    /// its pid over). Whether it was sent.
    pub fn signal(&self, signal: i32) -> bool {
        let Some(fd) = self.pidfd() else {
            return false;
        };
        // SAFETY: pidfd_send_signal with a valid pidfd, a signal number, no siginfo, no flags.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        r == 0
    }

    /// Waits up to `timeout` for it to exit (woken by its pidfd, else by polling); whether it
    /// is gone.
    pub fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let left = || deadline.map(|d| d.saturating_duration_since(Instant::now()));
        match self.pidfd() {
            Some(fd) => {
                while self.is_alive() {
                    let ms = left().map_or(-1, |l| l.as_millis().min(i32::MAX as u128) as i32);
                    if ms == 0 {
                        break;
                    }
                    let mut p = libc::pollfd {
                        fd: fd.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd.
                    unsafe { libc::poll(&mut p, 1, ms) };
                }
            }
            None => {
                while self.is_alive() && left().is_none_or(|l| !l.is_zero()) {
                    std::thread::sleep(POLL.min(left().unwrap_or(POLL)));
                }
            }
        }
        !self.is_alive()
    }

    /// SIGKILL, then up to `timeout` for it to go; whether it is gone.
    pub fn kill_and_wait(&self, timeout: Duration) -> bool {
        self.signal(libc::SIGKILL);
        self.wait(timeout)
    }

    /// For async waiters: a descriptor that becomes readable when it exits.
    pub fn exit_notifier(&self) -> Option<tokio::io::unix::AsyncFd<OwnedFd>> {
        let fd = self.pidfd()?;
        // SAFETY: the AsyncFd owns the fd, so it cannot be closed while registered.
        unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
        }
        .ok()
    }
}

/// Makes `cmd` start in a session of its own: it outlives the hx that started it (as a docker
/// container outlives its client) and the terminal's signals do not reach it. It keeps the
/// descriptors in `inherit` (their close-on-exec flag is cleared in the child only).
pub fn detach(cmd: &mut Command, inherit: Vec<RawFd>) {
    // SAFETY: only async-signal-safe calls (setsid, fcntl) between fork and exec; the caller
    // keeps the descriptors open until the spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            for &fd in &inherit {
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Starts `cmd` detached (`detach`) and leaves it running: not waited for, its pid + start time
/// or a lock it holds say when it is done. Its process, for callers that track it.
pub fn spawn_detached(cmd: &mut Command) -> std::io::Result<Option<Tracked>> {
    detach(cmd, Vec::new());
    let child = cmd.spawn()?;
    let pid = child.id() as i32;
    Ok(start_time(pid).map(|start| Tracked { pid, start }))
}

/// Reaps whichever of our children have exited, for a long-lived process (the supervisor)
/// whose detached children (log relays, VMs) would otherwise stay zombies. Only for a process
/// that waits for no child by its `Child` handle at the same time.
pub fn reap_exited_children() {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    while let Ok(s) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if s == WaitStatus::StillAlive {
            break;
        }
    }
}

/// Waits up to `limit` for `child`; past it the child is killed and reaped: None.
pub fn wait_child(child: &mut Child, limit: Duration) -> std::io::Result<Option<ExitStatus>> {
    let me = Tracked::new(Some(child.id() as i32), start_time(child.id() as i32));
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(Some(s));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let _ = child.kill();
            child.wait()?;
            return Ok(None);
        }
        // Our own unreaped child: its pid cannot be reused meanwhile; wait() leaves the
        // zombie for try_wait to collect (it reaps only a zombie with the same start time).
        match me.and_then(|p| p.pidfd()) {
            Some(fd) => {
                let mut p = libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut p, 1, left.as_millis().min(1000) as i32) };
            }
            None => std::thread::sleep(POLL.min(left)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    fn sleeper(secs: &str) -> Child {
        Command::new("sleep")
            .arg(secs)
            .stdin(Stdio::null())
            .spawn()
            .unwrap()
    }

    #[test]
    fn a_process_is_alive_by_pid_and_start_time_and_a_zombie_is_not() {
        let me = Tracked::current().unwrap();
        assert!(me.is_alive());
        // The same pid with another start time is a reused pid: not ours.
        let reused = Tracked {
            start: me.start + 1,
            ..me
        };
        assert!(!reused.is_alive());
        assert!(!reused.signal(0));
        assert!(reused.pidfd().is_none());
        assert!(Tracked::new(Some(me.pid), None).is_none());
        assert!(start_time(0).is_none() && start_time(-5).is_none());

        let mut child = sleeper("0.2");
        let pid = child.id() as i32;
        let p = Tracked::new(Some(pid), start_time(pid)).unwrap();
        assert!(p.is_alive());
        // Exited and not reaped: a zombie, which counts as gone.
        std::thread::sleep(Duration::from_millis(700));
        assert!(start_time(pid).is_none());
        assert!(!p.is_alive());
        // is_alive reaped it: nothing left for wait().
        assert!(child.wait().is_err());
    }

    #[test]
    fn kill_and_wait_ends_and_reaps_a_child_at_once() {
        let mut child = sleeper("30");
        let p = Tracked::new(Some(child.id() as i32), start_time(child.id() as i32)).unwrap();
        assert!(p.is_alive());
        assert!(
            !p.wait(Duration::from_millis(100)),
            "a sleeper is still there"
        );
        let t = Instant::now();
        assert!(p.kill_and_wait(Duration::from_secs(10)));
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert!(!p.is_alive());
        assert!(!p.signal(libc::SIGKILL), "nothing to signal any more");
        // Reaped: no zombie under its pid.
        assert!(stat(p.pid).is_none_or(|s| s.start != p.start));
        assert!(child.wait().is_err(), "already reaped");
    }

    #[test]
    fn wait_wakes_when_a_child_ends_on_its_own() {
        let mut child = sleeper("0.2");
        let p = Tracked::new(Some(child.id() as i32), start_time(child.id() as i32)).unwrap();
        let t = Instant::now();
        assert!(p.wait(Duration::from_secs(20)));
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(child.wait().is_err(), "already reaped");
    }

    #[test]
    fn wait_child_returns_the_status_or_kills_at_the_deadline() {
        let mut c = Command::new("sh").args(["-c", "exit 3"]).spawn().unwrap();
        let s = wait_child(&mut c, Duration::from_secs(20))
            .unwrap()
            .unwrap();
        assert_eq!(s.code(), Some(3));
        let mut c = sleeper("30");
        let t = Instant::now();
        assert!(wait_child(&mut c, Duration::from_millis(200))
            .unwrap()
            .is_none());
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(c.try_wait().is_err() || c.try_wait().unwrap().is_some());
    }

    #[test]
    fn a_detached_process_has_a_session_of_its_own_and_the_inherited_fds() {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let out = tempfile::NamedTempFile::new().unwrap();
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!(
                "cut -d' ' -f6 /proc/$$/stat > {0}; echo $$ >> {0}; [ -e /proc/self/fd/{1} ] && echo kept >> {0}",
                out.path().display(),
                w.as_raw_fd()
            ))
            .stdin(Stdio::null());
        detach(&mut cmd, vec![w.as_raw_fd()]);
        let mut child = cmd.spawn().unwrap();
        child.wait().unwrap();
        drop((r, w));
        let text = std::fs::read_to_string(out.path()).unwrap();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        assert_eq!(lines.len(), 3, "{text:?}");
        assert_eq!(lines[0], lines[1], "its session is its own: {text:?}");
        assert_eq!(lines[2], "kept");
    }

    #[test]
    fn spawn_detached_leaves_it_running_and_tracked() {
        let p = spawn_detached(Command::new("sleep").arg("30"))
            .unwrap()
            .unwrap();
        assert!(p.is_alive());
        assert!(p.kill_and_wait(Duration::from_secs(10)));
    }
}
