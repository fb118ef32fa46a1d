//! `hx wait`: block until containers stop, print their exit codes.
use hx_engine::backend;
use hx_engine::container::{self, Status};
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Container names or ids
    #[arg(required = true)]
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::containers))]
    pub containers: Vec<String>,
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let mut last = 0;
    for name in &args.containers {
        let c = container::find(&g.root, name)?;
        let be = backend::for_container(&c, &g.root)?;
        while c.status == Status::Running && be.is_running(&c) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let code = hx_engine::runtime::exit_code_after_stop(&g.root, &c, be.as_ref())?;
        outln!("{code}");
        last = code;
    }
    let _ = last;
    Ok(0)
}
