//! The command line: one module per subcommand. Each module has `Args` (clap) and
//! `async fn run(g: &Globals, args: Args) -> anyhow::Result<i32>` returning the exit code.
use clap::{Parser, Subcommand};
use std::path::PathBuf;

pub mod attach;
pub mod autostart;
pub mod block;
pub mod candidates;
pub mod checkpoint;
pub mod commit;
pub mod completion;
pub mod config;
pub mod console;
pub mod cp;
pub mod cpupool;
pub mod cpupool_list;
pub mod create;
pub mod destroy;
pub mod dmesg;
pub mod domain;
pub mod domid;
pub mod domname;
pub mod exec;
pub mod export;
pub mod filter;
pub mod format;
pub mod guest_env;
pub mod hidden;
pub mod images;
pub mod import;
pub mod info;
pub mod inspect;
pub mod inspect_image;
pub mod interactive;
pub mod kill;
pub mod list;
pub mod load;
pub mod login;
pub mod logs;
pub mod logtime;
pub mod mem_max;
pub mod mem_set;
pub mod network;
pub mod pause;
pub mod pod;
pub mod port;
pub mod prune;
pub mod ps;
pub mod pull;
pub mod push;
pub mod reboot;
pub mod rename;
pub mod restart;
pub mod rm;
pub mod rmi;
pub mod run;
pub mod save;
pub mod saverestore;
pub mod sched_credit2;
pub mod shutdown;
pub mod start;
pub mod stats;
pub mod stop;
pub mod sysrq;
pub mod system;
pub mod table;
pub mod tag;
pub mod top;
pub mod unpause;
pub mod update;
pub mod uptime;
pub mod user_network;
pub mod vcpu_list;
pub mod vcpu_pin;
pub mod vcpu_set;
pub mod vncviewer;
pub mod volume;
pub mod volume_snapshot;
pub mod wait;
pub mod xentop;
pub mod xl_create;
pub mod xl_misc;

