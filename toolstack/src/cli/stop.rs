//! `hx stop`: the stop signal (SIGTERM unless the image or `--stop-signal` says otherwise) to the
//! workload; after a grace period pv-init kills it and powers off (hx_engine::ops::stop).
use hx_engine::container;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Seconds to wait before killing the VM (0 to 4294967295; default: the container's
    /// --stop-timeout, else 10)
    #[arg(short = 't', long = "time",
          value_parser = clap::value_parser!(u64).range(0..=u32::MAX as u64))]
    pub time: Option<u64>,
    /// Signal to send first (name or number; default: the container's stop signal, else TERM)
    #[arg(short, long)]
    pub signal: Option<String>,
    /// Container names or ids
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let mut code = 0;
    for name in &args.containers {
        match stop_one(g, name, args.time, args.signal.as_deref()).await {
            Ok(()) => outln!("{name}"),
            Err(e) => {
                errln!("hx: {}", super::one_line(&e));
                code = super::exit_code_for(&e);
            }
        }
    }
    Ok(code)
}

pub async fn stop_one(
    g: &super::Globals,
    name: &str,
    grace: Option<u64>,
    signal: Option<&str>,
) -> anyhow::Result<()> {
    let c = container::find(&g.root, name)?;
    let grace = grace.or(c.stop_timeout).unwrap_or(10);
    let signal = match signal.or(c.stop_signal.as_deref()) {
        Some(s) => super::kill::parse_signal(s)?,
        None => libc::SIGTERM,
    };
    // A grace period past the clock's range is no deadline (ops::stop).
    let grace = Some(Duration::from_secs(grace));
    let root = g.root.clone();
    tokio::task::spawn_blocking(move || hx_engine::ops::stop(&root, &c, grace, signal)).await?
}
