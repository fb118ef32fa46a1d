//! A pod member (docs/pods.md): its workload runs in its pod's VM, so its "VM process" is a
//! keeper, `hx __pod-member DIR`, which lives as long as the workload: it hot-plugs the
//! member's disks (image rootfs read-only, writable layer) into the pod's VM the way that VM's
//! backend does it (`Backend::plug_member`: QEMU's virtio-scsi over QMP, Xen's blkback vbds;
//! with the host directories and files `member_shares` says its VM takes live: pod_share.rs),
//! starts the workload over the pod's exec channel (an Open with `member`), hands its output
//! and status to the member's own log relay (so logs, status, outcome and attach work as for
//! any container), forwards `signal N` and `resize R C` control lines, and unplugs the disks once the guest
//! reported the end.
use super::{Backend, VmHandle, VmSpec};
use crate::container::{self, Container};
use anyhow::{bail, Context};
use pv_init::mux::{ExecRequest, MemberFile, MemberStart, MemberTree, TreeEntry};
use pv_init::spec::{ContainerSpec, Upper};
use pv_init::status::{Control, Status};
use std::ffi::CString;
use std::io::{BufRead, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The backend name in a member's record.
pub const NAME: &str = "pod";
/// What the keeper needs beyond spec.json, written by `start`.
const PLAN_FILE: &str = "member.json";
const KEEPER_LOG: &str = "keeper.log";

pub struct PodMember {
    root: PathBuf,
    pod: String,
}

/// A member's disks, for the pod VM's backend to plug (`Backend::plug_member`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MemberFiles {
    /// The member's container id.
    pub id: String,
    /// The image's root filesystem (read-only; may be shared with other members).
    pub rootfs: PathBuf,
    /// The member's writable layer (ext4), unless it has none (`--rm`).
    pub upper: Option<PathBuf>,
    /// Its host directories and files (`-v /host/path:/target`) that the pod's VM takes live
    /// (`Backend::member_shares`).
    #[serde(default)]
    pub shares: Vec<MemberShare>,
    /// Its volume disks (named and anonymous volumes: ext4), in the order of their LUNs from
    /// `FIRST_VOLUME_LUN` (at most `Backend::max_member_volumes`).
    #[serde(default)]
    pub volumes: Vec<MemberVolume>,
}

/// The LUN (QEMU) of a member's first volume disk: 0 is its image, 1 its writable layer.
pub const FIRST_VOLUME_LUN: u32 = 2;

/// A volume disk of a pod member.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MemberVolume {
    /// The disk's index in the member's spec (`MountSource::Disk`).
    pub disk: u32,
    pub path: PathBuf,
    pub readonly: bool,
}

/// A host directory, or one file of it, given to a pod member.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MemberShare {
    /// The share's tag in the member's spec (`MountSource::Share`).
    pub tag: String,
    /// The host directory (volume::Share::path).
    pub path: PathBuf,
    /// A single file: its name in `path` (the mount's subpath).
    pub file: Option<String>,
    pub readonly: bool,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Plan {
    root: PathBuf,
    pod: String,
    files: MemberFiles,
}

/// The pod's infra container and its backend (where member disks are plugged).
fn pod_vm(root: &Path, pod: &str) -> anyhow::Result<(Container, Box<dyn Backend>)> {
    let infra = crate::pod::infra(root, pod)?;
    let be = super::for_container(&infra, root)?;
    Ok((infra, be))
}

impl PodMember {
    pub fn new(root: &Path, pod: &str) -> Self {
        PodMember {
            root: root.to_path_buf(),
            pod: pod.to_string(),
        }
    }
}

