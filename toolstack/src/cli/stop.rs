//! `hx stop`: the stop signal (SIGTERM unless the image or `--stop-signal` says otherwise) to the
//! workload, SIGKILL of the VM after a grace period.
use hx_engine::backend;
use hx_engine::container::{self, Status};
use pv_init::status::Control;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Seconds to wait before killing the VM (0 to 4294967295)
    #[arg(short = 't', long = "time", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(0..=u32::MAX as u64))]
    pub time: u64,
    /// Signal to send first (name or number; default: the container's stop signal, else TERM)
    #[arg(short, long)]
    pub signal: Option<String>,
    /// Container names or ids
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// How long a guest gets to end after its workload was killed.
const KILL_GRACE: Duration = Duration::from_secs(3);

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
    grace: u64,
    signal: Option<&str>,
) -> anyhow::Result<()> {
    let c = container::find(&g.root, name)?;
    let signal = match signal.or(c.stop_signal.as_deref()) {
        Some(s) => super::kill::parse_signal(s)?,
        None => libc::SIGTERM,
    };
    let be = backend::for_container(&c, &g.root)?;
    let dir = container::dir(&g.root, &c.id);
    if c.status == Status::Running && be.is_running(&c) {
        hx_engine::runtime::mark_stopped_by_user(&g.root, &c.id)?;
        super::pause::thaw_for_signal(be.as_ref(), &c, &dir)?;
        let _ = be.send_control(&c, &dir, &Control::Signal(signal).to_line());
        // None: a grace period past the clock's range, i.e. no deadline.
        let deadline = Instant::now().checked_add(Duration::from_secs(grace));
        while be.is_running(&c) && deadline.is_none_or(|d| Instant::now() < d) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if be.is_running(&c) {
            // SIGKILL of the workload by pv-init first: it then syncs the writable layer and
            // powers off, so the files a killed container wrote are kept as docker keeps them.
            // Only a guest that does not end in time loses its VM the hard way.
            let _ = be.send_control(&c, &dir, &Control::Signal(libc::SIGKILL).to_line());
            let deadline = Instant::now() + KILL_GRACE;
            while be.is_running(&c) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        if be.is_running(&c) {
            be.kill(&c)?;
            let s = container::load(&g.root, &c.id)?;
            if s.status == Status::Running {
                // The guest never reported: docker reports SIGKILL's 137.
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(dir.join("status.log"))
                    .and_then(|mut f| {
                        use std::io::Write;
                        f.write_all(
                            pv_init::status::Status::Signaled { signal: 9 }
                                .to_line()
                                .as_bytes(),
                        )
                    })?;
            }
        }
    }
    let _lock = hx_images::Store::open(&g.root)?.lock()?;
    if let Ok(c) = container::load(&g.root, &c.id) {
        hx_engine::runtime::settle(&g.root, c, be.as_ref())?;
    }
    Ok(())
}
