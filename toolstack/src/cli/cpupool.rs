//! CPU pool management, as xl's: `hx cpupool-create [-n] [-f FILE] [FILE] [KEY=VALUE...]`,
//! `cpupool-destroy POOL`, `cpupool-rename POOL NEW`, `cpupool-cpu-add POOL CPUS|node:N`,
//! `cpupool-cpu-remove POOL CPUS|node:N`, `cpupool-migrate DOMAIN POOL`. A pool is named by
//! its name or id; failures print one line and exit 1.
use super::domain;
use super::xl_misc::failed;
use std::path::Path;
use xen_bindings::{Context, CpuSet, PoolCpus, XlCpupool};

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// Print what would be made and make nothing
    #[arg(short = 'n', long)]
    pub dryrun: bool,
    /// The pool's config file (xlcpupool.cfg: name, sched, cpus or nodes)
    #[arg(short = 'f', long = "defconfig", value_name = "FILE")]
    pub defconfig: Option<String>,
    /// The config file, then settings that override it (`name="p1"` `cpus="2-3"`)
    #[arg(value_name = "FILE|KEY=VALUE")]
    pub args: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct PoolArgs {
    /// Pool (name or id)
    pub pool: String,
}

#[derive(clap::Args, Debug)]
pub struct RenameArgs {
    /// Pool (name or id)
    pub pool: String,
    /// Its new name
    pub name: String,
}

#[derive(clap::Args, Debug)]
pub struct CpusArgs {
    /// Pool (name or id)
    pub pool: String,
    /// CPUs (`2`, `2-3,5`) or NUMA nodes (`node:0`, `nodes:0-1`)
    pub cpus: String,
}

#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    /// Domain (name, id or hx container)
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::containers))]
    pub domain: String,
    /// Pool (name or id)
    pub pool: String,
}

/// The id of pool `key`: as xl, a number is a pool's id, anything else its name.
fn pool_id(ctx: &Context, key: &str) -> anyhow::Result<u32> {
    let pools = ctx.cpupools()?;
    let numeric = !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit());
    pools
        .iter()
        .find(|p| match numeric {
            true => key.parse() == Ok(p.poolid),
            false => p.name == key,
        })
        .map(|p| p.poolid)
        .ok_or_else(|| failed(anyhow::anyhow!("unknown cpupool '{key}'")))
}

/// xl's CPU argument: a CPU list, or `node:N`/`nodes:LIST` for every CPU of those nodes.
fn cpus_of(ctx: &Context, arg: &str) -> anyhow::Result<CpuSet> {
    let host = ctx.host_info()?.nr_cpus;
    match arg
        .strip_prefix("nodes:")
        .or_else(|| arg.strip_prefix("node:"))
    {
        Some(nodes) => {
            let mut all = CpuSet::default();
            for n in CpuSet::parse(nodes, 1024).map_err(failed)?.0 {
                all.0.extend(ctx.node_cpus(n)?.0);
            }
            Ok(all)
        }
        None => Ok(CpuSet::parse(arg, host).map_err(failed)?),
    }
}

