//! `hx restart [-t N] [-s SIGNAL] CONTAINER...`: `hx stop` then `hx start` (docker restart); a
//! stopped container is just started. It keeps its writable layer, name, address and ports.
use hx_engine::container;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Seconds to wait for the stop before killing the VM (0 to 4294967295; default: the
    /// container's --stop-timeout, else 10)
    #[arg(short = 't', long = "time",
          value_parser = clap::value_parser!(u64).range(0..=u32::MAX as u64))]
    pub time: Option<u64>,
    /// Signal to stop with (name or number; default: the container's stop signal, else TERM)
    #[arg(short, long)]
    pub signal: Option<String>,
    /// Container names or ids
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let mut code = 0;
    for name in &args.containers {
        match restart_one(g, name, &args).await {
            Ok(()) => outln!("{name}"),
            Err(e) => {
                errln!("hx: {}", super::one_line(&e));
                code = super::exit_code_for(&e);
            }
        }
    }
    Ok(code)
}

async fn restart_one(g: &super::Globals, name: &str, args: &Args) -> anyhow::Result<()> {
    let c = container::find(&g.root, name)?;
    let signal = match args.signal.as_deref().or(c.stop_signal.as_deref()) {
        Some(s) => super::kill::parse_signal(s)?,
        None => libc::SIGTERM,
    };
    let grace = Some(std::time::Duration::from_secs(
        args.time.or(c.stop_timeout).unwrap_or(10),
    ));
    let root = g.root.clone();
    let started =
        tokio::task::spawn_blocking(move || hx_engine::ops::restart(&root, &c, grace, signal))
            .await??;
    hx_engine::lifecycle::confirm(&g.root, &started.container, started.owner).await?;
    hx_engine::restart::ensure_supervisor(&g.root, &started.container)?;
    Ok(())
}
