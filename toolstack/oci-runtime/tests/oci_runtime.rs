//! hx-runtime driven the way containerd's runc shim drives runc: a bundle (busybox from
//! ../shared/images unpacked into rootfs/, oci-spec's default config.json adjusted), `create`
//! with pipes as stdio and a pid file, `start`, the pid-file process reaped as a subreaper
//! (its exit status is the container's), `state`, `kill`, `delete`. Real QEMU guests: one
//! boot per check. Lives in the runtime's package so that cargo builds `hx-runtime` for it.
use oci_spec::runtime::{LinuxNamespaceType, Mount, Spec};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const RUNTIME: &str = env!("CARGO_BIN_EXE_hx-runtime");
/// The checks reap orphans as a subreaper: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// Kernel and pv-init; missing ones fail under CI and skip elsewhere.
fn guest_assets() -> bool {
    let ok = ["HX_KERNEL", "HX_INIT"]
        .iter()
        .all(|v| std::env::var_os(v).is_some_and(|p| Path::new(&p).is_file()));
    if !ok && std::env::var_os("CI").is_some() {
        panic!("HX_KERNEL/HX_INIT missing: guest tests need them");
    }
    if !ok {
        eprintln!("SKIP: HX_KERNEL/HX_INIT not set");
    }
    ok
}

struct Bundle {
    tmp: tempfile::TempDir,
}

impl Bundle {
    /// busybox's layers in rootfs/, and a config.json running `args`.
    fn new(args: &[&str], terminal: bool) -> Bundle {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("bundle/rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        let layout = repo().join("../shared/images/busybox-1.38.0-musl");
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let blob = |digest: &str| layout.join("blobs/sha256").join(&digest[7..]);
        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
        )
        .unwrap();
        for layer in manifest["layers"].as_array().unwrap() {
            let st = Command::new("tar")
                .arg("-xzf")
                .arg(blob(layer["digest"].as_str().unwrap()))
                .arg("-C")
                .arg(&rootfs)
                .status()
                .unwrap();
            assert!(st.success());
        }
        let hosts = tmp.path().join("hosts");
        std::fs::write(&hosts, "10.9.8.7 dockerhost\n").unwrap();
        let mut spec = Spec::default();
        let mut process = spec.process().clone().unwrap();
        process.set_args(Some(args.iter().map(|s| s.to_string()).collect()));
        process.set_terminal(Some(terminal));
        spec.set_process(Some(process));
        spec.set_hostname(Some("ocibox".into()));
        let mut mounts = spec.mounts().clone().unwrap();
        let mut m = Mount::default();
        m.set_destination("/etc/hosts".into());
        m.set_typ(Some("bind".into()));
        m.set_source(Some(hosts));
        m.set_options(Some(vec!["rbind".into(), "ro".into()]));
        mounts.push(m);
        spec.set_mounts(Some(mounts));
        // The default spec asks for a new network namespace, like docker's.
        assert!(spec
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::Network));
        std::fs::write(
            tmp.path().join("bundle/config.json"),
            serde_json::to_vec_pretty(&spec).unwrap(),
        )
        .unwrap();
        std::fs::create_dir(tmp.path().join("root")).unwrap();
        Bundle { tmp }
    }

    fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }

    fn runtime(&self) -> Command {
        let mut c = Command::new(RUNTIME);
        c.arg("--root")
            .arg(self.root())
            .arg("--log")
            .arg(self.tmp.path().join("log.json"))
            .arg("--log-format")
            .arg("json");
        c
    }

    /// A runtime command that must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.runtime().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "hx-runtime {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn status(&self, id: &str) -> String {
        let s: serde_json::Value = serde_json::from_str(&self.ok(&["state", id])).unwrap();
        assert_eq!(s["id"], id);
        s["status"].as_str().unwrap().to_string()
    }

    /// `create` with the given stdio, as the shim does; the keeper's pid from the pid file.
    fn create(&self, id: &str, stdio: [Stdio; 3], console: Option<&Path>) -> i32 {
        let pid_file = self.tmp.path().join(format!("{id}.pid"));
        let [i, o, e] = stdio;
        let mut cmd = self.runtime();
        cmd.arg("create")
            .arg("--bundle")
            .arg(self.tmp.path().join("bundle"))
            .arg("--pid-file")
            .arg(&pid_file);
        if let Some(c) = console {
            cmd.arg("--console-socket").arg(c);
        }
        let st = cmd.arg(id).stdin(i).stdout(o).stderr(e).status().unwrap();
        assert!(st.success(), "create failed: {}", self.log());
        std::fs::read_to_string(&pid_file).unwrap().parse().unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("log.json")).unwrap_or_default()
    }

    /// `delete` leaves nothing: no record, no VM process under this root.
    fn delete_leaves_nothing(&self, id: &str, force: bool) {
        let vm = vm_pids(&self.root());
        let mut args = vec!["delete"];
        if force {
            args.push("--force");
        }
        args.push(id);
        self.ok(&args);
        reap_orphans();
        assert_eq!(
            std::fs::read_dir(self.root().join("oci")).unwrap().count(),
            0,
            "oci records left"
        );
        assert_eq!(
            std::fs::read_dir(self.root().join("containers"))
                .unwrap()
                .count(),
            0,
            "engine records left"
        );
        for p in vm {
            assert!(!alive(p), "VM process {p} left");
        }
        assert!(vm_pids(&self.root()).is_empty());
        let err = self.runtime().args(["state", id]).output().unwrap();
        assert!(!err.status.success());
    }
}

