//! A pod member (docs/pods.md): its workload runs in its pod's VM, so its "VM process" is a
//! keeper, `hx __pod-member DIR`, which lives as long as the workload: it hot-plugs the
//! member's disks (image rootfs read-only, writable layer) into the pod's VM over QMP
//! (`blockdev-add` + `device_add scsi-hd` on the pod's virtio-scsi bus), starts the workload
//! over the pod's exec channel (an Open with `member`), hands its output and status to the
//! member's own log relay (so logs, status, outcome and attach work as for any container),
//! forwards `signal N` control lines, and unplugs the disks once the guest reported the end.
use super::{Backend, VmHandle, VmSpec};
use crate::container::{self, Container};
use anyhow::{bail, Context};
use pv_init::mux::{ExecRequest, MemberStart};
use pv_init::spec::{ContainerSpec, Upper};
use pv_init::status::{Control, Status};
use std::io::{BufRead, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The backend name in a member's record.
pub const NAME: &str = "pod";
/// The pod VM's hot-plug bus (backend/qemu.rs).
const BUS: &str = "hxpod.0";
/// What the keeper needs beyond spec.json, written by `start`.
const PLAN_FILE: &str = "member.json";
const KEEPER_LOG: &str = "keeper.log";
/// How long a keeper waits for the pod's QMP socket (one client at a time).
const QMP_WAIT: Duration = Duration::from_secs(20);

pub struct PodMember {
    root: PathBuf,
    pod: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Plan {
    pod_dir: PathBuf,
    rootfs: PathBuf,
    upper: Option<PathBuf>,
}

impl PodMember {
    pub fn new(root: &Path, pod: &str) -> Self {
        PodMember {
            root: root.to_path_buf(),
            pod: pod.to_string(),
        }
    }

    fn pod_dir(&self) -> anyhow::Result<PathBuf> {
        let infra = crate::pod::infra(&self.root, &self.pod)?;
        Ok(container::dir(&self.root, &infra.id))
    }
}

impl Backend for PodMember {
    fn name(&self) -> &'static str {
        NAME
    }

    fn host_dirs<'a>(&self, into: &'a Path) -> crate::volume::HostDirs<'a> {
        crate::volume::HostDirs::Share { into }
    }

    fn start(&self, spec: &VmSpec) -> anyhow::Result<VmHandle> {
        let infra = crate::pod::infra(&self.root, &self.pod)?;
        if !infra.vm_alive() {
            bail!("pod {} is not running (hx pod start {0})", self.pod);
        }
        if !spec.shares.is_empty() || spec.disks.len() > 3 || spec.nic.is_some() {
            bail!(
                "pod {}: members have no volumes or network of their own yet",
                self.pod
            );
        }
        let plan = Plan {
            pod_dir: container::dir(&self.root, &infra.id),
            rootfs: spec.disks[0].path.clone(),
            upper: spec.disks.get(2).map(|d| d.path.clone()),
        };
        hx_images::store::write_atomic(&spec.dir.join(PLAN_FILE), &serde_json::to_vec(&plan)?)?;
        let fifo = spec.dir.join("control.in");
        let _ = std::fs::remove_file(&fifo);
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .with_context(|| format!("mkfifo {}", fifo.display()))?;
        crate::logfile::begin_run(
            spec.dir,
            &[crate::output_log::FILE],
            &["console.log", "status.log"],
        )?;
        let log = std::fs::File::create(spec.dir.join(KEEPER_LOG))?;
        let limits = crate::hostconfig::load(&self.root)?.log.limits()?;
        let ends = crate::log_relay::spawn(spec.dir, limits, log.try_clone()?, false)?;
        let raw: Vec<RawFd> = ends.iter().map(|f| f.as_raw_fd()).collect();
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
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
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
        if let Ok(pod_dir) = self.pod_dir() {
            if crate::pod::infra(&self.root, &self.pod).is_ok_and(|i| i.vm_alive()) {
                if let Ok(mut q) = crate::backend::qmp::Qmp::connect(&pod_dir) {
                    unplug(&mut q, &c.id);
                }
            }
        }
        Ok(())
    }

    fn exec_socket(&self, _dir: &Path) -> Option<PathBuf> {
        self.pod_dir()
            .ok()
            .map(|d| d.join(crate::exec_channel::broker::SOCKET))
    }
}

fn node(id: &str, lun: u32) -> String {
    format!("hxm-{}-{lun}", &id[..12.min(id.len())])
}

