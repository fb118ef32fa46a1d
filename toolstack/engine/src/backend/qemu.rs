//! The QEMU backend: a microvm machine with virtio-mmio disks and virtio-serial channels,
//! KVM when a probe shows it can run our kernel, TCG otherwise.
use super::{qmp, Backend, VmHandle, VmSpec};
use crate::container::Container;
use crate::network::NicKind;
use crate::process;
use anyhow::{bail, Context};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Qemu {
    binary: String,
    /// `binary` as PATH resolves it, looked up once (the KVM probe's key and warm start's).
    resolved: std::sync::OnceLock<PathBuf>,
    /// Where the KVM probe's verdicts are cached (`<root>/assets`).
    cache_dir: PathBuf,
    root: PathBuf,
}

/// Host-wide KVM verdicts (tmpfs: gone at reboot, when the KVM module may have changed).
const HOST_PROBE_DIR: &str = "/run/hx";

/// Whole or not at all: a reader never sees a half-written verdict.
fn write_verdict(path: &Path, verdict: &str) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, verdict)?;
    std::fs::rename(&tmp, path)
}

pub const CHANNELS: [&str; 3] = ["stdout", "stderr", "status"];

impl Qemu {
    pub fn new(root: &Path) -> Self {
        Qemu {
            binary: std::env::var("HX_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into()),
            resolved: std::sync::OnceLock::new(),
            cache_dir: root.join("assets"),
            root: root.to_path_buf(),
        }
    }

    /// KVM only if it really boots our kernel; the verdict is cached in the store, keyed by
    /// the kernel's hash and the QEMU version. HX_ACCEL=tcg|kvm skips the probe.
    fn accel(&self, kernel: &Path) -> &'static str {
        match std::env::var("HX_ACCEL").as_deref() {
            Ok("tcg") => return "tcg",
            Ok("kvm") => return "kvm",
            _ => {}
        }
        if std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_err()
        {
            tracing::info!("accelerator: tcg (/dev/kvm missing or not accessible)");
            return "tcg";
        }
        let name = format!("kvm-probe-{}", self.probe_key(kernel));
        let cache = self.cache_dir.join(&name);
        // The verdict is a fact of the host until it reboots: shared through /run by every
        // store, so a host with many stores (tests, several users) probes once per boot.
        let host_cache = Path::new(HOST_PROBE_DIR).join(&name);
        let cached = |path: &Path| {
            let v = std::fs::read_to_string(path).ok()?;
            tracing::info!(
                "accelerator: {} (cached KVM probe {})",
                v.trim(),
                path.display()
            );
            Some(if v.trim() == "kvm" { "kvm" } else { "tcg" })
        };
        if let Some(v) = cached(&cache) {
            return v;
        }
        // One probe at a time on the host: the others wait and read its verdict.
        let _lock = std::fs::create_dir_all(HOST_PROBE_DIR)
            .and_then(|_| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(Path::new(HOST_PROBE_DIR).join("kvm-probe.lock"))
            })
            .ok()
            .and_then(|f| nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).ok());
        let verdict = match cached(&host_cache) {
            Some(v) => v,
            None => {
                let ok = self.probe_kvm(kernel);
                tracing::info!(
                    "accelerator: {} (KVM probe {} the kernel)",
                    if ok { "kvm" } else { "tcg" },
                    if ok { "booted" } else { "could not boot" }
                );
                let verdict = if ok { "kvm" } else { "tcg" };
                let _ = write_verdict(&host_cache, verdict);
                verdict
            }
        };
        let _ =
            std::fs::create_dir_all(&self.cache_dir).and_then(|_| write_verdict(&cache, verdict));
        verdict
    }

    /// Identity of the kernel and the QEMU binary (path, size, mtime): a rebuilt kernel or an
    /// upgraded QEMU probes again. Metadata rather than content keeps `hx run` from reading
    /// megabytes on every start.
    fn probe_key(&self, kernel: &Path) -> String {
        use sha2::Digest;
        let qemu = self.resolved_binary();
        let mut h = sha2::Sha256::new();
        for p in [kernel, qemu] {
            let m = std::fs::metadata(p).ok();
            let mtime = m
                .as_ref()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
            h.update(format!(
                "{}|{:?}|{:?}\n",
                p.display(),
                m.map(|m| m.len()),
                mtime
            ));
        }
        hex::encode(&h.finalize()[..8])
    }

    /// The QEMU binary's path, as PATH resolves its name.
    pub fn resolved_binary(&self) -> &Path {
        self.resolved.get_or_init(|| {
            std::env::var_os("PATH")
                .and_then(|paths| {
                    std::env::split_paths(&paths)
                        .map(|d| d.join(&self.binary))
                        .find(|p| p.is_file())
                })
                .unwrap_or_else(|| PathBuf::from(&self.binary))
        })
    }

    /// Boots the kernel under KVM with no init: reaching "No working init found" proves the
    /// kernel runs (kvm_pvm hosts abort or hang instead).
    fn probe_kvm(&self, kernel: &Path) -> bool {
        let mut probe = Command::new(&self.binary);
        probe
            .args([
                "-M",
                "microvm",
                "-accel",
                "kvm",
                "-cpu",
                "host",
                "-m",
                "64",
                "-nodefaults",
                "-no-user-config",
                "-nographic",
                "-no-reboot",
                "-serial",
                "stdio",
            ])
            .arg("-kernel")
            .arg(kernel)
            .args([
                "-append",
                "console=ttyS0 panic=-1 rdinit=/hx-probe-no-init init=/hx-probe-no-init",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        // A probe that hangs (kvm_pvm) must not outlive an hx killed during its 10 s.
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut probe, || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let Ok(mut child) = probe.spawn() else {
            return false;
        };
        if !matches!(
            process::wait_child(&mut child, Duration::from_secs(10)),
            Ok(Some(_))
        ) {
            return false;
        }
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out);
        out.contains("No working init found") || out.contains("VFS: Unable to mount root")
    }

    /// `tap_fd`: the fd (inherited by QEMU) of the tap for a bridged NIC. `log_fds`: QEMU's
    /// ends of the log relay's sockets, in `log_relay::STREAMS` order (console, stdout, ...).
    /// `boot`: a fresh boot, a warm template being made, or a restore of one (warm.rs).
    pub fn command(
        &self,
        spec: &VmSpec,
        accel: &str,
        tap_fd: Option<i32>,
        extra_tap_fds: &[i32],
        log_fds: &[i32],
        boot: &Boot,
    ) -> Command {
        let d = match boot {
            Boot::Template { dir, .. } => *dir,
            _ => spec.dir,
        };
        // A template has no log relay: its channels lead nowhere, its console to a file
        // (where pv-init says it waits).
        let chardev = |id: &str, fd: i32| match boot {
            Boot::Template { .. } => format!("null,id={id}"),
            _ => format!("socket,id={id},fd={fd}"),
        };
        let mut cmd = Command::new(&self.binary);
        cmd.arg("-name").arg(format!("hx-{}", spec.name));
        cmd.args(["-M", "microvm,rtc=on", "-accel", accel]);
        cmd.args(["-cpu", if accel == "kvm" { "host" } else { "max" }]);
        cmd.arg("-m").arg(format!("{}M", spec.memory_mb));
        // A template's RAM is a file it writes through a shared mapping; a restore maps that
        // file copy-on-write (read-only file, private writable mapping): every guest restored
        // from one template shares the pages none of them has written (warm.rs).
        let file_ram = |options: String| {
            format!(
                "memory-backend-file,id={},size={}M,{options}",
                super::warm::RAM_ID,
                spec.memory_mb
            )
        };
        let ram = match boot {
            Boot::Cold
            | Boot::Checkpoint {
                warm_ram: false, ..
            } => None,
            Boot::Template { dir, .. } => Some(file_ram(format!(
                "mem-path={},share=on",
                qemu_path(&super::warm::ram_file(dir))
            ))),
            Boot::Restore { state } => Some(file_ram(format!(
                "mem-path={},share=off,readonly=on,rom=off",
                qemu_path(&super::warm::ram_file(
                    state.parent().unwrap_or(Path::new("/"))
                ))
            ))),
            // The checkpoint's stream holds all of the RAM: a block of the same name, anonymous.
            Boot::Checkpoint { warm_ram: true, .. } => Some(format!(
                "memory-backend-ram,id={},size={}M",
                super::warm::RAM_ID,
                spec.memory_mb
            )),
        };
        if let Some(ram) = ram {
            cmd.arg("-object").arg(ram);
            cmd.arg("-machine")
                .arg(format!("memory-backend={}", super::warm::RAM_ID));
        }
        cmd.arg("-smp").arg(spec.cpus.to_string());
        cmd.args(["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"]);
        cmd.arg("-kernel")
            .arg(spec.kernel)
            .arg("-initrd")
            .arg(spec.initramfs);
        let mut append = String::from("console=ttyS0 quiet panic=-1 hx.backend=qemu");
        if matches!(
            boot,
            Boot::Template { .. } | Boot::Restore { .. } | Boot::Checkpoint { warm_ram: true, .. }
        ) {
            append.push(' ');
            append.push_str(pv_init::warm::CMDLINE_FLAG);
        }
        if accel == "tcg" {
            if let Some(khz) = host_tsc_khz() {
                // Under TCG the guest reads the host's TSC; calibrating it against the emulated
                // PIT fails when the host is busy and then the boot hangs with no clocksource.
                append.push_str(&format!(" tsc_early_khz={khz} tsc=reliable"));
            }
        }
        cmd.arg("-append").arg(append);
        // Guest output goes to the log relay (capped files), never straight into a file.
        let console = match boot {
            Boot::Template { dir, .. } => format!(
                "file,id=ch-console,path={}",
                qemu_path(&dir.join("console.log"))
            ),
            _ => chardev("ch-console", log_fds[0]),
        };
        cmd.arg("-chardev").arg(console);
        cmd.args(["-serial", "chardev:ch-console"]);
        for (i, disk) in spec.disks.iter().enumerate() {
            // Durable disks (volumes) honour the guest's flushes: writeback, so a volume's
            // fsync'ed data is on the host's disk when the guest's fsync returns. The others
            // are read-only (no flushes) or the writable layer, read by nothing after its VM.
            let cache = if disk.durable { "writeback" } else { "unsafe" };
            let ro = if disk.readonly { ",readonly=on" } else { "" };
            let mode = format!("{cache}{ro}");
            let file = match boot {
                Boot::Template { placeholders, .. } => placeholders[i].as_path(),
                _ => disk.path.as_path(),
            };
            cmd.arg("-drive").arg(format!(
                "id=disk{i},file={},format=raw,if=none,cache={mode}",
                qemu_path(file)
            ));
            cmd.arg("-device")
                .arg(format!("virtio-blk-device,drive=disk{i},serial=hx-disk{i}"));
        }
        // A template's exports are empty stand-ins (a 9p share is not mounted before the go).
        let pod_export = |i: usize, real: &Path| match boot {
            Boot::Template { dir, .. } => dir.join(super::warm::POD_EXPORTS[i]),
            _ => real.to_path_buf(),
        };
        if spec.hotplug_bus {
            // A pod's members' disks are hot-plugged here (backend/pod.rs): microvm's
            // virtio-mmio slots cannot take a device_add, a SCSI bus can.
            cmd.args([
                "-device",
                &format!("virtio-scsi-device,id={}", super::qemu_pod::BUS),
            ]);
            // Members' host directories: bound into this export in QEMU's own mount namespace
            // (qemu_pod.rs), as no 9p device can be hot-added. Mapped metadata, as for shares.
            cmd.arg("-fsdev").arg(format!(
                "local,id=fsm,path={},security_model={},multidevs=remap",
                qemu_path(&pod_export(0, &super::pod_share::members_export(spec.dir))),
                crate::volume::ShareModel::MappedXattr.as_qemu()
            ));
            cmd.arg("-device").arg(format!(
                "virtio-9p-device,fsdev=fsm,mount_tag={}",
                pv_init::mux::MEMBERS_SHARE_TAG
            ));
            // Members' `:ro` shares: read-only, so the host's own metadata (passthrough) is
            // safe to show, and host symlinks read as symlinks (kubelet's ConfigMaps).
            cmd.arg("-fsdev").arg(format!(
                "local,id=fsmro,path={},security_model=passthrough,readonly=on,multidevs=remap",
                qemu_path(&pod_export(
                    1,
                    &super::pod_share::members_export_ro(spec.dir)
                )),
            ));
            cmd.arg("-device").arg(format!(
                "virtio-9p-device,fsdev=fsmro,mount_tag={}",
                pv_init::mux::MEMBERS_RO_SHARE_TAG
            ));
        }
        cmd.args(["-device", "virtio-serial-device,max_ports=8"]);
        for (ch, fd) in CHANNELS.iter().zip(&log_fds[1..]) {
            cmd.arg("-chardev").arg(chardev(&format!("ch-{ch}"), *fd));
            cmd.arg("-device")
                .arg(format!("virtserialport,chardev=ch-{ch},name=hx.{ch}"));
        }
        // The exec channel (exec_channel::broker in the relay holds the other end).
        if let Some(fd) = log_fds.get(1 + CHANNELS.len()) {
            cmd.arg("-chardev").arg(chardev("ch-exec", *fd));
            cmd.args(["-device", "virtserialport,chardev=ch-exec,name=hx.exec"]);
        }
        // The workload's input (-i): the relay holds the other end (attach_channel).
        if let (true, Some(fd)) = (spec.stdin, log_fds.get(2 + CHANNELS.len())) {
            cmd.arg("-chardev").arg(chardev("ch-stdin", *fd));
            cmd.args(["-device", "virtserialport,chardev=ch-stdin,name=hx.stdin"]);
        }
        cmd.arg("-chardev").arg(format!(
            "pipe,id=ch-control,path={}",
            qemu_path(&d.join("control"))
        ));
        cmd.args([
            "-device",
            "virtserialport,chardev=ch-control,name=hx.control",
        ]);
        if let Some(nic) = &spec.nic {
            let netdev = match (&nic.kind, tap_fd) {
                (NicKind::Bridge { .. } | NicKind::Netns { .. }, Some(fd)) => {
                    format!("tap,id=net0,fd={fd}")
                }
                (NicKind::User { ports }, _) => {
                    let mut s = String::from("user,id=net0,net=10.0.2.0/24");
                    for p in ports {
                        let ip = if p.host_ip.is_unspecified() {
                            String::new()
                        } else {
                            p.host_ip.to_string()
                        };
                        s.push_str(&format!(
                            ",hostfwd={}:{ip}:{}-:{}",
                            p.proto.as_str(),
                            p.host_port,
                            p.container_port
                        ));
                    }
                    s
                }
                (NicKind::Bridge { ifname, .. } | NicKind::Netns { ifname, .. }, None) => {
                    format!("tap,id=net0,ifname={ifname},script=no,downscript=no")
                }
            };
            // A template's NIC gets a MAC no container has (pv-init gives a restored guest
            // its own): QEMU announces the snapshot's MAC on the restore's tap.
            let mac = match boot {
                Boot::Template { .. } => super::warm::TEMPLATE_MAC,
                _ => nic.mac.as_str(),
            };
            cmd.arg("-netdev").arg(netdev);
            cmd.arg("-device")
                .arg(format!("virtio-net-device,netdev=net0,mac={mac}"));
        }
        // Further interfaces of a namespace: taps made by `start` (pv-init names them by MAC).
        for (i, (nic, fd)) in spec.extra_nics.iter().zip(extra_tap_fds).enumerate() {
            let id = format!("net{}", i + 1);
            cmd.arg("-netdev").arg(format!("tap,id={id},fd={fd}"));
            cmd.arg("-device")
                .arg(format!("virtio-net-device,netdev={id},mac={}", nic.mac));
        }
        for (i, share) in spec.shares.iter().enumerate() {
            let ro = if share.readonly { ",readonly=on" } else { "" };
            let path = match boot {
                Boot::Template { share_dirs, .. } => share_dirs[i].as_path(),
                _ => share.path.as_path(),
            };
            // A mapped model (volume::ShareModel): the guest can plant no setuid file, device
            // node or symlink in a host directory.
            cmd.arg("-fsdev").arg(format!(
                "local,id=fs{i},path={},security_model={}{ro}",
                qemu_path(path),
                share.model.as_qemu()
            ));
            cmd.arg("-device").arg(format!(
                "virtio-9p-device,fsdev=fs{i},mount_tag={}",
                share.tag
            ));
        }
        // `hx update -m` of a running container: the guest hands memory back to the host
        // through the balloon and takes it back when the target rises again, never above the
        // size it was started with (no memory hot-plug).
        cmd.args(["-device", &format!("virtio-balloon-device,id={BALLOON}")]);
        // The stream is loaded over QMP: warm::resume (once x-ignore-shared is set),
        // qemu_checkpoint::resume.
        if let Boot::Restore { .. } | Boot::Checkpoint { .. } = boot {
            cmd.args(["-incoming", "defer"]);
        }
        cmd
    }
}

