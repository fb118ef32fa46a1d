//! An OCI bundle (`config.json` + a root filesystem directory) as the engine's
//! `CreateRequest`. config.json comes from whoever called the runtime (dockerd, podman): it
//! is bounded, parsed strictly by oci-spec (unknown fields ignored), and what hx cannot honour
//! is refused with the field named.
use crate::lifecycle::CreateRequest;
use crate::seccomp::SeccompPolicy;
use anyhow::{anyhow, bail, Context};
use oci_spec::runtime::{Hook, LinuxNamespaceType, Mount, Spec};
use pv_init::spec::{MountSource, Rlimit, TmpfsOptions, TtySize};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};

/// docker's config.json is a few KiB; anything near this is not a container.
pub const CONFIG_MAX: u64 = 4 << 20;
/// The VM's memory when the spec sets no limit (hx run's default).
pub const DEFAULT_MEMORY_MB: u64 = 128;

/// `n` vCPUs, at least one and no more than the CPUs this process may run on (on a Xen dom0:
/// dom0's vCPUs, a bound the runtime can read without a libxl context).
pub fn host_bounded_cpus(n: u64) -> u32 {
    let host = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    n.clamp(1, host) as u32
}

/// Whole vCPUs for a CFS quota over a period (`--cpus 1.5` is 150000/100000: 2); one
/// without a quota.
pub fn cpus_for_quota(quota: Option<i64>, period: Option<u64>) -> u64 {
    let period = period.filter(|&p| p >= 1000).unwrap_or(100_000);
    quota
        .filter(|&q| q > 0)
        .map_or(1, |q| (q as u64).div_ceil(period))
}

pub struct Bundle {
    /// Absolute.
    pub dir: PathBuf,
    pub spec: Spec,
}

/// Where the keeper (and so the VM's NIC) lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetNs {
    /// The spec asks for no network namespace: the runtime's own.
    Host,
    /// A new, empty one (docker moves an interface into it between create and start).
    New,
    /// An existing one, by path (`/proc/PID/ns/net`, `/run/netns/NAME`).
    Join(PathBuf),
}

/// The spec's hooks the runtime runs (OCI runtime spec, "POSIX-platform Hooks").
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Hooks {
    pub create_runtime: Vec<Hook>,
    pub poststart: Vec<Hook>,
    pub poststop: Vec<Hook>,
}

pub fn load(dir: &Path) -> anyhow::Result<Bundle> {
    let dir = std::fs::canonicalize(dir)
        .with_context(|| format!("bundle {}: no such directory", dir.display()))?;
    let path = dir.join("config.json");
    let mut bytes = Vec::new();
    std::fs::File::open(&path)
        .and_then(|f| f.take(CONFIG_MAX + 1).read_to_end(&mut bytes))
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > CONFIG_MAX {
        bail!("{} is larger than {CONFIG_MAX} bytes", path.display());
    }
    let spec = parse_config(&bytes).with_context(|| format!("{}", path.display()))?;
    Ok(Bundle { dir, spec })
}

