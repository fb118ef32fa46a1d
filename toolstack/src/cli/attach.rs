//! `hx attach [--sig-proxy=false] CONTAINER`: the running container's output from now on
//! (stdout to stdout, stderr to stderr), until it stops; then its exit code, as `docker attach`.
//! ^C and SIGTERM go to the workload (docker's --sig-proxy) unless turned off; a second ^C
//! detaches. Input is not attached yet (`hx run -i` keeps its own).
use hx_engine::backend;
use hx_engine::container::{self, Status};
use hx_engine::logfile::Tail;
use pv_init::status::Control;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Pass SIGINT and SIGTERM to the workload
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub sig_proxy: bool,
    /// Container (name or id)
    pub container: String,
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let c = container::find(&g.root, &args.container)?;
    let be = backend::for_container(&c, &g.root)?;
    if c.status != Status::Running || !be.is_running(&c) {
        anyhow::bail!("container {} is not running", c.name);
    }
    let dir = container::dir(&g.root, &c.id);
    let mut out = Tail::open(&dir.join("stdout.log"), false)?;
    let mut err = Tail::open(&dir.join("stderr.log"), false)?;
    use tokio::signal::unix::{signal, SignalKind};
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut interrupts = 0;
    loop {
        let a = out.pump(&mut std::io::stdout())?;
        let b = err.pump(&mut std::io::stderr())?;
        if !be.is_running(&c) {
            break;
        }
        let delay = if a || b { 5 } else { 25 };
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(delay)) => {}
            _ = sigint.recv() => {
                interrupts += 1;
                if !args.sig_proxy || interrupts > 1 {
                    // Detached: the container runs on.
                    return Ok(0);
                }
                let _ = be.send_control(&c, &dir, &Control::Signal(libc::SIGINT).to_line());
            }
            _ = sigterm.recv() => {
                if !args.sig_proxy {
                    return Ok(0);
                }
                let _ = be.send_control(&c, &dir, &Control::Signal(libc::SIGTERM).to_line());
            }
        }
    }
    out.pump(&mut std::io::stdout())?;
    err.pump(&mut std::io::stderr())?;
    hx_engine::runtime::exit_code_after_stop(&g.root, &c, be.as_ref())
}
