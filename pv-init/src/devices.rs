//! Finding the guest's disks and channels, on QEMU (virtio) and Xen (blkfront, PV consoles).
use crate::InitError;
use pv_init::spec::ContainerSpec;
use std::fs;
use std::path::PathBuf;

pub struct Disks {
    /// index → device path
    by_index: Vec<(u32, PathBuf)>,
}

/// The guest's disks in /sys/block: virtio's vd* and Xen's xvd*, in no particular order.
pub fn disk_names() -> Result<Vec<String>, InitError> {
    Ok(fs::read_dir("/sys/block")
        .map_err(|e| InitError::setup(format!("/sys/block: {e}")))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("vd") || n.starts_with("xvd"))
        .collect())
}

impl Disks {
    /// Virtio disks carry serial `hx-disk<N>`; Xen disks (xvd*) are numbered in name order.
    pub fn find() -> Result<Self, InitError> {
        let mut names = disk_names()?;
        names.sort_by_key(|n| (n.len(), n.clone()));
        let mut by_index = Vec::new();
        for (pos, name) in names.iter().enumerate() {
            let serial =
                fs::read_to_string(format!("/sys/block/{name}/serial")).unwrap_or_default();
            let index = match serial
                .trim()
                .strip_prefix("hx-disk")
                .and_then(|n| n.parse().ok())
            {
                Some(i) => i,
                None => pos as u32,
            };
            by_index.push((index, PathBuf::from(format!("/dev/{name}"))));
        }
        Ok(Disks { by_index })
    }

    pub fn path(&self, index: u32) -> Result<&PathBuf, InitError> {
        self.by_index
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, p)| p)
            .ok_or_else(|| {
                InitError::setup(format!("disk {index} not found (have {:?})", self.by_index))
            })
    }

    pub fn read_spec(&self) -> Result<ContainerSpec, InitError> {
        let path = self.path(1)?;
        let f = fs::File::open(path)
            .map_err(|e| InitError::setup(format!("config disk {}: {e}", path.display())))?;
        ContainerSpec::read_config_disk(&mut &f).map_err(|e| InitError::setup(e.to_string()))
    }
}

pub struct Channels {
    pub stdout: fs::File,
    pub stderr: fs::File,
    pub control: ControlSource,
}

/// The `-i` input: the `hx.stdin` port (QEMU; its read returns 0 when hx closes its end) or the
/// console's input side (Xen; switched to raw so typed bytes pass unchanged and are not
/// echoed; the end comes as a `stdin-eof` control line).
pub fn open_stdin(backend: Backend) -> Result<fs::File, InitError> {
    use std::os::unix::fs::OpenOptionsExt;
    if backend == Backend::Xen {
        let f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOCTTY)
            .open("/dev/hvc0")
            .map_err(|e| InitError::setup(format!("console input /dev/hvc0: {e}")))?;
        if let Ok(mut t) = nix::sys::termios::tcgetattr(&f) {
            nix::sys::termios::cfmakeraw(&mut t);
            let _ = nix::sys::termios::tcsetattr(&f, nix::sys::termios::SetArg::TCSANOW, &t);
        }
        return Ok(f);
    }
    open_port(&virtio_ports(), "hx.stdin", false)
}

/// The exec channel (QEMU's `hx.exec` port, read and written), if the host gave this guest one.
pub fn exec_port() -> Option<fs::File> {
    let path = virtio_ports()
        .into_iter()
        .find(|(n, _)| n == "hx.exec")
        .map(|(_, p)| p)?;
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .ok()
}

/// The exec channel on Xen: pv-init serves a vchan to dom0 (pv_init::vchan) and publishes its
/// rendezvous in xenstore (`data/hx/vchan/{event-channel,ring-ref}`, ring-ref last: the host
/// connects once it appears); a thread copies between the vchan and one end of a socketpair,
/// whose other end the agent reads and writes like QEMU's port.
pub fn xen_exec_channel() -> Option<fs::File> {
    match offer_xen_vchan() {
        Ok(agent) => Some(agent),
        Err(e) => {
            crate::console(&format!("exec channel unavailable: {e}"));
            None
        }
    }
}

