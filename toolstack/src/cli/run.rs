//! `hx run`: create a container from an image and run it in a micro-VM.
use crate::assets::GuestAssets;
use crate::backend::{self, Disk, VmSpec};
use crate::container::{self, Container, Status};
use crate::runtime;
use anyhow::{bail, Context};
use hx_images::Store;
use pv_init::spec::{ContainerSpec, DiskFs, Upper, SPEC_VERSION};
use pv_init::status::Control;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(clap::Args, Debug)]
#[command(trailing_var_arg = true)]
pub struct Args {
    /// Run in the background and print the container id
    #[arg(short, long)]
    pub detach: bool,
    /// Keep stdin open: hx's stdin becomes the workload's (EOF included)
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the workload a terminal (a pty in the guest); with -i and a terminal here, hx's
    /// terminal is switched to raw mode and its size follows
    #[arg(short, long)]
    pub tty: bool,
    /// Remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Container name
    #[arg(long)]
    pub name: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to take it from hx's environment)
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read environment variables from a file (KEY=VALUE lines)
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// User (name|uid)[:(group|gid)]
    #[arg(short, long)]
    pub user: Option<String>,
    /// Memory for the VM (e.g. 128m, 1g)
    #[arg(short, long, default_value = "128m")]
    pub memory: String,
    /// Virtual CPUs
    #[arg(long, default_value_t = 1)]
    pub cpus: u32,
    /// Override the image's entrypoint
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Container hostname (default: the short id)
    #[arg(long)]
    pub hostname: Option<String>,
    /// Publish a container port on the host: [IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp]
    #[arg(short = 'p', long = "publish", value_name = "[IP:]HOSTPORT:PORT")]
    pub publish: Vec<String>,
    /// Publish every port the image exposes, each on a free host port
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Network: bridge (hx0, the default), bridge=NAME (an existing bridge), or none
    #[arg(long, value_name = "MODE", env = "HX_NETWORK")]
    pub network: Option<String>,
    /// Mount a volume: /host/path:/path[:ro], NAME:/path[:ro] (named volume), or /path
    #[arg(short = 'v', long = "volume", value_name = "SRC:DST[:ro]")]
    pub volume: Vec<String>,
    /// DNS server for the container (instead of the host's)
    #[arg(long = "dns", value_name = "IP")]
    pub dns: Vec<String>,
    /// Add a line to /etc/hosts: HOST:IP
    #[arg(long = "add-host", value_name = "HOST:IP")]
    pub add_host: Vec<String>,
    /// Put the writable layer on a disk of this size (e.g. 1g) instead of guest memory
    #[arg(long, value_name = "SIZE")]
    pub disk_size: Option<String>,
    /// Backend: qemu or xen (default: xen on a dom0, else qemu)
    #[arg(long, env = "HX_BACKEND")]
    pub backend: Option<String>,
    /// Guest kernel to boot (default: the installed hyper kernel)
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// Xen domain type: pvh (default) or pv (default from [xen] type in the config file)
    #[arg(long = "type", value_name = "pvh|pv")]
    pub xen_type: Option<String>,
    /// Image to run
    pub image: String,
    /// Command and arguments (default: the image's CMD)
    pub command: Vec<String>,
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let root = g.root.clone();
    let detach = args.detach;
    if detach && args.interactive {
        bail!("-i needs an attached run: hx has no attach for -d containers yet (-t works with -d)");
    }
    let io = Interactive { stdin: args.interactive, tty: args.tty };
    let (prepared, stdin_socket) = tokio::task::spawn_blocking(move || create_and_start(&root, args)).await??;
    if detach {
        confirm_started(&g.root, &prepared).await?;
        outln!("{}", prepared.id);
        return Ok(0);
    }
    attach(&g.root, prepared, io, stdin_socket).await
}

#[derive(Clone, Copy)]
struct Interactive {
    stdin: bool,
    tty: bool,
}

