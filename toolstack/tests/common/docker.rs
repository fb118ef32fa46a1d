//! Debian's docker.io, started by the test: its own containerd and dockerd inside a network
//! namespace the test made (docker's bridge, iptables rules and docker-proxy live there, never
//! on the machine's interfaces), with private data/exec roots and sockets in a temp dir, the
//! overlay2 storage driver and the runtimes the test registers in its daemon.json. Dropping it
//! (also on a panic) removes the containers, stops dockerd, containerd and their shims, unmounts
//! whatever is left under the temp dir and deletes the namespace.
//!
//! dockerd is entered into the namespace with `nsenter --net=`: `ip netns exec` remounts /sys,
//! hides the cgroup mounts, and dockerd then fails with "Devices cgroup isn't mounted".
use super::{run_with_timeout, Run};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const DOCKERD: &str = "/usr/sbin/dockerd";
pub const CONTAINERD: &str = "/usr/bin/containerd";
/// Debian's client, matching its daemon (another `docker` may come first on PATH).
pub const DOCKER: &str = "/usr/bin/docker";
/// Debian's docker-compose 1.29 (the `docker-compose` package).
pub const COMPOSE: &str = "/usr/bin/docker-compose";
/// The tag `load_busybox` gives the shared glibc busybox.
pub const BUSYBOX: &str = "busybox:1.38.0";

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A runtime registered in daemon.json (`docker run --runtime NAME`).
pub struct Runtime {
    pub name: String,
    pub path: PathBuf,
    pub args: Vec<String>,
}

pub struct Dockerd {
    pub netns: String,
    pub dir: PathBuf,
    pub socket: PathBuf,
    /// From spawning containerd to dockerd answering `docker version`.
    pub startup: Duration,
    containerd: Option<Child>,
    dockerd: Option<Child>,
}

pub fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A missing docker fails the test under CI=true and skips it (with a message) elsewhere.
fn unavailable(why: &str) -> Option<Dockerd> {
    assert!(
        std::env::var_os("CI").is_none(),
        "docker tests under CI: {why} (scripts/setup.sh installs docker.io)"
    );
    eprintln!("SKIP: {why}");
    None
}

