//! Pod members' limits inside the pod's VM: one cgroup v2 group per member under
//! `/dev/.hx-cgroup`, with `memory.max`, `cpu.max` and `cpu.weight` (docs/pods.md). Every process
//! of the member (its workload, `hx exec` into it) joins the group before it execs, so the
//! kernel's OOM killer and CPU bandwidth act on the member alone, as runc's cgroups do on a host.
use crate::introspect::counter;
use crate::InitError;
use nix::mount::{mount, MsFlags};
use pv_init::mux::{MemberLimits, StatsAnswer};
use std::fs;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Under /dev (pv-init's devtmpfs in every guest): in a single container's root, a directory
/// at `/` would land in its writable layer, and so in `hx commit` and `hx export`.
const BASE: &str = "/dev/.hx-cgroup";
/// cpu.max's period: the kernel's default, docker's too.
const PERIOD_US: u64 = 100_000;

/// cgroup2 mounted and the memory and cpu controllers handed to the children, once.
fn base() -> Result<&'static Path, InitError> {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    READY
        .get_or_init(|| {
            fs::create_dir_all(BASE).map_err(|e| format!("mkdir {BASE}: {e}"))?;
            let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
            mount(Some("cgroup2"), BASE, Some("cgroup2"), flags, None::<&str>).map_err(
                |e| match e {
                    nix::errno::Errno::ENODEV => "pod member limits: the guest kernel has no \
                        cgroup v2 (a hyper kernel from before them: reinstall hx's)"
                        .to_string(),
                    e => format!("mount cgroup2 on {BASE}: {e}"),
                },
            )?;
            // The pids controller where the kernel has it (hyper kernels before it lack it:
            // a pids limit is then refused at its member's start, naming it).
            let control = Path::new(BASE).join("cgroup.subtree_control");
            write(&control, "+memory +cpu +pids").or_else(|_| write(&control, "+memory +cpu"))
        })
        .clone()
        .map(|()| Path::new(BASE))
        .map_err(InitError::setup)
}

fn write(file: &Path, value: &str) -> Result<(), String> {
    fs::OpenOptions::new()
        .write(true)
        .open(file)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| format!("{} = {value}: {e}", file.display()))
}

fn group(id: &str) -> Result<PathBuf, InitError> {
    base()?;
    Ok(dir(id))
}

/// Where the member's group is (made by `create`).
pub fn dir(id: &str) -> PathBuf {
    Path::new(BASE).join(id)
}

/// The values the limits' files take (`pids.max` only where asked for: a kernel without the
/// pids controller has no such file, and "max" there is its default).
pub fn values(l: &MemberLimits) -> Vec<(&'static str, String)> {
    let mut v = vec![
        (
            "memory.max",
            l.memory_bytes.map_or("max".into(), |b| b.to_string()),
        ),
        (
            "cpu.max",
            match l.cpu_pct {
                Some(pct) => format!("{} {PERIOD_US}", u64::from(pct) * PERIOD_US / 100),
                None => format!("max {PERIOD_US}"),
            },
        ),
        ("cpu.weight", l.cpu_weight.unwrap_or(100).to_string()),
    ];
    if let Some(p) = l.pids_max {
        v.push(("pids.max", p.to_string()));
    }
    v
}

/// Sets the member's limits (a member without any still gets its group: an update may come).
pub fn apply(id: &str, l: &MemberLimits) -> Result<(), InitError> {
    let g = group(id)?;
    for (file, value) in values(l) {
        if file == "pids.max" && !g.join(file).exists() {
            return Err(InitError::setup(
                "a pids limit: the guest kernel has no pids controller (a hyper kernel from \
                 before it: reinstall hx's)",
            ));
        }
        write(&g.join(file), &value).map_err(InitError::setup)?;
    }
    // An update that lifts the pids limit: back to none.
    if l.pids_max.is_none() && g.join("pids.max").exists() {
        write(&g.join("pids.max"), "max").map_err(InitError::setup)?;
    }
    Ok(())
}

/// The group of a single container's processes (its workload and every `hx exec`), made only
/// when a limit asks for one (`--pids-limit`): a VM's own limits are the VM's.
pub const WORKLOAD: &str = pv_init::mux::WORKLOAD_GROUP;