#[derive(Parser, Debug)]
#[command(
    name = "hx",
    version,
    about = "Run OCI images as Xen (or QEMU) micro-VMs",
    long_about = "hx runs OCI/Docker images as lightweight virtual machines: every container gets its own \
guest kernel and a tiny PID 1, on Xen (PVH or PV domains) or on QEMU where there is no Xen.",
    infer_subcommands = true,
    propagate_version = true
)]
pub struct Cli {
    /// Store directory (default: /var/lib/hx as root, $XDG_DATA_HOME/hx otherwise)
    #[arg(long, global = true, env = "HX_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// More logging (-v info, -vv debug, -vvv trace), before the command
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// More logging, anywhere on the line (after the command `-v` means --volume, like docker)
    #[arg(long = "verbose", global = true, action = clap::ArgAction::Count)]
    pub verbose_long: u8,
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of `run::Args` does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a command in a new container (a micro-VM)
    Run(run::Args),
    /// Create a container without starting it; `hx create FILE.cfg`: a domain from an xl.cfg file
    Create(create::Args),
    /// Start created or stopped containers (their files, name, address and ports kept)
    Start(start::Args),
    /// Stop and start containers again
    Restart(restart::Args),
    /// Start the containers whose restart policy asks for it (at boot; --install-unit)
    Autostart(autostart::Args),
    /// Run a command in a running container
    Exec(exec::Args),
    /// List containers
    Ps(ps::Args),
    /// Show the processes running in a container; -b: every domain, xentop's batch mode
    Top(top::Args),
    /// Rename a container
    Rename(rename::Args),
    /// Follow a running container's output until it stops; exit with its code
    Attach(attach::Args),
    /// Copy files between a container and the host (tar streams; - for stdin/stdout)
    Cp(cp::Args),
    /// Show containers' CPU, memory, network and block I/O use, live or once
    Stats(stats::Args),
    /// Show a container's output
    Logs(logs::Args),
    /// Stop containers: SIGTERM, then kill after a grace period
    Stop(stop::Args),
    /// Send a signal to containers' main process
    Kill(kill::Args),
    /// Remove containers
    Rm(rm::Args),
    /// Show a container's details as JSON
    Inspect(inspect::Args),
    /// List a container's published ports
    Port(port::Args),
    /// Manage volumes (create, ls, rm, inspect, prune)
    #[command(subcommand)]
    Volume(volume::Command),
    /// Manage pods: containers sharing one VM (create, start, stop, rm, ps, inspect)
    #[command(subcommand)]
    Pod(pod::Command),
    /// Save running containers' VMs and resume them later (create, ls, rm)
    #[command(subcommand)]
    Checkpoint(checkpoint::Command),
    /// Manage user networks (create, ls, rm, inspect, connect, disconnect)
    #[command(subcommand)]
    Network(user_network::Command),
    /// hx's own state: warm-start templates (template ls, rm, prune)
    #[command(subcommand)]
    System(system::Command),
    /// Wait for containers to stop and print their exit codes
    Wait(wait::Args),
    /// Pull an image from a registry
    Pull(pull::Args),
    /// List images in the local store
    Images(images::Args),
    /// Manage images (inspect, ls, rm, prune)
    #[command(subcommand)]
    Image(ImageCommand),
    /// Remove one or more images
    Rmi(rmi::Args),
    /// Load images from an OCI layout directory, an oci-archive or a docker-save tarball
    Load(load::Args),
    /// Save images to a docker-save tarball (-o FILE, or stdout)
    Save(save::Args),
    /// Give an image another name (docker tag)
    Tag(tag::Args),
    /// Make an image of a running container's changes (docker commit)
    Commit(commit::Args),
    /// A running container's filesystem as a tar archive (docker export)
    Export(export::Args),
    /// Push an image to its registry
    Push(push::Args),
    /// Check credentials with a registry and keep them in docker's config.json
    Login(login::LoginArgs),
    /// Forget the credentials of a registry
    Logout(login::LogoutArgs),
    /// Create an image from a tarball or directory of files (like docker import)
    Import(import::Args),
    /// Print shell completions
    Completion(completion::Args),
    /// List Xen domains, all of them (xl list)
    List(list::Args),
    /// Show the Xen host: version, CPUs, memory (xl info)
    Info(info::Args),
    /// Show the hypervisor's message ring (xl dmesg)
    Dmesg(dmesg::Args),
    /// Destroy domains at once (xl destroy)
    // `de` stayed destroy's when `debug-keys` came (docs/cli.md, "Command prefixes").
    #[command(alias = "de")]
    Destroy(destroy::Args),
    /// Ask domains to shut down (xl shutdown)
    Shutdown(shutdown::Args),
    /// Ask domains to reboot (xl reboot)
    Reboot(reboot::Args),
    /// Pause containers (docker pause) or domains (xl pause)
    Pause(pause::Args),
    /// Unpause containers (docker unpause) or domains (xl unpause)
    Unpause(unpause::Args),
    /// Change containers' memory, CPU limits and restart policy (docker update)
    Update(update::Args),
    /// Attach to a domain's console (xl console)
    // `con` stayed console's when `config` came (docs/cli.md, "Command prefixes").
    #[command(alias = "con")]
    Console(console::Args),
    /// Attach a VNC viewer to a domain's VNC server (xl vncviewer)
    Vncviewer(vncviewer::Args),
    /// Send debug keys to the hypervisor (xl debug-keys)
    DebugKeys(xl_misc::DebugKeysArgs),
    /// Set hypervisor parameters at run time (xl set-parameters)
    SetParameters(xl_misc::SetParametersArgs),
    /// Write a domain's memory to an ELF core file (xl dump-core)
    DumpCore(xl_misc::DumpCoreArgs),
    /// Send a trigger (nmi, reset, power, ...) to a domain (xl trigger)
    Trigger(xl_misc::TriggerArgs),
    /// Set a domain's memory target (xl mem-set)
    MemSet(mem_set::Args),
    /// Set how many vCPUs a domain has online (xl vcpu-set)
    VcpuSet(vcpu_set::Args),
    /// Print the id of a domain named NAME (xl domid)
    Domid(domid::Args),
    /// Print the name of domain ID (xl domname)
    Domname(domname::Args),
    /// Set a domain's static maximum memory (xl mem-max)
    MemMax(mem_max::Args),
    /// Show how long domains have run (xl uptime)
    // `up` stayed uptime's when `update` came (docs/cli.md, "Command prefixes").
    #[command(alias = "up")]
    Uptime(uptime::Args),
    /// List domains' vCPUs: CPU, state, time, affinity (xl vcpu-list)
    VcpuList(vcpu_list::Args),
    /// Set a vCPU's hard and soft CPU affinity (xl vcpu-pin)
    VcpuPin(vcpu_pin::Args),
    /// Show or set credit2 weight and cap (xl sched-credit2)
    #[command(name = "sched-credit2")]
    SchedCredit2(sched_credit2::Args),
    /// List CPU pools (xl cpupool-list)
    CpupoolList(cpupool_list::Args),
    /// Create a CPU pool from a config file or KEY=VALUE settings (xl cpupool-create)
    CpupoolCreate(cpupool::CreateArgs),
    /// Destroy a CPU pool (xl cpupool-destroy)
    CpupoolDestroy(cpupool::PoolArgs),
    /// Rename a CPU pool (xl cpupool-rename)
    CpupoolRename(cpupool::RenameArgs),
    /// Add CPUs or a NUMA node's CPUs to a pool (xl cpupool-cpu-add)
    CpupoolCpuAdd(cpupool::CpusArgs),
    /// Remove CPUs or a NUMA node's CPUs from a pool (xl cpupool-cpu-remove)
    CpupoolCpuRemove(cpupool::CpusArgs),
    /// Move a domain or hx container to another CPU pool (xl cpupool-migrate)
    CpupoolMigrate(cpupool::MigrateArgs),
    /// Send a magic SysRq key to a domain (xl sysrq)
    Sysrq(sysrq::Args),
    /// Add a disk to a running domain or container (xl block-attach)
    BlockAttach(block::AttachArgs),
    /// Remove a disk from a running domain (xl block-detach)
    BlockDetach(block::DetachArgs),
    /// List domains' disks (xl block-list)
    BlockList(block::ListArgs),
    /// Add a network interface to a running domain or container (xl network-attach)
    NetworkAttach(network::AttachArgs),
    /// Remove a network interface from a running domain (xl network-detach)
    NetworkDetach(network::DetachArgs),
    /// List domains' network interfaces (xl network-list)
    NetworkList(network::ListArgs),
    /// Show a domain's configuration as libxl's JSON (the config of xl list -l)
    Config(config::Args),
    /// Save and restore Xen domains (xl save, xl restore)
    #[command(subcommand)]
    Domain(saverestore::Command),
    /// Internal: undoes a save or restore that did not finish
    #[command(name = "__xl-guard", hide = true)]
    XlGuard(saverestore::GuardArgs),
    /// Internal: carries out on_poweroff/on_reboot/on_crash for a domain from `hx create FILE.cfg`
    #[command(name = "__xl-monitor", hide = true)]
    XlMonitor(xl_create::MonitorArgs),
    /// Internal: owns one container's Xen domain (started by hx run)
    #[command(name = "__xen-monitor", hide = true)]
    XenMonitor(hidden::XenMonitorArgs),
    /// Internal: boots a Xen warm pool's domains (started by hx run)
    #[command(name = "__xen-warm-fill", hide = true)]
    XenWarmFill(hidden::XenWarmFillArgs),
    /// Internal: writes one QEMU container's guest output to capped log files
    #[command(name = "__log-relay", hide = true)]
    LogRelay(hidden::LogRelayArgs),
    /// Internal: keeps one pod member's workload (hot-plug, session, logs)
    #[command(name = "__pod-member", hide = true)]
    PodMember(hidden::PodMemberArgs),
    /// Internal: restarts one container by its restart policy
    #[command(name = "__supervise", hide = true)]
    Supervise(hidden::SuperviseArgs),
    /// Internal: answers names on one user network (network/resolver.rs)
    #[command(name = "__net-dns", hide = true)]
    NetDns(hidden::NetDnsArgs),
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Show an image's details as JSON
    Inspect(inspect_image::Args),
    /// List images
    Ls(images::Args),
    /// Remove images
    Rm(rmi::Args),
    /// Remove images no name points to, and unused blobs and rootfs builds
    Prune(prune::Args),
}