impl Dockerd {
    /// Starts containerd and dockerd with `runtimes` registered; None (with a message) when
    /// this machine cannot (not root, docker.io not installed) and CI is not set.
    pub fn start(runtimes: &[Runtime]) -> Option<Dockerd> {
        if unsafe { libc::geteuid() } != 0 {
            return unavailable("dockerd and network namespaces need root");
        }
        for bin in [DOCKERD, CONTAINERD, DOCKER] {
            if !Path::new(bin).is_file() {
                return unavailable(&format!("{bin} is missing (apt-get install docker.io)"));
            }
        }
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let netns = format!("hxd-{}-{n}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix("hx-docker-")
            .tempdir()
            .unwrap()
            .keep();
        sh(&["ip", "netns", "add", &netns]);
        sh(&["ip", "-n", &netns, "link", "set", "lo", "up"]);
        let mut d = Dockerd {
            socket: dir.join("docker.sock"),
            netns,
            dir,
            startup: Duration::ZERO,
            containerd: None,
            dockerd: None,
        };
        // From here on, Drop undoes everything (a failed start included).
        let t0 = Instant::now();
        d.containerd = Some(d.spawn_containerd());
        d.dockerd = Some(d.spawn_dockerd(runtimes));
        d.wait_ready(Duration::from_secs(60));
        d.startup = t0.elapsed();
        Some(d)
    }

    fn nsenter(&self) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.netns));
        c
    }

    fn log_file(&self, name: &str) -> std::fs::File {
        std::fs::File::create(self.dir.join(name)).unwrap()
    }

    fn containerd_socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    /// Debian's containerd with its own root, state and sockets (dockerd would otherwise use
    /// the system's /run/containerd/containerd.sock if one exists).
    fn spawn_containerd(&self) -> Child {
        let d = &self.dir;
        let config = format!(
            "version = 2\nroot = {:?}\nstate = {:?}\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = {:?}\n[ttrpc]\n  address = {:?}\n[debug]\n  address = \"\"\n",
            d.join("containerd-root"),
            d.join("containerd-state"),
            self.containerd_socket(),
            d.join("containerd.ttrpc.sock"),
        );
        std::fs::write(d.join("containerd.toml"), config).unwrap();
        self.nsenter()
            .arg(CONTAINERD)
            .arg("--config")
            .arg(d.join("containerd.toml"))
            .stdin(Stdio::null())
            .stdout(self.log_file("containerd.log"))
            .stderr(self.log_file("containerd.log"))
            .spawn()
            .expect("spawn containerd")
    }

    fn spawn_dockerd(&self, runtimes: &[Runtime]) -> Child {
        let d = &self.dir;
        let runtimes: serde_json::Map<String, serde_json::Value> = runtimes
            .iter()
            .map(|r| {
                (
                    r.name.clone(),
                    serde_json::json!({"path": r.path, "runtimeArgs": r.args}),
                )
            })
            .collect();
        let config = serde_json::json!({ "runtimes": runtimes });
        std::fs::write(d.join("daemon.json"), config.to_string()).unwrap();
        let log = self.log_file("dockerd.log");
        self.nsenter()
            .arg(DOCKERD)
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .arg("--containerd")
            .arg(self.containerd_socket())
            .arg("--config-file")
            .arg(d.join("daemon.json"))
            .args(["--storage-driver", "overlay2", "--iptables=true"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn dockerd")
    }

    fn wait_ready(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            for name in ["containerd", "dockerd"] {
                let child = if name == "dockerd" {
                    &mut self.dockerd
                } else {
                    &mut self.containerd
                };
                if let Some(status) = child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                    *child = None;
                    panic!("{name} exited ({status}): {}", self.log_tail(name));
                }
            }
            let ok = Command::new(DOCKER)
                .arg("-H")
                .arg(format!("unix://{}", self.socket.display()))
                .arg("version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "dockerd did not answer within {limit:?}: {}",
                self.log_tail("dockerd")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of containerd.log or dockerd.log.
    pub fn log_tail(&self, name: &str) -> String {
        let s = std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    pub fn docker_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(DOCKER);
        c.arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// Debian's docker-compose (1.29) against this dockerd, in project directory `dir`.
    pub fn compose(&self, dir: &Path, args: &[&str]) -> Run {
        let mut c = Command::new(COMPOSE);
        c.current_dir(dir)
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .args(args)
            .stdin(Stdio::null());
        run_with_timeout(c, Duration::from_secs(180))
    }

    pub fn docker(&self, args: &[&str]) -> Run {
        run_with_timeout(self.docker_cmd(args), Duration::from_secs(180))
    }

    pub fn docker_ok(&self, args: &[&str]) -> Run {
        let r = self.docker(args);
        assert_eq!(r.code, 0, "docker {args:?}: {}{}", r.stdout, r.stderr);
        r
    }

    /// `docker load` of the shared glibc busybox, as BUSYBOX: a docker-archive skopeo makes
    /// from the OCI layout.
    pub fn load_busybox(&self) {
        let archive = busybox_archive(&self.dir);
        self.docker_ok(&["load", "-i", archive.to_str().unwrap()]);
        std::fs::remove_file(archive).unwrap();
    }

    /// A command run inside the test's network namespace (where dockerd runs).
    pub fn in_netns(&self, args: &[&str]) -> Run {
        let mut c = self.nsenter();
        c.args(args).stdin(Stdio::null());
        run_with_timeout(c, Duration::from_secs(60))
    }

    /// `curl` from inside the namespace (None: no answer).
    pub fn fetch(&self, url: &str) -> Option<String> {
        let r = self.in_netns(&["curl", "-sf", "-m", "3", url]);
        (r.code == 0).then_some(r.stdout)
    }

    /// Polls until `url` answers inside the namespace.
    pub fn wait_for(&self, url: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(body) = self.fetch(url) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{url} did not answer within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Mount points under the temp dir (overlay2 layers, container namespaces, shm).
    pub fn mounts(&self) -> Vec<PathBuf> {
        mounts_under(&self.dir)
    }

    /// Processes whose command line names the temp dir (shims, docker-proxy, runtimes).
    pub fn processes(&self) -> Vec<i32> {
        pids_mentioning(&self.dir)
    }

    fn stop(child: &mut Option<Child>, limit: Duration) {
        let Some(c) = child.as_mut() else { return };
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + limit;
        while c.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        *child = None;
    }
}

/// The shared glibc busybox as a docker-archive in `dir` (tagged BUSYBOX; skopeo makes it
/// from the OCI layout): what `docker load` and `ctr images import` take. Where the repo's
/// images are not (the Xen lab's dom0), HX_TEST_BUSYBOX_ARCHIVE names one made already.
pub fn busybox_archive(dir: &Path) -> PathBuf {
    let archive = dir.join("busybox.tar");
    if let Some(made) = std::env::var_os("HX_TEST_BUSYBOX_ARCHIVE") {
        std::fs::copy(&made, &archive).expect("copying HX_TEST_BUSYBOX_ARCHIVE");
        return archive;
    }
    let layout = super::shared_image("glibc");
    sh(&[
        "skopeo",
        "copy",
        "--quiet",
        &format!("oci:{}:busybox:1.38.0-glibc", layout.display()),
        &format!("docker-archive:{}:{BUSYBOX}", archive.display()),
    ]);
    archive
}

pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    v.sort();
    v.dedup();
    v
}

pub fn pids_mentioning(dir: &Path) -> Vec<i32> {
    let needle = dir.to_string_lossy().to_string();
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            (pid != me && String::from_utf8_lossy(&cmdline).contains(&needle)).then_some(pid)
        })
        .collect()
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if self.dockerd.is_some() {
            let ids = self.docker_cmd(&["ps", "-aq"]).output();
            if let Ok(o) = ids {
                let ids = String::from_utf8_lossy(&o.stdout).to_string();
                let ids: Vec<&str> = ids.split_whitespace().collect();
                if !ids.is_empty() {
                    let mut c = self.docker_cmd(&["rm", "-f"]);
                    c.args(&ids).stdout(Stdio::null()).stderr(Stdio::null());
                    let _ = run_with_timeout(c, Duration::from_secs(60));
                }
            }
        }
        Dockerd::stop(&mut self.dockerd, Duration::from_secs(20));
        Dockerd::stop(&mut self.containerd, Duration::from_secs(10));
        // Shims and anything else that outlived them (they name the temp dir).
        for pid in pids_mentioning(&self.dir) {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(100));
        for m in mounts_under(&self.dir).iter().rev() {
            let _ = Command::new("umount").arg("-R").arg(m).output();
            if mounts_under(&self.dir).contains(m) {
                let _ = Command::new("umount").arg("-l").arg(m).output();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}
