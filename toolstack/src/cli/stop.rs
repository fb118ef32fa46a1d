//! `hx stop`: the stop signal (SIGTERM unless the image or `--stop-signal` says otherwise) to the
//! workload; after a grace period pv-init kills it and powers off (hx_engine::ops::stop).
use hx_engine::container::{self, Container};
use std::path::Path;
use std::time::Duration;

/// How a container is stopped (`hx stop`, `hx restart`).
#[derive(clap::Args, Debug)]
pub struct StopOptions {
    /// Seconds to wait before killing the VM (0 to 4294967295; default: the container's
    /// --stop-timeout, else 10)
    #[arg(short = 't', long = "time",
          value_parser = clap::value_parser!(u64).range(0..=u32::MAX as u64))]
    pub time: Option<u64>,
    /// Signal to send first (name or number; default: the container's stop signal, else TERM)
    #[arg(short, long)]
    pub signal: Option<String>,
}

impl StopOptions {
    /// Container `name`, with the grace period and the signal to stop it with.
    pub fn find(
        &self,
        root: &Path,
        name: &str,
    ) -> anyhow::Result<(Container, Option<Duration>, i32)> {
        let c = container::find(root, name)?;
        let signal = match self.signal.as_deref().or(c.stop_signal.as_deref()) {
            Some(s) => super::kill::parse_signal(s)?,
            None => libc::SIGTERM,
        };
        // A grace period past the clock's range is no deadline (ops::stop).
        let grace = self.time.or(c.stop_timeout).unwrap_or(10);
        Ok((c, Some(Duration::from_secs(grace)), signal))
    }
}

/// `hx stop` and `hx restart`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub stop: StopOptions,
    /// Container names or ids
    #[arg(required = true)]
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::containers))]
    pub containers: Vec<String>,
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    Ok(super::each_name(&args.containers, |name| stop_one(g, name, &args.stop)).await)
}

async fn stop_one(g: &super::Globals, name: &str, how: &StopOptions) -> anyhow::Result<()> {
    let (c, grace, signal) = how.find(&g.root, name)?;
    let root = g.root.clone();
    tokio::task::spawn_blocking(move || hx_engine::ops::stop(&root, &c, grace, signal)).await?
}
