//! `hx list [--json] [-l] [-v] [DOMAIN...]`: every domain on the host, as `xl list` shows them;
//! `-l`: each guest's libxl config as JSON (`xl list -l`), `-v`: UUID, shutdown reason code and
//! security label columns (`xl list -v`).
use super::domain;
use serde::Serialize;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// JSON output: an array of objects (fields in docs/cli.md)
    #[arg(long, conflicts_with_all = ["long", "verbose"])]
    pub json: bool,
    /// Each domain's libxl config as JSON, like `xl list -l` (Domain-0 has none)
    #[arg(short = 'l', long = "long")]
    pub long: bool,
    /// UUID, shutdown reason code and security label columns (xl list -v)
    #[arg(short = 'v', conflicts_with = "long")]
    pub verbose: bool,
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
    if args.long {
        let mut configs = Vec::new();
        for d in &list {
            // Domain-0 and domains libxl did not create have no config: skipped, as xl does.
            if let Ok(mut cfg) = ctx.retrieve_config(d.domid).await {
                configs.push((d.domid, ctx.config_json(&mut cfg)?));
            }
        }
        domain::print(&long_json(&configs))?;
        return Ok(0);
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
    let mut out =
        String::from("Name                                        ID   Mem VCPUs\tState\tTime(s)");
    if args.verbose {
        out.push_str("   UUID                            Reason-Code\tSecurity Label");
    }
    out.push('\n');
    for d in &list {
        out.push_str(&format!(
            "{:<40} {:>5} {:>5} {:>5}     {}  {:>8.1}",
            d.name.as_deref().unwrap_or("(null)"),
            d.domid,
            d.memory_kb / 1024,
            d.vcpus_online,
            domain::state(d),
            d.cpu_time_ns as f64 / 1e9
        ));
        if args.verbose {
            out.push_str(&verbose_columns(d));
        }
        out.push('\n');
    }
    domain::print(&out)?;
    Ok(0)
}

/// `xl list -v`'s extra columns: UUID, the shutdown reason's code in hex (`-` while not shut
/// down), the security label (`-` without XSM).
fn verbose_columns(d: &xen_bindings::DomainInfo) -> String {
    let reason = match d.shutdown_reason {
        Some(r) if d.shutdown => format!("{:>8x}", r.code()),
        _ => format!("{:>8}", "-"),
    };
    format!(
        " {} {reason} {:>16}",
        d.uuid,
        d.ssid_label.as_deref().unwrap_or("-")
    )
}

/// `xl list -l`'s output: a JSON array of `{"domid": N, "config": CONFIG}` in yajl's beautified
/// form (four spaces a level; `puts` adds a blank line), with each CONFIG as
/// libxl_domain_config_to_json wrote it, indented to its depth (yajl leaves the inside of an
/// empty map or array an empty line, without indentation).
pub fn long_json(configs: &[(u32, String)]) -> String {
    let mut out = String::from("[\n");
    for (i, (domid, config)) in configs.iter().enumerate() {
        if i > 0 {
            out.push_str(",\n");
        }
        let config: Vec<String> = config
            .trim_end_matches('\n')
            .split('\n')
            .enumerate()
            .map(|(i, l)| match (i, l.is_empty()) {
                (0, _) | (_, true) => l.to_string(),
                _ => format!("        {l}"),
            })
            .collect();
        let config = config.join("\n");
        out.push_str(&format!(
            "    {{\n        \"domid\": {domid},\n        \"config\": {config}\n    }}"
        ));
    }
    out.push_str("\n]\n\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_json_is_yajls_beautified_form() {
        let cfg = "{\n    \"c_info\": {\n        \"name\": \"xa\"\n    }\n}\n";
        let empty = "{\n    \"type.pvh\": {\n\n    }\n}\n";
        assert_eq!(
            long_json(&[(1, empty.into())]),
            "[\n    {\n        \"domid\": 1,\n        \"config\": {\n            \"type.pvh\": {\n\n            }\n        }\n    }\n]\n\n"
        );
        let want = "[\n    {\n        \"domid\": 3,\n        \"config\": {\n            \"c_info\": {\n                \"name\": \"xa\"\n            }\n        }\n    },\n    {\n        \"domid\": 4,\n        \"config\": {\n            \"c_info\": {\n                \"name\": \"xa\"\n            }\n        }\n    }\n]\n\n";
        assert_eq!(long_json(&[(3, cfg.into()), (4, cfg.into())]), want);
        assert_eq!(long_json(&[]), "[\n\n]\n\n");
        let v: serde_json::Value = serde_json::from_str(&long_json(&[(3, cfg.into())])).unwrap();
        assert_eq!(v[0]["config"]["c_info"]["name"], "xa");
    }
}
