//! `hx start [-a] [-i] CONTAINER...`: boots created or stopped containers again, with the
//! files their writable layer holds, their name, volumes, and (when still free) address and
//! host ports (docker start). `-a` follows the (single) container's output and exits with its
//! code, `-i` also gives it hx's stdin. Starting a running container changes nothing.
use super::run::{Interactive, LogStart};
use hx_engine::container;
use hx_engine::lifecycle::{self, StartOptions};
use std::io::IsTerminal;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Attach stdout/stderr and wait for the container's exit code
    #[arg(short, long)]
    pub attach: bool,
    /// Attach stdin too (containers created with -i)
    #[arg(short, long)]
    pub interactive: bool,
    /// Override the key sequence for detaching from a -t container (default ctrl-p,ctrl-q)
    #[arg(long, value_name = "KEYS")]
    pub detach_keys: Option<String>,
    /// Resume the container from this checkpoint (hx checkpoint create)
    #[arg(long, value_name = "NAME")]
    pub checkpoint: Option<String>,
    /// Container names or ids
    #[arg(required = true)]
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::containers))]
    pub containers: Vec<String>,
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    if (args.attach || args.interactive) && args.containers.len() > 1 {
        anyhow::bail!("you cannot start and attach multiple containers at once");
    }
    if args.checkpoint.is_some() && args.containers.len() > 1 {
        anyhow::bail!("--checkpoint starts one container");
    }
    let opts = StartOptions {
        checkpoint: args.checkpoint.clone(),
        ..StartOptions::default()
    };
    if args.attach || args.interactive {
        let keys = super::attach::detach_keys(args.detach_keys.as_deref())?;
        return start_attached(g, &args.containers[0], args.interactive, keys, opts).await;
    }
    Ok(super::each_name(&args.containers, |name| {
        start_detached(g, name, opts.clone())
    })
    .await)
}

/// Starts one container and leaves it running (also `hx restart`).
pub async fn start_detached(
    g: &super::Globals,
    name: &str,
    opts: StartOptions,
) -> anyhow::Result<()> {
    let c = container::find(&g.root, name)?;
    if opts.checkpoint.is_none()
        && c.status == hx_engine::container::Status::Running
        && hx_engine::backend::for_container(&c, &g.root)?.is_running(&c)
    {
        // docker: starting a running container does nothing, successfully.
        return Ok(());
    }
    let root = g.root.clone();
    let key = name.to_string();
    let started =
        tokio::task::spawn_blocking(move || lifecycle::start(&root, &key, opts)).await??;
    lifecycle::confirm(&g.root, &started.container, started.owner).await?;
    hx_engine::restart::ensure_supervisor(&g.root, &started.container)?;
    Ok(())
}

async fn start_attached(
    g: &super::Globals,
    name: &str,
    stdin: bool,
    detach_keys: Vec<u8>,
    opts: StartOptions,
) -> anyhow::Result<i32> {
    let c = container::find(&g.root, name)?;
    let spec_tty = lifecycle::request_of(&g.root, &c)?.tty.is_some();
    if stdin && spec_tty && !std::io::stdin().is_terminal() {
        errln!("hx: the input device is not a TTY");
        return Ok(1);
    }
    // Only what this run writes: the files keep earlier runs' output for `hx logs`.
    let dir = container::dir(&g.root, &c.id);
    let from = LogStart::After(hx_engine::output_log::position(&dir));
    let root = g.root.clone();
    let key = c.id.clone();
    let started =
        tokio::task::spawn_blocking(move || lifecycle::start(&root, &key, opts)).await??;
    hx_engine::restart::ensure_supervisor(&g.root, &started.container)?;
    // What this start gave the workload: stdin only to a container created with -i.
    let spec = read_spec(&dir);
    let io = Interactive {
        // Into the input the container's relay holds (QEMU) or its console (Xen); the end of
        // hx's stdin is the workload's when the container is stdin-once, like docker start -ai.
        stdin: stdin && spec.as_ref().is_some_and(|s| s.stdin),
        tty: spec_tty,
        detach_keys,
    };
    super::run::attach(&g.root, started.container, started.owner, io, from).await
}

fn read_spec(dir: &std::path::Path) -> Option<pv_init::spec::ContainerSpec> {
    let b = std::fs::read(dir.join("spec.json")).ok()?;
    serde_json::from_slice(&b).ok()
}
