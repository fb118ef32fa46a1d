//! The Xen backend: one PVH (or PV) domain per container, built through libxl by a per-container
//! monitor process (`hx __xen-monitor DIR`, monitor.rs) that owns the domain for its whole
//! life: it creates it, records its console in console.log, collects the exit status from
//! xenstore when the guest shuts down, and destroys it. The monitor's pid and start time are the
//! container's VmHandle, so the reconcile logic shared with QEMU applies unchanged: a container
//! whose monitor is gone is over, and cleanup destroys whatever domain it left.
pub mod console;
pub mod exec;
pub mod hotplug;
pub mod monitor;
pub mod pod;
pub mod warm;

pub use console::console_tty;

use super::{Backend, VmHandle, VmSpec, XenType};
use crate::container::Container;
use crate::process::{self, Tracked};
use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use xen_bindings::{Context, Xenstore};

/// What the monitor needs to build the domain (written by `start`, read by the monitor).
pub const LAUNCH_FILE: &str = "xen-launch.json";
pub const MONITOR_LOG: &str = "monitor.log";
/// The fd on which the monitor reports `ok DOMID` or `error MESSAGE` once the guest runs.
pub const READY_FD: i32 = 3;
/// Creating a domain runs hotplug scripts; under TCG in the lab that takes seconds.
const START_TIMEOUT: Duration = Duration::from_secs(240);
/// How long a monitor gets to see its domain gone and exit before it is killed.
const MONITOR_EXIT_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchDisk {
    pub path: PathBuf,
    pub readonly: bool,
}

/// The guest's NIC: a vif on a dom0 bridge (libxl runs the vif-bridge hotplug script), or
/// one that takes over interface `link` of network namespace `netns` (hotplug.rs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchNic {
    pub bridge: String,
    pub vifname: String,
    pub mac: String,
    #[serde(default)]
    pub netns: Option<PathBuf>,
    #[serde(default)]
    pub link: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Launch {
    pub id: String,
    pub name: String,
    pub xen_type: XenType,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub cmdline: String,
    pub memory_mb: u64,
    pub cpus: u32,
    pub disks: Vec<LaunchDisk>,
    #[serde(default)]
    pub nic: Option<LaunchNic>,
    /// Further vifs, each taking over a further interface of `nic`'s namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_nics: Vec<LaunchNic>,
    /// hx's own disk hotplug helper instead of libxl's block script (`[xen] hotplug = "hx"`).
    #[serde(default)]
    pub disk_script: Option<PathBuf>,
    /// hx's own vif hotplug helper instead of libxl's vif-bridge script (same setting).
    #[serde(default)]
    pub vif_script: Option<PathBuf>,
    /// Host directories over Xen's 9pfs (a QEMU per domain in dom0 serves them).
    #[serde(default)]
    pub shares: Vec<LaunchShare>,
    /// Restore the domain from a checkpoint instead of booting it.
    #[serde(default)]
    pub restore: Option<LaunchRestore>,
    /// A waiting domain taken from the warm pool (warm.rs): the monitor renames it, plugs the
    /// disks and NIC into it and sends the go line instead of booting one.
    #[serde(default)]
    pub warm: Option<warm::Taken>,
    /// The credit2 cap and weight set before the domain runs (`hx update`, limits.rs).
    #[serde(default, skip_serializing_if = "crate::limits::CpuLimits::is_default")]
    pub cpu_limits: crate::limits::CpuLimits,
}

/// The vif for one of the VM's NICs. `hx_vif_script`: hx's own vif helper runs (a
/// namespace's interface needs it).
fn launch_nic(n: &crate::network::VmNic, hx_vif_script: bool) -> anyhow::Result<LaunchNic> {
    match &n.kind {
        crate::network::NicKind::Bridge { bridge, ifname } => Ok(LaunchNic {
            bridge: bridge.clone(),
            vifname: ifname.clone(),
            mac: n.mac.clone(),
            netns: None,
            link: None,
        }),
        crate::network::NicKind::User { .. } => {
            bail!("user-mode networking is QEMU's; on Xen hx runs as root and uses a bridge")
        }
        crate::network::NicKind::Netns {
            netns,
            link,
            ifname,
        } => {
            if !hx_vif_script {
                bail!("a network namespace's interface needs hx's own vif hotplug helper, not libxl's vif-bridge ([xen] hotplug = \"hx\")");
            }
            // The vif's "bridge" node names the interface it becomes in the namespace.
            Ok(LaunchNic {
                bridge: ifname.clone(),
                vifname: ifname.clone(),
                mac: n.mac.clone(),
                netns: Some(netns.clone()),
                link: Some(link.clone()),
            })
        }
    }
}

