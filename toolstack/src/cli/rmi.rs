//! `hx rmi`: untag and remove images.
use hx_images::Store;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Image names or ids
    #[arg(required = true)]
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::images))]
    pub images: Vec<String>,
    /// Remove an image with several names by id, and images containers use
    #[arg(short, long)]
    pub force: bool,
}

/// Like docker: each image is tried, a failure reported on stderr does not stop the next. One
/// image: its failure's own code (11 not found, 24 in use, …); several: 1, as docker's.
pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let store = Store::open(&g.root)?;
    let in_use = super::images_in_use(g)?;
    let mut code = 0;
    for r in &args.images {
        if let Err(e) = remove(&store, &in_use, r, args.force) {
            errln!("hx: {}", super::one_line(&e));
            code = match (args.images.len(), super::exit_code_for(&e)) {
                (1, c) => c,
                _ => 1,
            };
        }
    }
    // Blobs and rootfs builds nothing refers to any more.
    let keep: Vec<_> = in_use.into_iter().map(|(id, _)| id).collect();
    store.prune(false, &keep)?;
    Ok(code)
}

fn remove(
    store: &Store,
    in_use: &[(hx_images::Digest, String)],
    r: &str,
    force: bool,
) -> anyhow::Result<()> {
    {
        let rec = store.find_image(r)?;
        if !force {
            if let Some((_, c)) = in_use.iter().find(|(id, _)| *id == rec.id) {
                return Err(hx_images::Error::ImageInUse {
                    image: r.to_string(),
                    container: c.clone(),
                }
                .into());
            }
        }
        let (untagged, deleted) = store.remove_image(r, force)?;
        for n in untagged {
            outln!(
                "Untagged: {}",
                hx_images::Reference::parse(&n)
                    .map(|x| x.familiar())
                    .unwrap_or(n)
            );
        }
        // The image id (`hx images`' IMAGE ID), as docker prints it.
        if deleted.is_some() {
            outln!("Deleted: {}", rec.id);
        }
    }
    Ok(())
}