/// `cgroup.procs` of the single container's group, when it has one (none made, nothing is
/// mounted for it).
pub fn workload_procs() -> Option<OwnedFd> {
    if !dir(WORKLOAD).is_dir() {
        return None;
    }
    procs(WORKLOAD).ok()
}

/// Makes the member's group with its limits; returns its `cgroup.procs`, which each of the
/// member's processes writes itself into before exec (process.rs).
pub fn create(id: &str, l: &MemberLimits) -> Result<OwnedFd, InitError> {
    let g = group(id)?;
    match fs::create_dir(&g) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(InitError::setup(format!("mkdir {}: {e}", g.display()))),
    }
    apply(id, l)?;
    procs(id)
}

/// The member's `cgroup.procs`, for `hx exec` into it.
pub fn procs(id: &str) -> Result<OwnedFd, InitError> {
    let p = group(id)?.join("cgroup.procs");
    fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .map(OwnedFd::from)
        .map_err(|e| InitError::setup(format!("{}: {e}", p.display())))
}

/// A pod member's counters: the VM's (`vm`: the network and disks the members share, the
/// CPU total docker's percentage divides by) with the CPU time, memory and processes of the
/// member's group in place of the VM's.
pub fn stats(id: &str, vm: StatsAnswer) -> StatsAnswer {
    let g = dir(id);
    let read = |f: &str| fs::read_to_string(g.join(f)).unwrap_or_default();
    let usage_usec = counter(&read("cpu.stat"), "usage_usec ").unwrap_or(0);
    let limit = read("memory.max").trim().parse::<u64>().ok();
    // In use as the VM's figure counts it (and kubelet's working set): less the file cache
    // the kernel can drop.
    let current: u64 = read("memory.current").trim().parse().unwrap_or(0);
    let inactive_file = counter(&read("memory.stat"), "inactive_file ").unwrap_or(0);
    StatsAnswer {
        // USER_HZ ticks, as /proc/stat counts them.
        cpu_busy: usage_usec / 10_000,
        mem_used: current.saturating_sub(inactive_file),
        mem_total: limit.map_or(vm.mem_total, |l| l.min(vm.mem_total)),
        pids: read("cgroup.procs").lines().count() as u32,
        ..vm
    }
}

/// How many of the member's processes the kernel's OOM killer has killed.
pub fn oom_kills(id: &str) -> u64 {
    let events = fs::read_to_string(dir(id).join("memory.events")).unwrap_or_default();
    counter(&events, "oom_kill ").unwrap_or(0)
}

/// The member's group: what still runs in it killed (a process that left the member's mount
/// namespace too), then removed once the reaper has collected them (at most 2 s).
pub fn remove(id: &str) {
    let g = dir(id);
    if !g.is_dir() {
        return;
    }
    let _ = write(&g.join("cgroup.kill"), "1");
    remove_when_empty(&g);
}

/// Removes a group directory (of either hierarchy) once the reaper has collected the
/// processes in it, waiting at most 2 s.
pub fn remove_when_empty(g: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while g.is_dir() && fs::remove_dir(g).is_err() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_become_cgroup_v2_values() {
        let none = values(&MemberLimits::default());
        assert_eq!(none[0].1, "max");
        assert_eq!(none[1].1, "max 100000");
        assert_eq!(none[2].1, "100");
        let some = values(&MemberLimits {
            memory_bytes: Some(48 << 20),
            cpu_pct: Some(50),
            cpu_weight: Some(MemberLimits::weight_of_shares(512)),
            pids_max: Some(64),
        });
        assert_eq!(some[3], ("pids.max", "64".to_string()));
        assert_eq!(none.len(), 3);
        assert_eq!(some[0].1, (48u64 << 20).to_string());
        assert_eq!(some[1].1, "50000 100000");
        // runc's conversion: 512 shares -> weight 20; 1024 (docker's default) -> 39.
        assert_eq!(some[2].1, "20");
        assert_eq!(MemberLimits::weight_of_shares(1024), 39);
        assert_eq!(MemberLimits::weight_of_shares(2), 1);
        assert_eq!(MemberLimits::weight_of_shares(u64::MAX), 10000);
    }
}
