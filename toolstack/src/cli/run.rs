//! `hx run`: create a container from an image and run it in a micro-VM.
use super::attach::InputEvent;
use super::guest_env;
use anyhow::{bail, Context};
use hx_engine::backend;
use hx_engine::container::{self, Container};
use hx_engine::lifecycle::{self, CreateRequest};
use hx_engine::runtime;
use hx_engine::seccomp::SeccompPolicy;
use hx_images::Store;
use pv_init::status::Control;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(clap::Args, Debug)]
#[command(trailing_var_arg = true)]
pub struct Args {
    /// Run in the background and print the container id
    #[arg(short, long)]
    pub detach: bool,
    /// Override the key sequence for detaching from a -it container (default ctrl-p,ctrl-q)
    #[arg(long, value_name = "KEYS")]
    pub detach_keys: Option<String>,
    #[command(flatten)]
    pub create: CreateArgs,
}

/// The flags `hx run` and `hx create` share: what the container is.
#[derive(clap::Args, Debug)]
#[command(trailing_var_arg = true)]
pub struct CreateArgs {
    /// Keep stdin open: hx's stdin becomes the workload's (EOF included); with -d it stays
    /// open for `hx attach`
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the workload a terminal (a pty in the guest); with -i and a terminal here, hx's
    /// terminal is switched to raw mode and its size follows
    #[arg(short, long)]
    pub tty: bool,
    /// Remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Restart policy when the container exits: no, on-failure[:N], always, unless-stopped
    #[arg(long, value_name = "POLICY", default_value = "no")]
    pub restart: String,
    /// Container name
    #[arg(long)]
    pub name: Option<String>,
    /// Signal `hx stop` sends first (name or number; default: the image's STOPSIGNAL, else TERM)
    #[arg(long, value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Seconds `hx stop` waits before killing the workload (default 10; `hx stop -t` wins)
    #[arg(long, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(0..=u32::MAX as u64))]
    pub stop_timeout: Option<u64>,
    /// Mount the container's root read-only (volumes and --tmpfs stay writable)
    #[arg(long)]
    pub read_only: bool,
    /// Give the workload every capability (the default is docker's set of 14)
    #[arg(long)]
    pub privileged: bool,
    /// Add a capability to docker's default set (NET_ADMIN, CAP_SYS_TIME, ..., or ALL)
    #[arg(long, value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a capability from the default set (NET_RAW, ..., or ALL)
    #[arg(long, value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Security options: no-new-privileges[:true|false]; seccomp=PROFILE.json (docker's
    /// format) or seccomp=unconfined (the default is docker's profile); apparmor=unconfined and
    /// label=disable are accepted (the guest has no such profiles to lift)
    #[arg(long, value_name = "OPT")]
    pub security_opt: Vec<String>,
    /// Run an init inside the container that forwards signals and reaps processes (pv-init,
    /// as docker-init); without it the command is PID 1 of its own PID namespace
    #[arg(long)]
    pub init: bool,
    /// Pull the image first: missing (default), always, never
    #[arg(long, value_name = "POLICY", default_value = "missing",
          value_parser = ["missing", "always", "never"])]
    pub pull: String,
    /// Set an environment variable (KEY=VALUE, or KEY to take it from hx's environment)
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read environment variables from a file (KEY=VALUE lines)
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Set metadata on the container: KEY=VALUE (or KEY, an empty value)
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Read labels from a file (KEY=VALUE lines)
    #[arg(long, value_name = "FILE")]
    pub label_file: Vec<PathBuf>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// User (name|uid)[:(group|gid)]
    #[arg(short, long)]
    pub user: Option<String>,
    /// Memory for the VM (e.g. 128m, 1g; default 128m); in a pod, the container's limit inside
    /// the pod's VM
    #[arg(short, long)]
    pub memory: Option<String>,
    /// CPUs: the VM's vCPUs, rounded up; a fraction (0.5, 1.5) also caps its CPU time there
    #[arg(long, default_value_t = 1.0, value_name = "N")]
    pub cpus: f64,
    /// Relative CPU weight (docker's shares: 1024 is the default)
    #[arg(short = 'c', long, value_name = "N")]
    pub cpu_shares: Option<u64>,
    /// At most this many processes and threads at once in the container (-1 or 0: no limit
    /// but the VM's)
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
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
    /// Network: bridge (hx0, the default), bridge=NAME (an existing bridge), ns:PATH (eth0 of
    /// an existing network namespace), none, or a user network's name (hx network create)
    #[arg(long, value_name = "MODE", env = "HX_NETWORK")]
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::networks))]
    pub network: Option<String>,
    /// Run in this pod's VM (hx pod create): its network, hostname and ports (docs/pods.md)
    #[arg(long, value_name = "POD")]
    pub pod: Option<String>,
    /// PID namespace: container:NAME joins another member's of the same pod (--pod), seeing
    /// its processes; the default is one of its own (or the pod's, hx pod create --share +pid)
    #[arg(long, value_name = "container:NAME")]
    pub pid: Option<String>,
    /// The container's IPv4 address on its user network (--network NAME)
    #[arg(long, value_name = "IP")]
    pub ip: Option<std::net::Ipv4Addr>,
    /// The container's IPv6 address on its user network (one made with --ipv6)
    #[arg(long, value_name = "IP")]
    pub ip6: Option<std::net::Ipv6Addr>,
    /// Another name the container has on its user network (--network NAME)
    #[arg(long = "network-alias", value_name = "NAME")]
    pub network_alias: Vec<String>,
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
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::images))]
    pub image_and_command: Vec<String>,
    /// The first of image_and_command (set by `split_image`)
    #[arg(skip)]
    pub image: String,
    /// The rest of image_and_command (set by `split_image`)
    #[arg(skip)]
    pub command: Vec<String>,
}

