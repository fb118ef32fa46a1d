//! `hx image prune`: dangling images, unreferenced blobs, stale rootfs builds and temp files.
use hx_images::Store;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Remove all images no container uses, not only unnamed ones
    #[arg(short, long)]
    pub all: bool,
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let store = Store::open(&g.root)?;
    let keep: Vec<_> = super::images_in_use(g)?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let r = store.prune(args.all, &keep)?;
    for d in &r.images {
        outln!("Deleted: {d}");
    }
    outln!(
        "Total reclaimed space: {} ({} blobs, {} rootfs images, {} temp files)",
        super::images::human_size(r.bytes),
        r.blobs,
        r.rootfs,
        r.temp
    );
    Ok(0)
}
