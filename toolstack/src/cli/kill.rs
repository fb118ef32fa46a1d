//! `hx kill`: send a signal to the workload (default SIGKILL).
use hx_engine::backend;
use hx_engine::container::{self, Status};
use pv_init::status::Control;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Signal name or number (KILL, TERM, HUP, 9, ...)
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    /// Container names or ids
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub use hx_engine::lifecycle::parse_signal;

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let sig = parse_signal(&args.signal)?;
    let mut code = 0;
    for name in &args.containers {
        let r = (|| -> anyhow::Result<()> {
            let c = container::find(&g.root, name)?;
            let be = backend::for_container(&c, &g.root)?;
            if c.status != Status::Running || !be.is_running(&c) {
                anyhow::bail!("container {} is not running", c.name);
            }
            let dir = container::dir(&g.root, &c.id);
            hx_engine::runtime::mark_stopped_by_user(&g.root, &c.id)?;
            super::pause::thaw_for_signal(be.as_ref(), &c, &dir)?;
            be.send_control(
                &c,
                &container::dir(&g.root, &c.id),
                &Control::Signal(sig).to_line(),
            )
        })();
        match r {
            Ok(()) => outln!("{name}"),
            Err(e) => {
                errln!("hx: {}", super::one_line(&e));
                code = 1;
            }
        }
    }
    Ok(code)
}