impl CreateArgs {
    /// Fills `image` and `command` from the positional words.
    pub fn split_image(mut self) -> Self {
        let mut words = std::mem::take(&mut self.image_and_command).into_iter();
        self.image = words.next().unwrap_or_default();
        self.command = words.collect();
        self
    }
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let detach = args.detach;
    let detach_keys = super::attach::detach_keys(args.detach_keys.as_deref())?;
    let args = args.create.split_image();
    let root = g.root.clone();
    // -d -i: the container's log relay holds its stdin open until `hx attach` gives it input.
    if !detach && args.interactive && args.tty && !std::io::stdin().is_terminal() {
        // docker's answer and exit code; without it the workload would wait for keys that
        // never come from a pipe or /dev/null, on a terminal nobody sees.
        errln!("hx: the input device is not a TTY");
        return Ok(1);
    }
    let io = Interactive {
        stdin: args.interactive,
        tty: args.tty,
        detach_keys,
    };
    let started = tokio::task::spawn_blocking(move || {
        let pull = args.pull.clone();
        let find = move |s: &Store, i: &str| find_by_policy(s, i, &pull);
        let mut req = request(args)?;
        // docker's StdinOnce: -i with hx attached; `run -d -i` leaves the input to `hx attach`s.
        req.stdin_once &= !detach;
        lifecycle::create_and_start(&root, req, &find)
    })
    .await??;
    if detach {
        lifecycle::confirm(&g.root, &started.container, started.owner).await?;
        hx_engine::restart::ensure_supervisor(&g.root, &started.container)?;
        outln!("{}", started.container.id);
        return Ok(0);
    }
    // It waits for this hx to read the outcome before it restarts anything.
    hx_engine::restart::ensure_supervisor(&g.root, &started.container)?;
    attach(
        &g.root,
        started.container,
        started.owner,
        io,
        LogStart::Beginning,
    )
    .await
}

#[derive(Clone)]
pub struct Interactive {
    pub stdin: bool,
    pub tty: bool,
    /// Watched for on hx's input with a terminal (`-it`): they leave the container running.
    pub detach_keys: Vec<u8>,
}

