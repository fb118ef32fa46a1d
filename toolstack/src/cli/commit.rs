//! `hx commit`: a container's changes (its writable layer, packed by its pv-init — a stopped
//! container's in its offline VM, hx_engine::offline — with overlayfs' whiteouts as OCI
//! whiteouts) become a new image on top of its image (docker commit). The layer is the guest's: bounded and validated like a registry's.
use anyhow::Context;
use hx_images::load::CommitInfo;
use hx_images::Store;
use pv_init::mux::Builtin;
use std::io::{Seek, Write};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Author (e.g. "Jane <jane@example.com>")
    #[arg(short, long)]
    pub author: Option<String>,
    /// Dockerfile instruction to apply to the image's config (as `hx import --change`)
    #[arg(short, long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// Commit message
    #[arg(short, long)]
    pub message: Option<String>,
    /// Stop the container's processes while its changes are read (docker's default)
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub pause: bool,
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::containers))]
    pub container: String,
    /// The new image's name: REPOSITORY[:TAG] (none: an image without a name)
    pub repository: Option<String>,
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let store =
        Store::open(&g.root)?.with_limits(hx_engine::hostconfig::load(&g.root)?.limits.images()?);
    let changes = match super::import::apply_changes(&args.changes)? {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    if let Some(r) = &args.repository {
        hx_images::Reference::parse(r)?;
    }
    let c = hx_engine::container::find(&g.root, &args.container)?;
    let parent = store.find_image(&c.image_id)?;
    let root = g.root.clone();
    let rec = tokio::task::spawn_blocking(move || -> anyhow::Result<hx_images::ImageRecord> {
        let limit = store.limits().max_layer_bytes;
        // The guest's stream lands in the store's scratch space first: only a stream the guest
        // calls whole becomes a layer. An unnamed file (O_TMPFILE), so that an hx killed
        // meanwhile leaves nothing behind.
        let mut scratch = tempfile::tempfile_in(store.tmp_dir()).context("scratch file")?;
        let (s, _vm) = super::cp::session_any(
            &root,
            &args.container,
            Builtin::UpperDiff { pause: args.pause },
            false,
        )?;
        let mut out = Bounded {
            inner: std::io::BufWriter::with_capacity(1 << 20, &mut scratch),
            left: limit + 1,
        };
        let end = s.run(&mut out, &mut std::io::sink(), |_| true);
        if out.left == 0 {
            return Err(hx_images::Error::LayerTooLarge {
                layer: format!("the changes of {}", c.name),
                limit,
            }
            .into());
        }
        super::cp::finish(end?, &args.container)?;
        out.inner.flush()?;
        drop(out);
        scratch.rewind()?;
        let info = CommitInfo {
            author: args.author,
            comment: args.message,
            created_by: format!("hx commit {}", c.name),
            changes,
        };
        Ok(hx_images::load::commit(
            &store,
            &parent,
            &mut scratch,
            args.repository.as_deref(),
            info,
        )?)
    })
    .await??;
    outln!("{}", rec.id);
    Ok(0)
}

/// Refuses to write past `left` bytes (the layer limit, plus one to tell "over" from "at").
struct Bounded<W: Write> {
    inner: W,
    left: u64,
}

impl<W: Write> Write for Bounded<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() as u64 >= self.left {
            self.left = 0;
            return Err(std::io::Error::other("layer over the limit"));
        }
        self.left -= buf.len() as u64;
        self.inner.write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
