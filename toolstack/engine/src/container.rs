//! Container state: one directory per container under `<root>/containers/<id>/`, holding
//! `state.json` plus the VM's runtime files (config disk, channel logs, console log, pid).
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// `hx run`/`hx create` is acquiring the container's resources; each is recorded here
    /// before it is acquired, so that a creator that died midway can be undone
    /// (runtime::settle).
    Creating,
    /// Made by `hx create`: its record, writable layer and volumes exist, no VM yet.
    Created,
    /// `hx start` (or a restart) is booting the VM of an existing container; one that died
    /// midway is undone back to `exited` (runtime::unstart).
    Starting,
    Running,
    Exited,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub command: Vec<String>,
    pub created: String,
    pub backend: String,
    pub status: Status,
    /// Host process of the VM (QEMU) and its start time in clock ticks (guards against pid reuse).
    pub pid: Option<i32>,
    pub pid_start: Option<u64>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub exit_code: Option<i32>,
    /// The kernel's OOM killer ended it (a pod member's own limit: docker's State.OOMKilled,
    /// the shim's TaskOOM).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oom_killed: bool,
    /// Why the container ended abnormally (kernel panic, init failure, VM crash).
    pub error: Option<String>,
    pub auto_remove: bool,
    pub memory_mb: u64,
    /// `memory_mb` was asked for (`-m`, a spec's limit, `hx update -m`), not hx's default: a
    /// pod member's memory limit inside its pod's VM (limits::member_limits).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub memory_limited: bool,
    pub cpus: u32,
    /// `hx update --cpus`: the VM's CPU time cap in percent of one CPU (limits.rs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_cap_pct: Option<u32>,
    /// `hx update --cpu-shares`: the VM's scheduler weight, as docker's shares (limits.rs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<u64>,
    /// `--pids-limit` (lifecycle::CreateRequest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<u64>,
    /// The host cgroup its VM runs in, when its creator chose it (lifecycle::CreateRequest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_cgroup: Option<std::path::PathBuf>,
    /// Backend-specific handle (e.g. the Xen domain id).
    #[serde(default)]
    pub domid: Option<u32>,
    /// Address, host interface and published ports (network::setup).
    #[serde(default)]
    pub network: Option<crate::network::NetworkState>,
    /// Volumes and host directories (volume::plan).
    #[serde(default)]
    pub mounts: Vec<crate::volume::MountRecord>,
    /// What `hx stop` sends first: `--stop-signal`, else the image's STOPSIGNAL (else SIGTERM).
    #[serde(default)]
    pub stop_signal: Option<String>,
    /// `--stop-timeout`: seconds `hx stop` (and restart) wait without `-t` (None: 10).
    #[serde(default)]
    pub stop_timeout: Option<u64>,
    /// `--restart`: what the supervisor (and `hx autostart` after a reboot) does when the VM ends.
    #[serde(default)]
    pub restart_policy: crate::restart::Policy,
    /// Restarts by the policy since the container was last started by hand.
    #[serde(default)]
    pub restart_count: u32,
    /// Ended by `hx stop`/`hx kill`: `always` waits for a reboot, `unless-stopped` for a user.
    #[serde(default)]
    pub manually_stopped: bool,
    /// The image's labels with `-l`/`--label-file` over them (docker's Config.Labels).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// docker's `Config.StdinOnce`: the end of the first attached client's input closes the
    /// workload's stdin (`-i` with an attached client at creation: `hx create -i`, `hx run -i`
    /// without `-d`).
    #[serde(default)]
    pub stdin_once: bool,
    /// The pod this container belongs to, by name (docs/pods.md): a member, or with
    /// `pod_infra` the pod's own VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pod_infra: bool,
}

impl Container {
    /// A pod's member (its processes run in the pod's VM), not the pod's own VM.
    pub fn is_pod_member(&self) -> bool {
        self.pod.is_some() && !self.pod_infra
    }

    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }

    /// The VM's host process (QEMU, the Xen monitor), as recorded.
    pub fn vm_process(&self) -> Option<crate::process::Tracked> {
        crate::process::Tracked::new(self.pid, self.pid_start)
    }

    /// Whether the VM's host process still runs.
    pub fn vm_alive(&self) -> bool {
        self.vm_process().is_some_and(|p| p.is_alive())
    }
}

pub fn containers_dir(root: &Path) -> PathBuf {
    root.join("containers")
}

pub fn dir(root: &Path, id: &str) -> PathBuf {
    containers_dir(root).join(id)
}

/// The per-container lock of the `hx run` that owns the container: held from before the
/// container's first state record until its creator has either finished creating it (`-d`) or
/// read its outcome (attached). Others may mark an owned container exited, but never discard
/// or remove it. A flock, so it goes with its holder however that dies.
pub struct Owner {
    _lock: nix::fcntl::Flock<std::fs::File>,
}

