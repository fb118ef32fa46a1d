//! xl's smaller hypervisor and domain commands: `hx debug-keys KEYS`, `hx set-parameters
//! PARAMS`, `hx dump-core DOMAIN FILE`, `hx trigger DOMAIN TRIGGER [VCPU]`, each as xl's: quiet
//! on success, one line and exit 1 on failure.
use super::domain;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct DebugKeysArgs {
    /// Keys for the hypervisor's debug handlers (`h` lists them in `hx dmesg`)
    pub keys: String,
}

#[derive(clap::Args, Debug)]
pub struct SetParametersArgs {
    /// Hypervisor parameters to change at run time, as on Xen's command line (e.g. loglvl=all)
    pub params: String,
}

#[derive(clap::Args, Debug)]
pub struct DumpCoreArgs {
    /// Domain (name, id or hx container)
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::containers))]
    pub domain: String,
    /// The ELF core file to write
    pub file: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct TriggerArgs {
    /// Domain (name, id or hx container)
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::containers))]
    pub domain: String,
    /// nmi, reset, init, power, sleep or s3resume
    pub trigger: String,
    /// The vCPU it goes to
    #[arg(default_value_t = 0)]
    pub vcpu: u32,
}

/// A failure of xl's kind: one line, exit 1.
pub(super) fn failed(e: impl Into<anyhow::Error>) -> anyhow::Error {
    super::Fixed::wrap(1, e.into())
}

pub async fn debug_keys(_g: &super::Globals, args: DebugKeysArgs) -> anyhow::Result<i32> {
    let ctx = domain::open()?;
    ctx.send_debug_keys(&args.keys).map_err(failed)?;
    Ok(0)
}

pub async fn set_parameters(_g: &super::Globals, args: SetParametersArgs) -> anyhow::Result<i32> {
    let ctx = domain::open()?;
    ctx.set_parameters(&args.params).map_err(|e| {
        failed(anyhow::anyhow!(
            "cannot set parameters {:?}: {e}",
            args.params
        ))
    })?;
    Ok(0)
}

pub async fn dump_core(_g: &super::Globals, args: DumpCoreArgs) -> anyhow::Result<i32> {
    let ctx = domain::open()?;
    let id = domain::resolve(&ctx, &args.domain)?;
    ctx.core_dump(id, &args.file).await.map_err(|e| {
        failed(anyhow::anyhow!(
            "core dump of domain {id} to {} failed: {e}",
            args.file.display()
        ))
    })?;
    Ok(0)
}

pub async fn trigger(_g: &super::Globals, args: TriggerArgs) -> anyhow::Result<i32> {
    let Some(t) = xen_bindings::Trigger::parse(&args.trigger) else {
        return Err(failed(anyhow::anyhow!(
            "Invalid trigger {:?}: nmi, reset, init, power, sleep or s3resume",
            args.trigger
        )));
    };
    let ctx = domain::open()?;
    let id = domain::resolve(&ctx, &args.domain)?;
    ctx.send_trigger(id, t, args.vcpu).await.map_err(failed)?;
    Ok(0)
}
