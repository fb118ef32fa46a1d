//! An OCI runtime over the engine (the `hx-runtime` front end): the runc command-line
//! contract containerd's runc shim and podman drive, on the engine's lifecycle and records.
//!
//! `create` turns the bundle into an engine container (`lifecycle::create`, with the bundle's
//! root directory packed into an erofs image: `rootfs.erofs`) and spawns the keeper — the
//! process in `--pid-file`, in the network namespace the spec asks for — then runs the
//! createRuntime/prestart hooks. The keeper blocks opening `exec.fifo` until `start` opens
//! it (runc's way), then boots the VM (`lifecycle::start`), relays its stdio to the workload
//! and exits with the workload's exit code. The VM boots at `start`, not `create`: the
//! network interface the caller's hooks move into the namespace only exists then.
//! With CRI's annotations (cri.rs) a sandbox becomes an hx pod's VM and a container one of
//! its members (docs/kubernetes.md).
pub mod bundle;
pub mod console;
pub mod cri;
pub mod exec;
pub mod hooks;
pub mod host_group;
pub mod keeper;
pub mod netns;
pub mod record;
pub mod rootfs_cache;

use crate::container::{self, Container};
use crate::lifecycle;
use crate::ops;
use crate::process::Tracked;
use anyhow::{bail, Context};
use bundle::NetNs;
use record::{Record, Status};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long `start` waits for the keeper to have the VM running.
const START_TIMEOUT: Duration = Duration::from_secs(300);

pub struct CreateOptions<'a> {
    pub root: &'a Path,
    pub id: &'a str,
    pub bundle: &'a Path,
    pub pid_file: Option<&'a Path>,
    /// Where a terminal's master goes (`process.terminal`; required then).
    pub console: Option<console::ConsoleTo<'a>>,
    /// What runs the keeper: the runtime binary with its global options and `__keeper ID`.
    pub keeper: Command,
    /// The committed layers the bundle's root is made of, when the caller knows (a shim
    /// given the snapshotter's mounts): its image then comes from the chain's cache.
    pub rootfs_chain: Option<rootfs_cache::Chain>,
    /// Run the keeper and the VM in the host cgroup the spec names (`linux.cgroupsPath`), as
    /// runc runs the container's processes there: hx-runtime, whose caller reads that group.
    pub host_group: bool,
}

/// What `create` leaves: the keeper (the caller's child, reaped by it) and, for a terminal
/// whose master goes back to the caller, that master.
pub struct Created {
    pub keeper: Tracked,
    pub console: Option<OwnedFd>,
}

