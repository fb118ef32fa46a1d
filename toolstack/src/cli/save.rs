//! `hx save`: images as a docker-save archive (hx_images::save), to a file or stdout.
use hx_images::save::SaveImage;
use hx_images::Store;
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Write to this file (made whole or not at all) instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Images (name, name@digest or id)
    #[arg(required = true)]
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::images))]
    pub images: Vec<String>,
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    if args.output.is_none() && std::io::stdout().is_terminal() {
        errln!("hx: cowardly refusing to save to a terminal. Use the -o flag or redirect");
        return Ok(1);
    }
    let store = Store::open(&g.root)?;
    let mut images: Vec<SaveImage> = Vec::new();
    for arg in &args.images {
        let image = store.find_image(arg)?;
        // Saved under the name asked for (docker's RepoTags); by id: no name.
        let tag = hx_images::Reference::parse(arg)
            .ok()
            .filter(|r| r.digest.is_none() && image.names.contains(&r.to_string()))
            .map(|r| r.familiar());
        match images.iter_mut().find(|s| s.image.id == image.id) {
            Some(s) => s.tags.extend(tag.filter(|t| !s.tags.contains(t))),
            None => images.push(SaveImage {
                image,
                tags: tag.into_iter().collect(),
            }),
        }
    }
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        match &args.output {
            Some(path) => {
                use anyhow::Context;
                let dir = match path.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                // Written beside the destination and renamed into place: an error or a kill
                // leaves no partial archive under the name asked for.
                let tmp = tempfile::Builder::new()
                    .prefix(".hx-save-")
                    .tempfile_in(&dir)
                    .with_context(|| format!("creating a file in {}", dir.display()))?;
                let out = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file());
                hx_images::save::save(&store, &images, out, &mut |_| {})?;
                use std::os::unix::fs::PermissionsExt;
                tmp.as_file()
                    .set_permissions(std::fs::Permissions::from_mode(0o644))?;
                tmp.as_file().sync_all()?;
                tmp.persist(path)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            None => {
                let out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
                hx_images::save::save(&store, &images, out, &mut |_| {})?;
            }
        }
        Ok(())
    })
    .await??;
    Ok(0)
}
