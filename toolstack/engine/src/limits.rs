//! Changing a container's resource limits after creation: `hx update` (docker update), the
//! OCI runtime's `update` (which `docker update` reaches through containerd's runc shim) and the
//! shim's Update (CRI UpdateContainerResources, Kubernetes' in-place resize).
//!
//! A container's limits are its VM's: memory is the VM's balloon target (within the memory the
//! VM was made with: no memory hot-plug yet), CPU time a hypervisor cap in percent of one CPU
//! and a scheduler weight. What a backend can change on a running VM it says in
//! [`crate::backend::LimitCaps`]; a stopped container's new memory is the next start's VM size.
//! A pod member's limits are its own cgroup's inside the pod's VM ([`member_limits`], pv-init's
//! cgroup.rs), changed in place on any backend; where the backend caps VMs the pod's VM also
//! gets its members' total CPU cap and weight.
use crate::backend;
use crate::container::{self, Container, Status};
use anyhow::{bail, Context};
use std::path::Path;

/// The least memory a VM can be given or ballooned down to: the guest kernel is loaded at
/// 16 MiB and spans 16 more (libxl refuses a 32 MiB PVH domain: "segment kernel too large"),
/// and pv-init needs a few MiB beyond it before the workload has any.
pub const MIN_MEMORY_MB: u64 = 40;
/// The least memory limit of a pod member (its cgroup in the pod's VM, not a VM of its own).
pub const MIN_MEMBER_MEMORY_MB: u64 = pv_init::mux::MIN_MEMBER_MEMORY >> 20;
/// 1 TiB: beyond any VM hx makes (and an overflow guard for byte counts).
pub const MAX_MEMORY_MB: u64 = 1 << 20;

/// The least memory limit of a container: its VM's, or a pod member's cgroup's.
pub fn least_memory_mb(member: bool) -> u64 {
    if member {
        MIN_MEMBER_MEMORY_MB
    } else {
        MIN_MEMORY_MB
    }
}

/// An OCI memory limit in bytes (runc's, docker's, kubelet's) as a container's MiB: rounded
/// up, raised to the least (`least_memory_mb`: an OCI caller's smaller limit is no error,
/// as it is none for runc), at most MAX_MEMORY_MB.
pub fn oci_memory_mb(bytes: u64, member: bool) -> u64 {
    bytes
        .div_ceil(1 << 20)
        .clamp(least_memory_mb(member), MAX_MEMORY_MB)
}
/// docker's bounds for `--cpu-shares` (the kernel's for cpu.shares).
pub const MIN_SHARES: u64 = 2;
pub const MAX_SHARES: u64 = 262_144;