pub fn create(mut o: CreateOptions) -> anyhow::Result<Created> {
    let root = o.root;
    let id = o.id;
    if !record::valid_id(id) {
        bail!("invalid container id {id:?}: use [a-zA-Z0-9][a-zA-Z0-9_.+-]*, at most 128 bytes");
    }
    let b = bundle::load(o.bundle)?;
    let rootfs_dir = b.rootfs_dir();
    if !rootfs_dir.is_dir() {
        bail!("root.path {} is not a directory", rootfs_dir.display());
    }
    let terminal = b.terminal();
    if terminal && o.console.is_none() {
        bail!("process.terminal is set: --console-socket is required");
    }
    let pod = cri::role(id, &b.annotations())?;
    let host_group = match b
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().clone())
    {
        Some(p) if o.host_group => Some(host_group::relative_path(&p.to_string_lossy())?),
        _ => None,
    };
    // A member's network is its pod VM's: its keeper stays out of the namespace.
    let netns = match &pod {
        Some(cri::PodRole::Member { .. }) => NetNs::Host,
        _ => b.netns(),
    };
    // The namespace is opened before anything is made: a bad path fails early.
    let join_fd: Option<OwnedFd> = match &netns {
        NetNs::Join(p) => Some(
            std::fs::File::open(p)
                .with_context(|| format!("network namespace {}", p.display()))?
                .into(),
        ),
        _ => None,
    };
    std::fs::create_dir_all(record::oci_dir(root))?;
    let dir = record::dir(root, id);
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!("container with id exists: {id}")
        }
        Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
    }
    let mut rec = Record {
        id: id.to_string(),
        bundle: b.dir.clone(),
        rootfs: rootfs_dir.clone(),
        created: container::now_rfc3339(),
        engine_id: None,
        keeper_pid: None,
        keeper_start: None,
        annotations: b.annotations(),
        hooks: b.hooks(),
        netns: netns.clone(),
        pod: pod.clone(),
        host_group: host_group.clone(),
    };
    rec.save(root)?;
    let mut undo = lifecycle::Undo::new();
    {
        let dir = dir.clone();
        undo.push(move || {
            let _ = std::fs::remove_dir_all(&dir);
        });
    }
    let name = record::engine_name(id);
    let mut req = match &pod {
        // The sandbox's own image (CRI's pause) is not needed: the pod's VM runs pv-init's.
        Some(cri::PodRole::Sandbox { pod }) => sandbox_request(root, &b, pod, &name)?,
        _ => {
            let image = dir.join(record::ROOTFS);
            match &o.rootfs_chain {
                Some(chain) => {
                    let hit = rootfs_cache::image_of(root, chain, &rootfs_dir, &image)?;
                    tracing::debug!(
                        "rootfs image of {id}: cache {}",
                        if hit { "hit" } else { "miss" }
                    );
                }
                None => hx_images::rootfs::make_erofs(&rootfs_dir, &image)
                    .with_context(|| format!("packing {}", rootfs_dir.display()))?,
            }
            let mut req = b.request(&name, &image, Some("none".into()))?;
            if let Some(cri::PodRole::Member { pod }) = &pod {
                member_request(&mut req, pod);
                // NamespaceMode POD names the sandbox's task: the VM's own PID namespace;
                // TARGET another member's: that member's. Anything else is refused, not
                // widened to the whole pod.
                if b.joins_pid_namespace() {
                    let pid = b.pid_namespace_owner().ok_or_else(|| {
                        anyhow::anyhow!(
                            "linux.namespaces: a PID namespace path other than containerd's \
                             /proc/PID/ns/pid cannot be mapped into the pod's VM"
                        )
                    })?;
                    match task_in_pod(root, pod, pid) {
                        Some(PodTask::Sandbox) => req.shared_pids = true,
                        Some(PodTask::Member(id)) => req.pid_target = Some(id),
                        None => bail!(
                            "linux.namespaces: /proc/{pid}/ns/pid is no running task of pod {pod}"
                        ),
                    }
                }
                // Its limits are its cgroup's in the pod's VM: a whole-CPU quota too (its own
                // vCPUs are not its bound there), and the memory exact, not a VM's least size.
                req.cpu_cap_pct = b.cpu_quota_pct();
                if let Some(l) = b.memory_limit().filter(|&l| l > 0) {
                    req.memory_mb = crate::limits::oci_memory_mb(l as u64, true);
                }
            }
            req
        }
    };
    req.host_cgroup = host_group.clone();
    let c = lifecycle::create(root, req, &|_, _| bail!("an OCI container has no image"))?;
    rec.engine_id = Some(c.id.clone());
    {
        let engine_id = c.id.clone();
        undo.push(move || {
            let _ = ops::remove(root, &engine_id, true, false);
        });
    }
    rec.save(root)?;
    nix::unistd::mkfifo(
        &dir.join(record::FIFO),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )?;

    let pty = if terminal {
        Some(console::open(b.console_size())?)
    } else {
        None
    };
    // The keeper starts in the host group (its VM with it): the caller reads the group of the
    // pid-file's process as soon as create returns.
    let groups = match &host_group {
        Some(g) => {
            let made = host_group::make(g)?;
            let g = g.clone();
            undo.push(move || {
                if let Err(e) = host_group::remove(&g) {
                    tracing::warn!("{e:#}");
                }
            });
            made
        }
        None => Vec::new(),
    };
    let keeper = spawn_keeper(&mut o.keeper, &netns, join_fd, pty.as_ref(), &groups)?;
    rec.keeper_pid = Some(keeper.pid);
    rec.keeper_start = Some(keeper.start);
    undo.push(move || {
        keeper.kill_and_wait(Duration::from_secs(5));
    });
    rec.save(root)?;
    let master = match (&pty, o.console) {
        (Some(p), Some(to)) => to.deliver(p)?,
        _ => None,
    };
    drop(pty);
    if let Some(f) = o.pid_file {
        write_pid_file(f, keeper.pid)?;
    }
    hooks::run_all(
        "createRuntime",
        &rec.hooks.create_runtime,
        &rec.state_json(Status::Creating),
    )?;
    undo.commit();
    Ok(Created {
        keeper,
        console: master,
    })
}

