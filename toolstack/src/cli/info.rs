//! `hx info [--json]`: the host and hypervisor, as `xl info` shows them.
use super::domain;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// JSON output (one object)
    #[arg(long)]
    pub json: bool,
}

pub async fn run(_g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let ctx = domain::open()?;
    let h = ctx.host_info()?;
    if args.json {
        domain::print(&format!("{}\n", serde_json::to_string_pretty(&h)?))?;
        return Ok(0);
    }
    let uname = nix::sys::utsname::uname()?;
    let rows: Vec<(&str, String)> = vec![
        ("host", uname.nodename().to_string_lossy().into_owned()),
        ("release", uname.release().to_string_lossy().into_owned()),
        ("machine", uname.machine().to_string_lossy().into_owned()),
        ("nr_cpus", h.nr_cpus.to_string()),
        ("max_cpu_id", h.max_cpu_id.to_string()),
        ("nr_nodes", h.nr_nodes.to_string()),
        ("cores_per_socket", h.cores_per_socket.to_string()),
        ("threads_per_core", h.threads_per_core.to_string()),
        ("cpu_mhz", h.cpu_mhz.to_string()),
        ("virt_caps", h.virt_caps.join(" ")),
        ("total_memory", h.total_memory_mb.to_string()),
        ("free_memory", h.free_memory_mb.to_string()),
        ("xen_version", h.xen_version.clone()),
        ("xen_caps", h.xen_caps.clone()),
        ("xen_commandline", h.xen_commandline.clone()),
        ("cc_compiler", h.compiler.clone()),
        ("cc_compile_date", h.compile_date.clone()),
    ];
    let text: String = rows
        .iter()
        .map(|(k, v)| format!("{k:<23}: {v}\n"))
        .collect();
    domain::print(&text)?;
    Ok(0)
}
