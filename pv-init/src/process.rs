//! Starting a process in the container: the workload and every `hx exec` session alike. The
//! container's root is pv-init's root by now (mounts::switch_root); a process gets its user
//! (looked up in the container's passwd and group), limits, working directory and stdio, and
//! any failure before its exec comes back as docker's exit code (126, 127) with its reason.
use crate::users::{self, Ident};
use crate::InitError;
use nix::sys::signal::{self, SigSet, SigmaskHow};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};
use pv_init::spec::{Capabilities, Rlimit, TtySize};
use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What to start. `env` is merged over nothing: the caller passes the full list (environment()).
pub struct Process<'a> {
    pub args: &'a [String],
    pub env: &'a [String],
    pub user: &'a str,
    pub cwd: &'a str,
    /// Create `cwd` when it is missing (the workload's WORKDIR, as docker does; not for exec).
    pub create_cwd: bool,
    pub rlimits: &'a [Rlimit],
    pub tty: Option<TtySize>,
    /// Give the process a stdin pipe (else /dev/null, or the pty with `tty`).
    pub stdin: bool,
    /// Its own session (the workload, a `-t` exec); a plain exec stays in pv-init's.
    pub setsid: bool,
    /// Where it runs: pv-init's root, or a pod member's (pv-init/src/pod.rs).
    pub enter: Enter<'a>,
    /// A pod member's `cgroup.procs` (cgroup.rs, device_filter.rs): the child joins the
    /// member's groups first.
    pub cgroups: &'a [RawFd],
    /// Its capability sets; None keeps pv-init's (all).
    pub capabilities: Option<Capabilities>,
    pub no_new_privileges: bool,
    /// Its system-call filter, installed last before the exec (None: none).
    pub seccomp: Option<&'a pv_init::spec::Seccomp>,
}

/// The root a process runs in.
#[derive(Clone, Copy)]
pub enum Enter<'a> {
    /// pv-init's own (the container's, after switch_root).
    Current,
    /// A pod member's workload: a new mount namespace and, unless `shared_pids`, a new PID
    /// namespace (it is its init, as a docker or Kubernetes container is), pivot_root into
    /// `root`, a /proc of its own — with docker's read-only and masked paths when `confined`
    /// (not privileged).
    NewRoot {
        root: &'a Path,
        confined: bool,
        shared_pids: bool,
        /// Another member's PID namespace to be born in instead (CRI's TARGET).
        join_pid: Option<RawFd>,
    },
    /// A single container's workload: pv-init's root, in a mount namespace of its own (private
    /// copies of pv-init's mounts) with a /proc of its own — docker's
    /// read-only and masked paths when `confined` — and, with `own_pids`, a PID namespace
    /// whose init it is, as with docker (`--init` leaves it in pv-init's).
    Own { confined: bool, own_pids: bool },
    /// `hx exec` into a pod member or a single container: its workload's mount namespace
    /// (`mnt`) and PID namespace (`pid`), whose root is `root` in pv-init's view.
    Namespace {
        mnt: RawFd,
        pid: Option<RawFd>,
        root: &'a Path,
    },
}

impl Enter<'_> {
    /// Where the process's files are, seen from pv-init.
    pub fn files(&self) -> Option<&Path> {
        match self {
            Enter::Current | Enter::Own { .. } => None,
            // A single container's: pv-init's own root, seen as the process sees it (save the
            // process's own /proc, whose magic links openat2's RESOLVE_IN_ROOT would refuse).
            Enter::Namespace { root, .. } if *root == Path::new("/") => None,
            Enter::NewRoot { root, .. } | Enter::Namespace { root, .. } => Some(root),
        }
    }
}

/// pv-init's own PID namespace, where a thread's children go back to after one was forked into
/// a member's.
fn own_pid_namespace() -> Result<RawFd, InitError> {
    static OWN: std::sync::OnceLock<OwnedFd> = std::sync::OnceLock::new();
    if let Some(fd) = OWN.get() {
        return Ok(fd.as_raw_fd());
    }
    let fd = std::fs::File::open("/proc/self/ns/pid")
        .map_err(|e| InitError::setup(format!("pv-init's PID namespace: {e}")))?;
    Ok(OWN.get_or_init(|| fd.into()).as_raw_fd())
}