/// How a VM comes up (warm.rs).
pub enum Boot<'a> {
    /// The kernel boots, pv-init starts the container.
    Cold,
    /// A template: placeholder disks (one per disk) and share directories, a tap plugged into
    /// nothing (`tap_fd`), no host ends on the channels; pv-init stops before the disks and
    /// waits (`hx.warm=1`), its files in `dir`.
    Template {
        dir: &'a Path,
        placeholders: &'a [PathBuf],
        share_dirs: &'a [PathBuf],
    },
    /// A copy of a template's snapshot (`state`, and the `ram` beside it mapped
    /// copy-on-write), with the container's own disks, NIC, shares and channels.
    Restore { state: &'a Path },
    /// A container's own VM saved by `hx checkpoint create` (qemu_checkpoint.rs): the
    /// stream `state` holds its devices and all of its RAM; `warm_ram`: the VM was itself a
    /// warm restore, whose RAM block has warm start's name and kernel command line.
    Checkpoint { state: &'a Path, warm_ram: bool },
}

/// The host's TSC rate from /proc/cpuinfo.
fn host_tsc_khz() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = info
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    (mhz > 100.0).then(|| (mhz * 1000.0).round() as u64)
}

/// QEMU option values use ',' as separator; double it inside paths.
impl Qemu {
    fn running_qmp(&self, c: &Container, dir: &Path) -> anyhow::Result<qmp::Qmp> {
        if !c.vm_alive() {
            bail!("container {} is not running", c.name);
        }
        qmp::Qmp::connect(dir)
    }
}

