//! `hx system template ls|rm|prune`: the warm-start templates of the QEMU backend and the
//! warm pools of the Xen backend (hx_engine::backend::warm, docs/warm-start.md).
use hx_engine::backend::warm;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Manage warm-start templates (QEMU: snapshots of a booted guest; Xen: pools of paused,
    /// pre-booted domains; one per kernel, pv-init, memory and vCPU shape)
    #[command(subcommand)]
    Template(TemplateCommand),
}

#[derive(clap::Subcommand, Debug)]
pub enum TemplateCommand {
    /// List templates
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Remove templates by key, destroying a pool's domains (the next warm run builds again)
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove stale templates and pools, all but the newest template of each shape, and
    /// unfinished builds
    Prune,
}

#[derive(clap::Args, Debug)]
pub struct LsArgs {
    /// Only keys
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(clap::Args, Debug)]
pub struct RmArgs {
    /// Template keys (`hx system template ls`); --all for every one
    #[arg(required_unless_present = "all")]
    pub keys: Vec<String>,
    #[arg(short, long)]
    pub all: bool,
}

pub async fn run(g: &super::Globals, cmd: Command) -> anyhow::Result<i32> {
    let Command::Template(cmd) = cmd;
    match cmd {
        TemplateCommand::Ls(a) => {
            let all = warm::list(&g.root);
            if a.quiet {
                for t in &all {
                    outln!("{}", t.meta.key);
                }
                return Ok(0);
            }
            outln!("KEY               MEMORY  CPUS  ACCEL  DEVICES               SIZE     STATUS  PV-INIT");
            for t in &all {
                let m = &t.meta;
                let initramfs = m
                    .initramfs
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                outln!(
                    "{:<17} {:<7} {:<5} {:<6} {:<21} {:<8} {:<7} {}",
                    m.key,
                    format!("{}M", m.memory_mb),
                    m.cpus,
                    m.accel,
                    m.devices,
                    format!("{}MiB", t.bytes.div_ceil(1 << 20)),
                    if t.stale { "stale" } else { "ready" },
                    initramfs
                );
            }
            Ok(0)
        }
        TemplateCommand::Rm(a) => {
            let keys: Vec<String> = if a.all {
                warm::forget_failures(&g.root);
                warm::list(&g.root)
                    .into_iter()
                    .map(|t| t.meta.key)
                    .collect()
            } else {
                a.keys
            };
            let mut code = 0;
            for k in keys {
                match warm::remove(&g.root, &k) {
                    Ok(true) => outln!("{k}"),
                    Ok(false) => {
                        errln!("Error: no such template: {k}");
                        code = 1;
                    }
                    Err(e) => {
                        errln!("Error: {e:#}");
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
        TemplateCommand::Prune => {
            for k in warm::prune(&g.root)? {
                outln!("{k}");
            }
            Ok(0)
        }
    }
}
