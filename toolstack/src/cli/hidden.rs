//! The hidden subcommands hx runs itself as: the engine's helper processes.
use std::path::PathBuf;

/// `hx __xen-monitor DIR`: owns one container's Xen domain (hx_engine::backend::xen::monitor).
#[derive(clap::Args, Debug)]
pub struct XenMonitorArgs {
    /// The container directory (holds xen-launch.json)
    pub dir: PathBuf,
}

/// `hx __xen-warm-fill KEYDIR`: boots one shape's warm pool domains
/// (hx_engine::backend::xen::warm::fill).
#[derive(clap::Args, Debug)]
pub struct XenWarmFillArgs {
    /// The pool's directory (holds shape.json)
    pub keydir: PathBuf,
}

pub async fn xen_warm_fill(_g: &super::Globals, args: XenWarmFillArgs) -> anyhow::Result<i32> {
    tokio::task::spawn_blocking(move || hx_engine::backend::xen::warm::fill(&args.keydir)).await?
}

/// `hx __log-relay DIR`: writes one QEMU container's guest output to its log files
/// (hx_engine::log_relay).
#[derive(clap::Args, Debug)]
pub struct LogRelayArgs {
    /// The container directory
    pub dir: PathBuf,
    /// Bytes per stdout/stderr file
    #[arg(long)]
    pub max_size: u64,
    /// stdout/stderr files kept per stream
    #[arg(long)]
    pub max_file: u32,
}

pub async fn xen_monitor(_g: &super::Globals, args: XenMonitorArgs) -> anyhow::Result<i32> {
    hx_engine::backend::xen::monitor::run(args.dir).await
}

pub async fn log_relay(_g: &super::Globals, args: LogRelayArgs) -> anyhow::Result<i32> {
    hx_engine::log_relay::run(&args.dir, args.max_size, args.max_file)?;
    Ok(0)
}

/// `hx __pod-member DIR --fds A,B,... --control FD`: one pod member's keeper
/// (hx_engine::backend::pod).
#[derive(clap::Args, Debug)]
pub struct PodMemberArgs {
    /// The member's container directory
    pub dir: PathBuf,
    /// Its ends of the log relay's sockets
    #[arg(long, value_delimiter = ',')]
    pub fds: Vec<i32>,
    /// Its control fifo, opened by whoever started it
    #[arg(long)]
    pub control: i32,
}

pub async fn pod_member(_g: &super::Globals, args: PodMemberArgs) -> anyhow::Result<i32> {
    tokio::task::spawn_blocking(move || {
        hx_engine::backend::pod::keep(&args.dir, &args.fds, args.control)
    })
    .await??;
    Ok(0)
}

/// `hx __supervise ID`: carries out one container's restart policy
/// (hx_engine::restart::supervise).
#[derive(clap::Args, Debug)]
pub struct SuperviseArgs {
    /// The container's id
    pub id: String,
}

pub async fn supervise(g: &super::Globals, args: SuperviseArgs) -> anyhow::Result<i32> {
    let root = g.root.clone();
    tokio::task::spawn_blocking(move || hx_engine::restart::supervise(&root, &args.id)).await??;
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct NetDnsArgs {
    /// The network's id
    pub id: String,
}

pub async fn net_dns(g: &super::Globals, args: NetDnsArgs) -> anyhow::Result<i32> {
    hx_engine::network::resolver::serve(&g.root, &args.id).await?;
    Ok(0)
}