impl Backend for PodMember {
    fn name(&self) -> &'static str {
        NAME
    }

    /// `-i`: the member's log relay serves attach.sock (attach_channel) and hands the input
    /// to the keeper, which sends it down the workload's exec session.
    fn stdin_over_socket(&self) -> bool {
        true
    }

    fn host_dirs<'a>(&self, into: &'a Path) -> crate::volume::HostDirs<'a> {
        crate::volume::HostDirs::Share { into }
    }

    fn start(&self, spec: &VmSpec) -> anyhow::Result<VmHandle> {
        let infra = crate::pod::infra(&self.root, &self.pod)?;
        if !infra.vm_alive() {
            bail!("pod {} is not running (hx pod start {0})", self.pod);
        }
        if spec.nic.is_some() {
            bail!("pod {}: members have no network of their own", self.pod);
        }
        // Which disk is the layer and which are volumes: the member's spec says.
        let cspec: ContainerSpec =
            serde_json::from_slice(&std::fs::read(spec.dir.join("spec.json"))?)?;
        let disk = |i: u32| {
            spec.disks
                .get(i as usize)
                .ok_or_else(|| anyhow::anyhow!("pod member: its spec names disk {i}, not there"))
        };
        let upper = match &cspec.upper {
            Upper::Disk { disk: i, .. } => Some(disk(*i)?.path.clone()),
            Upper::Tmpfs { .. } => None,
        };
        let mut volumes = Vec::new();
        for m in &cspec.mounts {
            if let pv_init::spec::MountSource::Disk { disk: i, .. } = m.source {
                let d = disk(i)?;
                volumes.push(MemberVolume {
                    disk: i,
                    path: d.path.clone(),
                    readonly: d.readonly,
                });
            }
        }
        let plan = Plan {
            root: self.root.clone(),
            pod: self.pod.clone(),
            files: MemberFiles {
                id: spec.id.to_string(),
                rootfs: spec.disks[0].path.clone(),
                upper,
                volumes,
                shares: spec
                    .shares
                    .iter()
                    .map(|s| MemberShare {
                        tag: s.tag.clone(),
                        path: s.path.clone(),
                        // A single file is its mount's subpath.
                        file: cspec.mounts.iter().find_map(|m| match &m.source {
                            pv_init::spec::MountSource::Share { tag } if *tag == s.tag => {
                                m.subpath.clone()
                            }
                            _ => None,
                        }),
                        readonly: s.readonly,
                    })
                    .collect(),
            },
        };
        hx_images::store::write_atomic(&spec.dir.join(PLAN_FILE), &serde_json::to_vec(&plan)?)?;
        let fifo = spec.dir.join("control.in");
        let _ = std::fs::remove_file(&fifo);
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .with_context(|| format!("mkfifo {}", fifo.display()))?;
        // Held open from here on and handed to the keeper: a signal or resize sent as soon as
        // `start` returns (a CRI attach's first resize) waits in the fifo until the keeper's
        // session is open, rather than failing with ENXIO for want of a reader.
        let control = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo)
            .with_context(|| format!("opening {}", fifo.display()))?;
        crate::logfile::begin_run(
            spec.dir,
            &[crate::output_log::FILE],
            &["console.log", "status.log"],
        )?;
        let log = std::fs::File::create(spec.dir.join(KEEPER_LOG))?;
        let limits = crate::hostconfig::load(&self.root)?.log.limits()?;
        // A member's keeper is no QEMU: the host-log socket goes unused (the keeper has its log).
        let ends =
            crate::log_relay::spawn(spec.dir, limits, log.try_clone()?, spec.stdin)?.chardevs;
        let mut raw: Vec<RawFd> = ends.iter().map(|f| f.as_raw_fd()).collect();
        let exe = std::env::current_exe().context("finding the hx binary")?;
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("__pod-member")
            .arg(spec.dir)
            .arg("--fds")
            .arg(
                raw.iter()
                    .map(|f| f.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            )
            .arg("--control")
            .arg(control.as_raw_fd().to_string())
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        raw.push(control.as_raw_fd());
        crate::process::detach(&mut cmd, raw);
        let (pid, start) = super::spawn_recorded(&mut cmd, spec.on_spawn)
            .context("starting the pod member's keeper")?;
        Ok(VmHandle {
            pid,
            pid_start: start,
            domid: None,
        })
    }

    fn is_running(&self, c: &Container) -> bool {
        super::running_or_relaying(&self.root, c)
    }

    fn send_control(&self, c: &Container, dir: &Path, line: &str) -> anyhow::Result<()> {
        if !self.is_running(c) {
            bail!("container {} is not running", c.name);
        }
        super::write_control_fifo(dir, line)
    }

    /// Kills the keeper: the guest sees its session close and kills the workload; the disks
    /// are unplugged here.
    fn kill(&self, c: &Container) -> anyhow::Result<()> {
        const DEADLINE: Duration = Duration::from_secs(10);
        let t = Instant::now();
        if let Some(p) = c.vm_process() {
            if !p.kill_and_wait(DEADLINE) {
                bail!("the keeper of {} (pid {}) did not die", c.name, p.pid);
            }
        }
        let dir = container::dir(&self.root, &c.id);
        if crate::log_relay::busy(&dir, DEADLINE.saturating_sub(t.elapsed())) {
            bail!("the log relay of {} did not finish", c.name);
        }
        Ok(())
    }

    fn cleanup(&self, c: &Container, dir: &Path) -> anyhow::Result<()> {
        let _ = std::fs::remove_file(dir.join("control.in"));
        let _ = std::fs::remove_file(dir.join(crate::exec_channel::broker::SOCKET));
        // A keeper that was killed left its disks in the pod's VM.
        if let Ok((infra, be)) = pod_vm(&self.root, &self.pod) {
            if infra.vm_alive() {
                let files = read_plan(dir).map(|p| p.files).unwrap_or(MemberFiles {
                    id: c.id.clone(),
                    rootfs: PathBuf::new(),
                    upper: None,
                    shares: Vec::new(),
                    volumes: Vec::new(),
                });
                be.unplug_member(&infra, &files);
            }
        }
        Ok(())
    }

    fn exec_socket(&self, _dir: &Path) -> Option<PathBuf> {
        let (infra, be) = pod_vm(&self.root, &self.pod).ok()?;
        be.exec_socket(&container::dir(&self.root, &infra.id))
    }
}

