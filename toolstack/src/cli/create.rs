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
        let pull = args.pull.clone();
        let find = move |s: &hx_images::Store, i: &str| super::run::find_by_policy(s, i, &pull);
        lifecycle::create(&root, super::run::request(args)?, &find)
    })
    .await??;
    outln!("{}", c.id);
    Ok(0)
}