/// New limits; `None` leaves one as it is.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub memory_mb: Option<u64>,
    /// CPU time in percent of one CPU (docker's `--cpus 1.5` is 150); `Some(0)`: no cap.
    pub cpu_cap_pct: Option<u32>,
    /// docker's `--cpu-shares`: relative weight, 1024 by default.
    pub cpu_shares: Option<u64>,
    /// docker's `--pids-limit`: at most this many processes and threads; -1 or 0 lifts it.
    pub pids_limit: Option<i64>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// docker's `--cpus` (0 = no cap) as a cap in percent of one CPU, rounded up so that a
    /// positive value never becomes "no cap".
    pub fn cap_for_cpus(cpus: f64) -> anyhow::Result<u32> {
        if !cpus.is_finite() || !(0.0..=1024.0).contains(&cpus) {
            bail!("--cpus {cpus}: expected a number of CPUs from 0 (no cap) to 1024");
        }
        Ok((cpus * 100.0).ceil() as u32)
    }

    /// The limits an OCI `linux.resources` asks for (runc's `update --resources`, containerd's
    /// Update): memory.limit in bytes, cpu quota over period, cpu shares. Values that mean
    /// "unlimited" (-1, 0) lift a cap and leave the memory as it is.
    pub fn from_oci(r: &oci_spec::runtime::LinuxResources) -> anyhow::Result<Limits> {
        let mut l = Limits::default();
        if let Some(limit) = r.memory().as_ref().and_then(|m| m.limit()) {
            if limit > 0 {
                let mb = (limit as u64).div_ceil(1 << 20);
                l.memory_mb = Some(mb);
            }
        }
        if let Some(cpu) = r.cpu() {
            match (cpu.quota(), cpu.period()) {
                (Some(q), _) if q <= 0 => l.cpu_cap_pct = Some(0),
                (Some(q), period) => {
                    let period = period.filter(|&p| p > 0).unwrap_or(100_000);
                    if !(1000..=1_000_000).contains(&period) {
                        bail!("cpu period {period} µs: expected 1000 to 1000000");
                    }
                    let pct = (q as u64).saturating_mul(100).div_ceil(period);
                    l.cpu_cap_pct = Some(u32::try_from(pct).unwrap_or(u32::MAX));
                }
                (None, _) => {}
            }
            if let Some(s) = cpu.shares().filter(|&s| s > 0) {
                l.cpu_shares = Some(s);
            }
        }
        if let Some(p) = r.pids() {
            l.pids_limit = Some(p.limit());
        }
        Ok(l)
    }

    /// Checked against the container's VM (a pod member's: its pod's): memory within bounds
    /// (a member's is a cgroup's limit, which may be smaller than a VM), a cap no larger than
    /// its vCPUs can use, shares within docker's bounds.
    pub fn check(&self, c: &Container, member: bool) -> anyhow::Result<()> {
        let least = least_memory_mb(member);
        if let Some(m) = self.memory_mb {
            if !(least..=MAX_MEMORY_MB).contains(&m) {
                bail!("memory {m} MiB: expected {least} MiB to 1 TiB");
            }
        }
        if let Some(cap) = self.cpu_cap_pct {
            let most = c.cpus.max(1).saturating_mul(100);
            if cap > most {
                bail!(
                    "CPU cap {}: container {} has {} vCPU{}, so at most {}",
                    cpus_text(cap),
                    c.name,
                    c.cpus,
                    if c.cpus == 1 { "" } else { "s" },
                    cpus_text(most)
                );
            }
        }
        if let Some(s) = self.cpu_shares {
            if !(MIN_SHARES..=MAX_SHARES).contains(&s) {
                bail!("CPU shares {s}: expected {MIN_SHARES} to {MAX_SHARES}");
            }
        }
        if let Some(p) = self.pids_limit {
            if p < -1 || p > pv_init::mux::MAX_PIDS as i64 {
                bail!(
                    "pids limit {p}: expected -1 (no limit) or 1 to {}",
                    pv_init::mux::MAX_PIDS
                );
            }
        }
        Ok(())
    }
}

/// "1.5 CPUs" for a cap of 150.
fn cpus_text(pct: u32) -> String {
    let s = format!("{:.2}", pct as f64 / 100.0);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s} CPUs")
}

/// The scheduler weight for docker's shares: 1024 (docker's default) is 256 (Xen credit2's
/// default), proportionally, within credit2's 1..65535.
pub fn weight_for_shares(shares: u64) -> u32 {
    (shares / 4).clamp(1, 65_535) as u32
}

/// What a VM's CPU limits are when it starts or is updated: its cap (0: none) and docker's
/// shares (None: the default), which each backend turns into its scheduler's weight.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CpuLimits {
    pub cap_pct: u32,
    #[serde(default)]
    pub shares: Option<u64>,
}

impl CpuLimits {
    pub fn of(c: &Container) -> CpuLimits {
        CpuLimits {
            cap_pct: c.cpu_cap_pct.unwrap_or(0),
            shares: c.cpu_shares,
        }
    }

    pub fn is_default(&self) -> bool {
        *self == CpuLimits::default()
    }
}

