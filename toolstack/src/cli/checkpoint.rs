//! `hx checkpoint create [--leave-running] C NAME`, `hx checkpoint ls C`, `hx checkpoint rm C
//! NAME` (docker's): a running container's VM — processes, memory, writable layer — saved,
//! then resumed by `hx start --checkpoint NAME C` (docs/checkpoint.md).
use hx_engine::{checkpoint, container};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Save a running container's VM as a checkpoint, then stop it (unless --leave-running)
    Create(CreateArgs),
    /// List a container's checkpoints
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Remove a container's checkpoint
    #[command(alias = "remove")]
    Rm(RmArgs),
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// Leave the container running after the checkpoint
    #[arg(long)]
    pub leave_running: bool,
    /// Container name or id
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::containers))]
    pub container: String,
    /// Checkpoint name
    pub checkpoint: String,
}

#[derive(clap::Args, Debug)]
pub struct LsArgs {
    /// Container name or id
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::containers))]
    pub container: String,
}

#[derive(clap::Args, Debug)]
pub struct RmArgs {
    /// Container name or id
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::containers))]
    pub container: String,
    /// Checkpoint name
    pub checkpoint: String,
}

pub async fn run(g: &super::Globals, cmd: Command) -> anyhow::Result<i32> {
    match cmd {
        Command::Create(a) => {
            let root = g.root.clone();
            let (key, name) = (a.container.clone(), a.checkpoint.clone());
            tokio::task::spawn_blocking(move || {
                checkpoint::create(&root, &key, &name, a.leave_running)
            })
            .await??;
            // docker prints the checkpoint's name.
            outln!("{}", a.checkpoint);
        }
        Command::Ls(a) => {
            let c = container::find(&g.root, &a.container)?;
            outln!("CHECKPOINT NAME");
            for m in checkpoint::list(&g.root, &c)? {
                outln!("{}", m.name);
            }
        }
        Command::Rm(a) => {
            let c = container::find(&g.root, &a.container)?;
            checkpoint::remove(&g.root, &c, &a.checkpoint)?;
        }
    }
    Ok(0)
}
