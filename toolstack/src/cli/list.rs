//! `hx list [--json] [DOMAIN...]`: every domain on the host, as `xl list` shows them.
use super::domain;
use serde::Serialize;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// JSON output: an array of objects (fields in docs/cli.md)
    #[arg(long)]
    pub json: bool,
    /// Only these domains (name or id)
    pub domains: Vec<String>,
}

/// `--json` record: stable, documented in docs/cli.md.
#[derive(Serialize)]
struct Row {
    name: String,
    domid: u32,
    uuid: String,
    state: String,
    memory_mb: u64,
    max_memory_mb: u64,
    vcpus: u32,
    max_vcpus: u32,
    cpu_time_s: f64,
    running: bool,
    blocked: bool,
    paused: bool,
    shutdown: bool,
    dying: bool,
    shutdown_reason: Option<xen_bindings::ShutdownReason>,
    pvh: bool,
    /// The hx container the domain runs, if hx created it.
    container_id: Option<String>,
}

pub async fn run(_g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let ctx = domain::open()?;
    let mut list = ctx.list()?;
    if !args.domains.is_empty() {
        let mut ids = Vec::new();
        for d in &args.domains {
            ids.push(domain::resolve(&ctx, d)?);
        }
        list.retain(|d| ids.contains(&d.domid));
    }
    if args.json {
        let xs = xen_bindings::Xenstore::open().ok();
        let rows: Vec<Row> = list
            .iter()
            .map(|d| Row {
                name: d.name.clone().unwrap_or_default(),
                domid: d.domid,
                uuid: d.uuid.clone(),
                state: domain::state(d),
                memory_mb: d.memory_kb / 1024,
                max_memory_mb: d.max_memory_kb / 1024,
                vcpus: d.vcpus_online,
                max_vcpus: d.vcpus_max,
                cpu_time_s: (d.cpu_time_ns as f64 / 1e8).round() / 10.0,
                running: d.running,
                blocked: d.blocked,
                paused: d.paused,
                shutdown: d.shutdown,
                dying: d.dying,
                shutdown_reason: d.shutdown_reason,
                pvh: d.pvh,
                container_id: xs.as_ref().and_then(|xs| domain::hx_container(xs, d.domid)),
            })
            .collect();
        domain::print(&format!("{}\n", serde_json::to_string_pretty(&rows)?))?;
        return Ok(0);
    }
    let mut out = String::from(
        "Name                                        ID   Mem VCPUs\tState\tTime(s)\n",
    );
    for d in &list {
        out.push_str(&format!(
            "{:<40} {:>5} {:>5} {:>5}     {}  {:>8.1}\n",
            d.name.as_deref().unwrap_or("(null)"),
            d.domid,
            d.memory_kb / 1024,
            d.vcpus_online,
            domain::state(d),
            d.cpu_time_ns as f64 / 1e9
        ));
    }
    domain::print(&out)?;
    Ok(0)
}