/// While it lives, this thread's children are born in another PID namespace (a new one, or a
/// member's); dropped, they are born in pv-init's again. Only this thread: the namespace of a
/// task's children is its own (setns(2), unshare(2)), and no thread is started meanwhile.
struct ChildrenPidNamespace {
    own: RawFd,
}

impl ChildrenPidNamespace {
    /// None on a kernel without PID namespaces (a hyper kernel from before them, `--kernel`):
    /// the member then shares pv-init's, as members did before, and the kernel log says so.
    fn new() -> Result<Option<Self>, InitError> {
        let own = own_pid_namespace()?;
        match nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID) {
            Ok(()) => Ok(Some(ChildrenPidNamespace { own })),
            Err(nix::errno::Errno::EINVAL) => {
                let _ = std::fs::write(
                    "/dev/kmsg",
                    "pv-init: this kernel has no PID namespaces: the workload shares pv-init's\n",
                );
                Ok(None)
            }
            Err(e) => Err(InitError::setup(format!(
                "a PID namespace for the member: {e}"
            ))),
        }
    }

    fn join(fd: RawFd) -> Result<Self, InitError> {
        let own = own_pid_namespace()?;
        // SAFETY: setns on a namespace fd the caller holds open.
        if unsafe { libc::setns(fd, libc::CLONE_NEWPID) } != 0 {
            return Err(InitError::setup(format!(
                "entering the pod member's PID namespace: {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(ChildrenPidNamespace { own })
    }
}

impl Drop for ChildrenPidNamespace {
    fn drop(&mut self) {
        // SAFETY: setns back to pv-init's own namespace, an fd held for the process's life.
        if unsafe { libc::setns(self.own, libc::CLONE_NEWPID) } != 0 {
            // Never seen; this thread's later children would be born in the member's.
            let _ = std::fs::write(
                "/dev/kmsg",
                format!(
                    "pv-init: back to its PID namespace: {}\n",
                    std::io::Error::last_os_error()
                ),
            );
        }
    }
}

/// A started process and pv-init's ends of its stdio.
pub struct Spawned {
    pub pid: Pid,
    /// The write end of its stdin pipe (`stdin` without `tty`).
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    /// The pty master (`tty`): its output and input both.
    pub pty: Option<OwnedFd>,
}

fn pipe() -> Result<(OwnedFd, OwnedFd), InitError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| InitError::setup(format!("pipe: {e}")))
}

/// The user's identity from the container's own files.
pub fn ident(user: &str) -> Result<Ident, InitError> {
    ident_in(user, None)
}

/// The same in the root `files` (a pod member's), else pv-init's.
pub fn ident_in(user: &str, files: Option<&Path>) -> Result<Ident, InitError> {
    let read = |f: &str| match files {
        Some(root) => read_in_root(root, f).unwrap_or_default(),
        None => std::fs::read_to_string(f).unwrap_or_default(),
    };
    users::resolve(user, &read("/etc/passwd"), &read("/etc/group"))
}

/// Opens `path` inside `root` with symlinks resolved there (openat2 RESOLVE_IN_ROOT), as the
/// process itself would see it once in that root.
fn open_in_root(root: &Path, path: &str) -> std::io::Result<std::fs::File> {
    let dir = std::os::fd::OwnedFd::from(std::fs::File::open(root)?);
    crate::pod::openat2_in_root(
        &dir,
        path.trim_start_matches('/'),
        libc::O_PATH | libc::O_CLOEXEC,
        0,
    )
    .map(std::fs::File::from)
    .map_err(std::io::Error::from)
}

fn read_in_root(root: &Path, path: &str) -> std::io::Result<String> {
    let f = open_in_root(root, path)?;
    std::fs::read_to_string(format!("/proc/self/fd/{}", f.as_raw_fd()))
}

fn metadata_in(files: Option<&Path>, path: &str) -> std::io::Result<std::fs::Metadata> {
    match files {
        Some(root) => open_in_root(root, path)?.metadata(),
        None => std::fs::metadata(path),
    }
}

/// `base` then `extra` (a later `K=` replaces an earlier one), then the defaults docker adds.
pub fn environment(
    base: &[String],
    extra: &[String],
    hostname: &str,
    ident: &Ident,
) -> Vec<String> {
    let mut env: Vec<String> = Vec::new();
    let key = |e: &str| e.split('=').next().unwrap_or("").to_string();
    for e in base.iter().chain(extra) {
        let k = key(e);
        env.retain(|x| key(x) != k);
        env.push(e.clone());
    }
    let has = |env: &Vec<String>, k: &str| env.iter().any(|e| key(e) == k);
    if !has(&env, "PATH") {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    if !has(&env, "HOSTNAME") {
        env.push(format!("HOSTNAME={hostname}"));
    }
    if !has(&env, "HOME") {
        let home = if ident.home.is_empty() {
            "/"
        } else {
            &ident.home
        };
        env.push(format!("HOME={home}"));
    }
    env
}

/// Forks and execs `p`. `registered` runs in the parent right after the fork, before anything
/// can reap the child (the caller holds whatever lock its reaper takes).
pub fn spawn(p: &Process, registered: impl FnOnce(Pid)) -> Result<Spawned, InitError> {
    let files = p.enter.files();
    let ident = ident_in(p.user, files)?;
    let path_var = p
        .env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
        .to_string();
    let argv0 = p
        .args
        .first()
        .ok_or_else(|| InitError::setup("no command specified"))?;
    let program = lookup(argv0, &path_var, files)?;
    let cwd_seen = match files {
        Some(root) => root.join(p.cwd.trim_start_matches('/')),
        None => Path::new(p.cwd).to_path_buf(),
    };
    if p.create_cwd && !cwd_seen.is_dir() {
        std::fs::create_dir_all(&cwd_seen)
            .map_err(|e| InitError::setup(format!("workdir {}: {e}", p.cwd)))?;
    }
    let c_new_root = match p.enter {
        Enter::NewRoot { root: r, .. } => Some(
            CString::new(r.as_os_str().as_encoded_bytes())
                .map_err(|_| InitError::setup("pod member root contains NUL"))?,
        ),
        _ => None,
    };
    let cgroups = p.cgroups;
    let join_ns = match p.enter {
        Enter::Namespace { mnt, .. } => Some(mnt),
        _ => None,
    };
    let confined_proc = matches!(
        p.enter,
        Enter::NewRoot { confined: true, .. } | Enter::Own { confined: true, .. }
    );
    let own_ns = matches!(p.enter, Enter::Own { .. });
    let cstr = |s: &str| {
        CString::new(s).map_err(|_| InitError::setup(format!("argument {s:?} contains NUL")))
    };
    let c_prog = cstr(&program)?;
    let c_args = p
        .args
        .iter()
        .map(|a| cstr(a))
        .collect::<Result<Vec<_>, _>>()?;
    let c_env = p
        .env
        .iter()
        .map(|a| cstr(a))
        .collect::<Result<Vec<_>, _>>()?;
    let c_cwd = cstr(p.cwd)?;
    // Made before the fork: the child of a multi-threaded process may not allocate.
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
    let limits = rlimits(p.rlimits)?;
    let caps = p.capabilities.map(|c| KernelCaps::new(c, last_cap()));
    let no_new_privileges = p.no_new_privileges;
    let filter = match p.seccomp {
        Some(s) => SeccompFilter::new(s)?,
        None => None,
    };

    let (err_r, err_w) = pipe()?;
    let devnull = std::fs::File::open("/dev/null")
        .map_err(|e| InitError::setup(format!("/dev/null: {e}")))?;
    let pty = match p.tty {
        Some(size) => {
            let ws = nix::pty::Winsize {
                ws_row: size.rows,
                ws_col: size.cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            // A pod member's terminal comes from its own devpts instance.
            let own = match p.enter.files() {
                Some(root) => crate::pod::member_pty(root)?,
                None => None,
            };
            let pty = match own {
                Some(pty) => {
                    // SAFETY: TIOCSWINSZ reads a winsize.
                    unsafe { libc::ioctl(pty.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
                    pty
                }
                None => nix::pty::openpty(Some(&ws), None)
                    .map_err(|e| InitError::setup(format!("openpty: {e}")))?,
            };
            for fd in [&pty.master, &pty.slave] {
                let _ = nix::fcntl::fcntl(
                    fd,
                    nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
                );
            }
            Some(pty)
        }
        None => None,
    };
    // The process writes to pipes that pv-init copies on: a channel device can be opened only
    // once, and images expect to reopen /dev/stdout (nginx logs to it, like many).
    let (out, err) = match pty {
        Some(_) => (None, None),
        None => (Some(pipe()?), Some(pipe()?)),
    };
    let input = match (&pty, p.stdin) {
        (None, true) => Some(pipe()?),
        _ => None,
    };
    let stdin_fd = input
        .as_ref()
        .map_or(devnull.as_raw_fd(), |(r, _)| r.as_raw_fd());
    let setsid = p.setsid || pty.is_some();

    let joined_pid_ns = matches!(
        p.enter,
        Enter::NewRoot {
            join_pid: Some(_),
            ..
        } | Enter::Namespace { pid: Some(_), .. }
    );
    let children_ns = match p.enter {
        Enter::NewRoot {
            join_pid: Some(fd), ..
        } => Some(ChildrenPidNamespace::join(fd)?),
        Enter::NewRoot {
            shared_pids: false, ..
        }
        | Enter::Own { own_pids: true, .. } => ChildrenPidNamespace::new()?,
        Enter::Namespace { pid: Some(fd), .. } => Some(ChildrenPidNamespace::join(fd)?),
        _ => None,
    };
    // SAFETY: the child only calls async-signal-safe functions until exec (pv-init may have
    // other threads; the child touches none of their state).
    let forked = unsafe { fork() };
    if matches!(forked, Ok(ForkResult::Parent { .. }) | Err(_)) {
        drop(children_ns);
    }
    let child = match forked {
        // Born into a PID namespace whose init has ended (an exec racing the workload's end).
        Err(nix::errno::Errno::ENOMEM) if joined_pid_ns => {
            return Err(InitError::setup("the container's workload is not running"))
        }
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
                // "0": the writer itself. Before anything else, so that all it allocates from
                // here on is the member's.
                for &fd in cgroups {
                    if libc::write(fd, c"0".as_ptr().cast(), 1) != 1 {
                        fail(6, *libc::__errno_location())
                    }
                }
                if let Some(fd) = join_ns {
                    if libc::setns(fd, libc::CLONE_NEWNS) != 0 {
                        fail(5, *libc::__errno_location())
                    }
                }
                if c_new_root.is_some() || own_ns {
                    // A mount namespace of its own, private copies: were pv-init's mounts
                    // shared, a pod's --privileged member's bind of /dev would be a peer of
                    // pv-init's, and its teardown would unmount pv-init's /dev/.hx-devices
                    // (device_filter.rs). The copies go with its last process (a single
                    // container's: exec.rs drops the namespace fds).
                    if libc::unshare(libc::CLONE_NEWNS) != 0
                        || libc::mount(
                            std::ptr::null(),
                            c"/".as_ptr(),
                            std::ptr::null(),
                            libc::MS_REC | libc::MS_PRIVATE,
                            std::ptr::null(),
                        ) != 0
                    {
                        fail(5, *libc::__errno_location())
                    }
                    // A member's root becomes its own: the pod's other roots are out of reach
                    // (pivot_root, then the old root gone).
                    if let Some(new_root) = &c_new_root {
                        let dot = c".".as_ptr();
                        if libc::chdir(new_root.as_ptr()) != 0
                            || libc::syscall(libc::SYS_pivot_root, dot, dot) != 0
                            || libc::umount2(dot, libc::MNT_DETACH) != 0
                            || libc::chdir(c"/".as_ptr()) != 0
                        {
                            fail(5, *libc::__errno_location())
                        }
                    }
                    // Its own /proc (over pv-init's, for a single container) shows its PID
                    // namespace.
                    if libc::mount(
                        c"proc".as_ptr(),
                        c"/proc".as_ptr(),
                        c"proc".as_ptr(),
                        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                        std::ptr::null(),
                    ) != 0
                    {
                        fail(5, *libc::__errno_location())
                    }
                    if confined_proc {
                        confine_proc_and_sys();
                    }
                }
                if setsid {
                    libc::setsid();
                }
                if let Some(pty) = &pty {
                    let slave = pty.slave.as_raw_fd();
                    libc::ioctl(slave, libc::TIOCSCTTY, 0);
                    libc::dup2(slave, 0);
                    libc::dup2(slave, 1);
                    libc::dup2(slave, 2);
                } else if let (Some((_, o)), Some((_, e))) = (&out, &err) {
                    libc::dup2(stdin_fd, 0);
                    libc::dup2(o.as_raw_fd(), 1);
                    libc::dup2(e.as_raw_fd(), 2);
                }
                // As root, before the user changes: a hard limit may be raised here only.
                for (i, (resource, lim)) in limits.iter().enumerate() {
                    if libc::setrlimit(*resource, lim) != 0 {
                        fail_at(4, i as u8, *libc::__errno_location())
                    }
                }
                // Without no-new-privileges the filter needs CAP_SYS_ADMIN to go in: before the
                // capabilities are dropped (runc's order), so the calls below pass through it.
                if let (Some(f), false) = (&filter, no_new_privileges) {
                    if let Err(errno) = f.install() {
                        fail(8, errno)
                    }
                }
                // runc's order: the bounding set while CAP_SETPCAP is still there, the user
                // with the permitted set kept across setuid, then the sets themselves.
                if let Some(c) = &caps {
                    if let Err(errno) = c.limit_bounding() {
                        fail(7, errno)
                    }
                    libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0);
                }
                if libc::setgroups(ident.groups.len(), ident.groups.as_ptr()) != 0 {
                    fail(1, *libc::__errno_location())
                }
                if libc::setgid(ident.gid) != 0 {
                    fail(1, *libc::__errno_location())
                }
                if libc::setuid(ident.uid) != 0 {
                    fail(1, *libc::__errno_location())
                }
                if let Some(c) = &caps {
                    libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0);
                    if let Err(errno) = c.set() {
                        fail(7, errno)
                    }
                }
                if no_new_privileges && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    fail(7, *libc::__errno_location())
                }
                if libc::chdir(c_cwd.as_ptr()) != 0 {
                    fail(2, *libc::__errno_location())
                }
                // With it, as late as can be: only the exec itself passes through the filter.
                if let (Some(f), true) = (&filter, no_new_privileges) {
                    if let Err(errno) = f.install() {
                        fail(8, errno)
                    }
                }
                libc::execve(c_prog.as_ptr(), argv.as_ptr(), envp.as_ptr());
                fail(3, *libc::__errno_location())
            }
        }
        Ok(ForkResult::Parent { child }) => child,
    };
    registered(child);
    drop(err_w);
    let spawned = Spawned {
        pid: child,
        stdin: input.map(|(_, w)| w),
        stdout: out.map(|(r, _)| r),
        stderr: err.map(|(r, _)| r),
        pty: pty.map(|p| p.master),
    };
    let mut buf = Vec::new();
    let _ = std::fs::File::from(err_r).read_to_end(&mut buf);
    if buf.len() != 6 {
        return Ok(spawned);
    }
    let errno = i32::from_le_bytes(buf[2..6].try_into().expect("4 bytes"));
    let _ = waitpid(child, None);
    let e = std::io::Error::from_raw_os_error(errno);
    Err(match buf[0] {
        4 => {
            let r = &p.rlimits[usize::from(buf[1]).min(p.rlimits.len() - 1)];
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
            message: format!("setting user {:?}: {e}", p.user),
        },
        5 => InitError::setup(format!(
            "entering the container's namespaces: {}",
            crate::errno_text(&e)
        )),
        6 => InitError::setup(format!(
            "joining the pod member's cgroup: {}",
            crate::errno_text(&e)
        )),
        7 => InitError::setup(format!(
            "applying the capabilities: {}",
            crate::errno_text(&e)
        )),
        8 => InitError::setup(format!(
            "installing the seccomp filter: {}",
            crate::errno_text(&e)
        )),
        2 => InitError {
            code: 126,
            message: format!(
                "chdir to cwd ({:?}) set in config.json failed: {}",
                p.cwd,
                crate::errno_text(&e)
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
    })
}

/// Whether the guest kernel has seccomp filters (a hyper kernel from before them, `--kernel`,
/// may not); said once in the kernel log when it has none.
fn kernel_has_seccomp() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        // SECCOMP_GET_ACTION_AVAIL answers 0 only where filters are (ENOSYS/EINVAL else).
        let errno_action: u32 = libc::SECCOMP_RET_ERRNO;
        // SAFETY: the operation reads one u32 from the pointer passed.
        let has = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_GET_ACTION_AVAIL,
                0,
                &errno_action as *const u32,
            )
        } == 0;
        if !has {
            let _ = std::fs::write(
                "/dev/kmsg",
                "pv-init: this kernel has no seccomp filters: hx's default profile is left out\n",
            );
        }
        has
    })
}

