//! Backends: how a container's VM is started, signalled, stopped and cleaned up. Everything
//! else (images, spec, config disk, channels, state) is shared.
pub mod pod;
pub mod pod_share;
pub mod qemu;
pub mod qemu_checkpoint;
pub mod qemu_pod;
pub mod qmp;
pub mod warm;
pub mod xen;

use crate::container::Container;
use std::path::{Path, PathBuf};

/// A disk given to the guest, in order (docs/guest-protocol.md: 0 rootfs, 1 config, 2.. more).
pub struct Disk {
    pub path: PathBuf,
    pub readonly: bool,
    /// The guest's flushes must reach the host's disk before they complete: data read after
    /// this VM is gone (volumes). False for read-only disks and for the writable layer, which
    /// nothing reads after its VM (hx has no restart): flushing it would be pure cost.
    pub durable: bool,
}

/// Xen domain type (`hx run --type`, or `[xen] type` in the config file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XenType {
    #[default]
    Pvh,
    Pv,
}

impl XenType {
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        match s {
            "pvh" => Ok(XenType::Pvh),
            "pv" => Ok(XenType::Pv),
            other => anyhow::bail!("domain type {other:?}: pvh or pv"),
        }
    }
}

pub struct VmSpec<'a> {
    /// The container's id (Xen marks its domain with it).
    pub id: &'a str,
    pub name: &'a str,
    /// The container directory: channel logs (stdout.log, stderr.log, status.log) and the
    /// console log land here.
    pub dir: &'a Path,
    pub kernel: &'a Path,
    pub initramfs: &'a Path,
    pub disks: Vec<Disk>,
    pub memory_mb: u64,
    pub cpus: u32,
    /// CPU cap and weight (`hx update`); only a backend whose `limit_caps().cpu` gets others
    /// than the default.
    pub cpu_limits: crate::limits::CpuLimits,
    /// Where those limits go on a backend whose VM is a host process: the host cgroup the VM
    /// already runs in (Container::host_cgroup), else None for hx's own group of the container.
    pub cpu_group: Option<&'a Path>,
    /// The guest's NIC, if it has one (network::setup says how to plug it in).
    pub nic: Option<crate::network::VmNic>,
    /// Further NICs, after `nic` (a VM that took over a namespace with several interfaces).
    pub extra_nics: Vec<crate::network::VmNic>,
    /// Host directories to share with the guest under 9p mount tags (volume::plan).
    pub shares: Vec<crate::volume::Share>,
    /// Xen domain type; QEMU ignores it.
    pub xen_type: XenType,
    /// `-i` on a backend whose `stdin_over_socket`: an `hx.stdin` port whose host end the
    /// container's log relay holds and lends to attach clients (attach_channel). Xen carries
    /// input over the console.
    pub stdin: bool,
    /// A bus that disks can be hot-plugged into while the VM runs: a pod's VM (docs/pods.md;
    /// QEMU: one virtio-scsi HBA, `hxpod`).
    pub hotplug_bus: bool,
    /// Records the VM's host process in the container's state; `spawn_recorded` calls it
    /// before that process may run.
    pub on_spawn: OnSpawn<'a>,
    /// A checkpoint's directory (`Backend::checkpoint`'s `into`): `start` loads the VM saved
    /// there and resumes it instead of booting, with this spec's devices (the same shape).
    pub restore: Option<&'a Path>,
}

/// What `Backend::set_limits` can change: a running VM's memory (a balloon target), CPU time
/// (a cap and a weight, on a running VM and at each start).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LimitCaps {
    pub live_memory: bool,
    pub cpu: bool,
}

/// See `VmSpec::on_spawn`.
pub type OnSpawn<'a> = &'a (dyn Fn(&VmHandle) -> anyhow::Result<()> + Sync);

/// What identifies a started VM.
pub struct VmHandle {
    pub pid: i32,
    pub pid_start: u64,
    pub domid: Option<u32>,
}