impl Launch {
    /// The container directory's launch file (written by `Xen::start`).
    pub fn read(dir: &Path) -> anyhow::Result<Launch> {
        let p = dir.join(LAUNCH_FILE);
        let bytes = std::fs::read(&p).with_context(|| format!("{}", p.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", p.display()))
    }

    /// Which host paths of its members the domain takes live: those of the members exports
    /// it was made with (`members_exports`; a pod made by an older hx may have the writable
    /// one only).
    pub fn member_shares(&self) -> crate::backend::MemberShares {
        let has = |tag: &str| self.shares.iter().any(|s| s.tag == tag);
        match (
            has(pv_init::mux::MEMBERS_SHARE_TAG),
            has(pv_init::mux::MEMBERS_RO_SHARE_TAG),
        ) {
            (true, true) => crate::backend::MemberShares::All,
            (true, false) => crate::backend::MemberShares::Writable,
            _ => crate::backend::MemberShares::None,
        }
    }
}

/// A pod's domain gets the members exports from boot where dom0 has the 9pfs backend (a
/// running domain cannot gain one), its members' host directories and files bound into them
/// (pod_share.rs) as on QEMU: the writable one with the model its filesystem takes, the
/// read-only one with the host's own metadata (passthrough: host symlinks read as symlinks, as
/// kubelet's ConfigMaps need) — safe only because the monitor's namespace makes it read-only
/// (`private_mounts`), Xen's 9pfs having no read-only export. They cost the pod a QEMU in dom0
/// (docs/pods.md); without them members get copies (backend/pod.rs).
fn members_exports(spec: &VmSpec) -> Vec<LaunchShare> {
    if !spec.hotplug_bus || !has_9pfs_backend() {
        return Vec::new();
    }
    let (rw, ro) = (
        super::pod_share::members_export(spec.dir),
        super::pod_share::members_export_ro(spec.dir),
    );
    for path in [&rw, &ro] {
        if let Err(e) = std::fs::create_dir_all(path) {
            tracing::warn!("no members exports for the pod ({}: {e})", path.display());
            return Vec::new();
        }
    }
    vec![
        LaunchShare {
            tag: pv_init::mux::MEMBERS_SHARE_TAG.into(),
            model: crate::volume::ShareModel::for_path(&rw),
            path: rw,
        },
        LaunchShare {
            tag: pv_init::mux::MEMBERS_RO_SHARE_TAG.into(),
            model: crate::volume::ShareModel::Passthrough,
            path: ro,
        },
    ]
}

/// A checkpoint to restore (`hx start --checkpoint`): libxl's stream, and the control log the
/// saved guest had seen (pv-init delivers only lines numbered after the last it saw).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchRestore {
    pub state: PathBuf,
    pub control: String,
}

/// A Xen checkpoint's files (checkpoint/mod.rs makes the directory): libxl's stream of the
/// suspended domain, and what the backend needs besides to restore it.
const CHECKPOINT_STATE: &str = "state";
const CHECKPOINT_META: &str = "xen.json";
/// The control log is a few numbered lines (pv_init::status::control_log::KEEP).
const MAX_CONTROL_BYTES: usize = 4096;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedXen {
    /// The domain's `hx/control` node when it was saved.
    control: String,
}

impl SavedXen {
    fn read(checkpoint: &Path) -> anyhow::Result<SavedXen> {
        let p = checkpoint.join(CHECKPOINT_META);
        let mut bytes = Vec::new();
        std::fs::File::open(&p)
            .with_context(|| format!("reading {}", p.display()))?
            .take(2 * MAX_CONTROL_BYTES as u64)
            .read_to_end(&mut bytes)?;
        let saved: SavedXen =
            serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", p.display()))?;
        anyhow::ensure!(
            saved.control.len() <= MAX_CONTROL_BYTES,
            "{}: the control log is too long",
            p.display()
        );
        Ok(saved)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchShare {
    pub tag: String,
    pub path: PathBuf,
    #[serde(default)]
    pub model: crate::volume::ShareModel,
}

/// Where libxl finds the QEMU it starts as a PV domain's 9pfs backend: Debian's
/// `qemu-system-xen` package, then upstream Xen's default install path.
const DEVICE_MODELS: [&str; 2] = [
    "/usr/libexec/xen-qemu-system-i386",
    "/usr/lib/xen/bin/qemu-system-i386",
];

/// Whether dom0 can serve host directories live over 9pfs.
pub fn has_9pfs_backend() -> bool {
    DEVICE_MODELS.iter().any(|p| Path::new(p).is_file())
}

/// Kernel command line on Xen: the console is the workload's output, so the kernel stays quiet
/// (`loglevel=1` still prints panics, which are KERN_EMERG). `HX_GUEST_CMDLINE` is appended,
/// e.g. `loglevel=7` to see the boot.
pub fn cmdline() -> String {
    let mut c = String::from("console=hvc0 quiet loglevel=1 panic=-1 hx.backend=xen");
    if let Ok(extra) = std::env::var("HX_GUEST_CMDLINE") {
        if !extra.trim().is_empty() {
            c.push(' ');
            c.push_str(extra.trim());
        }
    }
    c
}

/// xenstore paths of one domain.
pub fn dom_path(domid: u32) -> String {
    format!("/local/domain/{domid}")
}
pub fn id_node(domid: u32) -> String {
    format!("/local/domain/{domid}/hx/id")
}
pub fn control_node(domid: u32) -> String {
    format!("/local/domain/{domid}/hx/control")
}
pub fn status_dir(domid: u32) -> String {
    format!("/local/domain/{domid}/data/hx/status")
}

/// "not a Xen dom0: ..." unless /proc/xen/capabilities says control_d.
/// Sends pv-init one control line (`signal 15`): appended under a number to the domain's
/// control log, since pv-init delivers only numbered lines newer than the last it saw (a plain
/// write is ignored).
pub fn append_control(xs: &Xenstore, domid: u32, line: &str) -> anyhow::Result<()> {
    let node = control_node(domid);
    xs.transaction(|t| {
        let old = t.read(&node)?.unwrap_or_default();
        let new = pv_init::status::control_log::append(&String::from_utf8_lossy(&old), line);
        t.write(&node, new.as_bytes())
    })?;
    Ok(())
}

/// Credit2's cap (percent of one CPU, 0: none) and weight (None: left as it is).
pub(crate) fn set_cpu_limits(
    ctx: &Context,
    domid: u32,
    cpu: &crate::limits::CpuLimits,
) -> anyhow::Result<()> {
    let cap = i32::try_from(cpu.cap_pct)?;
    let weight = cpu
        .shares
        .map(|s| i32::try_from(crate::limits::weight_for_shares(s)))
        .transpose()?;
    ctx.set_credit2(domid, weight, Some(cap))
        .with_context(|| format!("setting domain {domid}'s credit2 cap {cap} and weight"))
}

/// Saved (or being saved) and not resumed: shut down with reason suspend, not yet dying.
fn is_suspended(i: &xen_bindings::DomainInfo) -> bool {
    i.shutdown && !i.dying && i.shutdown_reason == Some(xen_bindings::ShutdownReason::Suspend)
}

/// Linux's 9pfs frontend cannot be suspended (trans_xen.c: "suspend/resume unsupported").
fn refuse_9pfs_checkpoint(name: &str, has_9pfs: bool) -> anyhow::Result<()> {
    if has_9pfs {
        bail!("container {name}: its read-write host directories (or a pod's members exports) are shared over 9pfs, which a Xen guest cannot carry through a checkpoint (a :ro one is a copy and can)");
    }
    Ok(())
}

pub fn require_dom0() -> anyhow::Result<()> {
    match std::fs::read_to_string("/proc/xen/capabilities") {
        Ok(s) if s.contains("control_d") => Ok(()),
        Ok(_) => Err(crate::HxError::NotDom0(
            "/proc/xen/capabilities has no control_d (this is a domU)".into(),
        )
        .into()),
        Err(e) => Err(crate::HxError::NotDom0(format!("/proc/xen/capabilities: {e}")).into()),
    }
}

/// Runs a libxl asynchronous operation from synchronous code, wherever it is called from (a
/// tokio worker, a blocking thread, or no runtime at all): the operation completes on the
/// context's own event thread, so a small runtime on a scoped thread only waits for it.
pub fn block_on<F>(f: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime")
                .block_on(f)
        })
        .join()
        .expect("libxl wait thread")
    })
}

