//! `hx export`: a container's filesystem as a tar archive (docker export), packed by its
//! pv-init (pv_init::layer; a stopped container's in its offline VM, hx_engine::offline):
//! volumes and the kernel's filesystems appear as empty directories. The bytes are the guest's: written as they come, never shown on a terminal.
use anyhow::Context;
use pv_init::mux::Builtin;
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Write to this file (made whole or not at all) instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::containers))]
    pub container: String,
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    if args.output.is_none() && std::io::stdout().is_terminal() {
        errln!("hx: cowardly refusing to save to a terminal. Use the -o flag or redirect");
        return Ok(1);
    }
    let root = g.root.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<i32> {
        let (s, _vm) = super::cp::session_any(&root, &args.container, Builtin::ExportRoot, false)?;
        match &args.output {
            None => {
                let end = s.run(&mut std::io::stdout().lock(), &mut std::io::sink(), |_| {
                    true
                })?;
                super::cp::finish(end, &args.container)?;
            }
            Some(path) => {
                let dir = match path.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                // Beside the destination, renamed into place once the guest says it is whole.
                let tmp = tempfile::Builder::new()
                    .prefix(".hx-export-")
                    .tempfile_in(&dir)
                    .with_context(|| format!("creating a file in {}", dir.display()))?;
                let mut out = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file());
                let end = s.run(&mut out, &mut std::io::sink(), |_| true)?;
                super::cp::finish(end, &args.container)?;
                std::io::Write::flush(&mut out)?;
                drop(out);
                use std::os::unix::fs::PermissionsExt;
                tmp.as_file()
                    .set_permissions(std::fs::Permissions::from_mode(0o644))?;
                tmp.as_file().sync_all()?;
                tmp.persist(path)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Ok(0)
    })
    .await?
}