pub trait Backend {
    fn name(&self) -> &'static str;
    /// Which build of the hyper kernel the backend boots (assets.rs): `bzImage` for QEMU's
    /// `-kernel`, `vmlinux` (the ELF with Xen's PVH and PV notes) for Xen.
    fn kernel_file(&self) -> &'static str {
        "bzImage"
    }
    /// Whether the VM's domain type (`--type`, `[xen] type`) means anything to this backend.
    fn has_domain_types(&self) -> bool {
        false
    }
    /// The guest kernel the config file names for this backend, if any.
    fn configured_kernel(&self, _host: &crate::hostconfig::HostConfig) -> Option<PathBuf> {
        None
    }
    /// Whether `-i` input reaches the guest through `VmSpec::stdin` (the relay's
    /// `attach.sock`, attach_channel), else through the console.
    fn stdin_over_socket(&self) -> bool {
        false
    }
    /// How this backend gives the guest host directories (`-v DIR:PATH`), the container's
    /// directory being `into`.
    fn host_dirs<'a>(&self, into: &'a Path) -> crate::volume::HostDirs<'a>;
    /// Starts the VM; returns once the hypervisor has it (not when the guest has booted).
    fn start(&self, spec: &VmSpec) -> anyhow::Result<VmHandle>;
    fn is_running(&self, c: &Container) -> bool;
    /// Sends a control line to pv-init (docs/guest-protocol.md).
    fn send_control(&self, c: &Container, dir: &Path, line: &str) -> anyhow::Result<()>;
    /// Stops the VM at once, whatever the guest is doing; returns when it is gone.
    fn kill(&self, c: &Container) -> anyhow::Result<()>;
    /// Removes the backend's runtime leftovers (sockets, fifos, devices) of a stopped VM.
    fn cleanup(&self, c: &Container, dir: &Path) -> anyhow::Result<()>;
    /// Whether `pause`/`unpause` can freeze and thaw this backend's VMs.
    fn can_pause(&self) -> bool {
        false
    }
    /// Freezes the VM's vCPUs (the workload's clock stops with them); its memory stays.
    fn pause(&self, c: &Container, _dir: &Path) -> anyhow::Result<()> {
        anyhow::bail!("container {}: this backend cannot pause", c.name)
    }
    fn unpause(&self, c: &Container, _dir: &Path) -> anyhow::Result<()> {
        anyhow::bail!("container {}: this backend cannot unpause", c.name)
    }
    /// Whether `checkpoint` can save a running VM and `start` resume one (`VmSpec::restore`).
    fn can_checkpoint(&self) -> bool {
        false
    }
    /// Saves the running VM — its devices' state and all of its memory — into the new
    /// directory `into`: pauses it, runs `while_paused` (the caller copies the disks that
    /// memory belongs to), writes the state. Leaves the VM paused, on success or not:
    /// `unpause` resumes it, `kill` ends it.
    fn checkpoint(
        &self,
        c: &Container,
        _dir: &Path,
        _into: &Path,
        _while_paused: &mut dyn FnMut() -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        anyhow::bail!("container {}: this backend cannot checkpoint", c.name)
    }
    /// What renaming a running container means to its VM (`hx rename`). Nothing by default:
    /// the container's record holds its name.
    fn rename_running(&self, _c: &Container, _new: &str) -> anyhow::Result<()> {
        Ok(())
    }
    /// Where `hx exec` reaches a running VM's exec channel (the broker's socket in the
    /// container directory `dir`), if this backend gives its guests one.
    fn exec_socket(&self, _dir: &Path) -> Option<PathBuf> {
        None
    }
    /// Pods (docs/pods.md): whether this backend's VMs can take pod members' disks while they
    /// run (`plug_member`), so that a pod's VM can be one of them.
    fn can_host_pod_members(&self) -> bool {
        false
    }
    /// Hot-plugs pod member `member`'s disks into the running VM of the pod's infra container
    /// `pod`; says where the guest finds them (MemberStart::disks). Leaves nothing plugged when
    /// it fails.
    fn plug_member(
        &self,
        pod: &Container,
        _member: &pod::MemberFiles,
    ) -> anyhow::Result<pv_init::mux::MemberDisks> {
        anyhow::bail!(
            "container {}: this backend cannot hot-plug pod members' disks",
            pod.name
        )
    }
    /// Which of its members' host directories and files pod VM `pod` takes live
    /// (`MemberFiles::shares`, bound into the VM's members export by `plug_member`); the others
    /// are copied in when small, or refused (backend/pod.rs).
    fn member_shares(&self, _pod: &Container) -> MemberShares {
        MemberShares::None
    }
    /// Most volume disks (`MemberFiles::volumes`: named and anonymous volumes) `plug_member`
    /// plugs for one member.
    fn max_member_volumes(&self) -> usize {
        0
    }
    /// Removes what `plug_member` plugged for `member` from the pod's VM, and anything of it a
    /// killed keeper left half-plugged (best effort: the devices that are there).
    fn unplug_member(&self, _pod: &Container, _member: &pod::MemberFiles) {}
    /// Which of a VM's limits this backend can change (limits.rs): none by default.
    fn limit_caps(&self) -> LimitCaps {
        LimitCaps::default()
    }

    /// The most memory container `c`'s running VM can be given without a restart, in MiB.
    fn max_memory_mb(&self, c: &Container, _dir: &Path) -> anyhow::Result<u64> {
        Ok(c.memory_mb)
    }

    /// Changes container `c`'s running VM: its memory target (within `max_memory_mb`) and/or
    /// its CPU cap and weight, as `limit_caps` allows.
    fn set_limits(
        &self,
        c: &Container,
        _dir: &Path,
        _memory_mb: Option<u64>,
        _cpu: Option<crate::limits::CpuLimits>,
    ) -> anyhow::Result<()> {
        anyhow::bail!(
            "container {}: the {} backend cannot change a running VM's limits",
            c.name,
            self.name()
        )
    }

    /// Whether the VM is paused now (asked of the hypervisor, never cached).
    fn is_paused(&self, _c: &Container, _dir: &Path) -> bool {
        false
    }
}