/// The guest's memory balloon (`hx update -m`).
const BALLOON: &str = "balloon0";

fn qemu_path(p: &Path) -> String {
    p.display().to_string().replace(',', ",,")
}

fn mkfifo(p: &Path) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(p);
    nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .with_context(|| format!("mkfifo {}", p.display()))
}

impl Backend for Qemu {
    fn name(&self) -> &'static str {
        "qemu"
    }

    fn stdin_over_socket(&self) -> bool {
        true
    }

    /// Host directories live over virtio-9p, `:ro` ones too. HX_HOST_DIRS=snapshot gives
    /// QEMU Xen's snapshots instead (faster reads, a copy taken at start).
    fn host_dirs<'a>(&self, into: &'a Path) -> crate::volume::HostDirs<'a> {
        if std::env::var("HX_HOST_DIRS").is_ok_and(|v| v == "snapshot") {
            crate::volume::HostDirs::Snapshot {
                into,
                share_rw: false,
            }
        } else {
            crate::volume::HostDirs::Share { into }
        }
    }

    fn start(&self, spec: &VmSpec) -> anyhow::Result<VmHandle> {
        let accel = self.accel(spec.kernel);
        let saved = spec
            .restore
            .map(super::qemu_checkpoint::Saved::read)
            .transpose()?;
        let template = if saved.is_some() || !super::warm::enabled(&self.root) {
            None
        } else if let Some(why) = super::warm::unfit(spec) {
            tracing::info!("warm start unavailable, booting cold: {why}");
            None
        } else {
            super::warm::ensure(self, &self.root, spec, accel)
                .map_err(|e| tracing::info!("warm start unavailable, booting cold: {e:#}"))
                .ok()
        };
        let checkpoint_state = spec.restore.map(super::qemu_checkpoint::state_file);
        let boot = match (&template, &saved, &checkpoint_state) {
            (Some(state), _, _) => Boot::Restore { state },
            (None, Some(saved), Some(state)) => Boot::Checkpoint {
                state,
                warm_ram: saved.warm_ram(),
            },
            _ => Boot::Cold,
        };
        mkfifo(&spec.dir.join("control.in"))?;
        mkfifo(&spec.dir.join("control.out"))?;
        crate::logfile::begin_run(
            spec.dir,
            &[crate::output_log::FILE],
            &["console.log", "status.log", crate::log_relay::HOST_LOG_FILE],
        )?;
        // The relay's own errors, appended beside the QEMU messages it writes there.
        let relay_errors = std::fs::OpenOptions::new()
            .append(true)
            .open(spec.dir.join(crate::log_relay::HOST_LOG_FILE))?;
        let limits = crate::hostconfig::load(&self.root)?.log.limits()?;
        let relay = crate::log_relay::spawn(spec.dir, limits, relay_errors, spec.stdin)?;
        let log_fds = relay.chardevs;
        // A bridged NIC is a tap that only QEMU holds once started: it vanishes with the VM,
        // however the VM ends. Port reservations are held by QEMU the same way.
        let tap = match spec.nic.as_ref().map(|n| &n.kind) {
            Some(NicKind::Bridge { bridge, ifname }) => {
                let fd = crate::network::tap::open(ifname)?;
                crate::network::bridge::enslave(ifname, bridge)?;
                Some(fd)
            }
            // Inside the namespace, mirrored to its interface; the mirroring is undone by
            // network::release.
            Some(NicKind::Netns {
                netns,
                link,
                ifname,
            }) => Some(crate::network::netns_link::attach_tap(netns, link, ifname)?.fd),
            _ => None,
        };
        let mut extra_taps = Vec::new();
        for nic in &spec.extra_nics {
            let NicKind::Netns {
                netns,
                link,
                ifname,
            } = &nic.kind
            else {
                bail!("internal: a further NIC that is not a namespace's interface");
            };
            // Those made already are undone by network::release, like the first.
            extra_taps.push(crate::network::netns_link::attach_tap(netns, link, ifname)?.fd);
        }
        let extra_raw: Vec<i32> = extra_taps.iter().map(|f| f.as_raw_fd()).collect();
        let mut inherit: Vec<i32> = spec
            .nic
            .iter()
            .flat_map(|n| n.hold.iter().map(|f| f.as_raw_fd()))
            .collect();
        inherit.extend(tap.as_ref().map(|f| f.as_raw_fd()));
        inherit.extend(&extra_raw);
        let log_raw: Vec<i32> = log_fds.iter().map(|f| f.as_raw_fd()).collect();
        inherit.extend(&log_raw);
        // QMP for pause/unpause: a socket hx binds and QEMU listens on (as libvirt does).
        let qmp_listener = qmp::listen(spec.dir)?;
        inherit.push(qmp_listener.as_raw_fd());
        let mut cmd = self.command(
            spec,
            accel,
            tap.as_ref().map(|f| f.as_raw_fd()),
            &extra_raw,
            &log_raw,
            &boot,
        );
        cmd.arg("-chardev").arg(format!(
            "socket,id=qmp,fd={},server=on,wait=off",
            qmp_listener.as_raw_fd()
        ));
        cmd.args(["-mon", "chardev=qmp,mode=control"]);
        tracing::debug!("{:?}", cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(relay.host_log.try_clone()?))
            .stderr(Stdio::from(relay.host_log));
        // Own session: the VM outlives `hx run` being killed, like a docker container outlives
        // its client; `hx ps`/`hx rm` find it by pid + start time.
        process::detach(&mut cmd, inherit);
        if spec.hotplug_bus {
            super::pod_share::private_mounts(&mut cmd, spec.dir, false)?;
        }
        // Recorded in the container's state before it may run (spawn_recorded), and in its
        // host cgroup when it has a CPU limit (there before its first thread starts).
        let record_and_limit = |h: &VmHandle| -> anyhow::Result<()> {
            (spec.on_spawn)(h)?;
            if !spec.cpu_limits.is_default() {
                crate::host_cgroup::host()
                    .and_then(|g| g.apply(spec.id, spec.cpu_group, &spec.cpu_limits, h.pid))
                    .context("the VM's CPU limit")?;
            }
            Ok(())
        };
        let (pid, start) =
            super::spawn_recorded(&mut cmd, &record_and_limit).with_context(|| {
                format!("starting {} (apt-get install qemu-system-x86)", self.binary)
            })?;
        if process::start_time(pid) != Some(start) {
            process::Tracked { pid, start }.reap();
            // QEMU's last words reach qemu.log through the relay: once hx lets go of the
            // sockets, the relay drains them and exits.
            drop(log_fds);
            crate::log_relay::busy(spec.dir, std::time::Duration::from_secs(2));
            let log = std::fs::read_to_string(spec.dir.join(crate::log_relay::HOST_LOG_FILE))
                .unwrap_or_default();
            bail!(
                "qemu failed to start: {}",
                log.lines().last().unwrap_or("no output")
            );
        }
        match &boot {
            Boot::Restore { state } => super::warm::resume(spec.dir, state)?,
            Boot::Checkpoint { state, .. } => {
                let saved = saved.as_ref().expect("a checkpoint boot has its record");
                super::qemu_checkpoint::resume(spec.dir, state, saved)?
            }
            _ => {}
        }
        // A QEMU that rejects its options dies within milliseconds: `hx run -d` checks for
        // that (run.rs), an attached run reports it as the VM's outcome.
        Ok(VmHandle {
            pid,
            pid_start: start,
            domid: None,
        })
    }

    /// The VM counts as running until its log relay has written the last of its output too,
    /// so whoever reads the status or the logs next sees all of it.
    fn is_running(&self, c: &Container) -> bool {
        super::running_or_relaying(&self.root, c)
    }

    fn send_control(&self, c: &Container, dir: &Path, line: &str) -> anyhow::Result<()> {
        if !self.is_running(c) {
            bail!("container {} is not running", c.name);
        }
        super::write_control_fifo(dir, line)
    }

    fn kill(&self, c: &Container) -> anyhow::Result<()> {
        // Only QEMU itself, by pid and start time; the relay ends with QEMU's sockets and is
        // waited for after it, so that the logs are complete when this returns.
        const DEADLINE: Duration = Duration::from_secs(10);
        let t = Instant::now();
        if let Some(p) = c.vm_process() {
            if !p.kill_and_wait(DEADLINE) {
                bail!("qemu pid {} did not die", p.pid);
            }
        }
        let dir = crate::container::dir(&self.root, &c.id);
        if crate::log_relay::busy(&dir, DEADLINE.saturating_sub(t.elapsed())) {
            bail!("the log relay of {} did not finish", c.name);
        }
        Ok(())
    }

    fn can_pause(&self) -> bool {
        true
    }

    fn can_checkpoint(&self) -> bool {
        true
    }

    fn checkpoint(
        &self,
        c: &Container,
        dir: &Path,
        into: &Path,
        while_paused: &mut dyn FnMut() -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        if !c.vm_alive() {
            bail!("container {} is not running", c.name);
        }
        super::qemu_checkpoint::save(dir, into, while_paused)
    }

    fn exec_socket(&self, dir: &Path) -> Option<PathBuf> {
        Some(dir.join(crate::exec_channel::broker::SOCKET))
    }

    /// A pod's VM has a virtio-scsi bus (`VmSpec::hotplug_bus`); qemu_pod.rs.
    fn can_host_pod_members(&self) -> bool {
        true
    }

    /// Through the pod VM's members exports (qemu_pod.rs).
    fn member_shares(&self, _pod: &Container) -> super::MemberShares {
        super::MemberShares::All
    }

    /// Each a LUN of the member's SCSI target.
    fn max_member_volumes(&self) -> usize {
        crate::volume::MAX_MOUNTS
    }

    fn plug_member(
        &self,
        pod: &Container,
        member: &super::pod::MemberFiles,
    ) -> anyhow::Result<pv_init::mux::MemberDisks> {
        super::qemu_pod::plug(pod, &crate::container::dir(&self.root, &pod.id), member)
    }

    fn unplug_member(&self, pod: &Container, member: &super::pod::MemberFiles) {
        super::qemu_pod::unplug(pod, &crate::container::dir(&self.root, &pod.id), &member.id)
    }

    fn pause(&self, c: &Container, dir: &Path) -> anyhow::Result<()> {
        self.running_qmp(c, dir)?.execute("stop").map(drop)
    }

    fn unpause(&self, c: &Container, dir: &Path) -> anyhow::Result<()> {
        self.running_qmp(c, dir)?.execute("cont").map(drop)
    }

    fn is_paused(&self, c: &Container, dir: &Path) -> bool {
        c.vm_alive() && qmp::Qmp::connect(dir).is_ok_and(|mut q| q.paused().unwrap_or(false))
    }

    /// A cap and a weight through the VM's host cgroup (host_cgroup.rs), where the host has
    /// the cpu controller; memory through the guest's balloon, up to the VM's size.
    fn limit_caps(&self) -> super::LimitCaps {
        super::LimitCaps {
            live_memory: true,
            cpu: crate::host_cgroup::host().is_ok(),
        }
    }

    /// The RAM QEMU was started with (`-m`): the balloon's target may rise back to it.
    fn max_memory_mb(&self, c: &Container, dir: &Path) -> anyhow::Result<u64> {
        let summary = self
            .running_qmp(c, dir)?
            .execute("query-memory-size-summary")?;
        summary["base-memory"]
            .as_u64()
            .map(|b| b >> 20)
            .ok_or_else(|| anyhow::anyhow!("QMP query-memory-size-summary: no base-memory"))
    }

    fn set_limits(
        &self,
        c: &Container,
        dir: &Path,
        memory_mb: Option<u64>,
        cpu: Option<crate::limits::CpuLimits>,
    ) -> anyhow::Result<()> {
        if let Some(m) = memory_mb {
            self.running_qmp(c, dir)?
                .execute_with("balloon", Some(serde_json::json!({ "value": m << 20 })))
                .with_context(|| format!("container {}: its memory target", c.name))?;
        }
        let alive = c.vm_process().filter(|p| p.is_alive());
        let (Some(cpu), Some(p)) = (cpu, alive) else {
            return Ok(());
        };
        crate::host_cgroup::host()?
            .apply(&c.id, c.host_cgroup.as_deref(), &cpu, p.pid)
            .with_context(|| format!("container {}: its CPU limit", c.name))
    }

    fn cleanup(&self, c: &Container, dir: &Path) -> anyhow::Result<()> {
        if let Ok(g) = crate::host_cgroup::host() {
            // A group still busy here would block nothing else: the next cleanup retries.
            if let Err(e) = g.remove(&c.id) {
                tracing::warn!("container {}: removing its host cgroup: {e}", c.name);
            }
        }
        let _ = std::fs::remove_file(dir.join(qmp::SOCKET));
        let _ = std::fs::remove_file(dir.join(crate::exec_channel::broker::SOCKET));
        for f in ["control.in", "control.out"] {
            let _ = std::fs::remove_file(dir.join(f));
        }
        Ok(())
    }
}

#[allow(dead_code)]
pub fn channel_path(dir: &Path, ch: &str) -> PathBuf {
    dir.join(format!("{ch}.log"))
}
