//! `hx push`: an image of the store to its registry (docker push).
use hx_images::push::{push, BlobOutcome, PushOptions};
use hx_images::{Reference, Store};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The image's name: [HOST[:PORT]/]NAME[:TAG] (the registry is the name's)
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::images))]
    pub image: String,
    /// Reach this registry over plain HTTP (localhost and 127.0.0.0/8 always are)
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure: Vec<String>,
    /// Only the pushed reference and digest, no per-layer lines
    #[arg(short, long)]
    pub quiet: bool,
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let store = Store::open(&g.root)?;
    let mut reference = Reference::parse(&args.image)?;
    if reference.digest.is_some() {
        return Err(hx_images::Error::InvalidReference {
            reference: args.image,
            reason: "push a tag, not a digest".into(),
        }
        .into());
    }
    if reference.tag.is_none() {
        reference.tag = Some("latest".into());
    }
    // docker: a name the image does not have locally is refused before any request.
    store.find_image(&reference.to_string())?;
    if !args.quiet {
        outln!("The push refers to repository [{}]", reference.name());
    }
    let quiet = args.quiet;
    let pushed = push(
        &store,
        &reference,
        &PushOptions {
            insecure_registries: args.insecure,
        },
        &mut |digest, outcome| {
            if quiet {
                return;
            }
            let hex = &digest.hex()[..12];
            match outcome {
                BlobOutcome::Pushed => outln!("{hex}: Pushed"),
                BlobOutcome::AlreadyExists => outln!("{hex}: Layer already exists"),
            }
        },
    )
    .await?;
    let tag = reference.tag.as_deref().unwrap_or("latest");
    match args.quiet {
        true => outln!("{}", reference.familiar()),
        false => outln!("{tag}: digest: {} size: {}", pushed.digest, pushed.size),
    }
    Ok(0)
}