/// config.json's text as a spec hx can run: a 1.x version, a process with arguments and an
/// absolute working directory, a root path.
pub fn parse_config(bytes: &[u8]) -> anyhow::Result<Spec> {
    let spec: Spec = serde_json::from_slice(bytes).map_err(|e| anyhow!("invalid JSON: {e}"))?;
    if !spec.version().starts_with("1.") {
        bail!("ociVersion {:?}: hx supports 1.x", spec.version());
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| anyhow!("no process: nothing to run"))?;
    let args = process.args().clone().unwrap_or_default();
    if args.is_empty() || args[0].is_empty() {
        bail!("process.args is empty");
    }
    let no_nul = |what: &str, s: &str| {
        if s.contains('\0') {
            bail!("{what} contains a NUL byte");
        }
        Ok(())
    };
    for a in &args {
        no_nul("process.args", a)?;
    }
    for e in process.env().iter().flatten() {
        no_nul("process.env", e)?;
        match e.split_once('=') {
            Some((k, _)) if !k.is_empty() => {}
            _ => bail!("process.env entry {e:?} is not KEY=VALUE"),
        }
    }
    let cwd = process.cwd().to_str().unwrap_or("");
    if !cwd.starts_with('/') {
        bail!("process.cwd {:?} is not absolute", process.cwd());
    }
    no_nul("process.cwd", cwd)?;
    match spec.root() {
        Some(r) if !r.path().as_os_str().is_empty() => {}
        _ => bail!("no root.path"),
    }
    if let Some(h) = spec.hostname() {
        no_nul("hostname", h)?;
        if h.len() > 64 {
            bail!("hostname {h:?} is longer than 64 bytes");
        }
    }
    // Checked now rather than at start: a bad mount fails `create`.
    guest_mounts(spec.mounts().as_deref().unwrap_or_default())?;
    rlimits(&spec)?;
    Ok(spec)
}

