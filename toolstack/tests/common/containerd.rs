//! Debian's containerd (1.6), started by the test with its own root, state, sockets and
//! config in a temp dir, the snapshotters and CRI it does not need disabled, and the hx shim
//! (`containerd-shim-hx-v2`, built beside hx) first on its PATH: `ctr run --runtime
//! io.containerd.hx.v2` finds it there. Dropping it (also on a panic) stops containerd,
//! kills whatever still names the temp dir (shims, keepers, VMs) and unmounts what is left.
use super::docker::{busybox_archive, mounts_under, pids_mentioning};
use super::{run_with_timeout, Run};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The shim, built beside hx (`cargo build --release -p hx-shim`; `cargo test --workspace`
/// builds it), or in HX_TEST_BIN_DIR (the Xen lab's dom0: /usr/local/bin).
pub fn shim_dir() -> PathBuf {
    let dir = match std::env::var_os("HX_TEST_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_BIN_EXE_hx"))
            .parent()
            .unwrap()
            .to_path_buf(),
    };
    assert!(
        dir.join("containerd-shim-hx-v2").is_file(),
        "{}/containerd-shim-hx-v2 is missing: cargo build --release -p hx-shim",
        dir.display()
    );
    dir
}

pub const CONTAINERD: &str = "/usr/bin/containerd";
pub const CTR: &str = "/usr/bin/ctr";
/// What `ctr images import` names the shared busybox.
pub const IMAGE: &str = "docker.io/library/busybox:1.38.0";
pub const RUNTIME: &str = "io.containerd.hx.v2";

pub struct Containerd {
    pub dir: PathBuf,
    /// The shim's engine root for ctr's `default` namespace.
    pub hx_root: PathBuf,
    child: Option<Child>,
    /// With the CRI plugin (start_cri): the network namespace containerd runs in.
    pub netns: Option<String>,
    /// /var/run/netns before containerd started: the CNI namespaces it makes are the new ones.
    netns_before: Vec<String>,
}

/// The CNI network of start_cri: Debian's bridge + host-local plugins, a bridge of the
/// test's own in containerd's network namespace (never the machine's).
pub const CRI_SUBNET: &str = "10.231.77.0/24";
pub const CRI_GATEWAY: &str = "10.231.77.1";
pub const NETNS_DIR: &str = "/var/run/netns";

