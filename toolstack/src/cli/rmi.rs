//! `hx rmi`: untag and remove images.
use hx_images::Store;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Image names or ids
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Remove an image with several names by id, and images containers use
    #[arg(short, long)]
    pub force: bool,
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let store = Store::open(&g.root)?;
    let in_use = super::images_in_use(g)?;
    for r in &args.images {
        let rec = store.find_image(r)?;
        if !args.force {
            if let Some((_, c)) = in_use.iter().find(|(id, _)| *id == rec.id) {
                return Err(hx_images::Error::ImageInUse {
                    image: r.clone(),
                    container: c.clone(),
                }
                .into());
            }
        }
        let (untagged, deleted) = store.remove_image(r, args.force)?;
        for n in untagged {
            outln!(
                "Untagged: {}",
                hx_images::Reference::parse(&n)
                    .map(|x| x.familiar())
                    .unwrap_or(n)
            );
        }
        if let Some(d) = deleted {
            outln!("Deleted: {d}");
        }
    }
    // Blobs and rootfs builds nothing refers to any more.
    let keep: Vec<_> = in_use.into_iter().map(|(id, _)| id).collect();
    store.prune(false, &keep)?;
    Ok(0)
}