/// Applies `l` to container `key` and records it: a running VM is changed in place (or the
/// update is refused with nothing changed), a stopped one's limits take effect at its next
/// start. Returns the container as recorded now.
pub fn update(root: &Path, key: &str, l: &Limits) -> anyhow::Result<Container> {
    // A member just started (`hx run -d` returns before its workload runs in the pod's VM) is
    // waited for before the store lock, which the wait must not hold.
    let before = container::find(root, key)?;
    if before.is_pod_member() && before.status == Status::Running {
        crate::pod::wait_member_started(root, &before)?;
    }
    let store = hx_images::Store::open(root)?;
    let _lock = store.lock()?;
    let c = container::find(root, key)?;
    if matches!(c.status, Status::Creating | Status::Starting) {
        bail!(
            "container {} is being started: update it once it runs",
            c.name
        );
    }
    // A member's CPU cap is bounded by its pod VM's vCPUs.
    let vm = match &c.pod {
        Some(pod) if c.is_pod_member() => Some(crate::pod::infra(root, pod)?),
        _ => None,
    };
    l.check(vm.as_ref().unwrap_or(&c), vm.is_some())?;
    let next = with_limits(c.clone(), l);
    // A member's new limits are in its record before a keeper or `hx rm` may recompute its pod
    // VM's from the member records.
    let _pod_lock = match (&c.pod, vm) {
        (Some(pod), Some(infra)) => {
            let lock = PodLimitsLock::take(root, &infra)?;
            update_member(root, pod, &infra, &c, &next, l)?;
            Some(lock)
        }
        // The pod's own VM: its limits are an input of what its members' writers set, so its
        // record changes under the same lock.
        _ => {
            let lock = if c.pod_infra {
                Some(PodLimitsLock::take(root, &c)?)
            } else {
                None
            };
            update_vm(root, &c, &next, l)?;
            lock
        }
    };
    // Only the limits change in the record as it is now (a keeper or monitor may have
    // recorded an exit meanwhile).
    let now = with_limits(container::load(root, &c.id)?, l);
    container::save(root, &now)?;
    Ok(now)
}

fn with_limits(mut c: Container, l: &Limits) -> Container {
    if let Some(m) = l.memory_mb {
        c.memory_mb = m;
        c.memory_limited = true;
    }
    if let Some(cap) = l.cpu_cap_pct {
        c.cpu_cap_pct = (cap > 0).then_some(cap);
    }
    if let Some(s) = l.cpu_shares {
        c.cpu_shares = Some(s);
    }
    if let Some(p) = l.pids_limit {
        c.pids_limit = u64::try_from(p).ok().filter(|&p| p > 0);
    }
    c
}

/// A container with a VM of its own (or a pod's VM): running, its backend changes the VM.
fn update_vm(root: &Path, c: &Container, next: &Container, l: &Limits) -> anyhow::Result<()> {
    let be = backend::for_container(c, root)?;
    let caps = be.limit_caps();
    let cpu = l.cpu_cap_pct.is_some() || l.cpu_shares.is_some();
    if cpu && !caps.cpu {
        bail!(
            "container {}: the {} backend cannot limit CPU time (only the vCPU count, at creation)",
            c.name,
            be.name()
        );
    }
    if c.status != Status::Running || !be.is_running(c) {
        return Ok(());
    }
    let memory = l.memory_mb.filter(|&m| m != c.memory_mb);
    if memory.is_some() && !caps.live_memory {
        bail!(
            "container {}: the {} backend cannot change a running VM's memory (stop it, update it, start it)",
            c.name,
            be.name()
        );
    }
    let dir = container::dir(root, &c.id);
    // The pids limit is a cgroup's in the guest (pv-init's `workload` group), there from the
    // start only if the container was started with one.
    if l.pids_limit.is_some() && next.pids_limit != c.pids_limit {
        let socket = be
            .exec_socket(&dir)
            .ok_or_else(|| anyhow::anyhow!("container {}: its VM has no exec channel", c.name))?;
        crate::exec_channel::client::ask::<pv_init::mux::LimitsAnswer>(
            &socket,
            pv_init::mux::Query::Limits {
                member: pv_init::mux::WORKLOAD_GROUP.to_string(),
                limits: pv_init::mux::MemberLimits {
                    pids_max: next.pids_limit,
                    ..Default::default()
                },
            },
        )
        .with_context(|| format!("container {}: its pids limit", c.name))?;
    }
    if let Some(m) = memory {
        let most = be.max_memory_mb(c, &dir)?;
        if m > most {
            bail!(
                "container {}: memory {m} MiB is more than its running VM was made with ({most} MiB; no memory hot-plug yet): stop it, update it, start it",
                c.name
            );
        }
    }
    if memory.is_none() && !cpu {
        return Ok(());
    }
    be.set_limits(c, &dir, memory, cpu.then(|| CpuLimits::of(next)))
}