fn subreaper() {
    // SAFETY: prctl with integer arguments.
    assert_eq!(
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) },
        0
    );
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// Processes whose command line names the runtime root (the VMs, their relays).
fn vm_pids(root: &Path) -> Vec<i32> {
    let needle = root.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| p as u32 != std::process::id())
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
        })
        .filter(|&p| alive(p))
        .collect()
}

/// Waits for the keeper (reparented to us, the subreaper) and returns the shim's view of its
/// exit: the code, or 128 + the signal. Other orphans (relays, VMs) are reaped on the way.
fn wait_keeper(pid: i32, limit: Duration) -> i32 {
    let t0 = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid out pointer.
        let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if r == pid {
            if libc::WIFEXITED(status) {
                return libc::WEXITSTATUS(status);
            }
            return 128 + libc::WTERMSIG(status);
        }
        if r == 0 || r == -1 {
            assert!(t0.elapsed() < limit, "the keeper {pid} did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn reap_orphans() {
    loop {
        let mut status = 0;
        // SAFETY: as above.
        if unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } <= 0 {
            return;
        }
    }
}

/// A pipe: (read end, write end).
fn pipe() -> (std::fs::File, std::fs::File) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the array on success.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh descriptors we own.
    unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    }
}

/// Output, exit code and the states around a whole run of `args` (stdin: `input`).
struct Ran {
    stdout: String,
    stderr: String,
    code: i32,
}

fn run_to_end(b: &Bundle, id: &str, input: &[u8]) -> Ran {
    let (in_r, mut in_w) = pipe();
    let (out_r, out_w) = pipe();
    let (err_r, err_w) = pipe();
    let pid = b.create(id, [in_r.into(), out_w.into(), err_w.into()], None);
    assert_eq!(b.status(id), "created");
    assert!(alive(pid));
    b.ok(&["start", id]);
    in_w.write_all(input).unwrap();
    drop(in_w);
    let reader = |mut f: std::fs::File| {
        std::thread::spawn(move || {
            let mut s = String::new();
            f.read_to_string(&mut s).unwrap();
            s
        })
    };
    let (o, e) = (
        reader(out_r.try_clone().unwrap()),
        reader(err_r.try_clone().unwrap()),
    );
    let code = wait_keeper(pid, Duration::from_secs(120));
    // The keeper held the only write ends: EOF follows its exit.
    drop((out_r, err_r));
    let ran = Ran {
        stdout: o.join().unwrap(),
        stderr: e.join().unwrap(),
        code,
    };
    assert_eq!(b.status(id), "stopped");
    ran
}

#[test]
fn output_exit_code_states_and_a_clean_delete() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !guest_assets() {
        return;
    }
    subreaper();
    let b = Bundle::new(
        &[
            "sh",
            "-c",
            "echo out $(hostname); cat /etc/hosts; read line; echo got $line; \
             grep CapBnd /proc/self/status; echo err >&2; exit 3",
        ],
        false,
    );
    let t0 = Instant::now();
    let ran = run_to_end(&b, "c-exit3", b"hello\n");
    eprintln!("run: {:?}", t0.elapsed());
    assert_eq!(ran.code, 3, "stderr: {}", ran.stderr);
    assert!(ran.stdout.contains("out ocibox"), "{}", ran.stdout);
    assert!(ran.stdout.contains("10.9.8.7 dockerhost"), "{}", ran.stdout);
    assert!(ran.stdout.contains("got hello"), "{}", ran.stdout);
    // The spec's capabilities, oci-spec's default: AUDIT_WRITE, KILL and NET_BIND_SERVICE.
    assert!(
        ran.stdout.contains("CapBnd:\t0000000020000420\n"),
        "{}",
        ran.stdout
    );
    assert_eq!(ran.stderr, "err\n");
    b.delete_leaves_nothing("c-exit3", false);
}