/// What `--security-opt`s ask for.
struct SecurityOpts {
    no_new_privileges: bool,
    seccomp: SeccompPolicy,
}

/// `--security-opt`s, docker's spellings. A seccomp profile file is read and checked here, so
/// that a bad one is refused before anything is made; `--privileged` lifts the filter (docker's
/// way, a named profile too). An option asking for what hx cannot apply is refused, naming it.
fn security_opts(opts: &[String], privileged: bool) -> anyhow::Result<SecurityOpts> {
    let mut nnp = false;
    let mut seccomp = None;
    for o in opts {
        let (key, value) = o
            .split_once(['=', ':'])
            .map_or((o.as_str(), None), |(k, v)| (k, Some(v)));
        match (key, value) {
            ("no-new-privileges", None | Some("true")) => nnp = true,
            ("no-new-privileges", Some("false")) => nnp = false,
            ("seccomp", Some("unconfined")) => seccomp = Some(SeccompPolicy::Unconfined),
            ("seccomp", Some("builtin")) => seccomp = Some(SeccompPolicy::Default),
            ("seccomp", Some(path)) if !path.is_empty() => {
                let culprit = format!("--security-opt seccomp={}", hx_engine::sanitize::line(path));
                let file =
                    std::fs::File::open(path).map_err(|e| anyhow::anyhow!("{culprit}: {e}"))?;
                let mut text = String::new();
                file.take(hx_engine::seccomp::MAX_PROFILE as u64 + 1)
                    .read_to_string(&mut text)
                    .map_err(|e| anyhow::anyhow!("{culprit}: {e}"))?;
                hx_engine::seccomp::check_docker(&text)
                    .map_err(|e| anyhow::anyhow!("{culprit}: {e}"))?;
                seccomp = Some(SeccompPolicy::Docker { profile: text });
            }
            ("apparmor", Some("unconfined")) | ("label", Some("disable")) => {}
            _ => bail!(
                "--security-opt {o:?}: hx supports no-new-privileges[:true|false], \
                 seccomp=PROFILE|unconfined (and accepts apparmor=unconfined, label=disable)"
            ),
        }
    }
    // docker's order: --privileged lifts the filter even when a profile is named.
    let seccomp = match seccomp {
        _ if privileged => SeccompPolicy::Unconfined,
        Some(p) => p,
        None => SeccompPolicy::Default,
    };
    Ok(SecurityOpts {
        no_new_privileges: nnp,
        seccomp,
    })
}

/// The least memory a VM gets: the guest kernel, pv-init's initramfs unpacked and a shell
/// need 35 MiB under QEMU (measured 2026-12-03: 34m panics unpacking the initramfs); 5 MiB
/// more for pv-init to grow.
pub const MIN_MEMORY: u64 = 40 << 20;
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

