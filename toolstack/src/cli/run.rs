//! `hx run`: create a container from an image and run it in a micro-VM.
use super::guest_env;
use anyhow::{bail, Context};
use hx_engine::assets::GuestAssets;
use hx_engine::backend::{self, Disk, VmSpec};
use hx_engine::container::{self, Container, Status};
use hx_engine::runtime;
use hx_images::Store;
use pv_init::spec::{ContainerSpec, DiskFs, Upper, SPEC_VERSION};
use pv_init::status::Control;
use std::io::IsTerminal;
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
    /// Signal `hx stop` sends first (name or number; default: the image's STOPSIGNAL, else TERM)
    #[arg(long, value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
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
    /// Size of /dev/shm (b, k, m, g; default 64m, like docker)
    #[arg(long, value_name = "SIZE")]
    pub shm_size: Option<String>,
    /// Resource limit for the workload: NAME=SOFT[:HARD] (nofile, nproc, core, memlock, stack,
    /// cpu, fsize, ...; -1 for unlimited). Default: nofile 1048576, nproc and core unlimited
    #[arg(long, value_name = "NAME=SOFT[:HARD]")]
    pub ulimit: Vec<String>,
    /// Mount a tmpfs: PATH[:OPTIONS] (size=, mode=, uid=, gid=, ro, exec, suid, dev; like
    /// docker it is noexec,nosuid,nodev unless the options say otherwise)
    #[arg(long, value_name = "PATH[:OPTIONS]")]
    pub tmpfs: Vec<String>,
    /// Set a kernel parameter in the guest: KEY=VALUE (docker's namespaced ones: net.*,
    /// fs.mqueue.*, kernel.shm*, kernel.msg*, kernel.sem)
    #[arg(long, value_name = "KEY=VALUE")]
    pub sysctl: Vec<String>,
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
    // One positional for both, so that trailing_var_arg starts right after the image: with
    // two, a known option there (`hx run memcached -m 64`) was taken as hx's own.
    /// Image to run, then the command and its arguments (default: the image's CMD).
    /// Everything after the image is the command's, options included, as with docker:
    /// `hx run redis --appendonly yes`, `hx run memcached -m 64`
    #[arg(value_name = "IMAGE [COMMAND [ARG...]]", required = true, num_args = 1..)]
    pub image_and_command: Vec<String>,
    /// The first of image_and_command (set by `split_image`)
    #[arg(skip)]
    pub image: String,
    /// The rest of image_and_command (set by `split_image`)
    #[arg(skip)]
    pub command: Vec<String>,
}

impl Args {
    /// Fills `image` and `command` from the positional words.
    pub fn split_image(mut self) -> Self {
        let mut words = std::mem::take(&mut self.image_and_command).into_iter();
        self.image = words.next().unwrap_or_default();
        self.command = words.collect();
        self
    }
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let args = args.split_image();
    let root = g.root.clone();
    let detach = args.detach;
    if detach && args.interactive {
        bail!(
            "-i needs an attached run: hx has no attach for -d containers yet (-t works with -d)"
        );
    }
    if args.interactive && args.tty && !std::io::stdin().is_terminal() {
        // docker's answer and exit code; without it the workload would wait for keys that
        // never come from a pipe or /dev/null, on a terminal nobody sees.
        errln!("hx: the input device is not a TTY");
        return Ok(1);
    }
    let io = Interactive {
        stdin: args.interactive,
        tty: args.tty,
    };
    let (prepared, owner, stdin_socket) =
        tokio::task::spawn_blocking(move || create_and_start(&root, args)).await??;
    if detach {
        confirm_started(&g.root, &prepared, owner).await?;
        outln!("{}", prepared.id);
        return Ok(0);
    }
    attach(&g.root, prepared, owner, io, stdin_socket).await
}

#[derive(Clone, Copy)]
struct Interactive {
    stdin: bool,
    tty: bool,
}

