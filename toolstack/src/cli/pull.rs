//! `hx pull`: fetch an image from a registry.
use hx_images::manifest::PlatformSpec;
use hx_images::pull::{pull, PullOptions};
use hx_images::{Reference, Store};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Image reference: NAME[:TAG], HOST[:PORT]/NAME[:TAG] or NAME@sha256:DIGEST
    pub image: String,
    /// Platform to pick from a multi-platform image (os/arch[/variant])
    #[arg(long)]
    pub platform: Option<String>,
    /// Reach this registry over plain HTTP (localhost and 127.0.0.0/8 always are)
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure: Vec<String>,
    /// No progress output
    #[arg(short, long)]
    pub quiet: bool,
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let store =
        Store::open(&g.root)?.with_limits(hx_engine::hostconfig::load(&g.root)?.limits.images()?);
    let reference = Reference::parse(&args.image)?;
    let opts = PullOptions {
        platform: args
            .platform
            .as_deref()
            .map(PlatformSpec::parse)
            .transpose()?,
        insecure_registries: args.insecure,
        progress: !args.quiet,
    };
    pull(&store, &reference, &opts).await?;
    // docker: the reference asked for, normalised (`docker.io/library/busybox:latest`), also
    // with -q; not another name the same image already had.
    outln!("{reference}");
    Ok(0)
}