/// A pod member's limits inside its pod's VM (pv-init's cgroup.rs): its memory when asked
/// for and below the VM's, its CPU cap and its shares as cgroup v2's weight.
pub fn member_limits(c: &Container, infra: &Container) -> pv_init::mux::MemberLimits {
    pv_init::mux::MemberLimits {
        memory_bytes: (c.memory_limited && c.memory_mb < infra.memory_mb)
            .then(|| c.memory_mb.max(MIN_MEMBER_MEMORY_MB) << 20),
        cpu_pct: c
            .cpu_cap_pct
            .filter(|&p| p > 0)
            .map(|p| p.min(infra.cpus.max(1) * 100)),
        cpu_weight: c
            .cpu_shares
            .map(pv_init::mux::MemberLimits::weight_of_shares),
        pids_max: c.pids_limit,
    }
}

/// A pod member: its VM is the pod's. Its memory may not exceed the pod VM's; the pod VM's CPU
/// cap becomes the sum of its members' caps (none while any member has none) and its weight
/// the sum of their shares'.
fn update_member(
    root: &Path,
    pod: &str,
    infra: &Container,
    c: &Container,
    next: &Container,
    l: &Limits,
) -> anyhow::Result<()> {
    let be = backend::for_container(infra, root)?;
    if let Some(m) = l.memory_mb {
        if m > infra.memory_mb {
            bail!(
                "container {}: memory {m} MiB is more than its pod {pod}'s VM has ({} MiB; no memory hot-plug yet)",
                c.name,
                infra.memory_mb
            );
        }
    }
    let vm_dir = container::dir(root, &infra.id);
    let vm_running = infra.status == Status::Running && be.is_running(infra);
    // The pod's VM as a whole first, where the backend caps VMs (Xen's credit2): the sum of
    // its members' caps and weights.
    let cpu = l.cpu_cap_pct.is_some() || l.cpu_shares.is_some();
    let pod_step = cpu && be.limit_caps().cpu && vm_running;
    let members = crate::pod::members(root, pod)?;
    if pod_step {
        let with_next: Vec<Container> = members
            .iter()
            .map(|m| {
                if m.id == next.id {
                    next.clone()
                } else {
                    m.clone()
                }
            })
            .collect();
        be.set_limits(infra, &vm_dir, None, Some(pod_cpu(infra, &with_next)))?;
    }
    // Then the member's own cgroup inside the pod's VM (a member that is not running gets its
    // limits at its next start); refused there, the pod's VM gets its CPU limits back.
    if c.status == Status::Running && vm_running {
        let asked = be
            .exec_socket(&vm_dir)
            .ok_or_else(|| anyhow::anyhow!("pod {pod}: its VM has no exec channel"))
            .and_then(|socket| {
                crate::exec_channel::client::ask::<pv_init::mux::LimitsAnswer>(
                    &socket,
                    pv_init::mux::Query::Limits {
                        member: c.id.clone(),
                        limits: member_limits(next, infra),
                    },
                )
            })
            .with_context(|| format!("container {}: its limits in its pod's VM", c.name));
        if let Err(e) = asked {
            if pod_step {
                let _ = be.set_limits(infra, &vm_dir, None, Some(pod_cpu(infra, &members)));
            }
            return Err(e);
        }
    }
    Ok(())
}