/// A CRI sandbox: the pod's VM (an hx pod's infra container, pod.rs), with the spec's
/// hostname, sized as Kata sizes one: `hx pod create`'s 256 MiB and one vCPU for the guest
/// itself and containers without limits, plus the sum of the containers' limits kubelet
/// sends (`cri::pod_resources`), vCPUs no more than the host has. A memory limit on the
/// sandbox's own spec, when there is one, is the VM's.
fn sandbox_request(
    root: &Path,
    b: &bundle::Bundle,
    pod: &str,
    name: &str,
) -> anyhow::Result<lifecycle::CreateRequest> {
    let limit = b.memory_limit();
    let res = cri::pod_resources(&b.annotations())?;
    let mut req = crate::pod::infra_request(
        root,
        &crate::pod::PodRequest {
            name: pod.to_string(),
            memory_mb: limit.map_or(POD_MEMORY_MB + res.memory_bytes.div_ceil(1 << 20), |l| {
                (l as u64).div_ceil(1 << 20).max(POD_MEMORY_MB)
            }),
            cpus: bundle::host_bounded_cpus(1 + res.cpus()),
            hostname: b.spec.hostname().clone().filter(|h| !h.is_empty()),
            ..Default::default()
        },
    )?;
    req.name = Some(name.to_string());
    // Decided at start by the keeper, from the namespace's interfaces (netns.rs).
    req.network = Some("none".into());
    Ok(req)
}

/// A pod's VM when the sandbox's spec sets no memory limit.
const POD_MEMORY_MB: u64 = 256;

/// A CRI container in pod `pod`: the pod owns the network, hostname and the files CRI binds
/// into every container (cri::is_pod_file).
enum PodTask {
    Sandbox,
    /// A member, by its engine id.
    Member(String),
}

/// The pod's sandbox or member whose live keeper (its task's pid, as the shim reports it to
/// containerd) is `pid`; a keeper that has exited (its pid reused) matches nothing.
fn task_in_pod(root: &Path, pod: &str, pid: i32) -> Option<PodTask> {
    std::fs::read_dir(record::oci_dir(root))
        .ok()?
        .flatten()
        .filter_map(|e| record::load(root, e.file_name().to_str()?).ok())
        .filter(|r| r.keeper_pid == Some(pid) && r.keeper().is_some_and(|k| k.is_alive()))
        .find_map(|r| match r.pod {
            Some(cri::PodRole::Sandbox { pod: p }) if p == pod => Some(PodTask::Sandbox),
            Some(cri::PodRole::Member { pod: p }) if p == pod => r.engine_id.map(PodTask::Member),
            _ => None,
        })
}

fn member_request(req: &mut lifecycle::CreateRequest, pod: &str) {
    req.pod = Some(pod.to_string());
    req.hostname = None;
    req.network = None;
    // bundle::guest_mounts' binds are `SRC:DST:ro|rw` (no ':' in either path).
    req.volumes
        .retain(|v| !v.split(':').nth(1).is_some_and(cri::is_pod_file));
}

