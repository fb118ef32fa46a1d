//! `hx update [--memory M] [--cpus N] [--cpu-shares N] [--pids-limit N] CONTAINER...`: docker update's resource
//! flags (hx_engine::limits) and `--restart`: a running VM changes in place where its backend can (Xen: the
//! balloon target within the memory it was made with, credit2's cap and weight), a stopped
//! container's limits are its next start's. Prints each container updated, as docker does.
use hx_engine::limits::{self, Limits};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
On Xen a running container's memory can shrink and grow back up to what its VM was made \
with; more needs a stop and start. --cpus caps CPU time (0.5: half of one CPU, 0: no cap); \
the vCPU count is fixed at creation (hx run --cpus).")]
pub struct Args {
    /// Memory limit (e.g. 96m, 1g): the VM's balloon target
    #[arg(short, long)]
    pub memory: Option<String>,
    /// CPU time cap in CPUs (e.g. 0.5; 0 lifts the cap)
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Relative CPU weight (docker's shares: 1024 is the default)
    #[arg(short = 'c', long)]
    pub cpu_shares: Option<u64>,
    /// At most this many processes and threads in the container (-1: no limit)
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Restart policy: no, on-failure[:N], always, unless-stopped
    #[arg(long)]
    pub restart: Option<String>,
    /// Containers (name or id)
    #[arg(required = true)]
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::containers))]
    pub containers: Vec<String>,
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let l = Limits {
        memory_mb: args
            .memory
            .as_deref()
            .map(|m| {
                super::run::parse_size_in(
                    "--memory",
                    m,
                    limits::MIN_MEMBER_MEMORY_MB << 20,
                    limits::MAX_MEMORY_MB << 20,
                )
                .map(|b| b.div_ceil(1 << 20))
            })
            .transpose()?,
        cpu_cap_pct: args.cpus.map(Limits::cap_for_cpus).transpose()?,
        cpu_shares: args.cpu_shares,
        pids_limit: args.pids_limit,
    };
    let restart = args
        .restart
        .as_deref()
        .map(hx_engine::restart::Policy::parse)
        .transpose()
        .map_err(|e| super::Fixed::wrap(125, e))?;
    if l.is_empty() && restart.is_none() {
        errln!(
            "hx: update: give one or more of --memory, --cpus, --cpu-shares, --pids-limit, --restart"
        );
        return Ok(1);
    }
    let mut code = 0;
    for key in &args.containers {
        let root = g.root.clone();
        let k = key.clone();
        let r = tokio::task::spawn_blocking(move || {
            if !l.is_empty() {
                limits::update(&root, &k, &l)?;
            }
            if let Some(p) = restart {
                hx_engine::restart::set_policy(&root, &k, p)?;
            }
            anyhow::Ok(())
        });
        match r.await? {
            Ok(_) => outln!("{key}"),
            Err(e) => {
                errln!("hx: {}", super::one_line(&e));
                code = 1;
            }
        }
    }
    Ok(code)
}
