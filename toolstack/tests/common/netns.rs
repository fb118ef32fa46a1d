//! Network namespaces for the networking tests: hx runs in a "host" namespace (its hx0 bridge
//! and nft table live there), a "client" namespace reaches it over a veth pair. The machine's
//! own interfaces and nftables rules are never touched; dropping the lab kills the VMs of the
//! store and deletes both namespaces.
use super::{run_with_timeout, Hx, Run};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const HOST_IP: &str = "192.168.77.1";
pub const CLIENT_IP: &str = "192.168.77.2";

static NEXT: AtomicUsize = AtomicUsize::new(0);

pub struct NetLab {
    pub host: String,
    pub client: String,
    roots: Vec<PathBuf>,
}

/// Runs `args` (a program and its arguments); fails the test with its stderr if it fails.
pub fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", args[0]));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether this runs as root, which network namespaces need. Not root: false with a message
/// (a skip), except in CI, which runs as root: there it fails.
pub fn root_or_skip() -> bool {
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var_os("CI").is_none(),
            "network tests need root in CI"
        );
        eprintln!("SKIP: network namespaces need root");
        return false;
    }
    true
}

impl NetLab {
    /// None (with a message) when not root: namespaces need it. CI runs as root.
    pub fn new(hx: &Hx) -> Option<NetLab> {
        if !root_or_skip() {
            return None;
        }
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let tag = format!("{}-{n}", std::process::id());
        let lab = NetLab {
            host: format!("hxt-{tag}-h"),
            client: format!("hxt-{tag}-c"),
            roots: vec![hx.root().to_path_buf()],
        };
        let (vh, vc) = (format!("hxv{tag}h"), format!("hxv{tag}c"));
        sh(&["ip", "netns", "add", &lab.host]);
        sh(&["ip", "netns", "add", &lab.client]);
        sh(&[
            "ip",
            "link",
            "add",
            &vh,
            "netns",
            &lab.host,
            "type",
            "veth",
            "peer",
            "name",
            &vc,
            "netns",
            &lab.client,
        ]);
        for (ns, dev, ip) in [(&lab.host, &vh, HOST_IP), (&lab.client, &vc, CLIENT_IP)] {
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                dev,
            ]);
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        Some(lab)
    }

    /// Another store whose VMs the lab kills when dropped.
    pub fn adopt(&mut self, hx: &Hx) {
        self.roots.push(hx.root().to_path_buf());
    }

    /// The inode of the host namespace (hx keys its address pools by it).
    pub fn host_netns_inode(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/run/netns/{}", self.host))
            .expect("host namespace")
            .ino()
    }

    /// The leases of `hx`'s store in hx0's address pool (shared by every store of the host
    /// namespace, network/ipam.rs): (address, container id).
    pub fn leases(&self, hx: &Hx) -> Vec<(String, String)> {
        let pool = format!("/run/hx/ipam/net-{}/hx0/pool.json", self.host_netns_inode());
        let root = std::fs::canonicalize(hx.root()).unwrap();
        let v: serde_json::Value = std::fs::read(&pool)
            .ok()
            .map(|b| serde_json::from_slice(&b).unwrap())
            .unwrap_or(serde_json::json!({"leases": {}}));
        v["leases"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, l)| l["owner"]["root"] == root.to_str().unwrap())
            .map(|(ip, l)| (ip.clone(), l["owner"]["id"].as_str().unwrap().to_string()))
            .collect()
    }

    /// A command run inside the host namespace.
    pub fn in_host(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.host, program]).args(args);
        c
    }

    /// hx (with the test store and guest assets) inside the host namespace.
    pub fn hx_cmd(&self, hx: &Hx, args: &[&str]) -> Command {
        let base = hx.cmd(args);
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.host])
            .arg(base.get_program())
            .args(base.get_args());
        for (k, v) in base.get_envs().filter(|(k, _)| *k != "HX_NETWORK") {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.env_remove("HX_NETWORK")
            .stdin(std::process::Stdio::null());
        c
    }

    pub fn hx(&self, hx: &Hx, args: &[&str]) -> Run {
        run_with_timeout(self.hx_cmd(hx, args), Duration::from_secs(180))
    }

    pub fn hx_ok(&self, hx: &Hx, args: &[&str]) -> Run {
        let r = self.hx(hx, args);
        assert_eq!(r.code, 0, "hx {args:?}: {}{}", r.stdout, r.stderr);
        r
    }

    fn exec(&self, ns: &str, args: &[&str]) -> Run {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).args(args);
        run_with_timeout(c, Duration::from_secs(60))
    }

    pub fn in_host_run(&self, args: &[&str]) -> Run {
        self.exec(&self.host, args)
    }

    pub fn in_client_run(&self, args: &[&str]) -> Run {
        self.exec(&self.client, args)
    }

    /// `curl` from the client namespace (None: no answer).
    pub fn fetch_from_client(&self, url: &str) -> Option<String> {
        let r = self.exec(&self.client, &["curl", "-sf", "-m", "3", url]);
        (r.code == 0).then_some(r.stdout)
    }

    /// `curl` from the host namespace itself.
    pub fn fetch_from_host(&self, url: &str) -> Option<String> {
        let r = self.exec(&self.host, &["curl", "-sf", "-m", "3", url]);
        (r.code == 0).then_some(r.stdout)
    }

    /// Polls until `url` answers from the client namespace; a guest under TCG takes seconds.
    pub fn wait_for_client(&self, url: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(body) = self.fetch_from_client(url) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{url} did not answer the client within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The rules in hx's `publish` chain (empty if the table does not exist).
    pub fn publish_rules(&self) -> Vec<String> {
        let r = self.in_host_run(&["nft", "list", "chain", "ip", "hx", "publish"]);
        r.stdout
            .lines()
            .filter(|l| l.contains("dnat"))
            .map(|l| l.trim().to_string())
            .collect()
    }

    /// Host interfaces hx made for containers (`hx-<id>`).
    pub fn container_links(&self) -> Vec<String> {
        let r = self.in_host_run(&["ip", "-o", "link", "show"]);
        r.stdout
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .filter(|n| n.starts_with("hx-"))
            .collect()
    }

    /// Whether a TCP port can be bound in the host namespace (nothing holds it).
    pub fn port_free(&self, port: u16) -> bool {
        // SO_REUSEADDR as servers set it: TIME_WAIT leftovers of finished connections do not
        // count, a held or listening socket does.
        let code = format!("import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', {port}))");
        self.in_host_run(&["python3", "-c", &code]).code == 0
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        // VMs of this store: their taps and reservations go with them.
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            if let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) {
                let s = String::from_utf8_lossy(&cmdline);
                // VMs, and user networks' resolvers (`hx --root R __net-dns ID`).
                if (s.starts_with("qemu-system") || s.contains("\0__net-dns\0"))
                    && self.roots.iter().any(|r| s.contains(&*r.to_string_lossy()))
                {
                    if let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() {
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
        }
        // The namespace's address pools (hx keeps them under its inode).
        if let Ok(m) = std::fs::metadata(format!("/run/netns/{}", self.host)) {
            use std::os::unix::fs::MetadataExt;
            let _ = std::fs::remove_dir_all(format!("/run/hx/ipam/net-{}", m.ino()));
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.host])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.client])
            .status();
    }
}