fn read_plan(dir: &Path) -> anyhow::Result<Plan> {
    Ok(serde_json::from_slice(&std::fs::read(
        dir.join(PLAN_FILE),
    )?)?)
}

/// `hx __pod-member DIR --fds ... --control FD`: the keeper (see the module's comment).
/// `fds`: its ends of the log relay's sockets, in `log_relay::STREAMS` order then the exec
/// channel's; `control`: control.in, opened by `start`.
pub fn keep(dir: &Path, fds: &[RawFd], control: RawFd) -> anyhow::Result<()> {
    if fds.len() < crate::log_relay::STREAMS.len() {
        bail!("pod member: {} relay sockets, expected more", fds.len());
    }
    // Not passed on: a hotplug script libxl forks from here (Xen) would hold the member's
    // output open past the keeper's death, and its relay with it.
    for &fd in fds.iter().chain([&control]) {
        // SAFETY: F_SETFD on a descriptor this process owns.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // SAFETY: the fds were inherited from `start` for this process alone.
    let control = unsafe { std::fs::File::from_raw_fd(control) };
    let socket = |i: usize| unsafe { std::fs::File::from_raw_fd(fds[i]) };
    let _console = socket(0);
    let mut stdout = socket(1);
    let mut stderr = socket(2);
    let mut status = socket(3);
    let _exec = fds
        .get(4)
        .map(|&f| unsafe { std::fs::File::from_raw_fd(f) });
    // `-i`: the relay's end of the input (attach.sock's clients), after the exec channel's.
    let input = fds
        .get(5)
        .map(|&f| unsafe { std::fs::File::from_raw_fd(f) });
    let mut report = |s: &Status| {
        let _ = status.write_all(s.to_line().as_bytes());
    };
    let id = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    let failed = |e: anyhow::Error| Status::InitError {
        code: 125,
        message: format!("pod member: {e:#}"),
    };
    let plan: Plan = match read_plan(dir) {
        Ok(p) => p,
        Err(e) => {
            report(&failed(e));
            return Ok(());
        }
    };
    let spec: ContainerSpec = match std::fs::read(dir.join("spec.json"))
        .map_err(anyhow::Error::from)
        .and_then(|b| Ok(serde_json::from_slice(&b)?))
    {
        Ok(s) => s,
        Err(e) => {
            report(&failed(e));
            return Ok(());
        }
    };
    let (infra, be) = match pod_vm(&plan.root, &plan.pod) {
        Ok(v) => v,
        Err(e) => {
            report(&failed(e));
            return Ok(());
        }
    };
    let limits = match container::load(&plan.root, &id) {
        Ok(me) => {
            // Where the backend caps VMs, the pod's VM now counts this member (its cap, or
            // none). Not applied, the member still runs within its own cgroup's limits.
            if let Err(e) = crate::limits::pod_vm_follows_members(&plan.root, &plan.pod, &me) {
                tracing::warn!("{e:#}");
            }
            crate::limits::member_limits(&me, &infra)
        }
        Err(e) => {
            report(&failed(e));
            return Ok(());
        }
    };
    let pod_dir = container::dir(&plan.root, &infra.id);
    let Some(socket_path) = be.exec_socket(&pod_dir) else {
        report(&failed(anyhow::anyhow!("the pod's VM has no exec channel")));
        return Ok(());
    };
    let live = be.member_shares(&infra);
    let (files, mounts, copied, trees) = match copied_files(
        be.name(),
        live,
        member_mounts(&spec, &plan.files),
        &plan.files,
    ) {
        Ok(v) => v,
        Err(e) => {
            report(&failed(e));
            return Ok(());
        }
    };
    let disks = match be.plug_member(&infra, &files) {
        Ok(d) => d,
        Err(e) => {
            report(&failed(
                e.context("hot-plugging its disks into the pod's VM"),
            ));
            return Ok(());
        }
    };
    let req = ExecRequest {
        args: spec.args.clone(),
        env: spec.env.clone(),
        user: spec.user.clone(),
        cwd: spec.cwd.clone(),
        tty: spec.tty,
        stdin: input.is_some(),
        builtin: None,
        member: Some(MemberStart {
            id: id.clone(),
            disks,
            rootfs_type: spec.rootfs.fstype.clone(),
            upper_disk: matches!(spec.upper, Upper::Disk { .. }) && plan.files.upper.is_some(),
            mounts,
            files: copied,
            trees,
            limits,
            shared_pids: spec.shared_pids,
            pid_target: spec.pid_target.clone(),
        }),
        container: None,
        capabilities: spec.capabilities,
        no_new_privileges: Some(spec.no_new_privileges),
        seccomp: spec.seccomp.clone(),
    };
    let ended =
        crate::exec_channel::client::Session::open(&socket_path, &req).and_then(|session| {
            if let Some(input) = input {
                forward_input(input, session.control());
            }
            // Signals and resizes wait in the fifo until the workload runs: the guest has no
            // process to signal nor terminal to size before that.
            let (mut control, to) = (Some(control), session.control());
            session.run(&mut stdout, &mut stderr, |pid| {
                report(&Status::Started {
                    pid: pid as i32,
                    uptime_ms: 0,
                });
                if let Some(fifo) = control.take() {
                    forward_control(fifo, to.clone());
                }
                true
            })
        });
    match ended {
        Ok(crate::exec_channel::client::End::Status(s)) => report(&s),
        Ok(_) => report(&failed(anyhow::anyhow!("the pod's VM went away"))),
        Err(e) => report(&failed(e)),
    }
    // A pod VM that is gone has nothing to unplug.
    if infra.vm_alive() {
        be.unplug_member(&infra, &files);
    }
    Ok(())
}

/// What a member gets copied: files and read-only directories.
type Copies = (
    MemberFiles,
    Vec<pv_init::spec::Mount>,
    Vec<MemberFile>,
    Vec<MemberTree>,
);

/// The member's host files and directories that its pod VM does not take live
/// (`Backend::member_shares`: Xen's read-only ones, or all where dom0 has no 9pfs backend):
/// single host files (CRI's /etc/resolv.conf, `-v /host/file:/target`) and read-only host
/// directories (a ConfigMap, a Secret, a projected token) are copied now and travel in its
/// start request (`MemberFile`, `MemberTree`), and their share mounts go; a writable host
/// directory (an emptyDir other members may share) is refused. Returns what to plug (the live
/// shares), the member's mounts and the copies.
fn copied_files(
    backend: &str,
    live: super::MemberShares,
    mut mounts: Vec<pv_init::spec::Mount>,
    files: &MemberFiles,
) -> anyhow::Result<Copies> {
    use pv_init::spec::MountSource;
    let mut copied = Vec::new();
    let mut trees = Vec::new();
    let mut total = 0;
    let mut kept = Vec::new();
    for share in &files.shares {
        let m = mounts
            .iter()
            .find(|m| matches!(&m.source, MountSource::Share { tag } if *tag == share.tag))
            .ok_or_else(|| anyhow::anyhow!("host share {} has no mount", share.tag))?;
        let readonly = m.readonly || share.readonly;
        if live.live(readonly) {
            kept.push(share.clone());
            continue;
        }
        match &share.file {
            Some(name) => {
                let (bytes, mode) = read_small_file(
                    &share.path.join(name),
                    pv_init::mux::MAX_MEMBER_FILE_BYTES,
                )
                .with_context(|| format!("copying the host file for {}", m.target))?;
                total += bytes.len();
                copied.push(MemberFile::new(&m.target, readonly, &bytes).with_mode(mode));
            }
            None if readonly => {
                let (entries, bytes) = read_tree(&share.path)
                    .with_context(|| format!("copying the host directory for {}", m.target))?;
                total += bytes;
                trees.push(MemberTree {
                    target: m.target.clone(),
                    entries,
                });
            }
            None => bail!(
                "writable host directories in a pod member are not supported by the {backend} backend without the pod's members export (read-only ones are copied in; docs/pods.md)"
            ),
        }
    }
    if let Err(e) = pv_init::mux::check_copies(copied.len(), trees.len(), total) {
        bail!("a pod member's host files and directories: {e}");
    }
    mounts.retain(|m| match &m.source {
        MountSource::Share { tag } => kept.iter().any(|s| s.tag == *tag),
        _ => true,
    });
    let mut rest = files.clone();
    rest.shares = kept;
    Ok((rest, mounts, copied, trees))
}

/// A host directory's entries for a copy (`MemberTree`): directories, regular files and
/// symlinks, by name, with their permission bits; bounded and checked as pv-init checks them
/// (`pv_init::mux::check_tree`). Also the files' bytes in all. Walked by descriptor (openat
/// with O_NOFOLLOW below the top): whoever can write in the directory cannot swap a checked
/// entry for a link to elsewhere while hx, as root, reads it.
pub fn read_tree(top: &Path) -> anyhow::Result<(Vec<TreeEntry>, usize)> {
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(top)?;
    let mut entries = Vec::new();
    walk_tree(&dir, "", 1, &mut entries)?;
    let bytes = pv_init::mux::check_tree(&entries).map_err(|e| anyhow::anyhow!(e))?;
    Ok((entries, bytes))
}

/// `name` in directory `dir`, opened without following a link, as a File.
fn open_at(
    dir: &std::fs::File,
    name: &std::ffi::CStr,
    flags: i32,
) -> std::io::Result<std::fs::File> {
    // SAFETY: openat on a directory descriptor we hold and a NUL-terminated name; the new
    // descriptor is owned by the File.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

fn walk_tree(
    dir: &std::fs::File,
    rel: &str,
    depth: usize,
    out: &mut Vec<TreeEntry>,
) -> anyhow::Result<()> {
    use pv_init::mux::{MAX_MEMBER_FILE_BYTES, MAX_TREE_DEPTH, MAX_TREE_ENTRIES};
    use std::os::unix::ffi::OsStrExt;
    // The listing of the directory this descriptor holds, whatever its path now names.
    let mut names = std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<Vec<_>, _>>()?;
    names.sort();
    for name in names {
        if out.len() >= MAX_TREE_ENTRIES {
            bail!("more than {MAX_TREE_ENTRIES} entries");
        }
        let shown = name
            .to_str()
            .ok_or_else(|| anyhow::anyhow!("a name that is not UTF-8"))?;
        let path = if rel.is_empty() {
            shown.to_string()
        } else {
            format!("{rel}/{shown}")
        };
        let c = CString::new(name.as_bytes()).context("a name with a NUL")?;
        // SAFETY: fstatat into a zeroed stat buffer, on our descriptor and a C string.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe {
            libc::fstatat(
                dir.as_raw_fd(),
                c.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        } != 0
        {
            return Err(std::io::Error::last_os_error()).context(path);
        }
        let mode = st.st_mode & 0o777;
        match st.st_mode & libc::S_IFMT {
            libc::S_IFLNK => {
                let mut buf = vec![0u8; 4096];
                // SAFETY: readlinkat into a buffer of the length given.
                let n = unsafe {
                    libc::readlinkat(
                        dir.as_raw_fd(),
                        c.as_ptr(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                    )
                };
                if n < 0 || n as usize >= buf.len() {
                    bail!("{path}: unreadable link");
                }
                buf.truncate(n as usize);
                let to = String::from_utf8(buf)
                    .map_err(|_| anyhow::anyhow!("{path}: a link that is not UTF-8"))?;
                out.push(TreeEntry::Symlink { path, to });
            }
            libc::S_IFDIR => {
                if depth >= MAX_TREE_DEPTH {
                    bail!("{path}: more than {MAX_TREE_DEPTH} levels deep");
                }
                let sub = open_at(dir, &c, libc::O_RDONLY | libc::O_DIRECTORY)
                    .with_context(|| path.clone())?;
                out.push(TreeEntry::dir(&path, mode));
                walk_tree(&sub, &path, depth + 1, out)?;
            }
            libc::S_IFREG => {
                let f = open_at(dir, &c, libc::O_RDONLY).with_context(|| path.clone())?;
                let (bytes, mode) =
                    read_small(f, MAX_MEMBER_FILE_BYTES).with_context(|| path.clone())?;
                out.push(TreeEntry::file(&path, &bytes, mode));
            }
            _ => bail!("{path}: not a regular file, directory or symlink"),
        }
    }
    Ok(())
}

/// A regular file's bytes, at most `max` (no symlink followed at the last component, no
/// waiting on a FIFO), and its permission bits.
fn read_small_file(path: &Path, max: usize) -> anyhow::Result<(Vec<u8>, u32)> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    read_small(f, max)
}

fn read_small(f: std::fs::File, max: usize) -> anyhow::Result<(Vec<u8>, u32)> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let meta = f.metadata()?;
    if !meta.is_file() {
        bail!("not a regular file");
    }
    let mut bytes = Vec::new();
    f.take(max as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() > max {
        bail!("longer than {max} bytes");
    }
    Ok((bytes, meta.permissions().mode() & 0o777))
}

/// The member's mounts as the guest finds them: a volume's disk is named by its LUN.
fn member_mounts(spec: &ContainerSpec, files: &MemberFiles) -> Vec<pv_init::spec::Mount> {
    let mut mounts = spec.mounts.clone();
    for m in &mut mounts {
        if let pv_init::spec::MountSource::Disk { disk, .. } = &mut m.source {
            if let Some(i) = files.volumes.iter().position(|v| v.disk == *disk) {
                *disk = FIRST_VOLUME_LUN + i as u32;
            }
        }
    }
    mounts
}

/// The workload's input, as the relay passes it on from attach.sock's clients: its end (the
/// relay shut its side: a stdin-once container's client ended its input) closes the
/// workload's stdin.
fn forward_input(mut input: std::fs::File, control: crate::exec_channel::client::Control) {
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = vec![0u8; 16 << 10];
        loop {
            match input.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = control.close_stdin();
                    return;
                }
                Ok(n) => {
                    if control.stdin(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    });
}

/// `signal N` lines written to control.in (hx stop, kill, an attached run's Ctrl-C) become
/// Signal frames on the workload's session, `resize R C` lines (a `-t` member's `hx run -it` or
/// `hx attach` whose terminal changed size) Resize frames.
/// `fifo` is open read-write: it never reports an end while we hold it.
fn forward_control(fifo: std::fs::File, control: crate::exec_channel::client::Control) {
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(fifo);
        let mut line = String::new();
        loop {
            line.clear();
            // Lines are hx's own, but bounded all the same.
            match std::io::Read::take(&mut lines, 256).read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            match Control::parse_line(line.trim_end()) {
                Some(Control::Signal(n)) => {
                    let _ = control.signal(n);
                }
                Some(Control::Resize { rows, cols }) => {
                    let _ = control.resize(rows, cols);
                }
                _ => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use pv_init::spec::{Mount, MountSource, TmpfsOptions};

    fn share_mount(tag: &str, target: &str, sub: Option<&str>) -> Mount {
        Mount {
            source: MountSource::Share { tag: tag.into() },
            target: target.into(),
            readonly: true,
            subpath: sub.map(String::from),
            copy_up: false,
        }
    }

    fn share(tag: &str, path: &Path, file: Option<&str>) -> MemberShare {
        MemberShare {
            tag: tag.into(),
            path: path.to_path_buf(),
            file: file.map(String::from),
            readonly: false,
        }
    }

    #[test]
    fn host_files_are_copied_where_the_backend_cannot_share() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::write(d.join("resolv.conf"), "nameserver 10.0.0.53\n").unwrap();
        std::fs::write(
            d.join("big"),
            vec![b'x'; pv_init::mux::MAX_MEMBER_FILE_BYTES + 1],
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc/shadow", d.join("link")).unwrap();
        // A pod VM that takes no share live: Xen's without a 9pfs backend in dom0.
        let none = super::super::MemberShares::None;
        let tmpfs = Mount {
            source: MountSource::Tmpfs {
                size_mb: 1,
                options: TmpfsOptions::default(),
            },
            target: "/t".into(),
            readonly: false,
            subpath: None,
            copy_up: false,
        };
        let files = |shares| MemberFiles {
            id: "ab".into(),
            rootfs: d.join("r"),
            upper: None,
            shares,
            volumes: vec![],
        };
        let mounts = vec![
            share_mount("hxfs0", "/etc/resolv.conf", Some("resolv.conf")),
            tmpfs.clone(),
        ];
        let (rest, kept, copied, _) = copied_files(
            "xen",
            none,
            mounts.clone(),
            &files(vec![share("hxfs0", d, Some("resolv.conf"))]),
        )
        .unwrap();
        assert!(rest.shares.is_empty());
        assert_eq!(kept, std::slice::from_ref(&tmpfs));
        assert_eq!(copied.len(), 1);
        assert_eq!(copied[0].target, "/etc/resolv.conf");
        assert!(copied[0].readonly, "the mount's :ro");
        assert_eq!(copied[0].bytes().unwrap(), b"nameserver 10.0.0.53\n");
        for (name, why) in [(Some("big"), "longer"), (Some("link"), "")] {
            let r = copied_files(
                "xen",
                none,
                mounts.clone(),
                &files(vec![share("hxfs0", d, name)]),
            );
            let e = format!("{:#}", r.unwrap_err());
            assert!(e.contains(why), "{e}");
        }
        // A writable directory (an emptyDir members may share) is refused; a read-only one
        // (kubelet's projected token, its links kept) is copied.
        let mut rw = share_mount("hxfs0", "/data", None);
        rw.readonly = false;
        let r = copied_files("xen", none, vec![rw], &files(vec![share("hxfs0", d, None)]));
        assert!(format!("{:#}", r.unwrap_err()).contains("writable host directories"));
        let token = d.join("token-dir");
        std::fs::create_dir_all(token.join("..2026_12_05")).unwrap();
        std::fs::write(token.join("..2026_12_05/token"), "eyJ").unwrap();
        use std::os::unix::fs::PermissionsExt;
        let chmod = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        chmod(&token.join("..2026_12_05"), 0o750);
        chmod(&token.join("..2026_12_05/token"), 0o600);
        std::os::unix::fs::symlink("..2026_12_05", token.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/token", token.join("token")).unwrap();
        let (_, kept, _, trees) = copied_files(
            "xen",
            none,
            vec![share_mount("hxfs0", "/var/run/secrets", None)],
            &files(vec![share("hxfs0", &token, None)]),
        )
        .unwrap();
        assert!(kept.is_empty());
        assert_eq!(trees.len(), 1);
        assert_eq!(trees[0].target, "/var/run/secrets");
        assert_eq!(
            trees[0].entries,
            [
                TreeEntry::dir("..2026_12_05", 0o750),
                TreeEntry::file("..2026_12_05/token", b"eyJ", 0o600),
                TreeEntry::Symlink {
                    path: "..data".into(),
                    to: "..2026_12_05".into()
                },
                TreeEntry::Symlink {
                    path: "token".into(),
                    to: "..data/token".into()
                },
            ]
        );
        // A link out of the directory is refused.
        std::os::unix::fs::symlink("/etc/shadow", token.join("escape")).unwrap();
        let r = copied_files(
            "xen",
            none,
            vec![share_mount("hxfs0", "/var/run/secrets", None)],
            &files(vec![share("hxfs0", &token, None)]),
        );
        assert!(format!("{:#}", r.unwrap_err()).contains("leads out"));
        // Nothing to copy: as given.
        let (_, kept, copied, _) =
            copied_files("xen", none, vec![tmpfs.clone()], &files(vec![])).unwrap();
        assert_eq!((kept, copied.len()), (vec![tmpfs], 0));
    }

    #[test]
    fn a_pod_vm_with_a_writable_export_takes_writable_shares_live_and_copies_read_only_ones() {
        use super::super::MemberShares;
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::create_dir_all(d.join("cfg")).unwrap();
        std::fs::write(d.join("cfg/key"), "v").unwrap();
        let mut data = share_mount("hxfs0", "/data", None);
        data.readonly = false;
        let cfg = share_mount("hxfs1", "/cfg", None);
        let files = MemberFiles {
            id: "ab".into(),
            rootfs: d.join("r"),
            upper: None,
            shares: vec![
                share("hxfs0", &d.join("data"), None),
                share("hxfs1", &d.join("cfg"), None),
            ],
            volumes: vec![],
        };
        let mounts = vec![data.clone(), cfg.clone()];
        // Xen's pod VM with its members export: the emptyDir live, the ConfigMap a copy.
        let (rest, kept, copied, trees) =
            copied_files("xen", MemberShares::Writable, mounts.clone(), &files).unwrap();
        assert_eq!(rest.shares.len(), 1);
        assert_eq!(rest.shares[0].tag, "hxfs0");
        assert_eq!(kept, [data]);
        assert_eq!((copied.len(), trees.len()), (0, 1));
        assert_eq!(trees[0].target, "/cfg");
        // QEMU's: both live.
        let (rest, kept, copied, trees) =
            copied_files("qemu", MemberShares::All, mounts.clone(), &files).unwrap();
        assert_eq!(
            (rest.shares.len(), kept, copied.len(), trees.len()),
            (2, mounts, 0, 0)
        );
    }
}