/// A running pod VM's CPU limits follow its members' (where the backend caps VMs), as at
/// `hx update` of a member: called when member `changed` joins or has left the pod. Nothing
/// is done while neither it nor any other member has CPU limits (the VM keeps the pod's own).
pub fn pod_vm_follows_members(root: &Path, pod: &str, changed: &Container) -> anyhow::Result<()> {
    let infra = crate::pod::infra(root, pod)?;
    let _lock = PodLimitsLock::take(root, &infra)?;
    // As it is under the lock (`hx update` of the pod VM changes it under the same lock).
    let infra = container::load(root, &infra.id)?;
    let members = crate::pod::members(root, pod)?;
    if !has_cpu_limits(changed) && !members.iter().any(has_cpu_limits) {
        return Ok(());
    }
    let be = backend::for_container(&infra, root)?;
    if !be.limit_caps().cpu || infra.status != Status::Running || !be.is_running(&infra) {
        return Ok(());
    }
    let dir = container::dir(root, &infra.id);
    be.set_limits(&infra, &dir, None, Some(pod_cpu(&infra, &members)))
        .with_context(|| format!("pod {pod}: its VM's CPU limits"))
}

/// Serialises the writers of a pod VM's CPU limits (`hx update` of a member or of the pod VM,
/// a member's keeper at its start, a member's removal): each reads the records and sets the
/// VM's limits from them under it, so none sets them from a list another has just changed.
/// Taken after the store lock where both are held (`hx update`), never before it; a flock in
/// the pod VM's directory, so it goes with its holder however that dies.
struct PodLimitsLock {
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl PodLimitsLock {
    fn take(root: &Path, infra: &Container) -> anyhow::Result<Self> {
        let p = container::dir(root, &infra.id).join("pod-limits.lock");
        let lock = container::lock_file(&p, nix::fcntl::FlockArg::LockExclusive)?;
        Ok(PodLimitsLock { _lock: lock })
    }
}

/// Whether a member's CPU limits count in its pod VM's ([`pod_cpu`]).
pub fn has_cpu_limits(c: &Container) -> bool {
    c.cpu_cap_pct.is_some() || c.cpu_shares.is_some()
}

/// A pod VM's CPU limits for these members: the sum of their caps once each has one (at most
/// its vCPUs and the pod's own cap), the sum of their shares once each has some.
fn pod_cpu(infra: &Container, members: &[Container]) -> CpuLimits {
    let mut pod_cpu = CpuLimits::of(infra);
    let caps: Option<Vec<u32>> = members.iter().map(|m| m.cpu_cap_pct).collect();
    if let Some(caps) = caps.filter(|v| !v.is_empty()) {
        let most = match infra.cpu_cap_pct {
            Some(own) if own > 0 => own.min(infra.cpus.max(1) * 100),
            _ => infra.cpus.max(1) * 100,
        };
        pod_cpu.cap_pct = caps
            .iter()
            .fold(0u32, |a, &b| a.saturating_add(b))
            .min(most);
    }
    let shares: Option<Vec<u64>> = members.iter().map(|m| m.cpu_shares).collect();
    if let Some(shares) = shares.filter(|v| !v.is_empty()) {
        pod_cpu.shares = Some(shares.iter().sum());
    }
    pod_cpu
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxCpuBuilder, LinuxMemoryBuilder, LinuxResourcesBuilder};
    use proptest::prelude::*;

    fn vm(cpus: u32, cap: Option<u32>, shares: Option<u64>) -> Container {
        serde_json::from_value(serde_json::json!({
            "id": "x", "name": "x", "image": "i", "image_id": "i", "command": [],
            "created": "", "backend": "qemu", "status": "running", "pid": null,
            "pid_start": null, "started_at": null, "finished_at": null, "exit_code": null,
            "error": null, "auto_remove": false, "memory_mb": 128, "cpus": cpus,
            "cpu_cap_pct": cap, "cpu_shares": shares,
        }))
        .unwrap()
    }