fn connect(pod_dir: &Path, wait: Duration) -> anyhow::Result<super::qmp::Qmp> {
    let deadline = Instant::now() + wait;
    loop {
        match super::qmp::Qmp::connect(pod_dir) {
            Ok(q) => return Ok(q),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Hot-plugs the member's disks into the pod's VM: the image at LUN 0, the writable layer at
/// LUN 1 of the first free SCSI target. Returns the target.
fn plug(q: &mut super::qmp::Qmp, id: &str, plan: &Plan) -> anyhow::Result<u32> {
    let mut disks = vec![(&plan.rootfs, true)];
    if let Some(u) = &plan.upper {
        disks.push((u, false));
    }
    for (lun, (path, readonly)) in disks.iter().enumerate() {
        q.execute_with(
            "blockdev-add",
            Some(serde_json::json!({
                "driver": "raw",
                "node-name": node(id, lun as u32),
                "read-only": readonly,
                // Like the boot disks' cache=unsafe: nothing reads these after the VM.
                "cache": {"no-flush": true},
                "file": {"driver": "file", "filename": path},
            })),
        )?;
    }
    let mut last = None;
    for target in 0..=pv_init::mux::MAX_MEMBER_TARGET {
        let added = q.execute_with(
            "device_add",
            Some(serde_json::json!({
                "driver": "scsi-hd", "id": node(id, 0), "drive": node(id, 0),
                "bus": BUS, "channel": 0, "scsi-id": target, "lun": 0,
            })),
        );
        match added {
            Ok(_) => {
                if plan.upper.is_some() {
                    q.execute_with(
                        "device_add",
                        Some(serde_json::json!({
                            "driver": "scsi-hd", "id": node(id, 1), "drive": node(id, 1),
                            "bus": BUS, "channel": 0, "scsi-id": target, "lun": 1,
                        })),
                    )?;
                }
                return Ok(target);
            }
            // That target is another member's: the next one.
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no free SCSI target")))
}

/// Removes the member's devices and block nodes from the pod's VM (best effort: those that
/// are there).
fn unplug(q: &mut super::qmp::Qmp, id: &str) {
    for lun in [1, 0] {
        let _ = q.execute_with("device_del", Some(serde_json::json!({"id": node(id, lun)})));
    }
    for lun in [1, 0] {
        // The device goes first; its node is in use until then.
        for _ in 0..50 {
            match q.execute_with(
                "blockdev-del",
                Some(serde_json::json!({"node-name": node(id, lun)})),
            ) {
                Ok(_) => break,
                Err(e) if e.to_string().contains("Failed to find") => break,
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

/// `hx __pod-member DIR --fds ...`: the keeper (see the module's comment). `fds`: its ends of
/// the log relay's sockets, in `log_relay::STREAMS` order then the exec channel's.
pub fn keep(dir: &Path, fds: &[RawFd]) -> anyhow::Result<()> {
    if fds.len() < crate::log_relay::STREAMS.len() {
        bail!("pod member: {} relay sockets, expected more", fds.len());
    }
    // SAFETY: the fds were inherited from `start` for this process alone.
    let socket = |i: usize| unsafe { std::fs::File::from_raw_fd(fds[i]) };
    let _console = socket(0);
    let mut stdout = socket(1);
    let mut stderr = socket(2);
    let mut status = socket(3);
    let _exec = fds
        .get(4)
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
    let plan: Plan = match std::fs::read(dir.join(PLAN_FILE))
        .map_err(anyhow::Error::from)
        .and_then(|b| Ok(serde_json::from_slice(&b)?))
    {
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
    let plugged = connect(&plan.pod_dir, QMP_WAIT).and_then(|mut q| {
        let t = plug(&mut q, &id, &plan);
        if t.is_err() {
            unplug(&mut q, &id);
        }
        t
    });
    let target = match plugged {
        Ok(t) => t,
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
        stdin: false,
        builtin: None,
        member: Some(MemberStart {
            id: id.clone(),
            target,
            rootfs_type: spec.rootfs.fstype.clone(),
            upper_disk: matches!(spec.upper, Upper::Disk { .. }) && plan.upper.is_some(),
        }),
        container: None,
    };
    let socket_path = plan.pod_dir.join(crate::exec_channel::broker::SOCKET);
    let ended =
        crate::exec_channel::client::Session::open(&socket_path, &req).and_then(|session| {
            forward_control(dir, session.control());
            session.run(&mut stdout, &mut stderr, |pid| {
                report(&Status::Started {
                    pid: pid as i32,
                    uptime_ms: 0,
                });
                true
            })
        });
    match ended {
        Ok(crate::exec_channel::client::End::Status(s)) => report(&s),
        Ok(_) => report(&failed(anyhow::anyhow!("the pod's VM went away"))),
        Err(e) => report(&failed(e)),
    }
    // Briefly: a pod VM that is gone (its socket refuses) has nothing to unplug.
    if let Ok(mut q) = connect(&plan.pod_dir, Duration::from_secs(2)) {
        unplug(&mut q, &id);
    }
    Ok(())
}

/// `signal N` lines written to control.in (hx stop, kill, an attached run's Ctrl-C) become
/// Signal frames on the workload's session.
fn forward_control(dir: &Path, control: crate::exec_channel::client::Control) {
    // Read-write: the fifo never reports an end while we hold it.
    let Ok(fifo) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join("control.in"))
    else {
        return;
    };
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
            if let Some(Control::Signal(n)) = Control::parse_line(line.trim_end()) {
                let _ = control.signal(n);
            }
        }
    });
}