fn spawn_keeper(
    cmd: &mut Command,
    netns: &NetNs,
    join_fd: Option<OwnedFd>,
    pty: Option<&console::Pty>,
    groups: &[std::ffi::CString],
) -> anyhow::Result<Tracked> {
    if let Some(p) = pty {
        cmd.stdin(Stdio::from(p.slave.try_clone()?))
            .stdout(Stdio::from(p.slave.try_clone()?))
            .stderr(Stdio::from(p.slave.try_clone()?));
    }
    let new_netns = *netns == NetNs::New;
    let join = join_fd.as_ref().map(|f| f.as_raw_fd());
    let tty = pty.is_some();
    let groups: Vec<std::ffi::CString> = groups.to_vec();
    // SAFETY: only async-signal-safe calls (open, write, close, setsid, ioctl, unshare, setns)
    // between fork and exec; `join_fd` and the paths stay alive until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            // "0" moves the writer: the keeper enters the host group before it runs anything.
            for procs in &groups {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                let e = std::io::Error::last_os_error();
                libc::close(fd);
                if n != 1 {
                    return Err(e);
                }
            }
            libc::setsid();
            if tty && libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if new_netns && libc::unshare(libc::CLONE_NEWNET) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(fd) = join {
                if libc::setns(fd, libc::CLONE_NEWNET) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn().context("starting the keeper")?;
    let pid = child.id() as i32;
    // Not waited for: it outlives the runtime (the caller, a subreaper, reaps it).
    drop(child);
    let start = crate::process::start_time(pid)
        .ok_or_else(|| anyhow::anyhow!("the keeper died at once"))?;
    Ok(Tracked { pid, start })
}

/// Written whole or not at all (runc writes it the same way: the shim reads it right after).
fn write_pid_file(path: &Path, pid: i32) -> anyhow::Result<()> {
    hx_images::store::write_atomic(path, pid.to_string().as_bytes())
        .with_context(|| format!("writing the pid file {}", path.display()))
}

/// The container's state now, from its keeper and VM.
pub fn status(root: &Path, rec: &Record) -> Status {
    let Some(keeper) = rec.keeper() else {
        return Status::Creating;
    };
    if !keeper.is_alive() {
        // The keeper owns the VM: one that outlived it (the keeper was killed) ends now.
        if let Some(c) = engine_container(root, rec) {
            if c.status == container::Status::Running && c.vm_alive() {
                if let Err(e) = ops::kill_vm(root, &c) {
                    tracing::warn!("ending the VM of {} after its keeper: {e:#}", rec.id);
                }
            }
        }
        return Status::Stopped;
    }
    if record::dir(root, &rec.id).join(record::FIFO).exists() {
        return Status::Created;
    }
    match engine_container(root, rec) {
        Some(c) if ops::is_paused(root, &c) => Status::Paused,
        _ => Status::Running,
    }
}

fn engine_container(root: &Path, rec: &Record) -> Option<Container> {
    container::load(root, rec.engine_id.as_deref()?).ok()
}

pub fn state(root: &Path, id: &str) -> anyhow::Result<serde_json::Value> {
    let rec = record::load(root, id)?;
    Ok(rec.state_json(status(root, &rec)))
}

pub fn start(root: &Path, id: &str) -> anyhow::Result<()> {
    let rec = record::load(root, id)?;
    match status(root, &rec) {
        Status::Created => {}
        Status::Stopped => bail!("cannot start a container that has stopped"),
        Status::Creating => bail!("container {id} is still being created"),
        Status::Running | Status::Paused => bail!("cannot start an already running container"),
    }
    let keeper = rec.keeper().expect("created: it has a keeper");
    let dir = record::dir(root, id);
    let fifo = dir.join(record::FIFO);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .context("opening exec.fifo")?;
    wait_for_byte(&f, &keeper)?;
    drop(f);
    std::fs::remove_file(&fifo)?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if engine_container(root, &rec).is_some_and(|c| match c.status {
            container::Status::Running => true,
            // Ran and ended already (the keeper settled it).
            container::Status::Exited => c.started_at.is_some(),
            _ => false,
        }) {
            break;
        }
        if !keeper.is_alive() {
            let why = std::fs::read_to_string(dir.join(record::START_ERROR))
                .unwrap_or_else(|_| "the keeper died".into());
            bail!("starting container {id}: {}", why.trim());
        }
        if Instant::now() > deadline {
            bail!("starting container {id}: the VM did not start in time");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if let Err(e) = hooks::run_all(
        "poststart",
        &rec.hooks.poststart,
        &rec.state_json(Status::Running),
    ) {
        tracing::warn!("{e:#}");
    }
    Ok(())
}

use std::os::unix::fs::OpenOptionsExt;

/// The keeper writes one byte once its open of the fifo returned (it blocks until ours).
fn wait_for_byte(f: &std::fs::File, keeper: &Tracked) -> anyhow::Result<()> {
    use std::io::Read;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 1];
    loop {
        match (&*f).read(&mut buf) {
            Ok(1) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e).context("reading exec.fifo"),
        }
        if !keeper.is_alive() {
            bail!("cannot start a container that has stopped");
        }
        if Instant::now() > deadline {
            bail!("the keeper did not answer on exec.fifo");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `kill ID SIG`: to the workload through the engine (SIGKILL ends the VM); a container not
/// started yet has only its keeper, which the signal ends.
pub fn kill(root: &Path, id: &str, signal: i32) -> anyhow::Result<()> {
    let rec = record::load(root, id)?;
    let keeper = rec.keeper();
    match status(root, &rec) {
        Status::Stopped | Status::Creating => bail!("container not running"),
        Status::Created => {
            keeper.expect("created").signal(signal);
            Ok(())
        }
        Status::Running | Status::Paused => match engine_container(root, &rec) {
            Some(c) if c.status == container::Status::Running => {
                if signal == libc::SIGKILL {
                    ops::kill_vm(root, &c)
                } else {
                    ops::kill(root, &c, signal)
                }
            }
            // Between the fifo and the VM's record: only the keeper to signal.
            _ => {
                keeper.expect("running").signal(signal);
                Ok(())
            }
        },
    }
}

/// `delete [--force]`: the keeper, the VM and every record go; poststop hooks run.
pub fn delete(root: &Path, id: &str, force: bool) -> anyhow::Result<()> {
    let rec = record::load(root, id)?;
    let st = status(root, &rec);
    if matches!(st, Status::Running | Status::Paused) && !force {
        bail!(
            "cannot delete container {id} that is not stopped: {}",
            st.as_str()
        );
    }
    if let Some(k) = rec.keeper() {
        k.kill_and_wait(Duration::from_secs(5));
    }
    if let Some(cri::PodRole::Sandbox { pod }) = &rec.pod {
        // Members CRI did not remove first go with the pod's VM.
        for m in crate::pod::members(root, pod).unwrap_or_default() {
            if let Err(e) = ops::remove(root, &m.id, true, false) {
                tracing::warn!("removing pod member {}: {e:#}", m.name);
            }
        }
    }
    if let Some(engine_id) = &rec.engine_id {
        match ops::remove(root, engine_id, true, false) {
            Ok(()) => {}
            Err(e) if is_no_such(&e) => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(g) = &rec.host_group {
        host_group::remove(g)?;
    }
    if let Err(e) = hooks::run_all(
        "poststop",
        &rec.hooks.poststop,
        &rec.state_json(Status::Stopped),
    ) {
        tracing::warn!("{e:#}");
    }
    std::fs::remove_dir_all(record::dir(root, id))?;
    Ok(())
}

fn is_no_such(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<crate::HxError>(),
        Some(crate::HxError::NoSuchContainer(_))
    )
}

/// `ps`: the host processes of the container (the keeper, the VM).
pub fn pids(root: &Path, id: &str) -> anyhow::Result<Vec<i32>> {
    let rec = record::load(root, id)?;
    let mut out = Vec::new();
    if let Some(k) = rec.keeper().filter(|k| k.is_alive()) {
        out.push(k.pid);
    }
    if let Some(vm) = engine_container(root, &rec).and_then(|c| c.vm_process()) {
        if vm.is_alive() {
            out.push(vm.pid);
        }
    }
    Ok(out)
}

/// The guest's counters (pv-init reads them from its /proc and /sys) of a running container:
/// the containerd shim's Stats.
pub fn stats(root: &Path, id: &str) -> anyhow::Result<pv_init::mux::StatsAnswer> {
    let rec = record::load(root, id)?;
    let c = match engine_container(root, &rec) {
        Some(c) if status(root, &rec) == Status::Running => c,
        _ => bail!("container not running"),
    };
    let be = crate::backend::for_container(&c, root)?;
    let Some(socket) = be.exec_socket(&container::dir(root, &c.id)) else {
        bail!("the container's backend has no exec channel");
    };
    let member = c.is_pod_member().then(|| c.id.clone());
    crate::exec_channel::client::ask(&socket, pv_init::mux::Query::Stats { member })
}

/// `pause` (`freeze`) / `resume`.
pub fn pause(root: &Path, id: &str, freeze: bool) -> anyhow::Result<()> {
    let rec = record::load(root, id)?;
    match engine_container(root, &rec) {
        Some(c) if status(root, &rec) != Status::Created => ops::pause(root, &c, freeze),
        _ => bail!("container not running"),
    }
}

/// `update`: new limits for the container's VM (runc's `update --resources`, which docker
/// update and containerd's Update reach; hx_engine::limits says what a VM can change).
pub fn update(root: &Path, id: &str, l: &crate::limits::Limits) -> anyhow::Result<()> {
    let rec = record::load(root, id)?;
    match engine_container(root, &rec) {
        Some(c) => {
            let member = matches!(rec.pod, Some(cri::PodRole::Member { .. }));
            crate::limits::update(root, &c.id, &at_least_the_least(l, member)).map(drop)
        }
        None => bail!("container {id} has no VM yet"),
    }
}

/// A memory limit below the least is the least, as at create (`limits::oci_memory_mb`): a
/// VM's, or a pod member's cgroup's. docker sends the container's limit again with every
/// update, `--cpus` alone included.
fn at_least_the_least(l: &crate::limits::Limits, member: bool) -> crate::limits::Limits {
    let mut l = *l;
    if let Some(m) = l.memory_mb.as_mut() {
        *m = (*m).max(crate::limits::least_memory_mb(member));
    }
    l
}

/// The most bytes of resources JSON `update` reads (docker's are a few hundred).
pub const MAX_RESOURCES_JSON: u64 = 64 << 10;

/// runc's `update` input: an OCI `linux.resources` document, bounded; a wrong type is an
/// error with its position, unknown fields are ignored.
pub fn parse_resources(bytes: &[u8]) -> anyhow::Result<crate::limits::Limits> {
    if bytes.len() as u64 > MAX_RESOURCES_JSON {
        bail!("resources: more than {MAX_RESOURCES_JSON} bytes");
    }
    let r: oci_spec::runtime::LinuxResources = serde_json::from_slice(bytes)
        .map_err(|e| anyhow::anyhow!("resources: {}", crate::sanitize::line(&e.to_string())))?;
    crate::limits::Limits::from_oci(&r)
}

/// What `features` prints (the OCI runtime features document).
pub fn features() -> serde_json::Value {
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": record::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "poststart", "poststop"],
        "mountOptions": ["bind", "rbind", "ro", "rw", "size"],
        "linux": {
            "namespaces": ["network"],
        },
        "annotations": {
            "io.hx.runtime.vm": "true",
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{Limits, MIN_MEMBER_MEMORY_MB, MIN_MEMORY_MB};

    #[test]
    fn an_update_repeating_a_small_limit_keeps_the_least_vm() {
        let cpus_only = Limits {
            memory_mb: Some(32),
            cpu_cap_pct: Some(100),
            ..Limits::default()
        };
        let l = at_least_the_least(&cpus_only, false);
        assert_eq!(l.memory_mb, Some(MIN_MEMORY_MB));
        assert_eq!(l.cpu_cap_pct, Some(100));
        let big = Limits {
            memory_mb: Some(96),
            ..Limits::default()
        };
        assert_eq!(at_least_the_least(&big, false), big);
        assert_eq!(
            at_least_the_least(&Limits::default(), false),
            Limits::default()
        );
    }

    #[test]
    fn a_pod_members_update_keeps_its_small_limit_as_create_does() {
        let small = Limits {
            memory_mb: Some(16),
            ..Limits::default()
        };
        // kubelet's 16Mi at create and again at UpdateContainerResources: 16 MiB both times.
        assert_eq!(crate::limits::oci_memory_mb(16 << 20, true), 16);
        assert_eq!(at_least_the_least(&small, true), small);
        let tiny = Limits {
            memory_mb: Some(1),
            ..Limits::default()
        };
        assert_eq!(
            at_least_the_least(&tiny, true).memory_mb,
            Some(MIN_MEMBER_MEMORY_MB)
        );
        assert_eq!(crate::limits::oci_memory_mb(1, true), MIN_MEMBER_MEMORY_MB);
        // A VM's least, for a container of its own.
        assert_eq!(crate::limits::oci_memory_mb(6 << 20, false), MIN_MEMORY_MB);
    }
}
