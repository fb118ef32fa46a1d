//! `hx kill`: send a signal to the workload (default SIGKILL).
use hx_engine::container;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Signal name or number (KILL, TERM, HUP, 9, ...)
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    /// Container names or ids
    #[arg(required = true)]
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::containers))]
    pub containers: Vec<String>,
}

pub use hx_engine::lifecycle::parse_signal;

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let sig = parse_signal(&args.signal)?;
    let mut code = 0;
    for name in &args.containers {
        let r = container::find(&g.root, name).and_then(|c| hx_engine::ops::kill(&g.root, &c, sig));
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
