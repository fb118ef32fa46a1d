//! `hx wait`: block until containers stop, print their exit codes.
use hx_engine::backend;
use hx_engine::container::{self, Status};
use hx_images::Store;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Container names or ids
    #[arg(required = true)]
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
        let code = {
            let _lock = Store::open(&g.root)?.lock()?;
            let dir = container::dir(&g.root, &c.id);
            match container::load(&g.root, &c.id) {
                Ok(cur) if cur.status == Status::Running => {
                    let o = hx_engine::runtime::outcome(&dir);
                    hx_engine::runtime::settle(&g.root, cur, be.as_ref())?;
                    o.exit_code()
                }
                Ok(cur) => cur.exit_code.unwrap_or(0),
                // Removed meanwhile (--rm): the status channel went with it.
                Err(_) => c.exit_code.unwrap_or(0),
            }
        };
        outln!("{code}");
        last = code;
    }
    let _ = last;
    Ok(0)
}