pub fn netns_names() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(NETNS_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    v.sort();
    v
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Missing parts fail the test under CI=true and skip it (with a message) elsewhere.
fn unavailable(why: &str) -> Option<Containerd> {
    assert!(
        std::env::var_os("CI").is_none(),
        "containerd tests under CI: {why} (scripts/setup.sh installs containerd)"
    );
    eprintln!("SKIP: {why}");
    None
}

impl Containerd {
    /// containerd with `shim_dir` first on its PATH and the guest assets in its environment
    /// (the shim inherits it).
    pub fn start(shim_dir: &Path, kernel: &Path, init: &Path) -> Option<Containerd> {
        Self::launch(shim_dir, kernel, init, None)
    }

    /// containerd with its CRI plugin (the `hx` runtime handler, runc's as `runc`,
    /// `sandbox_image`, CNI in the temp dir), run inside a network namespace of the
    /// test's own (`nsenter --net`): the CNI bridge and the pods' veths live there.
    pub fn start_cri(
        shim_dir: &Path,
        kernel: &Path,
        init: &Path,
        sandbox_image: &str,
    ) -> Option<Containerd> {
        Self::launch(shim_dir, kernel, init, Some(sandbox_image))
    }

    fn launch(
        shim_dir: &Path,
        kernel: &Path,
        init: &Path,
        cri: Option<&str>,
    ) -> Option<Containerd> {
        if unsafe { libc::geteuid() } != 0 {
            return unavailable("containerd needs root");
        }
        for bin in [CONTAINERD, CTR] {
            if !Path::new(bin).is_file() {
                return unavailable(&format!("{bin} is missing (apt-get install containerd)"));
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("hx-containerd-")
            .tempdir()
            .unwrap()
            .keep();
        let mut config = format!(
            "version = 2\nroot = {:?}\nstate = {:?}\n\
             disabled_plugins = [{}\
             \"io.containerd.snapshotter.v1.aufs\", \"io.containerd.snapshotter.v1.btrfs\", \
             \"io.containerd.snapshotter.v1.zfs\", \"io.containerd.snapshotter.v1.devmapper\"]\n\
             [grpc]\n  address = {:?}\n[ttrpc]\n  address = {:?}\n[debug]\n  address = \"\"\n",
            dir.join("root"),
            dir.join("state"),
            if cri.is_some() {
                ""
            } else {
                "\"io.containerd.grpc.v1.cri\", "
            },
            dir.join("containerd.sock"),
            dir.join("containerd.ttrpc.sock"),
        );
        let mut netns = None;
        if let Some(sandbox_image) = cri {
            config.push_str(&cri_config(&dir, sandbox_image));
            let name = format!("hxcri-{}", std::process::id());
            ip(&["netns", "add", &name]);
            ip(&["-n", &name, "link", "set", "lo", "up"]);
            netns = Some(name);
        }
        std::fs::write(dir.join("containerd.toml"), config).unwrap();
        let path = format!(
            "{}:{}",
            shim_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let mut d = Containerd {
            hx_root: dir.join("hx").join("default"),
            dir,
            child: None,
            netns_before: netns_names(),
            netns,
        };
        let mut cmd = match &d.netns {
            Some(n) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={NETNS_DIR}/{n}")).arg(CONTAINERD);
                c
            }
            None => Command::new(CONTAINERD),
        };
        d.child = Some(
            cmd.arg("--config")
                .arg(d.dir.join("containerd.toml"))
                .env("PATH", path)
                .env("HX_SHIM_ROOT", d.dir.join("hx"))
                .env("HX_KERNEL", kernel)
                .env("HX_INIT", init)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("spawn containerd"),
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while d.ctr(&["version"]).code != 0 {
            if let Some(st) = d.child.as_mut().unwrap().try_wait().unwrap() {
                d.child = None;
                panic!("containerd exited ({st}): {}", d.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "containerd did not answer: {}",
                d.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(d)
    }

    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    pub fn ctr_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(CTR);
        c.arg("-a")
            .arg(self.dir.join("containerd.sock"))
            .args(args)
            .stdin(Stdio::null());
        c
    }

    pub fn ctr(&self, args: &[&str]) -> Run {
        run_with_timeout(self.ctr_cmd(args), Duration::from_secs(180))
    }

    pub fn ctr_ok(&self, args: &[&str]) -> Run {
        let r = self.ctr(args);
        assert_eq!(r.code, 0, "ctr {args:?}: {}{}", r.stdout, r.stderr);
        r
    }

    /// `ctr images import` of the shared busybox (a docker-archive, as IMAGE).
    pub fn import_busybox(&self) {
        let archive = busybox_archive(&self.dir);
        self.ctr_ok(&["images", "import", archive.to_str().unwrap()]);
        std::fs::remove_file(archive).unwrap();
    }

    /// The same into containerd namespace `ns` (CRI's is `k8s.io`).
    pub fn import_busybox_in(&self, ns: &str) {
        let archive = busybox_archive(&self.dir);
        self.ctr_ok(&["-n", ns, "images", "import", archive.to_str().unwrap()]);
        std::fs::remove_file(archive).unwrap();
    }

    pub fn mounts(&self) -> Vec<PathBuf> {
        mounts_under(&self.dir)
    }

    /// Processes other than containerd and ctr clients whose command line names the temp
    /// dir (shims, keepers, QEMU).
    pub fn processes(&self) -> Vec<i32> {
        let me = self.child.as_ref().map(|c| c.id() as i32);
        let mut v = pids_mentioning(&self.dir);
        v.retain(|&p| {
            Some(p) != me
                && std::fs::read_link(format!("/proc/{p}/exe")).ok() != Some(PathBuf::from(CTR))
        });
        v
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        for pid in pids_mentioning(&self.dir) {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(100));
        for m in mounts_under(&self.dir).iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(m).output();
        }
        // CNI's result cache of pods a killed containerd did not tear down (libcni keeps it
        // in /var/lib/cni/results, named after the network and the sandbox).
        let results = Path::new("/var/lib/cni/results");
        for f in std::fs::read_dir(results).into_iter().flatten().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if let Some(id) = name
                .strip_prefix("hxcri-")
                .and_then(|n| n.strip_suffix("-eth0"))
            {
                let _ = std::fs::remove_file(f.path());
                let _ = std::fs::remove_file(results.join(format!("cni-loopback-{id}-lo")));
            }
        }
        // The CNI namespaces a killed containerd did not remove, then the test's own.
        for n in netns_names() {
            if n.starts_with("cni-") && !self.netns_before.contains(&n) {
                let _ = Command::new("ip").args(["netns", "delete", &n]).output();
            }
        }
        if let Some(n) = &self.netns {
            let _ = Command::new("ip").args(["netns", "delete", n]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The CRI plugin's configuration (containerd 1.6, config version 2) and the CNI network
/// it reads from `<dir>/cni`. `restrict_oom_score_adj`: a sandbox's -998 is refused where the
/// test itself may not lower its score (runc then fails "failed to update
/// /proc/self/oom_score_adj"), so no score below containerd's own.
fn cri_config(dir: &Path, sandbox_image: &str) -> String {
    let cni = dir.join("cni");
    std::fs::create_dir_all(&cni).unwrap();
    let conflist = serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "hxcri",
        "plugins": [{
            "type": "bridge",
            "bridge": "hxcri0",
            "isGateway": true,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "dataDir": dir.join("cni-ipam"),
                "ranges": [[{"subnet": CRI_SUBNET, "gateway": CRI_GATEWAY}]],
                "routes": [{"dst": "0.0.0.0/0"}],
            },
        }, {
            // Pods' hostPorts: DNAT in the node's namespace (iptables).
            "type": "portmap",
            "capabilities": {"portMappings": true},
        }],
    });
    std::fs::write(cni.join("10-hxcri.conflist"), conflist.to_string()).unwrap();
    let p = "plugins.\"io.containerd.grpc.v1.cri\"";
    format!(
        "[{p}]\n  sandbox_image = {sandbox_image:?}\n  disable_apparmor = true\n\
         restrict_oom_score_adj = true\n\
         [{p}.containerd]\n  default_runtime_name = \"runc\"\n\
         [{p}.containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n\
         [{p}.containerd.runtimes.hx]\n  runtime_type = {RUNTIME:?}\n\
         [{p}.cni]\n  bin_dir = \"/usr/lib/cni\"\n  conf_dir = {:?}\n",
        cni
    )
}

/// An image whose process sleeps (the shared busybox with `Cmd = [sleep, 2147483647]`): a
/// sandbox image for runc's pods, which need one that stays up (hx runs pv-init's instead).
pub const PAUSE_IMAGE: &str = "docker.io/library/hx-pause:1";

impl Containerd {
    /// Builds PAUSE_IMAGE from the shared busybox's OCI layout (a new config, manifest and
    /// index; the layer is the same) and imports it into containerd namespace `ns`.
    pub fn import_pause_in(&self, ns: &str) {
        use sha2::Digest;
        let layout = self.dir.join("pause-layout");
        super::docker::sh(&[
            "cp",
            "-a",
            super::shared_image("glibc").to_str().unwrap(),
            layout.to_str().unwrap(),
        ]);
        let blob = |d: &str| {
            layout
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:"))
        };
        let read = |d: &str| -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(blob(d)).unwrap()).unwrap()
        };
        let write = |v: &serde_json::Value| -> (String, usize) {
            let bytes = serde_json::to_vec(v).unwrap();
            let d = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)));
            std::fs::write(blob(&d), &bytes).unwrap();
            (d, bytes.len())
        };
        let mut index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let mut manifest = read(index["manifests"][0]["digest"].as_str().unwrap());
        let mut config = read(manifest["config"]["digest"].as_str().unwrap());
        config["config"]["Cmd"] = serde_json::json!(["sleep", "2147483647"]);
        config["config"]["Entrypoint"] = serde_json::Value::Null;
        let (d, n) = write(&config);
        manifest["config"]["digest"] = d.into();
        manifest["config"]["size"] = n.into();
        let (d, n) = write(&manifest);
        index["manifests"][0]["digest"] = d.into();
        index["manifests"][0]["size"] = n.into();
        index["manifests"][0]["annotations"] =
            serde_json::json!({"org.opencontainers.image.ref.name": "hx-pause:1"});
        std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
        let archive = self.dir.join("pause.tar");
        super::docker::sh(&[
            "skopeo",
            "copy",
            "--quiet",
            &format!("oci:{}:hx-pause:1", layout.display()),
            &format!("docker-archive:{}:{PAUSE_IMAGE}", archive.display()),
        ]);
        self.ctr_ok(&["-n", ns, "images", "import", archive.to_str().unwrap()]);
        std::fs::remove_file(archive).unwrap();
        std::fs::remove_dir_all(layout).unwrap();
    }
}