const OWNER_FILE: &str = "owner";

impl Owner {
    /// Takes the lock of a new container's directory (which must exist).
    pub fn acquire(root: &Path, id: &str) -> anyhow::Result<Owner> {
        let p = dir(root, id).join(OWNER_FILE);
        let lock = lock_file(&p, nix::fcntl::FlockArg::LockExclusiveNonblock)?;
        Ok(Owner { _lock: lock })
    }
}

/// A flock on `p` (made 0600 where missing), held while the returned value lives.
pub(crate) fn lock_file(
    p: &Path,
    how: nix::fcntl::FlockArg,
) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(p)
        .with_context(|| format!("opening {}", p.display()))?;
    nix::fcntl::Flock::lock(f, how)
        .map_err(|(_, e)| anyhow::anyhow!("locking {}: {e}", p.display()))
}

/// Whether a live process owns the container (holds its `Owner` lock).
pub fn owner_alive(root: &Path, id: &str) -> bool {
    let Ok(f) = std::fs::File::open(dir(root, id).join(OWNER_FILE)) else {
        return false;
    };
    match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockSharedNonblock) {
        Ok(_) => false,
        Err((_, e)) => e == nix::errno::Errno::EWOULDBLOCK,
    }
}

/// The record's file in the container's directory.
pub const STATE_FILE: &str = "state.json";

pub fn save(root: &Path, c: &Container) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec_pretty(c)?;
    hx_images::store::write_atomic(&dir(root, &c.id).join(STATE_FILE), &bytes)?;
    Ok(())
}

pub fn load(root: &Path, id: &str) -> anyhow::Result<Container> {
    let p = dir(root, id).join(STATE_FILE);
    let bytes = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", p.display()))
}

/// All containers, newest first. A directory without a state record is skipped (see
/// `orphan_dirs`).
pub fn list(root: &Path) -> anyhow::Result<Vec<Container>> {
    let mut out = Vec::new();
    let d = containers_dir(root);
    let Ok(rd) = std::fs::read_dir(&d) else {
        return Ok(out);
    };
    for e in rd.flatten() {
        if let Ok(c) = load(root, &e.file_name().to_string_lossy()) {
            out.push(c);
        }
    }
    out.sort_by(|a, b| b.created.cmp(&a.created));
    Ok(out)
}

/// Container directories without a state record. `hx run` makes the directory and writes the
/// first record in one hold of the store lock, so under that lock such a directory is the
/// leftover of a creator killed in between: reconcile removes it.
pub fn orphan_dirs(root: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(containers_dir(root)) else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .filter(|d| !d.join("state.json").exists())
        .collect()
}

/// By name, full id or unique id prefix.
pub fn find(root: &Path, key: &str) -> anyhow::Result<Container> {
    let all = list(root)?;
    if let Some(c) = all.iter().find(|c| c.name == key || c.id == key) {
        return Ok(c.clone());
    }
    let matches: Vec<&Container> = all
        .iter()
        .filter(|c| key.len() >= 3 && c.id.starts_with(key))
        .collect();
    match matches.len() {
        1 => Ok(matches[0].clone()),
        0 => Err(crate::HxError::NoSuchContainer(key.to_string()).into()),
        _ => bail!("container id prefix {key:?} is ambiguous"),
    }
}

pub fn new_id() -> String {
    let mut b = [0u8; 32];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    hex::encode(b)
}

/// docker-style `adjective_name`.
pub fn random_name(id: &str, taken: &[String]) -> String {
    const ADJ: &[&str] = &[
        "brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry",
        "nifty", "proud", "quiet", "sharp", "tender", "vivid", "witty", "zen",
    ];
    const NOUN: &[&str] = &[
        "babbage", "curie", "dijkstra", "euler", "fermi", "gauss", "hopper", "knuth", "lamport",
        "lovelace", "noether", "pascal", "ritchie", "shannon", "thompson", "turing", "wirth",
        "xen",
    ];
    let bytes = hex::decode(&id[..8]).unwrap_or_default();
    let (a, n) = (
        bytes.first().copied().unwrap_or(0) as usize,
        bytes.get(1).copied().unwrap_or(0) as usize,
    );
    let base = format!("{}_{}", ADJ[a % ADJ.len()], NOUN[n % NOUN.len()]);
    let mut name = base.clone();
    let mut i = 2;
    while taken.contains(&name) {
        name = format!("{base}{i}");
        i += 1;
    }
    name
}

pub fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 63
        && n.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

pub fn now_rfc3339() -> String {
    hx_images::load::now_rfc3339()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("web-1"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a/b"));
        let id = "00000000";
        let n = random_name(id, &[]);
        assert_eq!(random_name(id, std::slice::from_ref(&n)), format!("{n}2"));
    }
}