/// Options every command sees.
pub struct Globals {
    pub root: PathBuf,
    /// For commands whose output (not only logs) grows with -v.
    #[allow(dead_code)]
    pub verbose: u8,
}

impl Globals {
    pub fn from_cli(cli: &Cli) -> anyhow::Result<Self> {
        let root = match &cli.root {
            Some(r) => r.clone(),
            None => default_root()?,
        };
        Ok(Globals {
            root,
            verbose: cli.verbose + cli.verbose_long,
        })
    }
}

pub fn default_root() -> anyhow::Result<PathBuf> {
    if nix::unistd::geteuid().is_root() {
        return Ok(PathBuf::from("/var/lib/hx"));
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("hx"));
    }
    let home = std::env::var_os("HOME")
        .ok_or_else(|| anyhow::anyhow!("neither HX_ROOT, XDG_DATA_HOME nor HOME is set"))?;
    Ok(PathBuf::from(home).join(".local/share/hx"))
}

pub fn init_tracing(verbose: u8) {
    let level = match verbose {
        // The TLS stack logs a refused certificate itself; hx's one-line error says it.
        0 => "warn,rustls=off,rustls_platform_verifier=off",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("HX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| hx_engine::output::Sanitizing(std::io::stderr()))
        .with_ansi(false)
        .with_target(false)
        .try_init();
}

pub async fn dispatch(g: &Globals, command: Command) -> anyhow::Result<i32> {
    domain::set_store_root(&g.root);
    match command {
        Command::Run(a) => run::run(g, a).await.map_err(|e| Fixed::wrap(125, e)),
        Command::Create(a) => create::run(g, a).await.map_err(|e| Fixed::wrap(125, e)),
        Command::Start(a) => start::run(g, a).await,
        Command::Restart(a) => restart::run(g, a).await,
        Command::Autostart(a) => autostart::run(g, a).await,
        Command::Exec(a) => exec::run(g, a).await.map_err(|e| Fixed::wrap(125, e)),
        Command::Ps(a) => ps::run(g, a).await,
        Command::Top(a) => top::run(g, a).await,
        Command::Rename(a) => rename::run(g, a).await,
        Command::Attach(a) => attach::run(g, a).await,
        Command::Cp(a) => cp::run(g, a).await,
        Command::Stats(a) => stats::run(g, a).await,
        Command::Logs(a) => logs::run(g, a).await,
        Command::Stop(a) => stop::run(g, a).await,
        Command::Kill(a) => kill::run(g, a).await,
        Command::Rm(a) => rm::run(g, a).await,
        Command::Inspect(a) => inspect::run(g, a).await,
        Command::Port(a) => port::run(g, a).await,
        Command::Volume(c) => volume::run(g, c).await,
        Command::Pod(c) => pod::run(g, c).await,
        Command::Checkpoint(c) => checkpoint::run(g, c).await,
        Command::Network(c) => user_network::run(g, c).await,
        Command::System(c) => system::run(g, c).await,
        Command::Wait(a) => wait::run(g, a).await,
        Command::Pull(a) => pull::run(g, a).await,
        Command::Images(a) => images::run(g, a).await,
        Command::Image(ImageCommand::Inspect(a)) => inspect_image::run(g, a).await,
        Command::Image(ImageCommand::Ls(a)) => images::run(g, a).await,
        Command::Image(ImageCommand::Rm(a)) => rmi::run(g, a).await,
        Command::Image(ImageCommand::Prune(a)) => prune::run(g, a).await,
        Command::Rmi(a) => rmi::run(g, a).await,
        Command::Load(a) => load::run(g, a).await,
        Command::Save(a) => save::run(g, a).await,
        Command::Tag(a) => tag::run(g, a).await,
        Command::Commit(a) => commit::run(g, a).await,
        Command::Export(a) => export::run(g, a).await,
        Command::Push(a) => push::run(g, a).await,
        Command::Login(a) => login::login(a).await,
        Command::Logout(a) => login::logout(a).await,
        Command::Import(a) => import::run(g, a).await,
        Command::Completion(a) => completion::run(a),
        Command::List(a) => list::run(g, a).await,
        Command::Info(a) => info::run(g, a).await,
        Command::Dmesg(a) => dmesg::run(g, a).await,
        Command::Destroy(a) => destroy::run(g, a).await,
        Command::Shutdown(a) => shutdown::run(g, a).await,
        Command::Reboot(a) => reboot::run(g, a).await,
        Command::Pause(a) => pause::run(g, a).await,
        Command::Unpause(a) => unpause::run(g, a).await,
        Command::Update(a) => update::run(g, a).await,
        Command::Console(a) => console::run(g, a).await,
        Command::Vncviewer(a) => vncviewer::run(g, a).await,
        Command::DebugKeys(a) => xl_misc::debug_keys(g, a).await,
        Command::SetParameters(a) => xl_misc::set_parameters(g, a).await,
        Command::DumpCore(a) => xl_misc::dump_core(g, a).await,
        Command::Trigger(a) => xl_misc::trigger(g, a).await,
        Command::MemSet(a) => mem_set::run(g, a).await,
        Command::VcpuSet(a) => vcpu_set::run(g, a).await,
        Command::Domid(a) => domid::run(g, a).await,
        Command::Domname(a) => domname::run(g, a).await,
        Command::MemMax(a) => mem_max::run(g, a).await,
        Command::Uptime(a) => uptime::run(g, a).await,
        Command::VcpuList(a) => vcpu_list::run(g, a).await,
        Command::VcpuPin(a) => vcpu_pin::run(g, a).await,
        Command::SchedCredit2(a) => sched_credit2::run(g, a).await,
        Command::CpupoolList(a) => cpupool_list::run(g, a).await,
        Command::CpupoolCreate(a) => cpupool::create(g, a).await,
        Command::CpupoolDestroy(a) => cpupool::destroy(g, a).await,
        Command::CpupoolRename(a) => cpupool::rename(g, a).await,
        Command::CpupoolCpuAdd(a) => cpupool::cpu_add(g, a).await,
        Command::CpupoolCpuRemove(a) => cpupool::cpu_remove(g, a).await,
        Command::CpupoolMigrate(a) => cpupool::migrate(g, a).await,
        Command::Sysrq(a) => sysrq::run(g, a).await,
        Command::BlockAttach(a) => block::attach(g, a).await,
        Command::BlockDetach(a) => block::detach(g, a).await,
        Command::BlockList(a) => block::list(g, a).await,
        Command::NetworkAttach(a) => network::attach(g, a).await,
        Command::NetworkDetach(a) => network::detach(g, a).await,
        Command::NetworkList(a) => network::list(g, a).await,
        Command::Config(a) => config::run(g, a).await,
        Command::Domain(c) => saverestore::run(g, c).await,
        Command::XlGuard(a) => saverestore::guard(a).await,
        Command::XlMonitor(a) => xl_create::monitor(a).await,
        Command::XenMonitor(a) => hidden::xen_monitor(g, a).await,
        Command::XenWarmFill(a) => hidden::xen_warm_fill(g, a).await,
        Command::LogRelay(a) => hidden::log_relay(g, a).await,
        Command::PodMember(a) => hidden::pod_member(g, a).await,
        Command::Supervise(a) => hidden::supervise(g, a).await,
        Command::NetDns(a) => hidden::net_dns(g, a).await,
    }
}

pub use hx_engine::one_line;

/// The subcommand an argument list names (after hx's own options), resolved as clap does: the
/// exact name, else the one command the word is a prefix of.
pub fn command_of(cli: &clap::Command, argv: &[String]) -> Option<String> {
    let mut words = argv.iter();
    let word = loop {
        let w = words.next()?;
        match w.as_str() {
            "--root" => {
                words.next();
            }
            w if w.starts_with("--root=") || w == "--verbose" => {}
            w if w.starts_with("-v") && w[1..].bytes().all(|b| b == b'v') => {}
            w => break w,
        }
    };
    let names: Vec<&str> = cli.get_subcommands().map(|c| c.get_name()).collect();
    if names.contains(&word) {
        return Some(word.to_string());
    }
    let mut prefixed = names.iter().filter(|n| n.starts_with(word));
    match (prefixed.next(), prefixed.next()) {
        (Some(n), None) if !word.is_empty() => Some(n.to_string()),
        _ => None,
    }
}

/// docker's way with a command on several names: each one's name is printed once it is done,
/// each failure is one line, and the exit code is the last failure's (0 when none failed).
pub async fn each_name<'a, F, Fut>(names: &'a [String], mut act: F) -> i32
where
    F: FnMut(&'a str) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut code = 0;
    for name in names {
        match act(name).await {
            Ok(()) => outln!("{name}"),
            Err(e) => {
                errln!("hx: {}", one_line(&e));
                code = exit_code_for(&e);
            }
        }
    }
    code
}

/// Exit code for an error: the library error's own code where there is one, else 125 (docker's
/// "the tool itself failed").
pub fn exit_code_for(e: &anyhow::Error) -> i32 {
    if let Some(f) = e.downcast_ref::<Fixed>() {
        return f.code;
    }
    for cause in e.chain() {
        if let Some(he) = cause.downcast_ref::<hx_engine::HxError>() {
            return he.exit_code();
        }
        if let Some(ve) = cause.downcast_ref::<hx_engine::volume::VolumeError>() {
            return ve.exit_code();
        }
        if let Some(ie) = cause.downcast_ref::<hx_images::Error>() {
            return ie.exit_code();
        }
        if let Some(xe) = cause.downcast_ref::<xen_bindings::XenError>() {
            return match xe {
                xen_bindings::XenError::NotDom0 => 3,
                _ if xe.libxl_code() == Some(libxl_sys_domain_notfound()) => 1,
                _ => 4,
            };
        }
    }
    125
}

/// libxl's ERROR_DOMAIN_NOTFOUND (libxl_types.idl), without a libxl-sys dependency here.
const fn libxl_sys_domain_notfound() -> i32 {
    -21
}

/// Image ids that containers (running or stopped) still use, with a container name each.
pub fn images_in_use(g: &Globals) -> anyhow::Result<Vec<(hx_images::Digest, String)>> {
    Ok(hx_engine::container::list(&g.root)?
        .into_iter()
        .filter_map(|c| {
            hx_images::Digest::parse(&c.image_id)
                .ok()
                .map(|d| (d, c.name))
        })
        .collect())
}

/// Forces an exit code whatever the cause (`hx run`: 125 for hx's own failures, like docker).
#[derive(Debug)]
pub struct Fixed {
    pub code: i32,
    pub inner: anyhow::Error,
}

impl Fixed {
    pub fn wrap(code: i32, inner: anyhow::Error) -> anyhow::Error {
        anyhow::Error::new(Fixed { code, inner })
    }
}

impl std::fmt::Display for Fixed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&one_line(&self.inner))
    }
}

impl std::error::Error for Fixed {}