/// A VM that dies at once (bad QEMU options, no hypervisor resources) is an error of `hx run -d`
/// rather than a container that silently exited.
async fn confirm_started(
    root: &Path,
    c: &Container,
    owner: container::Owner,
) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_millis(50)).await;
    let be = backend::for_container(c, root)?;
    if be.is_running(c) {
        return Ok(());
    }
    let outcome = runtime::outcome(&container::dir(root, &c.id));
    match outcome {
        runtime::Outcome::Lost(why) => {
            let _lock = Store::open(root)?.lock()?;
            drop(owner);
            runtime::discard(root, c, be.as_ref())?;
            bail!("the VM did not start: {why}")
        }
        _ => Ok(()),
    }
}

pub const MAX_MEMORY: u64 = 1 << 40;
pub const MAX_DISK_SIZE: u64 = 1 << 40;
/// Volumes: ext4's limit with 4 KiB blocks.
pub const MAX_VOLUME_SIZE: u64 = 16 << 40;

#[derive(Debug, thiserror::Error)]
pub enum SizeError {
    #[error(
        "{flag} {value:?}: not a size (digits with an optional fraction and unit: 512m, 1.5g, 2t)"
    )]
    Syntax { flag: &'static str, value: String },
    #[error("{flag} {value:?}: out of range ({min} to {max})")]
    Range {
        flag: &'static str,
        value: String,
        min: String,
        max: String,
    },
}

/// A size like docker's: `<digits>[.<digits>][b|k|m|g|t][b]`, units of 1024; bytes without
/// a unit. Exact integer arithmetic, no overflow: anything that does not fit is an error.
pub fn parse_size(flag: &'static str, value: &str) -> Result<u64, SizeError> {
    let bad = || SizeError::Syntax {
        flag,
        value: value.into(),
    };
    let s = value.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (num, shift) = match s.as_bytes().last() {
        Some(b'k') => (&s[..s.len() - 1], 10),
        Some(b'm') => (&s[..s.len() - 1], 20),
        Some(b'g') => (&s[..s.len() - 1], 30),
        Some(b't') => (&s[..s.len() - 1], 40),
        _ => (s, 0),
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, "0"));
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    if int.len() > 20 || frac.len() > 9 || !digits(int) || !digits(frac) {
        return Err(bad());
    }
    let int: u128 = int.parse().map_err(|_| bad())?;
    let frac_num: u128 = frac.parse().map_err(|_| bad())?;
    let frac_den = 10u128.pow(frac.len() as u32);
    let bytes = (int << shift) + (frac_num << shift).div_ceil(frac_den);
    u64::try_from(bytes).map_err(|_| SizeError::Range {
        flag,
        value: value.into(),
        min: "0".into(),
        max: show_size(u64::MAX),
    })
}

/// `16m`, `1t`: the largest unit that divides the size exactly.
fn show_size(b: u64) -> String {
    for (shift, unit) in [(40, 't'), (30, 'g'), (20, 'm'), (10, 'k')] {
        if b >= 1 << shift && b.is_multiple_of(1 << shift) {
            return format!("{}{unit}", b >> shift);
        }
    }
    format!("{b} bytes")
}

/// `parse_size` within [min, max] bytes.
pub fn parse_size_in(
    flag: &'static str,
    value: &str,
    min: u64,
    max: u64,
) -> Result<u64, SizeError> {
    let range = || SizeError::Range {
        flag,
        value: value.into(),
        min: show_size(min),
        max: show_size(max),
    };
    match parse_size(flag, value) {
        Ok(b) if (min..=max).contains(&b) => Ok(b),
        Ok(_) | Err(SizeError::Range { .. }) => Err(range()),
        Err(e) => Err(e),
    }
}