/// A VM that dies at once (bad QEMU options, no hypervisor resources) is an error of `hx run -d`
/// rather than a container that silently exited.
async fn confirm_started(root: &Path, c: &Container) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_millis(50)).await;
    let be = backend::for_container(c, root)?;
    if be.is_running(c) {
        return Ok(());
    }
    let outcome = runtime::outcome(&container::dir(root, &c.id));
    match outcome {
        runtime::Outcome::Lost(why) => {
            let _lock = Store::open(root)?.lock()?;
            runtime::remove(root, c, be.as_ref())?;
            crate::volume::remove_anonymous(root, &c.mounts);
            bail!("the VM did not start: {why}")
        }
        _ => Ok(()),
    }
}

pub fn parse_size_mb(s: &str) -> anyhow::Result<u64> {
    let s = s.trim().to_lowercase();
    let (num, mult) = match s.chars().last() {
        Some('k') => (&s[..s.len() - 1], 1.0 / 1024.0),
        Some('m') => (&s[..s.len() - 1], 1.0),
        Some('g') => (&s[..s.len() - 1], 1024.0),
        Some('b') => return parse_size_mb(&s[..s.len() - 1]),
        _ => (&s[..], 1.0 / (1024.0 * 1024.0)),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid size {s:?} (e.g. 256m, 1g)"))?;
    let mb = (n * mult).ceil() as u64;
    if mb == 0 {
        bail!("size {s:?} is too small");
    }
    Ok(mb)
}

fn read_env_file(p: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(p).with_context(|| format!("env file {}", p.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(expand_env)
        .collect())
}

fn expand_env(e: &str) -> String {
    if e.contains('=') {
        e.to_string()
    } else {
        format!("{e}={}", std::env::var(e).unwrap_or_default())
    }
}

/// Builds the spec the way docker merges image config and flags.
pub fn build_spec(
    args: &Args,
    img: &hx_images::ImageRecord,
    hostname: &str,
) -> anyhow::Result<ContainerSpec> {
    let cfg = img.config.config().clone().unwrap_or_default();
    let entrypoint: Vec<String> = match &args.entrypoint {
        Some(e) if e.is_empty() => vec![],
        Some(e) => vec![e.clone()],
        None => cfg.entrypoint().clone().unwrap_or_default(),
    };
    let cmd: Vec<String> = if !args.command.is_empty() {
        args.command.clone()
    } else if args.entrypoint.is_some() {
        vec![]
    } else {
        cfg.cmd().clone().unwrap_or_default()
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        bail!(
            "no command specified and image {} has no CMD or ENTRYPOINT",
            args.image
        );
    }
    let mut env: Vec<String> = cfg.env().clone().unwrap_or_default();
    let mut extra = Vec::new();
    for f in &args.env_file {
        extra.extend(read_env_file(f)?);
    }
    extra.extend(args.env.iter().map(|e| expand_env(e)));
    for e in extra {
        let key = e.split('=').next().unwrap_or("").to_string();
        if key.is_empty() {
            bail!("invalid environment variable {e:?}");
        }
        env.retain(|x| x.split('=').next() != Some(&key));
        env.push(e);
    }
    let cwd = args
        .workdir
        .clone()
        .or_else(|| cfg.working_dir().clone())
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        bail!("the working directory {cwd:?} is not absolute");
    }
    let upper = match &args.disk_size {
        Some(_) => Upper::Disk {
            disk: 2,
            fstype: "ext4".into(),
        },
        None => Upper::Tmpfs { size_mb: 0 },
    };
    Ok(ContainerSpec {
        version: SPEC_VERSION,
        args: argv,
        env,
        cwd,
        user: args
            .user
            .clone()
            .or_else(|| cfg.user().clone())
            .unwrap_or_default(),
        hostname: hostname.to_string(),
        rootfs: DiskFs {
            disk: 0,
            fstype: hx_images::rootfs::FSTYPE.into(),
        },
        upper,
        mounts: vec![],
        network: None,
        stdin: args.interactive,
        tty: args
            .tty
            .then(|| super::interactive::terminal_size().unwrap_or(pv_init::spec::TtySize { rows: 24, cols: 80 })),
    })
}

fn find_or_pull(store: &Store, image: &str) -> anyhow::Result<hx_images::ImageRecord> {
    match store.find_image(image) {
        Ok(i) => Ok(i),
        Err(hx_images::Error::ImageNotFound(_)) => {
            let reference = hx_images::Reference::parse(image)?;
            errln!("Unable to find image '{}' locally", reference.familiar());
            let rt = tokio::runtime::Handle::current();
            let opts = hx_images::pull::PullOptions {
                progress: true,
                ..Default::default()
            };
            rt.block_on(hx_images::pull::pull(store, &reference, &opts))
                .map_err(Into::into)
        }
        Err(e) => Err(e.into()),
    }
}

/// The container, started, and for `-i` on QEMU the socket QEMU's `hx.stdin` port connected to.
fn create_and_start(
    root: &Path,
    args: Args,
) -> anyhow::Result<(Container, Option<std::os::unix::net::UnixListener>)> {
    let store = Store::open(root)?;
    let img = find_or_pull(&store, &args.image)?;
    let rootfs = store.rootfs(&img)?;
    let be = backend::select(args.backend.as_deref(), root)?;
    let host = crate::hostconfig::load(root)?;
    let xen_type = match (&args.xen_type, be.name()) {
        (Some(_), "qemu") => bail!("--type applies to the xen backend only"),
        (Some(t), _) => backend::XenType::parse(t)?,
        (None, _) => match &host.xen.domain_type {
            Some(t) => backend::XenType::parse(t)?,
            None => backend::XenType::default(),
        },
    };
    let kernel = match (&args.kernel, be.name()) {
        (Some(k), _) => Some(k.clone()),
        (None, "xen") => host.xen.kernel.clone(),
        _ => None,
    };
    let assets = GuestAssets::find(root, kernel.as_deref(), be.kernel_file())?;
    let memory_mb = parse_size_mb(&args.memory)?;
    if memory_mb < 32 {
        bail!("--memory {}: at least 32m is needed", args.memory);
    }
    if args.cpus == 0 || args.cpus > 32 {
        bail!("--cpus {}: must be 1..32", args.cpus);
    }
    let id = container::new_id();
    let net_mode = crate::network::Mode::parse(args.network.as_deref())?;
    let mut port_requests = Vec::new();
    for p in &args.publish {
        port_requests.extend(crate::network::ports::parse(p)?);
    }
    let image_cfg = img.config.config().clone().unwrap_or_default();
    if args.publish_all {
        let exposed = crate::network::ports::exposed(&image_cfg.exposed_ports().clone().unwrap_or_default())?;
        let extra: Vec<_> = exposed
            .into_iter()
            .filter(|e| {
                !port_requests
                    .iter()
                    .any(|r| r.container_port == e.container_port && r.proto == e.proto)
            })
            .collect();
        port_requests.extend(extra);
    }
    let dns_servers = crate::network::dns::parse_servers(&args.dns)?;
    let extra_hosts = crate::network::dns::parse_add_hosts(&args.add_host)?;
    let volume_args = args
        .volume
        .iter()
        .map(|v| crate::volume::parse_arg(v))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let first_volume_disk = if args.disk_size.is_some() { 3 } else { 2 };

    // Name reservation, addresses, ports, volumes and the directory are made under the store
    // lock.
    let (c, mut nic, mut shares, mut volume_disks) = {
        let _lock = store.lock()?;
        let existing = runtime::reconcile(root)?;
        let taken: Vec<String> = existing.iter().map(|c| c.name.clone()).collect();
        let name = match &args.name {
            Some(n) if !container::valid_name(n) => {
                bail!("invalid container name {n:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*")
            }
            Some(n) if taken.contains(n) => return Err(crate::HxError::NameInUse(n.clone()).into()),
            Some(n) => n.clone(),
            None => container::random_name(&id, &taken),
        };
        let hostname = args
            .hostname
            .clone()
            .unwrap_or_else(|| id[..12].to_string());
        let mut spec = build_spec(&args, &img, &hostname)?;
        let running: Vec<&Container> = existing.iter().filter(|c| c.status == Status::Running).collect();
        let busy = |vol: &str| {
            running
                .iter()
                .find(|c| c.mounts.iter().any(|m| m.kind == "volume" && m.source == vol))
                .map(|c| c.name.clone())
        };
        let dir = container::dir(root, &id);
        // QEMU serves host directories over virtio-9p. On Xen read-only ones become snapshot
        // disks in the container's directory and read-write ones go over Xen's 9pfs when dom0
        // has its QEMU backend (docs/volumes.md). HX_HOST_DIRS=snapshot gives QEMU the
        // snapshots too (faster reads, a copy taken at start).
        let snapshot = std::env::var("HX_HOST_DIRS").is_ok_and(|v| v == "snapshot");
        let host_dirs = match be.name() {
            "qemu" if !snapshot => crate::volume::HostDirs::Share { into: &dir },
            "qemu" => crate::volume::HostDirs::Snapshot { into: &dir, share_rw: false },
            _ => crate::volume::HostDirs::Snapshot {
                into: &dir,
                share_rw: crate::backend::xen::has_9pfs_backend(),
            },
        };
        let plan = match crate::volume::plan(
            root,
            &volume_args,
            &image_cfg.volumes().clone().unwrap_or_default(),
            first_volume_disk,
            &busy,
            host_dirs,
        ) {
            Ok(p) => p,
            Err(e) => {
                let _ = crate::volume::remove_container_dir(&dir);
                return Err(e);
            }
        };
        let taken: Vec<(String, crate::network::Published)> = running
            .iter()
            .flat_map(|c| {
                c.network.iter().flat_map(|n| n.ports.iter().map(|p| (c.name.clone(), p.clone())))
            })
            .collect();
        let net = match crate::network::setup(root, &id, &net_mode, &port_requests, &taken) {
            Ok(n) => n,
            Err(e) => {
                crate::volume::remove_anonymous(root, &plan.records);
                let _ = crate::volume::remove_container_dir(&dir);
                return Err(e);
            }
        };
        spec.network = net.guest.clone().map(|mut g| {
            if !dns_servers.is_empty() {
                g.dns = dns_servers.clone();
            }
            g.hosts.extend(extra_hosts.iter().cloned());
            g
        });
        spec.mounts = plan.mounts.clone();
        let c = Container {
            id: id.clone(),
            name,
            image: args.image.clone(),
            image_id: img.id.to_string(),
            command: spec.args.clone(),
            created: container::now_rfc3339(),
            backend: be.name().to_string(),
            status: Status::Created,
            pid: None,
            pid_start: None,
            started_at: None,
            finished_at: None,
            exit_code: None,
            error: None,
            auto_remove: args.rm,
            memory_mb,
            cpus: args.cpus,
            domid: None,
            network: Some(net.state.clone()),
            mounts: plan.records.clone(),
        };
        let made = (|| -> anyhow::Result<()> {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            container::save(root, &c)?;
            std::fs::write(dir.join("config.img"), spec.to_config_disk())?;
            std::fs::write(dir.join("spec.json"), serde_json::to_vec_pretty(&spec)?)?;
            Ok(())
        })();
        if let Err(e) = made {
            let _ = crate::network::release(root, &id, &net.state);
            crate::volume::remove_anonymous(root, &plan.records);
            let _ = crate::volume::remove_container_dir(&dir);
            return Err(e);
        }
        (c, net.nic, plan.shares, plan.disks)
    };
    let dir = container::dir(root, &id);
    let mut stdin_socket = None;
    let mut start = || -> anyhow::Result<Container> {
        // QEMU connects its hx.stdin port to this socket as it starts, so the guest's port is
        // connected from boot and sees EOF exactly when hx closes it.
        let stdin_path = dir.join("stdin.sock");
        if args.interactive && be.name() == "qemu" {
            stdin_socket = Some(
                std::os::unix::net::UnixListener::bind(&stdin_path)
                    .with_context(|| format!("{}", stdin_path.display()))?,
            );
        }
        let mut disks = vec![
            Disk {
                path: rootfs.clone(),
                readonly: true,
            },
            Disk {
                path: dir.join("config.img"),
                readonly: true,
            },
        ];
        if let Some(size) = &args.disk_size {
            let mb = parse_size_mb(size)?;
            let upper = dir.join("upper.img");
            hx_images::rootfs::make_ext4(None, &upper, mb * 1024 * 1024)?;
            disks.push(Disk {
                path: upper,
                readonly: false,
            });
        }
        disks.append(&mut volume_disks);
        let vm = VmSpec {
            id: &c.id,
            name: &c.name,
            dir: &dir,
            kernel: &assets.kernel,
            initramfs: &assets.initramfs,
            disks,
            memory_mb,
            cpus: args.cpus,
            nic: nic.take(),
            shares: std::mem::take(&mut shares),
            xen_type,
            stdin_socket: stdin_socket.as_ref().map(|_| stdin_path.clone()),
        };
        let h = be.start(&vm)?;
        let mut c = c.clone();
        c.pid = Some(h.pid);
        c.pid_start = Some(h.pid_start);
        c.domid = h.domid;
        c.status = Status::Running;
        c.started_at = Some(container::now_rfc3339());
        container::save(root, &c)?;
        Ok(c)
    };
    match start() {
        Ok(c) => Ok((c, stdin_socket)),
        Err(e) => {
            // Nothing half-made stays behind.
            let _ = runtime::remove(root, &c, be.as_ref());
            crate::volume::remove_anonymous(root, &c.mounts);
            Err(e)
        }
    }
}

/// Follows stdout.log/stderr.log across the log relay's rotations (logfile.rs).
pub use crate::logfile::Tail;

async fn attach(
    root: &Path,
    c: Container,
    io: Interactive,
    stdin_socket: Option<std::os::unix::net::UnixListener>,
) -> anyhow::Result<i32> {
    let dir = container::dir(root, &c.id);
    let be = backend::for_container(&c, root)?;
    let stdin_eof = if io.stdin {
        Some(super::interactive::forward_stdin(&c, &dir, stdin_socket)?)
    } else {
        None
    };
    let _raw = if io.tty && io.stdin { super::interactive::RawTerminal::enable() } else { None };
    let mut winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())?;
    let mut out = Tail::open(&dir.join("stdout.log"), true)?;
    let mut err = Tail::open(&dir.join("stderr.log"), true)?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut interrupts = 0;
    // Checked against the recorded start time by is_running below, so a reused pid is harmless.
    let exited = backend::exit_notifier(c.pid);
    let vm_exit = async {
        match &exited {
            Some(fd) => drop(fd.readable().await),
            None => std::future::pending().await,
        }
    };
    tokio::pin!(vm_exit);
    let mut vm_gone = false;
    loop {
        let a = out.pump(&mut std::io::stdout())?;
        let b = err.pump(&mut std::io::stderr())?;
        if !be.is_running(&c) {
            break;
        }
        // One message at most: the sender is gone after it.
        if stdin_eof.as_ref().is_some_and(|r| r.try_recv().is_ok()) {
            let _ = be.send_control(&c, &dir, &Control::StdinEof.to_line());
        }
        let delay = if a || b { 5 } else { 25 };
        tokio::select! {
            _ = winch.recv(), if io.tty => {
                if let Some(size) = super::interactive::terminal_size() {
                    let _ = be.send_control(&c, &dir, &Control::Resize { rows: size.rows, cols: size.cols }.to_line());
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(delay)) => {}
            _ = &mut vm_exit, if !vm_gone => vm_gone = true,
            _ = sigint.recv() => {
                interrupts += 1;
                if interrupts == 1 {
                    let _ = be.send_control(&c, &dir, &Control::Signal(libc::SIGINT).to_line());
                } else {
                    errln!("hx: killing {}", c.name);
                    be.kill(&c)?;
                }
            }
            _ = sigterm.recv() => {
                let _ = be.send_control(&c, &dir, &Control::Signal(libc::SIGTERM).to_line());
            }
        }
    }
    out.pump(&mut std::io::stdout())?;
    err.pump(&mut std::io::stderr())?;
    let _lock = Store::open(root)?.lock()?;
    let current = container::load(root, &c.id).unwrap_or(c);
    let outcome = runtime::outcome(&dir);
    runtime::settle(root, current, be.as_ref())?;
    if let Some(e) = outcome.error() {
        errln!("hx: {e}");
    }
    Ok(outcome.exit_code())
}
