//! Debian's podman 4.3 (rootful, with conmon and CNI networking), run by the test inside a
//! network namespace the test made, with everything of its own under a temp dir: storage
//! (`--root`, `--runroot`, vfs), `--tmpdir`, containers.conf (`CONTAINERS_CONF`: cgroupfs, file
//! events, volumes), storage.conf and registries.conf, and the CNI configuration dir
//! (`--network-config-dir`) with one bridge network, `hxtest` (its IPAM leases in the temp
//! dir too). Dropping it removes the containers, kills what names the temp dir, unmounts what
//! is left under it and deletes the namespace (left behind by podman's CNI library itself: an
//! empty /var/lib/cni/results).
use super::docker::{mounts_under, pids_mentioning};
use super::{run_with_timeout, Run};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub const PODMAN: &str = "/usr/bin/podman";
pub const CONMON: &str = "/usr/bin/conmon";
/// The subnet of the test's CNI network.
pub const SUBNET: &str = "10.99.0.0/24";

static NEXT: AtomicUsize = AtomicUsize::new(0);

pub struct Podman {
    pub netns: String,
    pub dir: PathBuf,
}

fn unavailable(why: &str) -> Option<Podman> {
    assert!(
        std::env::var_os("CI").is_none(),
        "podman tests under CI: {why} (scripts/setup.sh installs podman)"
    );
    eprintln!("SKIP: {why}");
    None
}

impl Podman {
    /// The namespace and configuration; None (with a message) when this machine cannot (not
    /// root, podman not installed) and CI is not set. `runtime_env`: variables conmon passes
    /// to the OCI runtime (HX_KERNEL, HX_INIT).
    pub fn new(runtime_env: &[(&str, &Path)]) -> Option<Podman> {
        if unsafe { libc::geteuid() } != 0 {
            return unavailable("rootful podman and network namespaces need root");
        }
        for bin in [
            PODMAN,
            CONMON,
            "/usr/lib/cni/bridge",
            "/usr/lib/cni/portmap",
            "/usr/lib/cni/dnsname",
            "/usr/sbin/dnsmasq",
        ] {
            if !Path::new(bin).is_file() {
                return unavailable(&format!(
                    "{bin} is missing (apt-get install podman containernetworking-plugins \
                     golang-github-containernetworking-plugin-dnsname)"
                ));
            }
        }
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let netns = format!("hxp-{}-{n}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix("hx-podman-")
            .tempdir()
            .unwrap()
            .keep();
        let p = Podman { netns, dir };
        // From here on, Drop undoes everything.
        for args in [
            vec!["ip", "netns", "add", &p.netns],
            vec!["ip", "-n", &p.netns, "link", "set", "lo", "up"],
        ] {
            let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
            assert!(out.status.success(), "{args:?}");
        }
        p.write_config(runtime_env);
        Some(p)
    }

    fn write_config(&self, runtime_env: &[(&str, &Path)]) {
        let d = &self.dir;
        for sub in ["cni", "tmp"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let mut env = vec![format!(
            "PATH={}",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into())
        )];
        env.extend(
            runtime_env
                .iter()
                .map(|(k, v)| format!("{k}={}", v.display())),
        );
        let conf = format!(
            "[engine]\nconmon_env_vars = {env:?}\ncgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\nevents_logfile_path = {:?}\ntmp_dir = {:?}\n\
             volume_path = {:?}\n\
             [network]\nnetwork_backend = \"cni\"\nnetwork_config_dir = {:?}\n\
             cni_plugin_dirs = [\"/usr/lib/cni\"]\ndefault_network = \"hxtest\"\n",
            d.join("events.log"),
            d.join("tmp"),
            d.join("volumes"),
            d.join("cni"),
        );
        std::fs::write(d.join("containers.conf"), conf).unwrap();
        let net = serde_json::json!({
            "cniVersion": "0.4.0",
            "name": "hxtest",
            "plugins": [
                {"type": "bridge", "bridge": "cnitest0", "isGateway": true, "ipMasq": true,
                 "hairpinMode": true,
                 "ipam": {"type": "host-local", "routes": [{"dst": "0.0.0.0/0"}],
                          "ranges": [[{"subnet": SUBNET, "gateway": "10.99.0.1"}]],
                          "dataDir": d.join("cni-ipam")}},
                {"type": "portmap", "capabilities": {"portMappings": true}},
                {"type": "firewall"},
                {"type": "tuning"}
            ]
        });
        std::fs::write(d.join("cni/hxtest.conflist"), net.to_string()).unwrap();
        std::fs::write(
            d.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\nrunroot = {:?}\ngraphroot = {:?}\n",
                d.join("runroot"),
                d.join("root")
            ),
        )
        .unwrap();
        std::fs::write(d.join("registries.conf"), "").unwrap();
    }

    /// `podman` in the namespace with the temp dir's storage and configuration.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let d = &self.dir;
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.netns))
            .arg(PODMAN)
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .args(["--storage-driver", "vfs", "--tmpdir"])
            .arg(d.join("tmp"))
            .arg("--network-config-dir")
            .arg(d.join("cni"))
            .args(args)
            .env("CONTAINERS_CONF", d.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", d.join("storage.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", d.join("registries.conf"))
            .stdin(Stdio::null());
        c
    }

    pub fn podman(&self, args: &[&str]) -> Run {
        run_with_timeout(self.cmd(args), Duration::from_secs(180))
    }

    pub fn podman_ok(&self, args: &[&str]) -> Run {
        let r = self.podman(args);
        assert_eq!(r.code, 0, "podman {args:?}: {}{}", r.stdout, r.stderr);
        r
    }

    /// A command run inside the test's network namespace.
    pub fn in_netns(&self, args: &[&str]) -> Run {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.netns))
            .args(args)
            .stdin(Stdio::null());
        run_with_timeout(c, Duration::from_secs(60))
    }

    /// A name for a user network the test creates with `podman network create`, its own
    /// (dnsname keeps a dnsmasq per network name under /run/containers/cni/dnsname, and
    /// host-local its leases under /var/lib/cni/networks: Drop removes both).
    pub fn user_network(&self) -> String {
        format!("{}-dns", self.netns)
    }

    pub fn mounts(&self) -> Vec<PathBuf> {
        mounts_under(&self.dir)
    }

    pub fn processes(&self) -> Vec<i32> {
        pids_mentioning(&self.dir)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let mut c = self.cmd(&["rm", "-af", "-t", "0"]);
        c.stdout(Stdio::null()).stderr(Stdio::null());
        let _ = run_with_timeout(c, Duration::from_secs(60));
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
        let net = self.user_network();
        let dns_dir = Path::new("/run/containers/cni/dnsname").join(&net);
        if let Ok(pid) = std::fs::read_to_string(dns_dir.join("pidfile")) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let _ = std::fs::remove_dir_all(&dns_dir);
        let _ = std::fs::remove_dir_all(Path::new("/var/lib/cni/networks").join(&net));
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}