pub(crate) fn read_env_file(p: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(p).with_context(|| format!("env file {}", p.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(expand_env)
        .collect())
}

/// `K=V` as is; `K` as `K=` hx's own value, or nothing when hx has no K (docker exec's rule).
pub(crate) fn expand_env_opt(e: &str) -> Option<String> {
    if e.contains('=') {
        return Some(e.to_string());
    }
    std::env::var(e).ok().map(|v| format!("{e}={v}"))
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
    guest: guest_env::GuestEnv,
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
        tty: args.tty.then(|| {
            super::interactive::terminal_size()
                .unwrap_or(pv_init::spec::TtySize { rows: 24, cols: 80 })
        }),
        shm_size: Some(guest.shm_size),
        rlimits: guest.rlimits,
        sysctls: guest.sysctls,
        // docker resolves a container's name on user networks (its embedded DNS); hx writes
        // an explicit --name into /etc/hosts beside the hostname.
        aliases: args
            .name
            .iter()
            .filter(|n| **n != hostname)
            .cloned()
            .collect(),
        extra_hosts: vec![],
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

/// The container, started; its `Owner` lock; for `-i` on QEMU the socket QEMU's `hx.stdin`
/// port connected to.
///
/// Creation is a transaction on the container's record: the directory and a `creating` record
/// come first (with the `Owner` lock, in one hold of the store lock), and every resource —
/// volumes and file binds, address and port rules, the VM process — is written into the
/// record before it is acquired. A failure here and a creator killed at any point are undone
/// the same way, from the record: `runtime::discard` (here, or by the next reconcile once the
/// owner lock is free).
fn create_and_start(
    root: &Path,
    args: Args,
) -> anyhow::Result<(
    Container,
    container::Owner,
    Option<std::os::unix::net::UnixListener>,
)> {
    // Flags first: nothing is looked up, pulled or made for a run that cannot happen.
    let memory_mb =
        parse_size_in("--memory", &args.memory, 32 << 20, MAX_MEMORY)?.div_ceil(1 << 20);
    if let Some(s) = &args.stop_signal {
        super::kill::parse_signal(s).with_context(|| "--stop-signal")?;
    }
    if args.cpus == 0 || args.cpus > 32 {
        bail!("--cpus {}: must be 1..32", args.cpus);
    }
    let guest_env =
        guest_env::GuestEnv::parse(args.shm_size.as_deref(), &args.ulimit, &args.sysctl)?;
    // (-v's own errors are reported below.)
    let volume_targets: Vec<String> = args
        .volume
        .iter()
        .filter_map(|v| hx_engine::volume::parse_arg(v).ok())
        .map(|v| v.target)
        .collect();
    let tmpfs_mounts = guest_env::tmpfs_mounts(&args.tmpfs, &volume_targets)?;
    let upper_size = args
        .disk_size
        .as_deref()
        .map(|s| parse_size_in("--disk-size", s, 16 << 20, MAX_DISK_SIZE))
        .transpose()?
        .map(|b| b.div_ceil(1 << 20) << 20);
    let host = hx_engine::hostconfig::load(root)?;
    // The same image limits as hx pull / load / import: a run pulls and unpacks too.
    let store = Store::open(root)?.with_limits(host.limits.images()?);
    let img = find_or_pull(&store, &args.image)?;
    let rootfs = store.rootfs(&img)?;
    let be = backend::select(args.backend.as_deref(), root)?;
    let xen_type = match &args.xen_type {
        Some(_) if !be.has_domain_types() => bail!("--type applies to the xen backend only"),
        Some(t) => backend::XenType::parse(t)?,
        None => match &host.xen.domain_type {
            Some(t) => backend::XenType::parse(t)?,
            None => backend::XenType::default(),
        },
    };
    let kernel = args.kernel.clone().or_else(|| be.configured_kernel(&host));
    let assets = GuestAssets::find(root, kernel.as_deref(), be.kernel_file())?;
    let id = container::new_id();
    let net_mode = hx_engine::network::Mode::parse(args.network.as_deref())?;
    let mut port_requests = Vec::new();
    for p in &args.publish {
        port_requests.extend(hx_engine::network::ports::parse(p)?);
    }
    let image_cfg = img.config.config().clone().unwrap_or_default();
    if args.publish_all {
        let exposed = hx_engine::network::ports::exposed(
            &image_cfg.exposed_ports().clone().unwrap_or_default(),
        )?;
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
    let dns_servers = hx_engine::network::dns::parse_servers(&args.dns)?;
    let extra_hosts = hx_engine::network::dns::parse_add_hosts(&args.add_host)?;
    let volume_args = args
        .volume
        .iter()
        .map(|v| hx_engine::volume::parse_arg(v))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let first_volume_disk = if upper_size.is_some() { 3 } else { 2 };
    let dir = container::dir(root, &id);

    // Under the store lock: the name, the volumes' records, the first state record, the
    // address and ports (checked against the other active containers).
    let lock = store.lock()?;
    let existing = runtime::reconcile(root)?;
    let taken: Vec<String> = existing.iter().map(|c| c.name.clone()).collect();
    let name = match &args.name {
        Some(n) if !container::valid_name(n) => {
            bail!("invalid container name {n:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*")
        }
        Some(n) if taken.contains(n) => return Err(hx_engine::HxError::NameInUse(n.clone()).into()),
        Some(n) => n.clone(),
        None => container::random_name(&id, &taken),
    };
    let hostname = args
        .hostname
        .clone()
        .unwrap_or_else(|| id[..12].to_string());
    let mut spec = build_spec(&args, &img, &hostname, guest_env)?;
    let active: Vec<&Container> = existing
        .iter()
        .filter(|c| runtime::is_active(root, c))
        .collect();
    let busy = |vol: &str| {
        active
            .iter()
            .find(|c| {
                c.mounts
                    .iter()
                    .any(|m| m.kind == "volume" && m.source == vol)
            })
            .map(|c| c.name.clone())
    };
    let mut records = hx_engine::volume::resolve(
        &volume_args,
        &image_cfg.volumes().clone().unwrap_or_default(),
        &busy,
    )?;
    // A --tmpfs replaces an image VOLUME at its path, like docker (-v there was refused).
    records.retain(|r| !tmpfs_mounts.iter().any(|t| t.target == r.target));
    // The image's STOPSIGNAL is checked here: a bad one fails the run, not a later hx stop.
    let stop_signal = match (&args.stop_signal, image_cfg.stop_signal()) {
        (Some(s), _) => Some(s.clone()),
        (None, Some(s)) => {
            super::kill::parse_signal(s)
                .with_context(|| format!("image {}: STOPSIGNAL", args.image))?;
            Some(s.clone())
        }
        (None, None) => None,
    };
    let mut c = Container {
        id: id.clone(),
        name,
        image: args.image.clone(),
        image_id: img.id.to_string(),
        command: spec.args.clone(),
        created: container::now_rfc3339(),
        backend: be.name().to_string(),
        status: Status::Creating,
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
        network: provisional_network(&net_mode, &id),
        mounts: records,
        stop_signal,
    };
    let owner = (|| -> anyhow::Result<container::Owner> {
        std::fs::create_dir_all(container::containers_dir(root))?;
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let owner = container::Owner::acquire(root, &id)?;
        container::save(root, &c)?;
        Ok(owner)
    })();
    let owner = match owner {
        Ok(o) => o,
        Err(e) => {
            let _ = hx_engine::volume::remove_container_dir(&dir);
            return Err(e);
        }
    };
    let ports_taken: Vec<(String, hx_engine::network::Published)> = active
        .iter()
        .flat_map(|c| {
            c.network
                .iter()
                .flat_map(|n| n.ports.iter().map(|p| (c.name.clone(), p.clone())))
        })
        .collect();
    let net = hx_engine::network::setup(root, &id, &net_mode, &port_requests, &ports_taken)
        .and_then(|net| {
            c.network = Some(net.state.clone());
            container::save(root, &c)?;
            Ok(net)
        });
    drop(lock);

    let mut stdin_socket = None;
    let made = net.and_then(|net| {
        // Without the store lock: volumes (mkfs), binds, disks and the VM.
        let host_dirs = be.host_dirs(&dir);
        let plan = hx_engine::volume::acquire(root, &c.mounts, first_volume_disk, host_dirs)?;
        spec.network = net.guest.clone().map(|mut g| {
            if !dns_servers.is_empty() {
                g.dns = dns_servers.clone();
            }
            g
        });
        // Written to /etc/hosts with or without a network, like docker's.
        spec.extra_hosts = extra_hosts.clone();
        spec.mounts = plan.mounts.clone();
        spec.mounts.extend(tmpfs_mounts.iter().cloned());
        guest_env::sort_mounts(&mut spec.mounts);
        std::fs::write(dir.join("config.img"), spec.to_config_disk())?;
        std::fs::write(dir.join("spec.json"), serde_json::to_vec_pretty(&spec)?)?;
        // QEMU connects its hx.stdin port to this socket as it starts, so the guest's port is
        // connected from boot and sees EOF exactly when hx closes it.
        let stdin_path = dir.join("stdin.sock");
        if args.interactive && be.stdin_over_socket() {
            stdin_socket = Some(
                std::os::unix::net::UnixListener::bind(&stdin_path)
                    .with_context(|| format!("{}", stdin_path.display()))?,
            );
        }
        let mut disks = vec![
            Disk {
                path: rootfs.clone(),
                readonly: true,
                durable: false,
            },
            Disk {
                path: dir.join("config.img"),
                readonly: true,
                durable: false,
            },
        ];
        if let Some(size) = upper_size {
            let upper = dir.join("upper.img");
            hx_images::rootfs::make_ext4(None, &upper, size)?;
            disks.push(Disk {
                path: upper,
                readonly: false,
                durable: false,
            });
        }
        disks.extend(plan.disks);
        let record = |h: &backend::VmHandle| {
            let mut c = c.clone();
            c.pid = Some(h.pid);
            c.pid_start = Some(h.pid_start);
            container::save(root, &c)
        };
        let vm = VmSpec {
            id: &c.id,
            name: &c.name,
            dir: &dir,
            kernel: &assets.kernel,
            initramfs: &assets.initramfs,
            disks,
            memory_mb,
            cpus: args.cpus,
            nic: net.nic,
            shares: plan.shares,
            xen_type,
            stdin_socket: stdin_socket.as_ref().map(|_| stdin_path.clone()),
            on_spawn: &record,
        };
        let h = be.start(&vm)?;
        c.pid = Some(h.pid);
        c.pid_start = Some(h.pid_start);
        c.domid = h.domid;
        c.status = Status::Running;
        c.started_at = Some(container::now_rfc3339());
        container::save(root, &c)
    });
    match made {
        Ok(()) => Ok((c, owner, stdin_socket)),
        Err(e) => {
            drop(stdin_socket);
            undo(root, &c, owner, be.as_ref());
            Err(e)
        }
    }
}

/// Undoes a failed creation (the record on disk is the truth: it may name a VM process the
/// in-memory copy does not). Under the store lock, with the owner lock given up inside it so
/// that no reconcile sees the container ownerless before it is gone.
fn undo(root: &Path, c: &Container, owner: container::Owner, be: &dyn backend::Backend) {
    let r = (|| -> anyhow::Result<()> {
        let _lock = Store::open(root)?.lock()?;
        drop(owner);
        let rec = container::load(root, &c.id).unwrap_or_else(|_| c.clone());
        runtime::discard(root, &rec, be)
    })();
    if let Err(e) = r {
        tracing::warn!(
            "undoing container {}: {e:#} (the next hx ps retries)",
            c.name
        );
    }
}

/// What the record says about the network before `network::setup` runs: enough for the undo
/// to find the address, rules and interface setup may have made before the creator died.
fn provisional_network(
    mode: &hx_engine::network::Mode,
    id: &str,
) -> Option<hx_engine::network::NetworkState> {
    match mode {
        hx_engine::network::Mode::Bridge(b) if hx_engine::network::is_root() => {
            Some(hx_engine::network::NetworkState {
                mode: "bridge".into(),
                bridge: Some(b.clone()),
                ip: None,
                prefix_len: 0,
                gateway: None,
                mac: None,
                ifname: Some(hx_engine::network::ifname_for(id)),
                ports: vec![],
            })
        }
        _ => None,
    }
}

/// Follows stdout.log/stderr.log across the log relay's rotations (logfile.rs).
pub use hx_engine::logfile::Tail;

async fn attach(
    root: &Path,
    c: Container,
    owner: container::Owner,
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
    let _raw = if io.tty && io.stdin {
        super::interactive::RawTerminal::enable()
    } else {
        None
    };
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
    // Others may have marked it exited meanwhile, but only its owner removes it (--rm): the
    // outcome files are still there. Ownership ends inside the store lock, with the settle.
    let _lock = Store::open(root)?.lock()?;
    drop(owner);
    let current = container::load(root, &c.id).unwrap_or(c);
    let outcome = runtime::outcome(&dir);
    runtime::settle(root, current, be.as_ref())?;
    if let Some(e) = outcome.error() {
        errln!("hx: {e}");
    }
    Ok(outcome.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_exactly_or_not_at_all() {
        for (s, want) in [
            ("0", 0),
            ("512", 512),
            ("1k", 1024),
            ("1kb", 1024),
            ("128m", 128 << 20),
            ("1.5g", 3 << 29),
            ("2T", 2 << 40),
            ("0.5k", 512),
            ("15.99999999t", 17592186033421),
            ("16777215t", 16777215 << 40),
        ] {
            assert_eq!(parse_size("--x", s).unwrap(), want, "{s}");
        }
        for s in [
            "", "m", "1e9", "inf", "nan", "-1", "+1", "1.", ".5", "1..2m", "1mm", "1 m", "0x10",
            "1p", "½",
        ] {
            assert!(
                matches!(parse_size("--x", s), Err(SizeError::Syntax { .. })),
                "{s}"
            );
        }
        for s in [
            "16777216t",
            "17179869184t",
            "99999999999999999999",
            "99999999999999999999t",
        ] {
            assert!(
                matches!(parse_size("--x", s), Err(SizeError::Range { .. })),
                "{s}"
            );
        }
        let e = parse_size_in("--disk-size", "2t", 16 << 20, MAX_DISK_SIZE).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--disk-size \"2t\": out of range (16m to 1t)"
        );
    }

    /// Whatever the input, parsing returns (no panic, no overflow) and what it accepts is in
    /// range and round-trips for whole units.
    #[test]
    fn size_parsing_never_panics() {
        let alphabet: Vec<char> = "0123456789.kmgtbKMGTB -+e\u{0}9".chars().collect();
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..20000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 24) as usize;
            let s: String = (0..len)
                .map(|i| alphabet[((x >> (i % 58)) as usize + i * 7) % alphabet.len()])
                .collect();
            if let Ok(b) = parse_size_in("--x", &s, 16 << 20, MAX_VOLUME_SIZE) {
                assert!((16 << 20..=MAX_VOLUME_SIZE).contains(&b), "{s:?}");
            }
        }
        for n in (0..64u64).map(|i| (1u64 << i) - 1) {
            for (unit, shift) in [("", 0), ("k", 10), ("m", 20), ("g", 30), ("t", 40)] {
                let r = parse_size("--x", &format!("{n}{unit}"));
                match (n as u128) << shift {
                    v if v <= u64::MAX as u128 => assert_eq!(r.unwrap() as u128, v),
                    _ => assert!(r.is_err()),
                }
            }
        }
    }
}