impl Bundle {
    /// The spec's memory limit in bytes (`linux.resources.memory.limit`), if it sets one.
    pub fn memory_limit(&self) -> Option<i64> {
        self.spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.memory().as_ref())
            .and_then(|m| m.limit())
            .filter(|&l| l > 0)
    }

    /// The vCPUs for the spec's CPU limit (`linux.resources.cpu` quota over period: docker's
    /// `--cpus 1.5` is 2), one without a limit, no more than the host has.
    pub fn vcpus(&self) -> u32 {
        let cpu = self
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.cpu().as_ref());
        host_bounded_cpus(cpus_for_quota(
            cpu.and_then(|c| c.quota()),
            cpu.and_then(|c| c.period()),
        ))
    }

    /// The spec's CPU quota as a cap in percent of one CPU, whole CPUs too: a pod member's
    /// cgroup takes it whatever the pod VM's vCPUs (limits::member_limits bounds it by them).
    pub fn cpu_quota_pct(&self) -> Option<u32> {
        let r = self.spec.linux().as_ref()?.resources().as_ref()?;
        crate::limits::Limits::from_oci(r)
            .ok()?
            .cpu_cap_pct
            .filter(|&pct| pct > 0)
    }

    /// A quota that is not whole vCPUs (docker's `--cpus 0.5`) as a cap in percent of one CPU
    /// (limits.rs): the vCPUs alone would give the container more.
    pub fn cpu_cap_pct(&self) -> Option<u32> {
        self.cpu_quota_pct()
            .filter(|&pct| u64::from(pct) < u64::from(self.vcpus()) * 100)
    }

    /// `linux.resources.cpu.shares` (docker's `--cpu-shares`), within docker's bounds.
    pub fn cpu_shares(&self) -> Option<u64> {
        let r = self.spec.linux().as_ref()?.resources().as_ref()?;
        r.cpu()
            .as_ref()?
            .shares()
            .filter(|s| (crate::limits::MIN_SHARES..=crate::limits::MAX_SHARES).contains(s))
    }

    /// `linux.resources.pids.limit` (docker's `--pids-limit`): a positive limit; 0 and -1 are
    /// runc's "none".
    pub fn pids_limit(&self) -> Option<u64> {
        let r = self.spec.linux().as_ref()?.resources().as_ref()?;
        u64::try_from(r.pids().as_ref()?.limit())
            .ok()
            .filter(|l| (1..=pv_init::mux::MAX_PIDS).contains(l))
    }

    /// `root.path`, relative to the bundle unless absolute.
    pub fn rootfs_dir(&self) -> PathBuf {
        let p = self.spec.root().as_ref().expect("checked").path();
        self.dir.join(p)
    }

    pub fn terminal(&self) -> bool {
        self.spec
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false)
    }

    /// The console size the spec asks for, else 24×80.
    pub fn console_size(&self) -> TtySize {
        let b = self.spec.process().as_ref().and_then(|p| p.console_size());
        match b {
            Some(b) if b.height() > 0 && b.width() > 0 => TtySize {
                rows: b.height().min(u16::MAX as u64) as u16,
                cols: b.width().min(u16::MAX as u64) as u16,
            },
            _ => TtySize { rows: 24, cols: 80 },
        }
    }

    pub fn netns(&self) -> NetNs {
        let ns = self
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default();
        match ns.iter().find(|n| n.typ() == LinuxNamespaceType::Network) {
            None => NetNs::Host,
            Some(n) => match n.path() {
                Some(p) if !p.as_os_str().is_empty() => NetNs::Join(p.clone()),
                _ => NetNs::New,
            },
        }
    }

    /// The spec joins an existing PID namespace (a path): under CRI, the sandbox's, which
    /// containerd asks for a pod with `shareProcessNamespace` (NamespaceMode POD).
    pub fn joins_pid_namespace(&self) -> bool {
        self.pid_namespace_path()
            .is_some_and(|p| !p.as_os_str().is_empty())
    }

    fn pid_namespace_path(&self) -> Option<&Path> {
        self.spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .and_then(|ns| ns.iter().find(|n| n.typ() == LinuxNamespaceType::Pid))
            .and_then(|n| n.path().as_deref())
    }

    /// The process whose PID namespace the spec joins, when the path is containerd's
    /// `/proc/PID/ns/pid` (the sandbox's task for NamespaceMode POD, the target container's
    /// for TARGET: both are keepers' pids here).
    pub fn pid_namespace_owner(&self) -> Option<i32> {
        let p = self.pid_namespace_path()?.to_str()?;
        let n = p.strip_prefix("/proc/")?.strip_suffix("/ns/pid")?;
        let pid = n.parse::<i32>().ok().filter(|p| *p > 0)?;
        (pid.to_string() == n).then_some(pid)
    }

    pub fn hooks(&self) -> Hooks {
        let Some(h) = self.spec.hooks() else {
            return Hooks::default();
        };
        #[allow(deprecated)]
        let prestart = h.prestart().clone().unwrap_or_default();
        Hooks {
            // runc runs the deprecated prestart hooks at the same point, first.
            create_runtime: prestart
                .into_iter()
                .chain(h.create_runtime().clone().unwrap_or_default())
                .collect(),
            poststart: h.poststart().clone().unwrap_or_default(),
            poststop: h.poststop().clone().unwrap_or_default(),
        }
    }

    pub fn annotations(&self) -> std::collections::BTreeMap<String, String> {
        self.spec
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect()
    }

    /// The container to create: named `id`, booting `rootfs_image`, its network decided at
    /// start (`network`).
    pub fn request(
        &self,
        id: &str,
        rootfs_image: &Path,
        network: Option<String>,
    ) -> anyhow::Result<CreateRequest> {
        let process = self.spec.process().as_ref().expect("checked");
        let mounts = guest_mounts(self.spec.mounts().as_deref().unwrap_or_default())?;
        let memory_mb = self
            .memory_limit()
            .map(|l| crate::limits::oci_memory_mb(l as u64, false))
            .unwrap_or(DEFAULT_MEMORY_MB);
        let user = process.user();
        Ok(CreateRequest {
            image: format!("bundle:{}", self.dir.display()),
            command: process.args().clone().unwrap_or_default(),
            // The spec's args are the whole command line.
            entrypoint: Some(String::new()),
            env: process.env().clone().unwrap_or_default(),
            workdir: Some(process.cwd().to_string_lossy().into_owned()),
            user: Some(format!("{}:{}", user.uid(), user.gid())),
            name: Some(id.to_string()),
            hostname: self.spec.hostname().clone().filter(|h| !h.is_empty()),
            memory_mb,
            memory_limited: self.memory_limit().is_some(),
            cpus: self.vcpus(),
            cpu_cap_pct: self.cpu_cap_pct(),
            cpu_shares: self.cpu_shares(),
            pids_limit: self.pids_limit(),
            shm_size: mounts.shm_size.unwrap_or(64 << 20),
            rlimits: rlimits(&self.spec)?,
            tmpfs: mounts.tmpfs,
            network,
            volumes: mounts.binds,
            stdin: true,
            // The end of the runtime's stdin is the workload's.
            stdin_once: true,
            tty: self.terminal().then(|| self.console_size()),
            read_only: self
                .spec
                .root()
                .as_ref()
                .and_then(|r| r.readonly())
                .unwrap_or(false),
            rootfs: Some(rootfs_image.to_path_buf()),
            capabilities: Some(
                crate::capabilities::from_oci(process.capabilities().as_ref())
                    .map_err(|e| anyhow!("process.capabilities: {e}"))?,
            ),
            no_new_privileges: process.no_new_privileges().unwrap_or(false),
            // docker's default profile and Kubernetes' RuntimeDefault arrive here; none: none.
            seccomp: match self.spec.linux().as_ref().and_then(|l| l.seccomp().clone()) {
                Some(profile) => SeccompPolicy::Oci {
                    profile: Box::new(profile),
                },
                None => SeccompPolicy::Unconfined,
            },
            ..Default::default()
        })
    }
}