/// After a restore from a checkpoint the vchan is dead: its grants and event channel belonged
/// to the saved domain, and the new host end looks for a new rendezvous in a new xenstore.
/// Stops the old bridge (its pages are left mapped: nothing can use them any more) and offers
/// a new vchan; returns the agent's end of it.
pub fn reoffer_xen_exec_channel() -> Option<fs::File> {
    let old = XEN_BRIDGE.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(old) = old {
        let _ = nix::unistd::write(&old.stop, &[1]);
        let _ = old.thread.join();
    }
    xen_exec_channel()
}

/// The bridge thread of the vchan on offer, and the pipe that stops it.
struct XenBridge {
    stop: std::os::fd::OwnedFd,
    thread: std::thread::JoinHandle<()>,
}

static XEN_BRIDGE: std::sync::Mutex<Option<XenBridge>> = std::sync::Mutex::new(None);

fn offer_xen_vchan() -> Result<fs::File, String> {
    use pv_init::vchan::{self, Connected};
    use std::os::fd::AsFd;
    let (mut conn, gref, port) =
        Connected::serve(0, vchan::SERVER_ORDER).map_err(|e| format!("vchan: {e}"))?;
    let mut xs = xenbus().map_err(|e| e.message)?;
    for (node, v) in [("event-channel", port), ("ring-ref", gref)] {
        xs.write(
            &format!("{}/{node}", vchan::XS_DIR),
            v.to_string().as_bytes(),
        )
        .map_err(|e| format!("vchan {node}: {e}"))?;
    }
    let (ours, agent) =
        std::os::unix::net::UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
    let (stop_r, stop_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    // The agent's Hello is written before the host maps the ring: it waits there.
    conn.evt.notify();
    let thread = std::thread::spawn(move || {
        let why = match vchan::bridge(&mut conn, &ours, Some(stop_r.as_fd())) {
            Ok(why) => why.to_string(),
            Err(e) => e.to_string(),
        };
        if why != "stopped" {
            crate::console(&format!("exec channel: {why}"));
            // For the host's log (it reads this as untrusted, like everything here).
            if let Ok(mut xs) = xenbus() {
                let _ = xs.write(&format!("{}/closed", vchan::XS_DIR), why.as_bytes());
            }
        }
        // Leave the mapping in place: dom0 may still have it mapped.
        std::mem::forget(conn);
    });
    *XEN_BRIDGE.lock().unwrap_or_else(|e| e.into_inner()) = Some(XenBridge {
        stop: stop_w,
        thread,
    });
    Ok(fs::File::from(std::os::fd::OwnedFd::from(agent)))
}

/// QEMU's virtio-serial ports, by the name the host gave each: (name, /dev node).
fn virtio_ports() -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    if let Ok(rd) = fs::read_dir("/sys/class/virtio-ports") {
        for e in rd.flatten() {
            if let Ok(name) = fs::read_to_string(e.path().join("name")) {
                found.push((
                    name.trim().to_string(),
                    PathBuf::from("/dev").join(e.file_name()),
                ));
            }
        }
    }
    found
}

/// Opens port `want` of `found` (virtio_ports) for writing (guest → host) or reading.
fn open_port(found: &[(String, PathBuf)], want: &str, write: bool) -> Result<fs::File, InitError> {
    let path = found
        .iter()
        .find(|(n, _)| n == want)
        .map(|(_, p)| p.clone())
        .ok_or_else(|| {
            InitError::setup(format!(
                "channel {want} not found (have {:?})",
                found.iter().map(|f| &f.0).collect::<Vec<_>>()
            ))
        })?;
    fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .open(&path)
        .map_err(|e| InitError::setup(format!("channel {want} ({}): {e}", path.display())))
}