/// `--pull`: `missing` pulls what the store lacks, `always` pulls first (an up-to-date image is
/// not downloaded again), `never` takes only what the store has.
pub fn find_by_policy(
    store: &Store,
    image: &str,
    policy: &str,
) -> anyhow::Result<hx_images::ImageRecord> {
    if policy == "always" {
        let reference = hx_images::Reference::parse(image)?;
        let rt = tokio::runtime::Handle::current();
        let opts = hx_images::pull::PullOptions {
            progress: true,
            ..Default::default()
        };
        return rt
            .block_on(hx_images::pull::pull(store, &reference, &opts))
            .map_err(Into::into);
    }
    match store.find_image(image) {
        Err(e @ hx_images::Error::ImageNotFound(_)) if policy == "never" => Err(e.into()),
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

/// `hx run`'s flags as the engine's request. The checks that need no lookup come first, so
/// that nothing is looked up, pulled or made for a run that cannot happen.
pub fn request(args: CreateArgs) -> anyhow::Result<CreateRequest> {
    let restart = hx_engine::restart::Policy::parse(&args.restart)?;
    let pid_target = args.pid.as_deref().map(pid_mode).transpose()?;
    if args.init && args.pod.is_some() {
        anyhow::bail!(
            "--init with --pod: a pod member is the init of its own PID namespace in the pod's \
             VM; --init is for a container of its own"
        );
    }
    let memory_mb = parse_size_in(
        "--memory",
        args.memory.as_deref().unwrap_or("128m"),
        // A pod member's memory is a limit inside its pod's VM, not a VM's size.
        if args.pod.is_some() {
            hx_engine::limits::MIN_MEMBER_MEMORY_MB << 20
        } else {
            MIN_MEMORY
        },
        MAX_MEMORY,
    )?
    .div_ceil(1 << 20);
    if let Some(s) = &args.stop_signal {
        super::kill::parse_signal(s).with_context(|| "--stop-signal")?;
    }
    let (vcpus, cpu_cap_pct) = vcpus_and_cap(args.cpus)?;
    if let Some(s) = args.cpu_shares {
        let range = hx_engine::limits::MIN_SHARES..=hx_engine::limits::MAX_SHARES;
        if !range.contains(&s) {
            bail!(
                "--cpu-shares {s}: expected {} to {}",
                range.start(),
                range.end()
            );
        }
    }
    let security = security_opts(&args.security_opt, args.privileged)?;
    let pids_limit = match args.pids_limit {
        None | Some(-1 | 0) => None,
        Some(n) if n > 0 && n as u64 <= pv_init::mux::MAX_PIDS => Some(n as u64),
        Some(n) => bail!(
            "--pids-limit {n}: must be -1 (no limit) or 1..={}",
            pv_init::mux::MAX_PIDS
        ),
    };
    let guest_env =
        guest_env::GuestEnv::parse(args.shm_size.as_deref(), &args.ulimit, &args.sysctl)?;
    // (-v's own errors are reported by the engine.)
    let volume_targets: Vec<String> = args
        .volume
        .iter()
        .filter_map(|v| hx_engine::volume::parse_arg(v).ok())
        .map(|v| v.target)
        .collect();
    let tmpfs = guest_env::tmpfs_mounts(&args.tmpfs, &volume_targets)?;
    let labels = hx_engine::kvfile::labels(&args.label_file, &args.label)?;
    let upper_size = args
        .disk_size
        .as_deref()
        .map(|s| parse_size_in("--disk-size", s, 16 << 20, MAX_DISK_SIZE))
        .transpose()?
        .map(|b| b.div_ceil(1 << 20) << 20);
    let tty = args.tty.then(|| {
        super::interactive::terminal_size().unwrap_or(pv_init::spec::TtySize { rows: 24, cols: 80 })
    });
    Ok(CreateRequest {
        image: args.image,
        command: args.command,
        entrypoint: args.entrypoint,
        env_files: args.env_file,
        env: args.env,
        workdir: args.workdir,
        user: args.user,
        name: args.name,
        hostname: args.hostname,
        stop_signal: args.stop_signal,
        stop_timeout: args.stop_timeout,
        memory_mb,
        memory_limited: args.memory.is_some(),
        cpus: vcpus,
        upper_size,
        shm_size: guest_env.shm_size,
        rlimits: guest_env.rlimits,
        sysctls: guest_env.sysctls,
        tmpfs,
        network: args.network,
        ip: args.ip,
        ip6: args.ip6,
        network_aliases: args.network_alias,
        publish: args.publish,
        publish_all: args.publish_all,
        volumes: args.volume,
        dns: args.dns,
        add_hosts: args.add_host,
        backend: args.backend,
        kernel: args.kernel,
        xen_type: args.xen_type,
        stdin: args.interactive,
        // `hx create -i` and an attached `hx run -i` (run clears it for -d).
        stdin_once: args.interactive,
        tty,
        auto_remove: args.rm,
        restart,
        labels,
        read_only: args.read_only,
        no_new_privileges: security.no_new_privileges,
        seccomp: security.seccomp,
        privileged: args.privileged,
        cap_add: args.cap_add,
        cap_drop: args.cap_drop,
        capabilities: None,
        rootfs: None,
        pod: args.pod,
        pod_infra: false,
        init: args.init,
        shared_pids: false,
        pid_target,
        cpu_cap_pct,
        cpu_shares: args.cpu_shares,
        pids_limit,
        host_cgroup: None,
    })
}

/// docker's `--cpus` as a VM: whole vCPUs (1.5 is 2) and, for a fraction, a cap on CPU time
/// at the fraction (150% of one CPU); a whole number is the vCPUs alone.
pub(crate) fn vcpus_and_cap(cpus: f64) -> anyhow::Result<(u32, Option<u32>)> {
    if !cpus.is_finite() || !(0.01..=32.0).contains(&cpus) {
        bail!("--cpus {cpus}: expected 0.01 to 32 CPUs");
    }
    let cap = hx_engine::limits::Limits::cap_for_cpus(cpus)?;
    let vcpus = cap.div_ceil(100);
    Ok((vcpus, (cap % 100 != 0).then_some(cap)))
}

/// `--pid`'s one mode with a meaning here: docker's `container:NAME`. `host` would be the
/// VM's own (pv-init's): refused, as every other mode is.
fn pid_mode(arg: &str) -> anyhow::Result<String> {
    match arg.strip_prefix("container:") {
        Some(name) if !name.is_empty() => Ok(name.to_string()),
        _ => anyhow::bail!(
            "--pid {}: only container:NAME, another member of the same pod (hx run --pod), is \
             supported; a container's PID namespace is inside its own VM",
            hx_engine::sanitize::text(arg).to_cow()
        ),
    }
}

use hx_engine::output_log::{Follower, Position};

/// Where an attached run starts reading the container's output.
#[derive(Clone, Copy)]
pub enum LogStart {
    /// A new container: all of it.
    Beginning,
    /// A container started again (`hx start -a`): what follows this place in its output.
    After(Position),
}

pub async fn attach(
    root: &Path,
    c: Container,
    owner: container::Owner,
    io: Interactive,
    from: LogStart,
) -> anyhow::Result<i32> {
    let dir = container::dir(root, &c.id);
    let be = backend::for_container(&c, root)?;
    let mut input = if io.stdin {
        super::attach::forward_input(&c, &dir, be.as_ref(), &io.detach_keys, io.tty)?
    } else {
        None
    };
    let _raw = if io.tty && io.stdin {
        super::interactive::RawTerminal::enable()
    } else {
        None
    };
    let mut winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())?;
    let mut output = match from {
        LogStart::Beginning => Follower::open(&dir, true)?,
        LogStart::After(pos) => Follower::open_at(&dir, pos)?,
    };
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut interrupts = 0;
    // The recorded VM process only (pid and start time): a reused pid is not waited for.
    let exited = c.vm_process().and_then(|p| p.exit_notifier());
    let vm_exit = async {
        match &exited {
            Some(fd) => drop(fd.readable().await),
            None => std::future::pending().await,
        }
    };
    tokio::pin!(vm_exit);
    let mut vm_gone = false;
    loop {
        let any = output.pump(&mut std::io::stdout(), &mut std::io::stderr())?;
        if !be.is_running(&c) {
            break;
        }
        match input.as_ref().map(|rx| rx.try_recv()) {
            Some(Ok(InputEvent::Detach)) => {
                drop(_raw);
                // docker's words, on stderr; the container runs on, the supervisor and the
                // next reconcile (--rm) take over from its owner.
                errln!("read escape sequence");
                drop(owner);
                return Ok(0);
            }
            Some(Ok(InputEvent::Ended { tell_guest, .. })) => {
                if tell_guest {
                    let _ = be.send_control(&c, &dir, &Control::StdinEof.to_line());
                }
                input = None;
            }
            Some(Err(std::sync::mpsc::TryRecvError::Disconnected)) => input = None,
            _ => {}
        }
        let delay = if any { 5 } else { 25 };
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
    output.pump(&mut std::io::stdout(), &mut std::io::stderr())?;
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