/// What the spec's mounts become in the guest.
#[derive(Debug, Default, PartialEq)]
pub struct GuestMounts {
    /// Bind mounts of host paths, as `hx run -v` arguments (a directory is shared over 9p, a
    /// single file — docker's /etc/hosts, resolv.conf, hostname — is bound alone).
    pub binds: Vec<String>,
    pub tmpfs: Vec<pv_init::spec::Mount>,
    /// `/dev/shm`'s size, when the spec sets one.
    pub shm_size: Option<u64>,
}

/// The kernel file systems a container gets are pv-init's own in the guest (/proc, /sys,
/// /dev, /dev/pts, /dev/shm, /dev/mqueue, cgroups): the spec's are skipped.
fn is_system_target(dst: &str) -> bool {
    ["/proc", "/sys", "/dev"]
        .iter()
        .any(|p| dst == *p || dst.starts_with(&format!("{p}/")))
}

pub fn guest_mounts(mounts: &[Mount]) -> anyhow::Result<GuestMounts> {
    let mut out = GuestMounts::default();
    for m in mounts {
        let dst = m
            .destination()
            .to_str()
            .ok_or_else(|| anyhow!("mount destination {:?} is not UTF-8", m.destination()))?;
        if !dst.starts_with('/') || dst.contains('\0') {
            bail!("mount destination {dst:?} is not an absolute path");
        }
        let options = m.options().clone().unwrap_or_default();
        let readonly = options.iter().any(|o| o == "ro");
        let is_bind = m.typ().as_deref() == Some("bind")
            || options.iter().any(|o| o == "bind" || o == "rbind");
        let typ = m.typ().clone().unwrap_or_default();
        if is_system_target(dst) {
            if dst == "/dev/shm" && typ == "tmpfs" {
                out.shm_size = tmpfs_size(&options)?;
            }
            continue;
        }
        if is_bind {
            let src = m
                .source()
                .as_ref()
                .and_then(|s| s.to_str())
                .ok_or_else(|| anyhow!("bind mount at {dst}: no UTF-8 source"))?;
            if !src.starts_with('/') {
                bail!("bind mount at {dst}: source {src:?} is not absolute");
            }
            if src.contains(':') || dst.contains(':') {
                bail!("bind mount {src:?} at {dst}: hx cannot share a path with ':' in it");
            }
            out.binds.push(format!(
                "{src}:{dst}:{}",
                if readonly { "ro" } else { "rw" }
            ));
            continue;
        }
        match typ.as_str() {
            "tmpfs" => out.tmpfs.push(pv_init::spec::Mount {
                source: MountSource::Tmpfs {
                    size_mb: 0,
                    options: TmpfsOptions {
                        size: tmpfs_size(&options)?,
                        ..Default::default()
                    },
                },
                target: dst.to_string(),
                readonly,
                subpath: None,
                copy_up: false,
            }),
            "proc" | "sysfs" | "cgroup" | "cgroup2" | "devpts" | "mqueue" => {
                bail!("mount of type {typ} at {dst}: hx mounts it only at its usual place")
            }
            t => bail!("mount of type {t:?} at {dst} is not supported (bind and tmpfs are)"),
        }
    }
    Ok(out)
}