impl Channels {
    /// The workload's channels, and where status lines go.
    pub fn find(backend: Backend) -> Result<(Self, StatusSink), InitError> {
        if backend == Backend::Xen {
            return Self::find_xen();
        }
        // QEMU: virtio-serial ports, named by the host.
        let found = virtio_ports();
        let open = |want: &str, write: bool| open_port(&found, want, write);
        let status = StatusSink::File(open("hx.status", true)?);
        Ok((
            Channels {
                stdout: open("hx.stdout", true)?,
                stderr: open("hx.stderr", true)?,
                control: ControlSource::File(open("hx.control", false)?),
            },
            status,
        ))
    }
}

/// Which host backend booted us (`hx.backend=` on the kernel command line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Qemu,
    Xen,
}

impl Backend {
    /// Read once, while /proc is still mounted in the initramfs (assemble_root moves it into
    /// the new root before the volumes, which ask again, are mounted).
    pub fn detect() -> Self {
        static BACKEND: std::sync::OnceLock<Backend> = std::sync::OnceLock::new();
        *BACKEND.get_or_init(|| {
            let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
            if cmdline.split_whitespace().any(|w| w == "hx.backend=xen") {
                Backend::Xen
            } else {
                Backend::Qemu
            }
        })
    }
}

/// Where status lines go: the `hx.status` port (QEMU) or numbered xenstore nodes the guest
/// may write (Xen; docs/guest-protocol.md).
pub enum StatusSink {
    File(fs::File),
    Xenstore {
        client: xenstore_wire::Client,
        next: u32,
    },
}

/// Most status nodes pv-init writes on Xen (the host reads no more than this).
pub const XEN_MAX_STATUS: u32 = 16;
pub const XEN_STATUS_DIR: &str = "data/hx/status";
pub const XEN_CONTROL_NODE: &str = "hx/control";

impl StatusSink {
    pub fn report(&mut self, status: &pv_init::status::Status) {
        use std::io::Write;
        match self {
            StatusSink::File(f) => {
                let _ = f.write_all(status.to_line().as_bytes());
                let _ = f.sync_all();
            }
            StatusSink::Xenstore { client, next } => {
                if *next < XEN_MAX_STATUS {
                    let line = status.to_line();
                    let _ = client.write(
                        &format!("{XEN_STATUS_DIR}/{next}"),
                        line.trim_end().as_bytes(),
                    );
                    *next += 1;
                }
            }
        }
    }
}

/// Where control lines come from: the `hx.control` port (QEMU) or a xenstore node hx writes
/// and pv-init watches (Xen).
pub enum ControlSource {
    File(fs::File),
    Xenstore(xenstore_wire::Client),
}

/// The workload's output on Xen: the primary console, stdout and stderr merged (like
/// `docker run -t`). Output post-processing is turned off so `\n` stays `\n`.
fn xen_console() -> Result<fs::File, InitError> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open("/dev/hvc0")
        .map_err(|e| InitError::setup(format!("console /dev/hvc0: {e}")))?;
    if let Ok(mut t) = nix::sys::termios::tcgetattr(&f) {
        t.output_flags.remove(nix::sys::termios::OutputFlags::OPOST);
        let _ = nix::sys::termios::tcsetattr(&f, nix::sys::termios::SetArg::TCSANOW, &t);
    }
    Ok(f)
}

fn xenbus() -> Result<xenstore_wire::Client, InitError> {
    xenstore_wire::Client::open_device(xenstore_wire::XENBUS_DEVICE)
        .map_err(|e| InitError::setup(e.to_string()))
}

impl Channels {
    fn find_xen() -> Result<(Self, StatusSink), InitError> {
        // Two connections: status writes never interleave with the control watch's events.
        let status = StatusSink::Xenstore {
            client: xenbus()?,
            next: 0,
        };
        let mut control = xenbus()?;
        control
            .watch(XEN_CONTROL_NODE, "hx-control")
            .map_err(|e| InitError::setup(format!("control node: {e}")))?;
        let out = xen_console()?;
        let err = out
            .try_clone()
            .map_err(|e| InitError::setup(format!("console: {e}")))?;
        Ok((
            Channels {
                stdout: out,
                stderr: err,
                control: ControlSource::Xenstore(control),
            },
            status,
        ))
    }
}
