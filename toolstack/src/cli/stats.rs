//! `hx stats [--no-stream] [--json] [CONTAINER...]`: per running container, CPU %, memory
//! used / limit, network and block I/O and processes as its guest sees them (asked of pv-init
//! over the exec channel), refreshed every second like docker stats, or once.
use hx_engine::container::{Container, Status};
use hx_engine::exec_channel::client;
use pv_init::mux::{Query, StatsAnswer};
use std::io::IsTerminal;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Containers (name or id); default: every running container
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::containers))]
    pub containers: Vec<String>,
    /// One sample (over one second) instead of a live view
    #[arg(long)]
    pub no_stream: bool,
    /// JSON output: one array per refresh
    #[arg(long)]
    pub json: bool,
}

/// One row: what two samples a second apart say.
#[derive(serde::Serialize)]
struct Row {
    id: String,
    name: String,
    /// None where the container has no exec channel (its backend) or did not answer.
    cpu_percent: Option<f64>,
    mem_used: Option<u64>,
    mem_limit: Option<u64>,
    net_rx: Option<u64>,
    net_tx: Option<u64>,
    block_read: Option<u64>,
    block_write: Option<u64>,
    pids: Option<u32>,
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let containers: Vec<Container> = if args.containers.is_empty() {
        let _lock = hx_images::Store::open(&g.root)?.lock()?;
        hx_engine::runtime::reconcile(&g.root)?
            .into_iter()
            .filter(|c| c.status == Status::Running)
            .collect()
    } else {
        let mut v = Vec::new();
        for key in &args.containers {
            let c = hx_engine::container::find(&g.root, key)?;
            if c.status != Status::Running {
                anyhow::bail!("container {} is not running", c.name);
            }
            v.push(c);
        }
        v
    };
    let live = !args.no_stream;
    let clear = live && !args.json && std::io::stdout().is_terminal();
    let mut previous = sample_all(&g.root, &containers).await;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = sample_all(&g.root, &containers).await;
        let rows: Vec<Row> = containers
            .iter()
            .zip(previous.iter().zip(&now))
            .map(|(c, (a, b))| row(c, a.as_ref(), b.as_ref()))
            .collect();
        if clear {
            outln!("\x1b[2J\x1b[H");
        }
        if args.json {
            outln!("{}", serde_json::to_string(&rows)?);
        } else {
            print(&rows);
        }
        if !live || now.iter().all(Option::is_none) {
            return Ok(0);
        }
        previous = now;
    }
}

async fn sample_all(root: &std::path::Path, cs: &[Container]) -> Vec<Option<StatsAnswer>> {
    let mut tasks = Vec::new();
    for c in cs {
        let (root, key) = (root.to_path_buf(), c.id.clone());
        tasks.push(tokio::task::spawn_blocking(move || {
            let (c, _, socket) = super::exec::channel(&root, &key).ok()?;
            let member = c.is_pod_member().then(|| c.id.clone());
            client::ask::<StatsAnswer>(&socket, Query::Stats { member }).ok()
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.ok().flatten());
    }
    out
}

fn row(c: &Container, a: Option<&StatsAnswer>, b: Option<&StatsAnswer>) -> Row {
    let cpu = match (a, b) {
        (Some(a), Some(b)) if b.cpu_total > a.cpu_total => {
            let busy = b.cpu_busy.saturating_sub(a.cpu_busy) as f64;
            let total = (b.cpu_total - a.cpu_total) as f64;
            // docker's scale: 100% per CPU.
            Some(busy / total * 100.0 * f64::from(b.cpus.max(1)))
        }
        _ => None,
    };
    Row {
        id: c.short_id().to_string(),
        name: c.name.clone(),
        cpu_percent: cpu,
        mem_used: b.map(|s| s.mem_used),
        mem_limit: b.map(|s| s.mem_total),
        net_rx: b.map(|s| s.net_rx),
        net_tx: b.map(|s| s.net_tx),
        block_read: b.map(|s| s.block_read),
        block_write: b.map(|s| s.block_write),
        pids: b.map(|s| s.pids),
    }
}

fn print(rows: &[Row]) {
    let dash = || "--".to_string();
    let io = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => format!(
            "{} / {}",
            super::images::human_size(a),
            super::images::human_size(b)
        ),
        _ => dash(),
    };
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.name.clone(),
                r.cpu_percent.map_or_else(dash, |p| format!("{p:.2}%")),
                match (r.mem_used, r.mem_limit) {
                    (Some(u), Some(l)) => format!("{} / {}", mib(u), mib(l)),
                    _ => dash(),
                },
                match (r.mem_used, r.mem_limit) {
                    (Some(u), Some(l)) if l > 0 => format!("{:.2}%", u as f64 / l as f64 * 100.0),
                    _ => dash(),
                },
                io(r.net_rx, r.net_tx),
                io(r.block_read, r.block_write),
                r.pids.map_or_else(dash, |p| p.to_string()),
            ]
        })
        .collect();
    super::table::print(
        super::table::DOCKER,
        &[
            "CONTAINER ID",
            "NAME",
            "CPU %",
            "MEM USAGE / LIMIT",
            "MEM %",
            "NET I/O",
            "BLOCK I/O",
            "PIDS",
        ],
        &table,
    );
}

/// docker's memory unit: binary.
fn mib(b: u64) -> String {
    let f = b as f64;
    if f >= (1u64 << 30) as f64 {
        format!("{:.2}GiB", f / (1u64 << 30) as f64)
    } else {
        format!("{:.2}MiB", f / (1u64 << 20) as f64)
    }
}