/// A seccomp program ready for seccomp(2), made before the fork (the child only installs it).
struct SeccompFilter {
    insns: Vec<libc::sock_filter>,
    flags: libc::c_ulong,
}

impl SeccompFilter {
    /// None: an optional filter (hx's default) on a kernel without seccomp.
    fn new(s: &pv_init::spec::Seccomp) -> Result<Option<Self>, InitError> {
        let insns = s.instructions().map_err(InitError::setup)?;
        if s.optional && !kernel_has_seccomp() {
            return Ok(None);
        }
        Ok(Some(SeccompFilter {
            insns: insns
                .into_iter()
                .map(|(code, jt, jf, k)| libc::sock_filter { code, jt, jf, k })
                .collect(),
            flags: libc::c_ulong::from(s.flags),
        }))
    }

    /// In the forked child: no allocation.
    unsafe fn install(&self) -> Result<(), i32> {
        let prog = libc::sock_fprog {
            len: self.insns.len() as libc::c_ushort,
            filter: self.insns.as_ptr().cast_mut(),
        };
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(unsafe { *libc::__errno_location() })
        }
    }
}

/// docker's read-only and masked /proc and /sys paths (moby's oci/defaults.go), in a workload's
/// own /proc and its copy of /sys: the kernel's knobs and what leaks the VM's state stay out of
/// its reach, and a uid-0 workload cannot unbind the VM's disks, NICs or its channel to pv-init
/// through /sys. Paths this kernel lacks are skipped. Called in the forked child: syscalls only.
unsafe fn confine_proc_and_sys() {
    const READ_ONLY: [&std::ffi::CStr; 5] = [
        c"/proc/bus",
        c"/proc/fs",
        c"/proc/irq",
        c"/proc/sys",
        c"/proc/sysrq-trigger",
    ];
    const MASKED_FILES: [&std::ffi::CStr; 6] = [
        c"/proc/kcore",
        c"/proc/keys",
        c"/proc/latency_stats",
        c"/proc/timer_list",
        c"/proc/sched_debug",
        c"/proc/timer_stats",
    ];
    const MASKED_DIRS: [&std::ffi::CStr; 4] = [
        c"/proc/acpi",
        c"/proc/scsi",
        c"/sys/firmware",
        c"/sys/devices/virtual/powercap",
    ];
    let null = std::ptr::null::<libc::c_char>();
    // SAFETY: mount(2) on NUL-terminated literals.
    unsafe {
        let remount_read_only = |p: &std::ffi::CStr| {
            libc::mount(
                null,
                p.as_ptr(),
                null,
                libc::MS_BIND
                    | libc::MS_REMOUNT
                    | libc::MS_RDONLY
                    | libc::MS_NOSUID
                    | libc::MS_NODEV
                    | libc::MS_NOEXEC,
                null.cast(),
            )
        };
        // /sys is a mount of its own (a copy of pv-init's, or of a pod member's sysfs): in
        // place, not a second one over it.
        remount_read_only(c"/sys");
        for p in READ_ONLY {
            if libc::mount(
                p.as_ptr(),
                p.as_ptr(),
                null,
                libc::MS_BIND | libc::MS_REC,
                null.cast(),
            ) == 0
            {
                remount_read_only(p);
            }
        }
        for p in MASKED_FILES {
            libc::mount(
                c"/dev/null".as_ptr(),
                p.as_ptr(),
                null,
                libc::MS_BIND,
                null.cast(),
            );
        }
        for p in MASKED_DIRS {
            libc::mount(
                c"tmpfs".as_ptr(),
                p.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_RDONLY,
                null.cast(),
            );
        }
    }
}