#[test]
fn a_missing_command_is_127_and_exit_0_is_0() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !guest_assets() {
        return;
    }
    subreaper();
    let b = Bundle::new(&["/no/such/command"], false);
    let ran = run_to_end(&b, "c-127", b"");
    assert_eq!(ran.code, 127, "stderr: {}", ran.stderr);
    b.delete_leaves_nothing("c-127", false);

    let b = Bundle::new(&["true"], false);
    let ran = run_to_end(&b, "c-0", b"");
    assert_eq!(ran.code, 0, "stderr: {}", ran.stderr);
    b.delete_leaves_nothing("c-0", false);
}

#[test]
fn exec_then_kill_term_and_delete_refuses_a_running_one() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !guest_assets() {
        return;
    }
    subreaper();
    // PID 1 of its namespace, as under runc: TERM reaches it through its trap only.
    let b = Bundle::new(
        &[
            "sh",
            "-c",
            "trap 'exit 143' TERM; echo ready; while :; do sleep 1; done",
        ],
        false,
    );
    let (mut out_r, out_w) = pipe();
    let pid = b.create(
        "c-kill",
        [Stdio::null(), out_w.into(), Stdio::inherit()],
        None,
    );
    b.ok(&["start", "c-kill"]);
    assert_eq!(b.status("c-kill"), "running");
    // The workload runs once it printed.
    let mut buf = [0u8; 6];
    out_r.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ready\n");
    let refused = b.runtime().args(["delete", "c-kill"]).output().unwrap();
    assert!(!refused.status.success());
    let log = b.log();
    let last: serde_json::Value =
        serde_json::from_str(log.lines().last().expect("an error logged")).unwrap();
    assert_eq!(last["level"], "error");
    assert!(
        last["msg"].as_str().unwrap().contains("not stopped"),
        "{last}"
    );
    let pids: Vec<i32> =
        serde_json::from_str(&b.ok(&["ps", "--format", "json", "c-kill"])).unwrap();
    assert!(pids.contains(&pid));
    // An exec the way the shim starts one: --detach, a pid file, pipes; the pid-file process
    // exits with the exec'd process's code.
    let process = b.tmp.path().join("process.json");
    let mut p = Spec::default().process().clone().unwrap();
    p.set_args(Some(vec![
        "sh".into(),
        "-c".into(),
        "read x; echo exec $x $(hostname); exit 5".into(),
    ]));
    std::fs::write(&process, serde_json::to_vec(&p).unwrap()).unwrap();
    let exec_pid_file = b.tmp.path().join("exec.pid");
    let (in_r, mut in_w) = pipe();
    let (mut exec_out, exec_w) = pipe();
    let st = b
        .runtime()
        .args(["exec", "--detach", "--process"])
        .arg(&process)
        .arg("--pid-file")
        .arg(&exec_pid_file)
        .arg("c-kill")
        .stdin(in_r)
        .stdout(exec_w)
        .status()
        .unwrap();
    assert!(st.success(), "exec: {}", b.log());
    let exec_pid: i32 = std::fs::read_to_string(&exec_pid_file)
        .unwrap()
        .parse()
        .unwrap();
    in_w.write_all(b"in\n").unwrap();
    drop(in_w);
    assert_eq!(wait_keeper(exec_pid, Duration::from_secs(60)), 5);
    let mut text = String::new();
    exec_out.read_to_string(&mut text).unwrap();
    assert_eq!(text, "exec in ocibox\n");
    // A missing command: exec fails with the guest's reason, nothing left to reap.
    p.set_args(Some(vec!["/no/such".into()]));
    std::fs::write(&process, serde_json::to_vec(&p).unwrap()).unwrap();
    let out = b
        .runtime()
        .args(["exec", "--detach", "--process"])
        .arg(&process)
        .arg("c-kill")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/no/such"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    b.ok(&["kill", "c-kill", "TERM"]);
    assert_eq!(
        wait_keeper(pid, Duration::from_secs(60)),
        128 + libc::SIGTERM
    );
    assert_eq!(b.status("c-kill"), "stopped");
    b.delete_leaves_nothing("c-kill", false);
}

