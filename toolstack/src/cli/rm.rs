//! `hx rm`: remove containers (and, with -f, stop them first).
use hx_engine::backend;
use hx_engine::container::{self, Status};
use hx_images::Store;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Kill and remove running containers
    #[arg(short, long)]
    pub force: bool,
    /// Also remove the container's anonymous volumes (named volumes always stay)
    #[arg(short, long)]
    pub volumes: bool,
    /// Container names or ids
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let mut code = 0;
    for name in &args.containers {
        let r = (|| -> anyhow::Result<()> {
            let _lock = Store::open(&g.root)?.lock()?;
            let c = container::find(&g.root, name)?;
            let be = backend::for_container(&c, &g.root)?;
            if c.status == Status::Creating {
                // Its hx run is still acquiring resources: removing them under it would race
                // with that; once it is gone, its creation is undone as a whole.
                if hx_engine::container::owner_alive(&g.root, &c.id) {
                    return Err(hx_engine::HxError::Creating(c.name.clone()).into());
                }
                return hx_engine::runtime::discard(&g.root, &c, be.as_ref());
            }
            if c.status == Status::Starting && hx_engine::container::owner_alive(&g.root, &c.id) {
                // Its hx start is booting it: that one finishes or undoes its own work first.
                return Err(hx_engine::HxError::Starting(c.name.clone()).into());
            }
            if c.status == Status::Running && be.is_running(&c) && !args.force {
                return Err(hx_engine::HxError::Running(c.name.clone()).into());
            }
            hx_engine::runtime::remove_with(&g.root, &c, be.as_ref(), args.volumes)
        })();
        match r {
            Ok(()) => outln!("{name}"),
            Err(e) => {
                errln!("hx: {}", super::one_line(&e));
                code = super::exit_code_for(&e);
            }
        }
    }
    Ok(code)
}