/// Whether these capabilities are `--privileged`'s: every one the running kernel knows.
pub fn is_privileged(c: Option<Capabilities>) -> bool {
    let known = known_caps(last_cap());
    c.is_none_or(|c| c.bounding & known == known)
}

/// The highest capability number the running kernel knows (cap_last_cap), read once.
fn last_cap() -> u32 {
    static LAST: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *LAST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .filter(|&n: &u32| n < 64)
            .unwrap_or(40)
    })
}

/// The mask of capabilities 0..=last.
fn known_caps(last: u32) -> u64 {
    if last >= 63 {
        u64::MAX
    } else {
        (1u64 << (last + 1)) - 1
    }
}

/// Capability sets ready for the syscalls, masked to what the kernel knows: made before the
/// fork, applied by the child with nothing but syscalls (no allocation between fork and exec,
/// which is why this is not the caps crate's `set`, which takes hash sets).
struct KernelCaps {
    sets: Capabilities,
    last: u32,
}

/// capset(2)'s version 3 header and its two 32-bit halves.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

impl KernelCaps {
    fn new(c: Capabilities, last: u32) -> Self {
        let known = known_caps(last);
        let m = |v: u64| v & known;
        KernelCaps {
            sets: Capabilities {
                bounding: m(c.bounding),
                effective: m(c.effective),
                permitted: m(c.permitted),
                inheritable: m(c.inheritable),
                ambient: m(c.ambient),
            },
            last,
        }
    }