    #[test]
    fn a_pod_vm_is_capped_by_its_members_within_its_own_cap() {
        let members = [vm(1, Some(50), Some(512)), vm(1, Some(30), Some(256))];
        // Its members' sum, their shares' sum.
        let l = pod_cpu(&vm(2, None, None), &members);
        assert_eq!((l.cap_pct, l.shares), (80, Some(768)));
        // Never above the pod's own `--cpus` nor its vCPUs.
        assert_eq!(pod_cpu(&vm(2, Some(60), None), &members).cap_pct, 60);
        let many = [vm(1, Some(150), None), vm(1, Some(150), None)];
        assert_eq!(pod_cpu(&vm(2, None, None), &many).cap_pct, 200);
        // One member without a cap leaves the pod's own.
        let open = [vm(1, Some(50), None), vm(1, None, None)];
        assert_eq!(pod_cpu(&vm(2, Some(120), None), &open).cap_pct, 120);
        assert_eq!(pod_cpu(&vm(2, None, None), &[]).cap_pct, 0);
    }

    /// An exited pod VM `infra` of pod `p` and these members, recorded under `root`.
    fn pod_records(root: &Path, members: &[&str]) -> Container {
        let mut infra = vm(1, None, None);
        infra.id = "infra".into();
        infra.name = "infra".into();
        infra.pod = Some("p".into());
        infra.pod_infra = true;
        infra.status = Status::Exited;
        let mut all = vec![infra.clone()];
        for id in members {
            let mut m = vm(1, None, None);
            m.id = id.to_string();
            m.name = id.to_string();
            m.pod = Some("p".into());
            all.push(m);
        }
        for c in &all {
            std::fs::create_dir_all(container::dir(root, &c.id)).unwrap();
            container::save(root, c).unwrap();
        }
        infra
    }

