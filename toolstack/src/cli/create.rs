//! `hx create`: a container from an image, not started (docker create). Its record, writable
//! layer and volumes exist; `hx start` boots it.
use hx_engine::lifecycle;

#[derive(clap::Args, Debug)]
#[command(trailing_var_arg = true)]
pub struct Args {
    #[command(flatten)]
    pub create: super::run::CreateArgs,
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let args = args.create.split_image();
    let root = g.root.clone();
    let c = tokio::task::spawn_blocking(move || {
        lifecycle::create(&root, super::run::request(args)?, &super::run::find_or_pull)
    })
    .await??;
    outln!("{}", c.id);
    Ok(0)
}
