//! Shared helpers for the end-to-end tests: the hx binary with a private store, guest assets,
//! the official busybox images from ../shared, and a real registry server.
#![allow(dead_code)]
pub mod containerd;
pub mod docker;
pub mod netns;
pub mod podman;
pub mod term;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BUSYBOX: &str = "busybox:1.38.0-glibc";

pub fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

pub fn shared_image(flavour: &str) -> PathBuf {
    repo().join(format!("../shared/images/busybox-1.38.0-{flavour}"))
}

/// Kernel and pv-init for guests: HX_KERNEL/HX_INIT, else the repo's build outputs. Missing
/// assets fail the test in CI and skip it (with a message) elsewhere.
pub fn guest_assets() -> Option<(PathBuf, PathBuf)> {
    let kernel = std::env::var_os("HX_KERNEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("kernel/out/bzImage"));
    let init = std::env::var_os("HX_INIT")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/pv-init/pv-init"));
    if kernel.is_file() && init.is_file() {
        return Some((kernel, init));
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "guest assets missing: {} / {} (scripts/setup.sh builds them)",
            kernel.display(),
            init.display()
        );
    }
    eprintln!(
        "SKIP: guest assets missing ({} / {}): run kernel/build.sh and scripts/build-pv-init.sh",
        kernel.display(),
        init.display()
    );
    None
}

pub struct Hx {
    pub root: tempfile::TempDir,
    kernel: Option<PathBuf>,
    init: Option<PathBuf>,
}

#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into(),
            stderr: String::from_utf8_lossy(&o.stderr).into(),
        }
    }
}

impl Hx {
    pub fn new() -> Self {
        let (kernel, init) = match guest_assets() {
            Some((k, i)) => (Some(k), Some(i)),
            None => (None, None),
        };
        Hx {
            root: tempfile::Builder::new()
                .prefix("hx-test-")
                .tempdir()
                .unwrap(),
            kernel,
            init,
        }
    }

    pub fn has_guest(&self) -> bool {
        self.kernel.is_some()
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hx"));
        c.arg("--root").arg(self.root.path()).args(args);
        c.env_remove("HX_ROOT").env("HX_BACKEND", "qemu");
        // Tests never touch the machine's own network: containers get none unless a test runs
        // hx in a namespace of its own (netns.rs).
        c.env("HX_NETWORK", "none");
        // Warm-start templates are keyed by kernel, pv-init and shape, not by store: the
        // suite's stores share them, so it builds one per shape instead of one per test.
        if std::env::var_os("HX_TEMPLATE_DIR").is_none() {
            c.env(
                "HX_TEMPLATE_DIR",
                std::env::temp_dir().join("hx-test-templates"),
            );
        }
        if let (Some(k), Some(i)) = (&self.kernel, &self.init) {
            c.env("HX_KERNEL", k).env("HX_INIT", i);
        }
        c.stdin(Stdio::null());
        c
    }

    /// Runs hx with a time limit: a hang fails the test instead of blocking CI.
    pub fn run(&self, args: &[&str]) -> Run {
        run_with_timeout(self.cmd(args), Duration::from_secs(180))
    }

    pub fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert_eq!(r.code, 0, "hx {args:?} failed: {}{}", r.stdout, r.stderr);
        r
    }

    /// A store with the busybox image loaded, when the guest kernel and init are there to run
    /// it (tests that boot guests skip themselves otherwise).
    pub fn with_busybox() -> Option<Hx> {
        let hx = Hx::new();
        if !hx.has_guest() {
            return None;
        }
        hx.load_busybox();
        Some(hx)
    }

    pub fn load_busybox(&self) {
        self.ok(&["load", "-i", shared_image("glibc").to_str().unwrap()]);
    }

    /// Every file under the store, except the lock (for "the store is unchanged" checks).
    pub fn store_files(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(self.root.path(), self.root.path(), &mut out);
        out.retain(|p| p != "lock");
        out.sort();
        out
    }
}

fn walk(base: &Path, p: &Path, out: &mut Vec<String>) {
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            let rel = path.strip_prefix(base).unwrap().display().to_string();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                walk(base, &path, out);
            } else {
                out.push(rel);
            }
        }
    }
}

