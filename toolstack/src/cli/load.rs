//! `hx load`: images from an OCI layout directory, an oci-archive or a docker-save tarball.
use hx_images::manifest::PlatformSpec;
use hx_images::Store;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// OCI layout directory, oci-archive or docker-save tarball (.tar or .tar.gz)
    #[arg(short, long = "input", value_name = "PATH")]
    pub input: PathBuf,
    /// Platform to pick from a multi-platform index (os/arch[/variant])
    #[arg(long, default_value = "linux/amd64")]
    pub platform: String,
    /// Print only image ids
    #[arg(short, long)]
    pub quiet: bool,
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let store =
        Store::open(&g.root)?.with_limits(hx_engine::hostconfig::load(&g.root)?.limits.images()?);
    let platform = PlatformSpec::parse(&args.platform)?;
    let images =
        tokio::task::spawn_blocking(move || hx_images::load::load(&store, &args.input, &platform))
            .await??;
    for img in images {
        if args.quiet {
            outln!("{}", img.id);
        } else if img.names.is_empty() {
            outln!("Loaded image ID: {}", img.id);
        } else {
            for n in &img.names {
                outln!(
                    "Loaded image: {}",
                    hx_images::Reference::parse(n)
                        .map(|r| r.familiar())
                        .unwrap_or(n.clone())
                );
            }
        }
    }
    Ok(0)
}