pub async fn create(_g: &super::Globals, a: CreateArgs) -> anyhow::Result<i32> {
    let (file, extra) = super::xl_create::sort_config_args(a.defconfig, &a.args)?;
    let (source, data) = match &file {
        Some(f) => (f.clone(), super::xl_create::read_config(f).map_err(failed)?),
        None => ("command line".to_string(), Vec::new()),
    };
    let data = xen_bindings::xlcfg::with_extra_lines(&data, &extra).map_err(failed)?;
    let pool = XlCpupool::parse(&source, &data, file.as_deref().map(Path::new)).map_err(failed)?;
    let ctx = domain::open()?;
    if ctx.cpupools()?.iter().any(|p| p.name == pool.name) {
        return Err(failed(anyhow::anyhow!(
            "Pool name \"{}\" already exists",
            pool.name
        )));
    }
    let free = ctx.free_cpus()?;
    let cpus = match &pool.cpus {
        PoolCpus::None => CpuSet::default(),
        PoolCpus::Cpus(set) => {
            if let Some(c) = set.0.iter().find(|c| !free.contains(**c)) {
                return Err(failed(anyhow::anyhow!("cpu {c} illegal or not free")));
            }
            set.clone()
        }
        PoolCpus::Nodes(nodes) => {
            let mut set = CpuSet::default();
            for n in nodes {
                set.0.extend(
                    ctx.node_cpus(*n)?
                        .0
                        .into_iter()
                        .filter(|c| free.contains(*c)),
                );
            }
            if set.0.is_empty() {
                return Err(failed(anyhow::anyhow!("no free cpu found")));
            }
            set
        }
    };
    let sched_name = match &pool.sched {
        Some(s) => s.clone(),
        None => ctx.default_scheduler()?,
    };
    let mut out = format!(
        "Using config file \"{source}\"\ncpupool name:   {}\nscheduler:      {sched_name}\nnumber of cpus: {}\n",
        pool.name,
        cpus.0.len()
    );
    if !a.dryrun {
        ctx.cpupool_create(&pool.name, pool.sched.as_deref(), &cpus)
            .map_err(|e| {
                domain::print(&std::mem::take(&mut out)).ok();
                failed(anyhow::anyhow!("error on creating cpupool: {e}"))
            })?;
    }
    domain::print(&out)?;
    Ok(0)
}

pub async fn destroy(_g: &super::Globals, a: PoolArgs) -> anyhow::Result<i32> {
    let ctx = domain::open()?;
    let id = pool_id(&ctx, &a.pool)?;
    ctx.cpupool_destroy(id)
        .map_err(|e| failed(anyhow::anyhow!("Can't destroy cpupool '{}': {e}", a.pool)))?;
    Ok(0)
}

pub async fn rename(_g: &super::Globals, a: RenameArgs) -> anyhow::Result<i32> {
    let ctx = domain::open()?;
    let id = pool_id(&ctx, &a.pool)?;
    if ctx.cpupools()?.iter().any(|p| p.name == a.name) {
        return Err(failed(anyhow::anyhow!(
            "Can't rename cpupool '{}': a pool named '{}' exists",
            a.pool,
            a.name
        )));
    }
    ctx.cpupool_rename(id, &a.name)
        .map_err(|e| failed(anyhow::anyhow!("Can't rename cpupool '{}': {e}", a.pool)))?;
    Ok(0)
}

pub async fn cpu_add(_g: &super::Globals, a: CpusArgs) -> anyhow::Result<i32> {
    let ctx = domain::open()?;
    let cpus = cpus_of(&ctx, &a.cpus)?;
    let id = pool_id(&ctx, &a.pool)?;
    ctx.cpupool_cpu_add(id, &cpus).map_err(|e| {
        failed(anyhow::anyhow!(
            "some cpus may not have been added to {}: {e}",
            a.pool
        ))
    })?;
    Ok(0)
}

pub async fn cpu_remove(_g: &super::Globals, a: CpusArgs) -> anyhow::Result<i32> {
    let ctx = domain::open()?;
    let cpus = cpus_of(&ctx, &a.cpus)?;
    let id = pool_id(&ctx, &a.pool)?;
    ctx.cpupool_cpu_remove(id, &cpus).map_err(|e| {
        failed(anyhow::anyhow!(
            "Some cpus may have not or only partially been removed from '{}': {e}",
            a.pool
        ))
    })?;
    Ok(0)
}

pub async fn migrate(_g: &super::Globals, a: MigrateArgs) -> anyhow::Result<i32> {
    let ctx = domain::open()?;
    let domid = domain::resolve(&ctx, &a.domain)?;
    let id = pool_id(&ctx, &a.pool)?;
    ctx.cpupool_move_domain(id, domid).map_err(|e| {
        failed(anyhow::anyhow!(
            "cannot move domain {domid} to cpupool '{}': {e}",
            a.pool
        ))
    })?;
    Ok(0)
}