pub struct Xen {
    root: PathBuf,
}

impl Xen {
    /// libxl and the domain of a running hx container.
    fn running_domain(&self, c: &Container) -> anyhow::Result<(Context, u32)> {
        require_dom0()?;
        let ctx = Context::new()?;
        let xs = Xenstore::open()?;
        match self.domain_of(&ctx, &xs, c) {
            Some(d) => Ok((ctx, d)),
            None => bail!("container {} is not running", c.name),
        }
    }

    /// Container `c`'s domain: its recorded domid or name (find_domain), or the pool domain
    /// it took (a start killed before the domain had the container's name).
    fn domain_of(&self, ctx: &Context, xs: &Xenstore, c: &Container) -> Option<u32> {
        find_domain(ctx, xs, c).or_else(|| {
            warm::taken_domain(ctx, xs, &crate::container::dir(&self.root, &c.id), &c.id)
        })
    }

    pub fn new(root: &Path) -> anyhow::Result<Self> {
        Ok(Xen {
            root: root.to_path_buf(),
        })
    }

    /// The vbd and vif hotplug helpers libxl runs: `HX_XEN_HOTPLUG`, else `[xen] hotplug` from
    /// the config file: "hx" (default: hx's own, hotplug.rs) or "block" (libxl's `block`
    /// and `vif-bridge` scripts).
    fn hotplug_scripts(&self) -> anyhow::Result<(Option<PathBuf>, Option<PathBuf>)> {
        let choice = match std::env::var("HX_XEN_HOTPLUG") {
            Ok(v) => Some(v),
            Err(_) => crate::hostconfig::load(&self.root)?.xen.hotplug,
        };
        use hotplug::{script_path, VBD, VIF};
        match choice.as_deref() {
            Some("block") => Ok((None, None)),
            None | Some("hx") => Ok((
                Some(script_path(&self.root, VBD)?),
                Some(script_path(&self.root, VIF)?),
            )),
            Some(other) => bail!("HX_XEN_HOTPLUG {other:?}: \"block\" or \"hx\""),
        }
    }
}

/// The domain of container `c`, if it still exists: its recorded domid or its name, confirmed
/// by the `hx/id` node libxl wrote with the domain (dom0-owned, so the guest cannot forge it).
/// Destroys container `c`'s domain. Its monitor may be destroying it at the same moment (the
/// guest shut down as hx stop gave up waiting): libxl then fails (`xc_domain_destroy`: no such
/// process, or its lock is taken), and a domain that is gone a moment later is what was asked.
fn destroy(ctx: &Context, xs: &Xenstore, c: &Container, domid: u32) -> anyhow::Result<()> {
    let Err(e) = block_on(ctx.destroy(domid)) else {
        return Ok(());
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        // By its id node, not find_domain: a warm pool domain is the container's before it
        // has the container's name.
        if !carries_id(xs, domid, &c.id) {
            tracing::debug!("domain {domid} went while hx destroyed it too: {e}");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(e).with_context(|| format!("destroying domain {domid}"))
}

pub fn find_domain(ctx: &Context, xs: &Xenstore, c: &Container) -> Option<u32> {
    let by_name = ctx.domid_by_name(&c.name).ok();
    [c.domid, by_name]
        .into_iter()
        .flatten()
        .find(|d| carries_id(xs, *d, &c.id))
}

/// Whether domain `domid`'s `hx/id` node is `id` (empty: a warm pool domain nobody took).
pub fn carries_id(xs: &Xenstore, domid: u32, id: &str) -> bool {
    xs.read(&id_node(domid))
        .ok()
        .flatten()
        .is_some_and(|v| v == id.as_bytes())
}

fn monitor_failure(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join(MONITOR_LOG)).unwrap_or_default();
    log.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| "the monitor exited without a word".into())
}