    /// Drops from the bounding set what it does not hold (needs CAP_SETPCAP: before `set`).
    unsafe fn limit_bounding(&self) -> Result<(), i32> {
        for n in 0..=self.last {
            if self.sets.bounding & (1u64 << n) == 0
                // SAFETY: a plain prctl.
                && unsafe { libc::prctl(libc::PR_CAPBSET_DROP, n as libc::c_ulong, 0, 0, 0) } != 0
            {
                // SAFETY: reading this thread's errno.
                return Err(unsafe { *libc::__errno_location() });
            }
        }
        Ok(())
    }

    /// The effective, permitted and inheritable sets, then the ambient one.
    unsafe fn set(&self) -> Result<(), i32> {
        let header = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let s = &self.sets;
        let half = |shift: u32| CapData {
            effective: (s.effective >> shift) as u32,
            permitted: (s.permitted >> shift) as u32,
            inheritable: (s.inheritable >> shift) as u32,
        };
        let data = [half(0), half(32)];
        // SAFETY: capset with a valid header and its two data structs; prctl for the ambient
        // set; errno of this thread.
        unsafe {
            if libc::syscall(libc::SYS_capset, &header, data.as_ptr()) != 0 {
                return Err(*libc::__errno_location());
            }
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                0,
                0,
                0,
            );
            for n in 0..=self.last {
                if s.ambient & (1u64 << n) != 0
                    && libc::prctl(
                        libc::PR_CAP_AMBIENT,
                        libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                        n as libc::c_ulong,
                        0,
                        0,
                    ) != 0
                {
                    return Err(*libc::__errno_location());
                }
            }
        }
        Ok(())
    }
}

/// setrlimit's resource argument: glibc gives it its own type, musl a plain int.
#[cfg(target_env = "gnu")]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type Resource = libc::c_int;

/// The limits as setrlimit arguments, checked before the fork (at most one per resource, so
/// their index fits the error message's byte).
fn rlimits(list: &[Rlimit]) -> Result<Vec<(Resource, libc::rlimit)>, InitError> {
    let mut out: Vec<(Resource, libc::rlimit)> = Vec::new();
    for r in list {
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

/// argv[0] as docker resolves it: a name with '/' as is, else the first executable in PATH.
fn lookup(argv0: &str, path: &str, files: Option<&Path>) -> Result<String, InitError> {
    if argv0.contains('/') {
        return match metadata_in(files, argv0) {
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
        if let Ok(m) = metadata_in(files, &cand) {
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