#[test]
fn a_terminal_goes_through_the_console_socket() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !guest_assets() {
        return;
    }
    subreaper();
    let b = Bundle::new(&["sh", "-c", "tty; stty size; echo done"], true);
    let sock = b.tmp.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let receiver = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        receive_fd(&conn)
    });
    let pid = b.create(
        "c-tty",
        [Stdio::null(), Stdio::null(), Stdio::null()],
        Some(&sock),
    );
    let master = receiver.join().unwrap();
    b.ok(&["start", "c-tty"]);
    let mut master = std::fs::File::from(master);
    let code = wait_keeper(pid, Duration::from_secs(120));
    assert_eq!(code, 0);
    // The keeper held the slave: what it wrote is in the master's buffer.
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("/dev/pts/"), "{text:?}");
    assert!(text.contains("24 80"), "{text:?}");
    assert!(text.contains("done"), "{text:?}");
    b.delete_leaves_nothing("c-tty", false);
}

/// One descriptor received with SCM_RIGHTS (what containerd's console receiver does).
fn receive_fd(conn: &std::os::unix::net::UnixStream) -> OwnedFd {
    let mut name = [0u8; 4096];
    let mut iov = libc::iovec {
        iov_base: name.as_mut_ptr().cast(),
        iov_len: name.len(),
    };
    // SAFETY: CMSG_SPACE is a size computation.
    let space = unsafe { libc::CMSG_SPACE(4) } as usize;
    let mut control = vec![0u8; space];
    // SAFETY: msghdr is plain data; its pointers outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: a valid socket and message.
    let n = unsafe { libc::recvmsg(conn.as_raw_fd(), &mut msg, 0) };
    assert!(n > 0);
    // SAFETY: the kernel filled one SCM_RIGHTS header.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        assert!(!cmsg.is_null());
        assert_eq!((*cmsg).cmsg_type, libc::SCM_RIGHTS);
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
        OwnedFd::from_raw_fd(fd)
    }
}

#[test]
fn a_bad_bundle_is_one_clear_error_and_leaves_nothing() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let b = Bundle::new(&["true"], false);
    let cfg = b.tmp.path().join("bundle/config.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    v["mounts"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"destination": "/x", "type": "nfs", "source": "srv:/x"}));
    std::fs::write(&cfg, v.to_string()).unwrap();
    let out = b
        .runtime()
        .args(["create", "--bundle"])
        .arg(b.tmp.path().join("bundle"))
        .arg("c-bad")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("\"nfs\" at /x"), "{stderr}");
    let last: serde_json::Value = serde_json::from_str(b.log().lines().last().unwrap()).unwrap();
    assert!(last["msg"].as_str().unwrap().contains("nfs"));
    assert!(!b.root().join("oci/c-bad").exists());
    let features: serde_json::Value = serde_json::from_str(&b.ok(&["features"])).unwrap();
    assert!(features["ociVersionMax"]
        .as_str()
        .unwrap()
        .starts_with("1."));
}

#[test]
fn a_killed_keeper_takes_its_vm_with_it() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !guest_assets() {
        return;
    }
    subreaper();
    let b = Bundle::new(&["sh", "-c", "echo ready; exec sleep 1000"], false);
    let (mut out_r, out_w) = pipe();
    let pid = b.create("c-lost", [Stdio::null(), out_w.into(), Stdio::null()], None);
    b.ok(&["start", "c-lost"]);
    let mut buf = [0u8; 6];
    out_r.read_exact(&mut buf).unwrap();
    let vms = vm_pids(&b.root());
    assert!(!vms.is_empty());
    // SAFETY: kill(2) of our own keeper.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(
        wait_keeper(pid, Duration::from_secs(10)),
        128 + libc::SIGKILL
    );
    assert_eq!(b.status("c-lost"), "stopped");
    let t0 = Instant::now();
    while vms.iter().any(|&p| alive(p)) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the VM outlived its keeper"
        );
        std::thread::sleep(Duration::from_millis(50));
        reap_orphans();
    }
    b.delete_leaves_nothing("c-lost", false);
}

#[test]
fn a_created_container_deleted_before_start_leaves_nothing() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !guest_assets() {
        return;
    }
    subreaper();
    let b = Bundle::new(&["true"], false);
    let pid = b.create(
        "c-never",
        [Stdio::null(), Stdio::null(), Stdio::null()],
        None,
    );
    assert_eq!(b.status("c-never"), "created");
    // The keeper is in a network namespace of its own (the spec asks for one).
    assert_ne!(
        std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap(),
        std::fs::read_link("/proc/self/ns/net").unwrap()
    );
    b.delete_leaves_nothing("c-never", false);
    // delete killed it (and delete_leaves_nothing reaped it).
    assert!(!alive(pid));
}