/// Waits for the monitor's `ok DOMID` / `error MESSAGE` line.
fn await_ready(r: OwnedFd, monitor: Tracked, dir: &Path) -> anyhow::Result<u32> {
    let mut f = std::fs::File::from(r);
    let deadline = Instant::now() + START_TIMEOUT;
    let mut buf = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            monitor.signal(libc::SIGTERM);
            bail!(
                "the domain did not start within {}s (see {})",
                START_TIMEOUT.as_secs(),
                dir.join(MONITOR_LOG).display()
            );
        }
        let mut pfd = [libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(pfd.as_mut_ptr(), 1, left.as_millis().min(1000) as i32) };
        if pfd[0].revents == 0 {
            continue;
        }
        let mut chunk = [0u8; 4096];
        let n = f.read(&mut chunk).unwrap_or(0);
        if n == 0 {
            bail!("the domain did not start: {}", monitor_failure(dir));
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 65536 {
            bail!("the monitor's ready line is too long");
        }
        if let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line = String::from_utf8_lossy(&buf[..pos]).to_string();
            if let Some(domid) = line.strip_prefix("ok ") {
                return domid
                    .trim()
                    .parse()
                    .with_context(|| format!("monitor said {line:?}"));
            }
            bail!("{}", line.strip_prefix("error ").unwrap_or(&line));
        }
    }
}

/// Loop devices whose backing file is one of `files` and that no vbd backend uses any more
/// (left by a hotplug script that was interrupted): detached.
pub fn sweep_loops(xs: Option<&Xenstore>, files: &[PathBuf]) {
    let files: Vec<PathBuf> = files.iter().filter_map(|f| f.canonicalize().ok()).collect();
    if files.is_empty() {
        return;
    }
    let in_use = xs.map(vbd_devices).unwrap_or_default();
    let Ok(rd) = std::fs::read_dir("/sys/block") else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.starts_with("loop") {
            continue;
        }
        let backing = std::fs::read_to_string(e.path().join("loop/backing_file"))
            .unwrap_or_default()
            .trim()
            .to_string();
        if backing.is_empty() || !files.iter().any(|f| Path::new(&backing) == f) {
            continue;
        }
        let dev = std::fs::read_to_string(e.path().join("dev")).unwrap_or_default();
        if in_use.contains(&dev.trim().to_string()) {
            continue;
        }
        tracing::info!("detaching leftover /dev/{name} ({backing})");
        let _ = Command::new("losetup")
            .arg("-d")
            .arg(format!("/dev/{name}"))
            .status();
    }
}

/// major:minor (decimal, as /sys/block/*/dev) of every block device a vbd backend holds.
fn vbd_devices(xs: &Xenstore) -> Vec<String> {
    let mut out = Vec::new();
    let base = "/local/domain/0/backend/vbd";
    for dom in xs.directory(base).unwrap_or_default() {
        for dev in xs.directory(&format!("{base}/{dom}")).unwrap_or_default() {
            // The block script writes it as hex major:minor.
            if let Ok(Some(v)) = xs.read(&format!("{base}/{dom}/{dev}/physical-device")) {
                let v = String::from_utf8_lossy(&v).to_string();
                if let Some((ma, mi)) = v.split_once(':') {
                    if let (Ok(ma), Ok(mi)) =
                        (u32::from_str_radix(ma, 16), u32::from_str_radix(mi, 16))
                    {
                        out.push(format!("{ma}:{mi}"));
                    }
                }
            }
        }
    }
    out
}

/// Removes what a domain that no longer exists left in xenstore (a toolstack killed while
/// destroying it): its home, libxl's record and the backend directories in dom0.
pub fn remove_stale_nodes(ctx: &Context, xs: &Xenstore, domid: u32) {
    if domid == 0 || ctx.info(domid).is_ok() {
        return;
    }
    kill_stale_device_model(xs, domid);
    for p in [
        dom_path(domid),
        format!("/libxl/{domid}"),
        format!("/local/domain/0/backend/vbd/{domid}"),
        format!("/local/domain/0/backend/console/{domid}"),
        format!("/local/domain/0/backend/vif/{domid}"),
        format!("/local/domain/0/backend/9pfs/{domid}"),
        format!("/local/domain/0/device-model/{domid}"),
    ] {
        let _ = xs.rm(&p);
    }
}