    /// Runs `write` while another holds the pod's limits lock: it must not end before the
    /// lock goes (`what` names it in the failure). Its result once it did.
    fn waits_for_the_pod_lock<T: Send + 'static>(
        root: &Path,
        infra: &Container,
        what: &str,
        write: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let held = PodLimitsLock::take(root, infra).unwrap();
        let (done_tx, done) = std::sync::mpsc::channel();
        let writer = std::thread::spawn(move || {
            let r = write();
            done_tx.send(()).unwrap();
            r
        });
        assert!(
            done.recv_timeout(std::time::Duration::from_millis(300))
                .is_err(),
            "{what} went on while the pod's limits were held"
        );
        drop(held);
        writer.join().unwrap()
    }

    #[test]
    fn a_pod_vm_s_limits_wait_for_the_writer_holding_the_pod_lock() {
        let root = tempfile::tempdir().unwrap();
        let infra = pod_records(root.path(), &["member"]);
        let member = container::load(root.path(), "member").unwrap();
        let dir = root.path().to_path_buf();
        waits_for_the_pod_lock(root.path(), &infra, "a second writer", move || {
            pod_vm_follows_members(&dir, "p", &member)
        })
        .unwrap();
    }

    #[test]
    fn an_update_of_the_pod_vm_waits_for_the_writer_holding_the_pod_lock() {
        let root = tempfile::tempdir().unwrap();
        let infra = pod_records(root.path(), &[]);
        let dir = root.path().to_path_buf();
        let l = Limits {
            cpu_shares: Some(512),
            ..Default::default()
        };
        let updated =
            waits_for_the_pod_lock(root.path(), &infra, "hx update of the pod VM", move || {
                update(&dir, "infra", &l)
            })
            .unwrap();
        assert_eq!(updated.cpu_shares, Some(512));
        assert_eq!(
            container::load(root.path(), "infra").unwrap().cpu_shares,
            Some(512)
        );
    }

    fn resources(
        memory: Option<i64>,
        quota: Option<i64>,
        period: Option<u64>,
        shares: Option<u64>,
    ) -> oci_spec::runtime::LinuxResources {
        let mut cpu = LinuxCpuBuilder::default();
        if let Some(q) = quota {
            cpu = cpu.quota(q);
        }
        if let Some(p) = period {
            cpu = cpu.period(p);
        }
        if let Some(s) = shares {
            cpu = cpu.shares(s);
        }
        let mut r = LinuxResourcesBuilder::default().cpu(cpu.build().unwrap());
        if let Some(m) = memory {
            r = r.memory(LinuxMemoryBuilder::default().limit(m).build().unwrap());
        }
        r.build().unwrap()
    }

    #[test]
    fn docker_update_values_become_a_cap_a_weight_and_mebibytes() {
        let l = Limits::from_oci(&resources(
            Some(100 << 20),
            Some(50_000),
            Some(100_000),
            Some(512),
        ))
        .unwrap();
        assert_eq!(
            l,
            Limits {
                memory_mb: Some(100),
                cpu_cap_pct: Some(50),
                cpu_shares: Some(512),
                pids_limit: None,
            }
        );
        assert_eq!(weight_for_shares(512), 128);
        assert_eq!(weight_for_shares(1024), 256);
        // -1 is "no limit": the cap is lifted, the memory left alone.
        let l = Limits::from_oci(&resources(Some(-1), Some(-1), None, None)).unwrap();
        assert_eq!(
            l,
            Limits {
                memory_mb: None,
                cpu_cap_pct: Some(0),
                cpu_shares: None,
                pids_limit: None,
            }
        );
        // A quota without a period takes CFS's default period.
        let l = Limits::from_oci(&resources(None, Some(150_000), None, None)).unwrap();
        assert_eq!(l.cpu_cap_pct, Some(150));
        assert!(Limits::from_oci(&resources(None, Some(1), Some(10), None)).is_err());
        assert_eq!(Limits::cap_for_cpus(0.5).unwrap(), 50);
        assert_eq!(Limits::cap_for_cpus(0.001).unwrap(), 1);
        assert!(Limits::cap_for_cpus(f64::NAN).is_err());
        assert!(Limits::cap_for_cpus(-1.0).is_err());
        assert_eq!(cpus_text(150), "1.5 CPUs");
        assert_eq!(cpus_text(200), "2 CPUs");
    }

    proptest! {
        /// Any resources JSON (the runtime's stdin, a shim request) parses or is refused
        /// without panicking, and what parses is within the bounds `check` relies on.
        #[test]
        fn any_resources_json_is_parsed_or_refused(json in prop_oneof![
            any::<String>(),
            (any::<Option<i64>>(), any::<Option<i64>>(), any::<Option<u64>>(), any::<Option<u64>>())
                .prop_map(|(m, q, p, s)| serde_json::json!({
                    "memory": {"limit": m}, "cpu": {"quota": q, "period": p, "shares": s}
                }).to_string()),
        ]) {
            if let Ok(r) = serde_json::from_str::<oci_spec::runtime::LinuxResources>(&json) {
                if let Ok(l) = Limits::from_oci(&r) {
                    if let Some(m) = l.memory_mb {
                        prop_assert!(m >= 1);
                    }
                    if let Some(s) = l.cpu_shares {
                        prop_assert!(s >= 1);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod resources_json {
    use crate::oci::{parse_resources, MAX_RESOURCES_JSON};

    #[test]
    fn runtime_input_is_bounded_and_a_wrong_type_is_refused_where_it_is() {
        let l = parse_resources(br#"{"memory":{"limit":104857600},"cpu":{"quota":25000,"period":100000},"pids":{"limit":10}}"#).unwrap();
        assert_eq!((l.memory_mb, l.cpu_cap_pct), (Some(100), Some(25)));
        let e = parse_resources(br#"{"cpu":{"quota":"lots"}}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e == "resources: invalid type: string \"lots\", expected i64 at line 1 column 22",
            "{e}"
        );
        let big = vec![b' '; MAX_RESOURCES_JSON as usize + 1];
        assert_eq!(
            parse_resources(&big).unwrap_err().to_string(),
            format!("resources: more than {MAX_RESOURCES_JSON} bytes")
        );
        assert!(parse_resources(b"\x1b[2J").is_err());
    }
}
