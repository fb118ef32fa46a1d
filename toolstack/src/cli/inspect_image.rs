//! `hx image inspect`: an image's record, manifest and config as JSON.
use hx_images::Store;
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Image names or ids
    #[arg(required = true)]
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::images))]
    pub images: Vec<String>,
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let store = Store::open(&g.root)?;
    let mut out = vec![];
    for r in &args.images {
        let i = store.find_image(r)?;
        let rootfs = store.rootfs_path(&i);
        out.push(json!({
            "Id": i.id,
            "RepoTags": i.names,
            "ManifestDigest": i.manifest_digest,
            "Created": i.created,
            "Size": i.size,
            "Layers": i.layers,
            "Config": i.config,
            "Rootfs": { "Path": rootfs, "Built": rootfs.is_file(), "Type": hx_images::rootfs::FSTYPE },
        }));
    }
    outln!("{}", serde_json::to_string_pretty(&out)?);
    Ok(0)
}