/// A tmpfs `size=` option: bytes, or with k/m/g (the kernel's syntax).
fn tmpfs_size(options: &[String]) -> anyhow::Result<Option<u64>> {
    let Some(v) = options.iter().find_map(|o| o.strip_prefix("size=")) else {
        return Ok(None);
    };
    let (num, mult) = match v.char_indices().last() {
        Some((i, 'k' | 'K')) => (&v[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&v[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&v[..i], 1 << 30),
        _ => (v, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|&n| n > 0)
        .map(Some)
        .ok_or_else(|| anyhow!("tmpfs option size={v:?} is not a size"))
}

fn rlimits(spec: &Spec) -> anyhow::Result<Vec<Rlimit>> {
    let Some(list) = spec.process().as_ref().and_then(|p| p.rlimits().clone()) else {
        return Ok(vec![]);
    };
    list.iter()
        .map(|r| {
            let name = serde_json::to_value(r.typ())?
                .as_str()
                .and_then(|s| s.strip_prefix("RLIMIT_"))
                .map(str::to_lowercase)
                .ok_or_else(|| anyhow!("process.rlimits: unknown type"))?;
            if r.soft() > r.hard() {
                bail!("process.rlimits {name}: soft limit above the hard one");
            }
            Ok(Rlimit {
                name,
                soft: r.soft(),
                hard: r.hard(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MIN_MEMORY_MB;
    use proptest::prelude::*;

    fn docker_like() -> serde_json::Value {
        serde_json::json!({
            "ociVersion": "1.0.2-dev",
            "process": {"terminal": false, "user": {"uid": 1000, "gid": 100},
                "args": ["sh", "-c", "echo hi"], "env": ["PATH=/bin", "A=b=c"], "cwd": "/work",
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 1024}],
                "someFutureField": 1},
            "root": {"path": "rootfs"},
            "hostname": "abc",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
                {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["size=65536k"]},
                {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup"},
                {"destination": "/etc/hosts", "type": "bind", "source": "/var/lib/docker/c/hosts", "options": ["rbind", "rprivate"]},
                {"destination": "/data", "source": "/srv/data", "options": ["rbind", "ro"]},
                {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}
            ],
            "linux": {"namespaces": [{"type": "pid"}, {"type": "network"}],
                "resources": {"memory": {"limit": 268435456}}}
        })
    }

    #[test]
    fn quotas_round_up_to_whole_cpus() {
        for (quota, period, want) in [
            (Some(150_000), Some(100_000), 2),
            (Some(50_000), Some(100_000), 1),
            (Some(400_000), Some(100_000), 4),
            (Some(400_001), Some(100_000), 5),
            (Some(-1), Some(100_000), 1),
            (Some(0), None, 1),
            (None, Some(100_000), 1),
            (Some(300_000), None, 3),
            (Some(300_000), Some(0), 3),
            (Some(20_000), Some(10_000), 2),
        ] {
            assert_eq!(cpus_for_quota(quota, period), want, "{quota:?}/{period:?}");
        }
    }

    #[test]
    fn docker_cpus_become_vcpus() {
        let host = std::thread::available_parallelism().unwrap().get() as u32;
        for (quota, period, want) in [
            (serde_json::json!(150000), serde_json::json!(100000), 2),
            (serde_json::json!(50000), serde_json::json!(100000), 1),
            (serde_json::json!(-1), serde_json::json!(100000), 1),
            (
                serde_json::json!(400000000),
                serde_json::json!(100000),
                host,
            ),
            (serde_json::json!(100000), serde_json::json!(0), 1),
        ] {
            let mut j = docker_like();
            j["linux"]["resources"]["cpu"] = serde_json::json!({"quota": quota, "period": period});
            let b = Bundle {
                dir: "/b".into(),
                spec: parse_config(j.to_string().as_bytes()).unwrap(),
            };
            assert_eq!(b.vcpus(), want.min(host), "{quota}/{period}");
        }
    }

    #[test]
    fn a_fraction_of_a_cpu_is_a_cap_beside_the_vcpus() {
        for (quota, shares, pct) in [
            (50_000, 512, Some(50)),
            (150_000, 1024, Some(150)),
            (200_000, 1, None),
            (-1, 0, None),
        ] {
            let mut j = docker_like();
            j["linux"]["resources"]["cpu"] =
                serde_json::json!({"quota": quota, "period": 100000, "shares": shares});
            let b = Bundle {
                dir: "/b".into(),
                spec: parse_config(j.to_string().as_bytes()).unwrap(),
            };
            // Whole vCPUs (bounded by the host's) need no cap.
            let want = pct.filter(|&p| p < b.vcpus() * 100);
            assert_eq!(b.cpu_cap_pct(), want, "quota {quota}");
            let want_shares = (shares >= 2).then_some(shares as u64);
            assert_eq!(b.cpu_shares(), want_shares, "shares {shares}");
        }
    }

    #[test]
    fn a_docker_spec_becomes_a_request() {
        let spec = parse_config(docker_like().to_string().as_bytes()).unwrap();
        let b = Bundle {
            dir: "/b".into(),
            spec,
        };
        assert_eq!(b.netns(), NetNs::New);
        assert_eq!(b.rootfs_dir(), PathBuf::from("/b/rootfs"));
        let r = b.request("c1", Path::new("/r.erofs"), None).unwrap();
        assert_eq!(r.command, ["sh", "-c", "echo hi"]);
        assert_eq!(r.entrypoint.as_deref(), Some(""));
        assert_eq!(r.user.as_deref(), Some("1000:100"));
        assert_eq!(r.workdir.as_deref(), Some("/work"));
        assert_eq!(r.memory_mb, 256);
        assert_eq!(r.cpus, 1, "no CPU limit: one vCPU");
        assert_eq!(r.shm_size, 64 << 20);
        assert_eq!(
            r.volumes,
            [
                "/var/lib/docker/c/hosts:/etc/hosts:rw",
                "/srv/data:/data:ro"
            ]
        );
        assert_eq!(r.tmpfs.len(), 1);
        assert_eq!(r.tmpfs[0].target, "/scratch");
        assert_eq!(r.rlimits[0].name, "nofile");
        assert_eq!(r.hostname.as_deref(), Some("abc"));
        assert_eq!(r.rootfs.as_deref(), Some(Path::new("/r.erofs")));
    }

    #[test]
    fn a_memory_limit_below_the_least_vm_gets_the_least_vm() {
        for (limit, want) in [
            (6 << 20, MIN_MEMORY_MB),
            (32 << 20, MIN_MEMORY_MB),
            (41 << 20, 41),
        ] {
            let mut v = docker_like();
            v["linux"]["resources"]["memory"]["limit"] = serde_json::json!(limit);
            let b = Bundle {
                dir: "/b".into(),
                spec: parse_config(v.to_string().as_bytes()).unwrap(),
            };
            let r = b.request("c1", Path::new("/r.erofs"), None).unwrap();
            assert_eq!(r.memory_mb, want, "limit {limit}");
        }
    }

    #[test]
    fn what_hx_cannot_honour_is_named() {
        let bad = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut v = docker_like();
            edit(&mut v);
            format!("{:#}", parse_config(v.to_string().as_bytes()).unwrap_err())
        };
        assert!(bad(&|v| v["process"]["args"] = serde_json::json!([])).contains("args"));
        assert!(bad(&|v| v["process"]["cwd"] = "rel".into()).contains("cwd"));
        assert!(bad(&|v| v["process"]["env"] = serde_json::json!(["NOEQ"])).contains("NOEQ"));
        assert!(bad(&|v| v["ociVersion"] = "2.0.0".into()).contains("ociVersion"));
        assert!(bad(&|v| v["root"] = serde_json::json!(null)).contains("root"));
        assert!(bad(&|v| v["mounts"][6]["type"] = "nfs".into()).contains("nfs"));
        assert!(bad(&|v| v["mounts"][5]["source"] = "rel".into()).contains("absolute"));
        assert!(bad(&|v| v["process"]["user"]["uid"] = "x".into()).contains("invalid JSON"));
    }

    /// docker's spec with these `linux.namespaces`.
    fn with_namespaces(ns: serde_json::Value) -> Bundle {
        let mut v = docker_like();
        v["linux"]["namespaces"] = ns;
        Bundle {
            dir: "/b".into(),
            spec: parse_config(v.to_string().as_bytes()).unwrap(),
        }
    }

    #[test]
    fn namespaces_say_where_the_keeper_lives() {
        let with = |ns| with_namespaces(ns).netns();
        assert_eq!(with(serde_json::json!([{"type": "pid"}])), NetNs::Host);
        assert_eq!(
            with(serde_json::json!([{"type": "network", "path": "/run/netns/x"}])),
            NetNs::Join("/run/netns/x".into())
        );
    }

    #[test]
    fn a_pid_namespace_path_is_the_pods_shared_one() {
        let joins = |ns| with_namespaces(ns).joins_pid_namespace();
        assert!(!joins(serde_json::json!([{"type": "pid"}])));
        assert!(!joins(serde_json::json!([{"type": "pid", "path": ""}])));
        assert!(!joins(
            serde_json::json!([{"type": "network", "path": "/proc/9/ns/net"}])
        ));
        assert!(joins(
            serde_json::json!([{"type": "pid", "path": "/proc/9/ns/pid"}])
        ));
        let owner = |path: &str| {
            with_namespaces(serde_json::json!([{"type": "pid", "path": path}]))
                .pid_namespace_owner()
        };
        assert_eq!(owner("/proc/9/ns/pid"), Some(9));
        for not in [
            "/proc/09/ns/pid",
            "/proc/+9/ns/pid",
            "/proc/0/ns/pid",
            "/proc/9/ns/net",
            "/run/netns/x",
            "/proc/self/ns/pid",
            "",
        ] {
            assert_eq!(owner(not), None, "{not}");
        }
    }

    proptest! {
        #[test]
        fn any_config_parses_or_is_refused_without_panicking(
            bytes in proptest::collection::vec(any::<u8>(), 0..512)
        ) {
            let _ = parse_config(&bytes);
        }

        #[test]
        fn mutated_specs_never_panic(
            args in proptest::collection::vec("[a-z\\x00/ =:]{0,6}", 0..4),
            cwd in "[a-z/\\x00]{0,6}",
            dst in "[a-z/:\\x00.]{0,8}",
            typ in "(bind|tmpfs|proc|nfs|)",
            size in "size=[0-9a-z]{0,5}",
        ) {
            let mut v = docker_like();
            v["process"]["args"] = serde_json::json!(args);
            v["process"]["cwd"] = cwd.into();
            v["mounts"][6] = serde_json::json!(
                {"destination": dst, "type": typ, "source": "/x", "options": [size]});
            if let Ok(spec) = parse_config(v.to_string().as_bytes()) {
                let b = Bundle { dir: "/b".into(), spec };
                let r = b.request("c", Path::new("/r"), None).unwrap();
                prop_assert!(!r.command.is_empty());
            }
        }
    }
}