/// The 9pfs QEMU libxl started for a domain that is gone (libxl's destroy kills it; a
/// toolstack killed mid-destroy does not). Only a process that is that domain's device model
/// by its command line is killed: the pid in xenstore may have been reused.
fn kill_stale_device_model(xs: &Xenstore, domid: u32) {
    let Ok(Some(pid)) = xs.read(&format!("{}/image/device-model-pid", dom_path(domid))) else {
        return;
    };
    let Ok(pid) = String::from_utf8_lossy(&pid).trim().parse::<i32>() else {
        return;
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let ours = args
        .windows(2)
        .any(|w| w[0] == b"-xen-domid" && w[1] == domid.to_string().as_bytes());
    if pid > 1 && ours {
        tracing::info!("killing the device model {pid} of gone domain {domid}");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

impl Backend for Xen {
    /// The domain carries the container's name (xl list, find_domain): renamed with it, by
    /// libxl (which refuses a name another domain has). The record is saved after this, and
    /// `find_domain` finds the domain by its recorded domid meanwhile.
    fn rename_running(&self, c: &Container, new: &str) -> anyhow::Result<()> {
        let (ctx, domid) = self.running_domain(c)?;
        if ctx.domid_by_name(new).is_ok() {
            bail!(
                "container {}: a domain named {new} exists (xl list)",
                c.name
            );
        }
        ctx.rename(domid, new)
            .with_context(|| format!("renaming domain {domid} to {new}"))
    }

    fn name(&self) -> &'static str {
        "xen"
    }

    fn has_domain_types(&self) -> bool {
        true
    }

    fn configured_kernel(&self, host: &crate::hostconfig::HostConfig) -> Option<PathBuf> {
        host.xen.kernel.clone()
    }

    /// `:ro` directories become snapshot disks; read-write ones go over Xen's 9pfs when dom0
    /// has its QEMU backend (docs/volumes.md).
    fn host_dirs<'a>(&self, into: &'a Path) -> crate::volume::HostDirs<'a> {
        crate::volume::HostDirs::Snapshot {
            into,
            share_rw: has_9pfs_backend(),
        }
    }

    fn kernel_file(&self) -> &'static str {
        "vmlinux"
    }

    fn start(&self, spec: &VmSpec) -> anyhow::Result<VmHandle> {
        require_dom0()?;
        let restore = match spec.restore {
            None => None,
            Some(ck) => {
                refuse_9pfs_checkpoint(spec.name, !spec.shares.is_empty())?;
                Some(LaunchRestore {
                    state: ck.join(CHECKPOINT_STATE),
                    control: SavedXen::read(ck)?.control,
                })
            }
        };
        if !spec.shares.is_empty() && !has_9pfs_backend() {
            bail!("read-write host directories on Xen need QEMU in dom0 as the 9pfs backend: install qemu-system-xen (or add :ro for a copy taken at start)");
        }
        if let Some(s) = spec.shares.iter().find(|s| s.readonly) {
            // Xen's 9pfs backend has no read-only export; volume::plan snapshots these.
            bail!(
                "internal: read-only share {} reached the Xen backend",
                s.path.display()
            );
        }
        let (disk_script, vif_script) = self.hotplug_scripts()?;
        let nic = spec
            .nic
            .as_ref()
            .map(|n| launch_nic(n, vif_script.is_some()))
            .transpose()?;
        let extra_nics = spec
            .extra_nics
            .iter()
            .map(|n| match n.kind {
                crate::network::NicKind::Netns { .. } => launch_nic(n, vif_script.is_some()),
                _ => bail!("internal: a further NIC that is not a namespace's interface"),
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        // Published ports stay bound while the domain lives: the monitor inherits the sockets.
        let hold: Vec<i32> = spec
            .nic
            .as_ref()
            .map(|n| n.hold.iter().map(|f| f.as_raw_fd()).collect())
            .unwrap_or_default();
        let d = spec.dir;
        let shape = warm::Shape {
            xen_type: spec.xen_type,
            kernel: spec.kernel.to_path_buf(),
            initramfs: spec.initramfs.to_path_buf(),
            cmdline: cmdline(),
            memory_mb: spec.memory_mb,
            cpus: spec.cpus,
        };
        // Not for a restore (its memory is the checkpoint's), 9pfs shares (their backend is
        // a device model a running domain cannot gain) or a pod (its members plug later).
        let use_warm = restore.is_none()
            && spec.shares.is_empty()
            && !spec.hotplug_bus
            && spec.disks.len() <= pv_init::warm::MAX_DISKS as usize
            && spec.extra_nics.is_empty()
            && warm::enabled(&self.root);
        let taken = use_warm
            .then(|| {
                let taken = warm::take(&self.root, &shape, d, spec.id);
                match &taken {
                    Some(t) => tracing::info!("warm start: took pool domain {}", t.domid),
                    None => tracing::info!("warm start: the pool is empty: booting cold"),
                }
                taken
            })
            .flatten();
        let launch = Launch {
            id: spec.id.to_string(),
            name: spec.name.to_string(),
            xen_type: shape.xen_type,
            kernel: shape.kernel.clone(),
            initramfs: shape.initramfs.clone(),
            cmdline: shape.cmdline.clone(),
            memory_mb: shape.memory_mb,
            cpus: shape.cpus,
            disks: spec
                .disks
                .iter()
                .map(|d| LaunchDisk {
                    path: d.path.clone(),
                    readonly: d.readonly,
                })
                .collect(),
            nic,
            extra_nics,
            disk_script,
            vif_script,
            shares: spec
                .shares
                .iter()
                .map(|s| LaunchShare {
                    tag: s.tag.clone(),
                    path: s.path.clone(),
                    model: s.model,
                })
                .chain(members_exports(spec))
                .collect(),
            restore,
            warm: taken,
            cpu_limits: spec.cpu_limits,
        };
        std::fs::write(d.join(LAUNCH_FILE), serde_json::to_vec_pretty(&launch)?)?;
        // The console is the workload's output (stdout and stderr merged): `hx logs` and an
        // attached `hx run` read stdout.log, which is the console log.
        crate::logfile::begin_run(d, &["console.log", "stderr.log"], &["status.log"])?;
        let _ = std::fs::remove_file(d.join("stdout.log"));
        std::os::unix::fs::symlink("console.log", d.join("stdout.log"))?;

        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let log = std::fs::File::create(d.join(MONITOR_LOG))?;
        let exe = std::env::current_exe().context("locating the hx binary")?;
        let mut cmd = Command::new(exe);
        cmd.arg("__xen-monitor").arg(d);
        // libxl's hotplug child inherits these: the vif goes into the namespace (hotplug.rs).
        if let Some(LaunchNic {
            netns: Some(netns), ..
        }) = &launch.nic
        {
            let links: Vec<String> = launch
                .nic
                .iter()
                .chain(&launch.extra_nics)
                .filter_map(|n| Some(format!("{}={}", n.bridge, n.link.as_deref()?)))
                .collect();
            cmd.env(hotplug::VIF_NETNS_ENV, netns)
                .env(hotplug::VIF_LINK_ENV, links.join(","));
        }
        if std::env::var_os("HX_LOG").is_none() {
            cmd.env("HX_LOG", "info");
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if launch.member_shares() != crate::backend::MemberShares::None {
            // Members' binds go into the exports in the monitor's own mount namespace, which
            // the 9pfs backend libxl starts from it inherits (pod_share.rs); Xen's 9pfs has no
            // read-only export, so the namespace makes that one read-only.
            super::pod_share::private_mounts(&mut cmd, d, true)?;
        }
        let w_fd = w.as_raw_fd();
        // Own session: the domain outlives `hx run` being killed, like a docker container
        // outlives its client.
        process::detach(&mut cmd, hold);
        // SAFETY: dup2 is async-signal-safe; w stays open until the spawn returns.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(w_fd, READY_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        // Recorded in the container's state before it may run (spawn_recorded).
        let (pid, recorded) = super::spawn_recorded(&mut cmd, spec.on_spawn)
            .context("starting the domain monitor")?;
        drop(w);
        let start = process::start_time(pid).filter(|s| *s == recorded);
        let monitor = Tracked {
            pid,
            start: recorded,
        };
        let ready = await_ready(r, monitor, d);
        // After the container's start (or its failure: a domain may have been taken), so that
        // the next pool domain's boot does not compete with it.
        if use_warm {
            if let Err(e) = warm::spawn_fill(&self.root, &shape) {
                tracing::warn!("warm pool: refill: {}", crate::one_line(&e));
            }
        }
        let domid = match ready {
            Ok(domid) => domid,
            Err(e) => {
                monitor.reap();
                return Err(e);
            }
        };
        let Some(pid_start) = start else {
            bail!("the domain monitor died at once: {}", monitor_failure(d));
        };
        Ok(VmHandle {
            pid,
            pid_start,
            domid: Some(domid),
        })
    }

    fn is_running(&self, c: &Container) -> bool {
        c.vm_alive()
    }

    fn send_control(&self, c: &Container, _dir: &Path, line: &str) -> anyhow::Result<()> {
        if !self.is_running(c) {
            bail!("container {} is not running", c.name);
        }
        require_dom0()?;
        let domid = c
            .domid
            .ok_or_else(|| anyhow::anyhow!("container {} has no domain", c.name))?;
        let xs = Xenstore::open()?;
        if xs.read(&id_node(domid))?.as_deref() != Some(c.id.as_bytes()) {
            bail!("domain {domid} is not container {}'s any more", c.name);
        }
        append_control(&xs, domid, line)
    }

    fn kill(&self, c: &Container) -> anyhow::Result<()> {
        if crate::backend::is_xen_dom0() {
            let ctx = Context::new()?;
            let xs = Xenstore::open()?;
            if let Some(domid) = self.domain_of(&ctx, &xs, c) {
                // A guest that already shut down is being destroyed by its monitor: a second
                // destroy only races it (libxl then fails loudly). The monitor gets its time.
                if ctx
                    .info(domid)
                    .is_ok_and(|i| (i.shutdown && !is_suspended(&i)) || i.dying)
                {
                    if let Some(monitor) = c.vm_process() {
                        monitor.wait(MONITOR_EXIT_WAIT);
                    }
                }
                if self.domain_of(&ctx, &xs, c).is_some() {
                    destroy(&ctx, &xs, c, domid)?;
                }
            }
        }
        // The monitor sees the domain die and exits; one that hangs is killed.
        if let Some(monitor) = c.vm_process() {
            if !monitor.wait(MONITOR_EXIT_WAIT) {
                monitor.kill_and_wait(Duration::from_secs(1));
            }
        }
        Ok(())
    }

    /// Blkback vbds on the pod's domain (pod.rs).
    fn can_host_pod_members(&self) -> bool {
        true
    }

    fn plug_member(
        &self,
        pod: &Container,
        member: &crate::backend::pod::MemberFiles,
    ) -> anyhow::Result<pv_init::mux::MemberDisks> {
        let live = self.member_shares(pod);
        if let Some(s) = member.shares.iter().find(|s| !live.live(s.readonly)) {
            bail!(
                "pod {}: internal: host path {} reached a Xen pod domain without the members export for it",
                pod.name,
                s.path.display()
            );
        }
        let disks = self.plug_pod_member(pod, member)?;
        let pod_dir = crate::container::dir(&self.root, &pod.id);
        if let Err(e) = super::pod_share::bind(pod, &pod_dir, member) {
            self.unplug_member(pod, member);
            return Err(e);
        }
        Ok(disks)
    }

    /// Those of the members exports the pod's domain was made with (`members_exports`).
    fn member_shares(&self, pod: &Container) -> crate::backend::MemberShares {
        let dir = crate::container::dir(&self.root, &pod.id);
        Launch::read(&dir)
            .map(|l| l.member_shares())
            .unwrap_or(crate::backend::MemberShares::None)
    }

    /// More vbds of the member's slot (pod.rs).
    fn max_member_volumes(&self) -> usize {
        pv_init::mux::MAX_XEN_MEMBER_VOLUMES as usize
    }

    fn unplug_member(&self, pod: &Container, member: &crate::backend::pod::MemberFiles) {
        let pod_dir = crate::container::dir(&self.root, &pod.id);
        super::pod_share::unbind(pod, &pod_dir, &member.id);
        self.unplug_pod_member(pod, member)
    }

    /// The monitor hosts the exec broker (exec.rs), bridged to the guest's vchan.
    fn exec_socket(&self, dir: &Path) -> Option<PathBuf> {
        Some(dir.join(crate::exec_channel::broker::SOCKET))
    }

    fn can_pause(&self) -> bool {
        true
    }

    fn pause(&self, c: &Container, _dir: &Path) -> anyhow::Result<()> {
        let (ctx, domid) = self.running_domain(c)?;
        block_on(ctx.pause(domid)).with_context(|| format!("pausing domain {domid}"))
    }

    /// Also resumes a domain a checkpoint left suspended (--leave-running, a failed or killed
    /// `hx checkpoint create`), as `xl save -c` does.
    fn unpause(&self, c: &Container, _dir: &Path) -> anyhow::Result<()> {
        let (ctx, domid) = self.running_domain(c)?;
        if ctx.info(domid).is_ok_and(|i| is_suspended(&i)) {
            return block_on(ctx.resume(domid)).with_context(|| format!("resuming domain {domid}"));
        }
        block_on(ctx.unpause(domid)).with_context(|| format!("unpausing domain {domid}"))
    }

    fn limit_caps(&self) -> crate::backend::LimitCaps {
        crate::backend::LimitCaps {
            live_memory: true,
            cpu: true,
        }
    }

    /// What the domain was made with: the balloon can give back no more (libxl's maximum
    /// follows each enforced target down, so it is raised again first: `set_limits`).
    fn max_memory_mb(&self, _c: &Container, dir: &Path) -> anyhow::Result<u64> {
        Ok(Launch::read(dir)?.memory_mb)
    }

    /// The balloon target (`xl mem-set`) and credit2's cap and weight (`xl sched-credit2`).
    fn set_limits(
        &self,
        c: &Container,
        dir: &Path,
        memory_mb: Option<u64>,
        cpu: Option<crate::limits::CpuLimits>,
    ) -> anyhow::Result<()> {
        let (ctx, domid) = self.running_domain(c)?;
        // Memory first (what can be refused), then the scheduler; a refused scheduler change
        // gives the memory back, so that a failed update leaves the domain as it was.
        if let Some(m) = memory_mb {
            let made = self.max_memory_mb(c, dir)?;
            ctx.set_max_memory_kb(domid, made.max(m) * 1024)
                .with_context(|| format!("setting domain {domid}'s maximum to {made} MiB"))?;
            ctx.set_memory_target_kb(domid, m * 1024)
                .with_context(|| format!("setting domain {domid}'s memory to {m} MiB"))?;
        }
        if let Some(cpu) = cpu {
            if let Err(e) = set_cpu_limits(&ctx, domid, &cpu) {
                if memory_mb.is_some() {
                    let _ = ctx.set_memory_target_kb(domid, c.memory_mb * 1024);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn is_paused(&self, c: &Container, _dir: &Path) -> bool {
        self.running_domain(c)
            .is_ok_and(|(ctx, domid)| ctx.info(domid).is_ok_and(|i| i.paused || is_suspended(&i)))
    }

    /// libxl's save of the domain (the guest suspends itself: Linux's Xen suspend), resumed
    /// later by a new domain restored from the stream (the monitor, `LaunchRestore`).
    fn can_checkpoint(&self) -> bool {
        true
    }

    /// Suspends the domain and writes libxl's stream into `into`, then runs `while_paused`:
    /// a suspended guest writes nothing, and whatever it had in flight its block frontend
    /// sends again after the restore. Leaves the domain suspended (`unpause` resumes it).
    fn checkpoint(
        &self,
        c: &Container,
        dir: &Path,
        into: &Path,
        while_paused: &mut dyn FnMut() -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let (ctx, domid) = self.running_domain(c)?;
        let launch = Launch::read(dir).with_context(|| format!("container {}", c.name))?;
        refuse_9pfs_checkpoint(&c.name, !launch.shares.is_empty())?;
        // hx/ is dom0's: the guest reads it but cannot write it.
        let xs = Xenstore::open()?;
        let control = xs.read(&control_node(domid))?.unwrap_or_default();
        let control = String::from_utf8(control)
            .ok()
            .filter(|v| v.len() <= MAX_CONTROL_BYTES)
            .ok_or_else(|| anyhow::anyhow!("domain {domid}: its control log is damaged"))?;
        std::fs::write(
            into.join(CHECKPOINT_META),
            serde_json::to_vec(&SavedXen { control })?,
        )?;
        // The guest suspends itself: a domain the user paused must run for that.
        if ctx.info(domid).is_ok_and(|i| i.paused) {
            block_on(ctx.unpause(domid)).with_context(|| format!("unpausing domain {domid}"))?;
        }
        let t = Instant::now();
        let state = std::fs::File::create_new(into.join(CHECKPOINT_STATE))?;
        block_on(ctx.suspend(domid, state.into()))
            .with_context(|| format!("saving domain {domid}"))?;
        tracing::info!("checkpoint: domain {domid} saved in {:?}", t.elapsed());
        while_paused()
    }

    fn cleanup(&self, c: &Container, dir: &Path) -> anyhow::Result<()> {
        let _ = std::fs::remove_file(dir.join(crate::exec_channel::broker::SOCKET));
        if !crate::backend::is_xen_dom0() {
            return Ok(());
        }
        let ctx = Context::new()?;
        let xs = Xenstore::open()?;
        if let Some(domid) = self.domain_of(&ctx, &xs, c) {
            destroy(&ctx, &xs, c, domid)?;
        }
        if let Some(domid) = c.domid {
            remove_stale_nodes(&ctx, &xs, domid);
        }
        let mut files = vec![dir.join("config.img"), dir.join("upper.img")];
        if let Ok(l) = Launch::read(dir) {
            files.extend(l.disks.into_iter().map(|d| d.path));
        }
        sweep_loops(Some(&xs), &files);
        Ok(())
    }
}

/// For tests: a fake xenstored that `Xenstore::open` reaches, for the whole of one test.
/// XENSTORED_PATH is process-wide, so the tests that use one take turns.
#[cfg(test)]
pub(crate) struct FakeStore {
    pub xs: Xenstore,
    _fake: xenstore_wire::fake::FakeXenstored,
    _turn: std::sync::MutexGuard<'static, ()>,
}

#[cfg(test)]
impl FakeStore {
    pub fn start() -> FakeStore {
        static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        let fake = xenstore_wire::fake::FakeXenstored::start();
        std::env::set_var("XENSTORED_PATH", fake.path());
        FakeStore {
            xs: Xenstore::open().unwrap(),
            _fake: fake,
            _turn: turn,
        }
    }

    /// Writes `value` at `dir/name`, as a guest would.
    pub fn put(&self, dir: &str, name: &str, value: &[u8]) {
        self.xs.write(&format!("{dir}/{name}"), value).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_cmdline() {
        assert_eq!(id_node(7), "/local/domain/7/hx/id");
        assert_eq!(control_node(7), "/local/domain/7/hx/control");
        assert_eq!(status_dir(7), "/local/domain/7/data/hx/status");
        assert!(cmdline().starts_with("console=hvc0 quiet loglevel=1 panic=-1 hx.backend=xen"));
        for p in [id_node(1), control_node(1), status_dir(1)] {
            xen_bindings::xenstore::check_path(&p).unwrap();
        }
    }

    #[test]
    fn outside_dom0_start_says_so_and_starts_nothing() {
        if crate::backend::is_xen_dom0() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let spawned = std::sync::atomic::AtomicBool::new(false);
        let on_spawn = |_: &VmHandle| {
            spawned.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        };
        let spec = VmSpec {
            id: "0123",
            name: "c",
            dir: dir.path(),
            kernel: Path::new("/nonexistent/vmlinux"),
            initramfs: Path::new("/nonexistent/pv-init"),
            disks: Vec::new(),
            memory_mb: 128,
            cpus: 1,
            cpu_limits: Default::default(),
            cpu_group: None,
            nic: None,
            extra_nics: Vec::new(),
            shares: Vec::new(),
            xen_type: XenType::Pvh,
            stdin: false,
            hotplug_bus: false,
            on_spawn: &on_spawn,
            restore: None,
        };
        let xen = Xen::new(dir.path()).unwrap();
        let e = xen
            .start(&spec)
            .err()
            .expect("start outside dom0 must fail");
        assert!(
            e.to_string()
                .starts_with("not a Xen dom0: /proc/xen/capabilities"),
            "{e}"
        );
        assert!(
            !spawned.load(std::sync::atomic::Ordering::SeqCst),
            "a monitor was spawned"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "files left in the container dir"
        );
    }

    #[test]
    fn a_checkpoints_xen_json_is_read_strictly_and_bounded() {
        let d = tempfile::tempdir().unwrap();
        let write = |v: &[u8]| std::fs::write(d.path().join(CHECKPOINT_META), v).unwrap();
        write(br#"{"control":"1 signal 15\n"}"#);
        assert_eq!(SavedXen::read(d.path()).unwrap().control, "1 signal 15\n");
        let long = format!(r#"{{"control":"{}"}}"#, "x".repeat(MAX_CONTROL_BYTES + 1));
        for bad in [
            long.as_bytes(),
            br#"{"control":"x","more":1}"#,
            br#"{"control":7}"#,
            b"not json",
        ] {
            write(bad);
            assert!(
                SavedXen::read(d.path()).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        std::fs::remove_file(d.path().join(CHECKPOINT_META)).unwrap();
        assert!(SavedXen::read(d.path()).is_err());
    }

    #[test]
    fn block_on_works_inside_and_outside_a_runtime() {
        assert_eq!(block_on(async { 4 }), 4);
        let rt = tokio::runtime::Runtime::new().unwrap();
        assert_eq!(rt.block_on(async { block_on(async { 5 }) }), 5);
    }
}
