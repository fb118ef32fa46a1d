//! `hx tag`: another name for an image of the store (docker tag).
use hx_images::{Reference, Store};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The image: name, name@digest or id
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::images))]
    pub source: String,
    /// The new name: [HOST[:PORT]/]NAME[:TAG]
    pub target: String,
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let store = Store::open(&g.root)?;
    let image = store.find_image(&args.source)?;
    let target = Reference::parse(&args.target)?;
    if target.digest.is_some() {
        return Err(hx_images::Error::InvalidReference {
            reference: args.target,
            reason: "a tag cannot name a digest".into(),
        }
        .into());
    }
    store.add_image(&image.manifest_digest, Some(&target.to_string()))?;
    Ok(0)
}