/// How a pod's VM takes its members' host directories and files (`Backend::member_shares`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberShares {
    /// None live: small files and read-only directories are copied in, writable directories
    /// refused.
    None,
    /// The writable ones live, through a writable members export; read-only ones copied (Xen:
    /// its 9pfs backend has no read-only export).
    Writable,
    /// All live (QEMU: a writable and a read-only members export).
    All,
}

impl MemberShares {
    /// Whether a share that is read-only or not goes live.
    pub fn live(self, readonly: bool) -> bool {
        match self {
            MemberShares::None => false,
            MemberShares::Writable => !readonly,
            MemberShares::All => true,
        }
    }
}

/// `--backend`/HX_BACKEND, else Xen on a dom0, else QEMU.
pub fn select(name: Option<&str>, root: &Path) -> anyhow::Result<Box<dyn Backend>> {
    let name = match name {
        Some(n) => n.to_string(),
        None if is_xen_dom0() => "xen".to_string(),
        None => "qemu".to_string(),
    };
    match name.as_str() {
        "qemu" => Ok(Box::new(qemu::Qemu::new(root))),
        "xen" => Ok(Box::new(xen::Xen::new(root)?)),
        other => anyhow::bail!("unknown backend {other:?} (qemu or xen)"),
    }
}

pub fn for_container(c: &Container, root: &Path) -> anyhow::Result<Box<dyn Backend>> {
    if let (pod::NAME, Some(p)) = (c.backend.as_str(), &c.pod) {
        return Ok(Box::new(pod::PodMember::new(root, p)));
    }
    select(Some(&c.backend), root)
}

/// A VM whose output goes through a log relay (QEMU's, a pod member's keeper) counts as
/// running until the relay has written the last of it too, so whoever reads the status or the
/// logs next sees all of it.
pub(crate) fn running_or_relaying(root: &Path, c: &Container) -> bool {
    c.vm_alive()
        || crate::log_relay::busy(
            &crate::container::dir(root, &c.id),
            std::time::Duration::from_millis(500),
        )
}