/// Runs hx with `input` on its stdin (written while hx runs); (exit code, stdout bytes, stderr).
pub fn run_with_input(hx: &Hx, args: &[&str], input: Vec<u8>) -> (i32, Vec<u8>, String) {
    use std::io::{Read, Write};
    let mut child = hx
        .cmd(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    let r = wait_with_timeout(child, Duration::from_secs(180));
    writer.join().unwrap();
    (r.code, reader.join().unwrap(), r.stderr)
}

/// The nginx acceptance's image (tests/images/nginx.sh: Debian's nginx-light as docker's
/// nginx image behaves) as an OCI layout at `out`; the mmdebstrap output is cached across runs
/// (/var/cache/hx-tests).
pub fn build_nginx_layout(out: &Path) {
    let mut c = Command::new(repo().join("tests/images/nginx.sh"));
    c.arg(out);
    let r = run_with_timeout(c, Duration::from_secs(900));
    assert_eq!(r.code, 0, "building the nginx image: {}", r.stderr);
}

pub fn run_with_timeout(mut cmd: Command, limit: Duration) -> Run {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hx");
    wait_with_timeout(child, limit)
}

/// Waits for a child spawned with piped stdout/stderr (or not), killing it after `limit`.
pub fn wait_with_timeout(mut child: std::process::Child, limit: Duration) -> Run {
    let read = |p: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            p.map(|p| std::io::read_to_string(p).unwrap_or_default())
                .unwrap_or_default()
        })
    };
    let t_out = read(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let t_err = read(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child {} timed out after {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// The live (not zombie) processes: pid and argument list.
fn processes() -> Vec<(i32, Vec<String>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'));
        if let (Ok(cmdline), false) = (std::fs::read(e.path().join("cmdline")), zombie) {
            let args = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into())
                .collect();
            out.push((pid, args));
        }
    }
    out
}

/// QEMU processes started from the store at `root` (their command lines name its files):
/// pid and argument list.
fn qemus_for(root: &Path) -> impl Iterator<Item = (i32, Vec<String>)> {
    let root = root.to_string_lossy().into_owned();
    processes().into_iter().filter(move |(_, args)| {
        args[0].starts_with("qemu-system") && args.iter().any(|a| a.contains(&root))
    })
}

/// The argument lists of the live QEMU processes started for the store at `root`.
pub fn qemu_cmdlines_for(root: &Path) -> Vec<Vec<String>> {
    qemus_for(root).map(|(_, args)| args).collect()
}

pub fn qemu_processes_for(root: &Path) -> usize {
    qemu_pids_for(root).len()
}

/// QEMU processes started from the store at `root`.
pub fn qemu_pids_for(root: &Path) -> Vec<i32> {
    qemus_for(root).map(|(pid, _)| pid).collect()
}

/// The restart supervisors (`hx --root ROOT __supervise ID`) of the store at `root`.
pub fn supervisor_pids_for(root: &Path) -> Vec<i32> {
    let root = root.to_string_lossy();
    processes()
        .into_iter()
        .filter(|(_, args)| {
            args.iter().any(|a| a == "__supervise") && args.iter().any(|a| *a == root)
        })
        .map(|(pid, _)| pid)
        .collect()
}

/// A test that fails midway must not leave its VMs running (they would outlive the store and
/// eat the CPU of every later test): whatever still runs from this store is killed, the
/// restart supervisors first (they would start the VMs again).
impl Drop for Hx {
    fn drop(&mut self) {
        for pid in supervisor_pids_for(self.root.path()) {
            // SAFETY: sending a signal.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for pid in qemu_pids_for(self.root.path()) {
            // SAFETY: sending a signal.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `child` answers HTTP on 127.0.0.1:`port`. A bare TCP connect is not enough:
/// with nothing listening yet, a connect to a port in the ephemeral range can connect to
/// itself (TCP simultaneous open) and the caller would go on before the server is there.
pub fn wait_for_http(port: u16, child: &mut std::process::Child, stderr: &Path, what: &str) {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{what} exited ({status}) before answering: {}",
                std::fs::read_to_string(stderr).unwrap_or_default()
            );
        }
        let answered = std::net::TcpStream::connect(("127.0.0.1", port))
            .and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(5)))?;
                s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
                let mut head = [0u8; 5];
                s.read_exact(&mut head)?;
                Ok(&head == b"HTTP/")
            })
            .unwrap_or(false);
        if answered {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not answer HTTP on port {port}: {}",
            std::fs::read_to_string(stderr).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A real registry (Debian's docker-registry) on 127.0.0.1, killed on drop.
pub struct Registry {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: std::process::Child,
}

impl Registry {
    pub fn start() -> Self {
        Self::start_with_auth("")
    }

    /// `auth_yaml` is inserted under `auth:` in the config (empty: no auth).
    pub fn start_with_auth(auth_yaml: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("hx-registry-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let auth = if auth_yaml.is_empty() {
            String::new()
        } else {
            format!("auth:\n{auth_yaml}\n")
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
            dir.path().join("storage").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(std::fs::File::create(dir.path().join("registry.log")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("registry.err")).unwrap())
            .spawn()
            .expect("docker-registry (apt-get install docker-registry)");
        let mut r = Registry { port, dir, child };
        let err = r.dir.path().join("registry.err");
        wait_for_http(port, &mut r.child, &err, "docker-registry");
        r
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes an OCI layout with skopeo.
    pub fn push_layout(&self, layout: &Path, reference: &str, creds: Option<&str>) {
        let mut c = Command::new("skopeo");
        c.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if let Some(cr) = creds {
            c.arg(format!("--dest-creds={cr}"));
        }
        let out = c
            .arg(format!("oci:{}", layout.display()))
            .arg(format!("docker://{}/{reference}", self.host()))
            .output()
            .expect("skopeo");
        assert!(
            out.status.success(),
            "skopeo copy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn blob_data(&self, digest_hex: &str) -> PathBuf {
        self.dir.path().join(format!(
            "storage/docker/registry/v2/blobs/sha256/{}/{digest_hex}/data",
            &digest_hex[..2]
        ))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