/// One control line into the VM's control FIFO (`dir/control.in`), without blocking.
pub(crate) fn write_control_fifo(dir: &Path, line: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let p = dir.join("control.in");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&p)
        .with_context(|| format!("control channel {}", p.display()))?;
    f.write_all(line.as_bytes())?;
    Ok(())
}

pub fn is_xen_dom0() -> bool {
    std::fs::read_to_string("/proc/xen/capabilities").is_ok_and(|s| s.contains("control_d"))
}

/// Spawns the VM's host process (QEMU, the Xen monitor) so that it execs only once `record`
/// has saved its pid and start time: the child reports its pid on one pipe, then waits on
/// another for the go-ahead. If `record` fails, or this process is killed at any point, the
/// go-ahead never comes, the pipe closes and the child exits without running anything. So no
/// VM ever runs that the container's record does not name. Returns (pid, start time); the
/// child is not waited for (pid + start time identify it from now on).
pub fn spawn_recorded(
    cmd: &mut std::process::Command,
    record: OnSpawn,
) -> anyhow::Result<(i32, u64)> {
    use anyhow::Context;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let flags = nix::fcntl::OFlag::O_CLOEXEC;
    let (report_r, report_w) = nix::unistd::pipe2(flags)?;
    let (gate_r, gate_w) = nix::unistd::pipe2(flags)?;
    // Above the descriptors a backend's own pre_exec may dup2 onto (Xen's READY_FD).
    let report_w = above_low_fds(report_w)?;
    let gate_r = above_low_fds(gate_r)?;
    let gate_w = above_low_fds(gate_w)?;
    let (rw, gr, gw) = (report_w.as_raw_fd(), gate_r.as_raw_fd(), gate_w.as_raw_fd());
    // SAFETY: between fork and exec only async-signal-safe calls: close, getpid, write, read.
    unsafe {
        cmd.pre_exec(move || {
            // The child's copy of the go-ahead's write end would keep its own read from ever
            // seeing the parent's death.
            libc::close(gw);
            let pid = libc::getpid().to_ne_bytes();
            if libc::write(rw, pid.as_ptr().cast(), pid.len()) != pid.len() as isize {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(rw);
            let mut go = 0u8;
            loop {
                match libc::read(gr, (&mut go as *mut u8).cast(), 1) {
                    1 => return Ok(()),
                    -1 if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => {}
                    _ => return Err(std::io::Error::from_raw_os_error(libc::ECANCELED)),
                }
            }
        });
    }
    std::thread::scope(|s| {
        let recorder = s.spawn(move || -> anyhow::Result<(i32, u64)> {
            let mut b = [0u8; 4];
            std::fs::File::from(report_r)
                .read_exact(&mut b)
                .context("the VM process did not report its pid")?;
            let pid = i32::from_ne_bytes(b);
            let start = crate::process::start_time(pid)
                .ok_or_else(|| anyhow::anyhow!("the VM process {pid} vanished before it ran"))?;
            record(&VmHandle {
                pid,
                pid_start: start,
                domid: None,
            })?;
            nix::unistd::write(&gate_w, &[1])?;
            Ok((pid, start))
        });
        let spawned = cmd.spawn();
        // Now only the child holds the report pipe's write end: the recorder sees EOF if the
        // child never got to report.
        drop(report_w);
        drop(gate_r);
        let recorded = recorder
            .join()
            .map_err(|_| anyhow::anyhow!("recording the VM process panicked"))?;
        // Not waited for here: the pid is tracked by its start time instead.
        let spawned = spawned.map(std::mem::forget);
        let handle = recorded?;
        spawned?;
        Ok(handle)
    })
}

fn above_low_fds(fd: std::os::fd::OwnedFd) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor or -1.
    let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 64) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: n was just returned by fcntl and is owned by nobody else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(n) })
}
