//! `hx top CONTAINER`: the processes running in a container (docker top's default columns:
//! `UID PID PPID C STIME TTY TIME CMD`), as its pv-init reads them from the guest's /proc.
//! `hx top -b [-d SECS] [-i N]`: every domain, xentop's batch mode (cli/xentop.rs).
use hx_engine::exec_channel::client;
use pv_init::mux::{Query, TopAnswer};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Container (name or id); none with -b
    #[arg(required_unless_present = "batch", conflicts_with = "batch")]
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::containers))]
    pub container: Option<String>,
    /// xentop's batch mode: every domain's resource use, as lines for scripts
    #[arg(short = 'b', long = "batch")]
    pub batch: bool,
    /// With -b: seconds between updates
    #[arg(short = 'd', long = "delay", default_value_t = 3, requires = "batch")]
    pub delay: u64,
    /// With -b: number of updates, then exit (default: until interrupted)
    #[arg(short = 'i', long = "iterations", requires = "batch")]
    pub iterations: Option<u64>,
    /// JSON output (the processes as pv-init reported them)
    #[arg(long)]
    pub json: bool,
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let Some(container) = &args.container else {
        return super::xentop::run(args.delay, args.iterations).await;
    };
    let (_, _, socket) = super::exec::channel(&g.root, container)?;
    let top: TopAnswer =
        tokio::task::spawn_blocking(move || client::ask(&socket, Query::Top)).await??;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&top.processes)?);
        return Ok(0);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let rows: Vec<Vec<String>> = top
        .processes
        .iter()
        .map(|p| {
            vec![
                if p.user.is_empty() {
                    p.uid.to_string()
                } else {
                    p.user.clone()
                },
                p.pid.to_string(),
                p.ppid.to_string(),
                "0".into(),
                start_time(p.started, now),
                p.tty.clone(),
                clock(p.cpu_secs),
                p.cmd.clone(),
            ]
        })
        .collect();
    super::table::print(
        super::table::DOCKER_TOP,
        &["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"],
        &rows,
    );
    if top.more > 0 {
        errln!("hx: {} more processes not shown", top.more);
    }
    Ok(0)
}

/// ps's STIME: `HH:MM` within the last day, else `Mon DD` (UTC).
fn start_time(started: u64, now: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    if now.saturating_sub(started) < 86_400 {
        let s = started % 86_400;
        return format!("{:02}:{:02}", s / 3600, s % 3600 / 60);
    }
    let (_, m, d) = civil_date(started / 86_400);
    format!("{}{:02}", MONTHS[(m - 1) as usize], d)
}

/// Days since 1970-01-01 as (year, month 1..=12, day) (Howard Hinnant's algorithm).
fn civil_date(days: u64) -> (i64, u32, u32) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// ps's TIME: `HH:MM:SS` of CPU time.
fn clock(secs: u64) -> String {
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_like_ps() {
        assert_eq!(clock(3725), "01:02:05");
        // 2026-12-03 10:15 UTC, seen an hour later and two days later.
        let t = 1_796_292_900;
        assert_eq!(start_time(t, t + 3600), "10:15");
        assert_eq!(start_time(t, t + 2 * 86_400), "Dec03");
        assert_eq!(civil_date(0), (1970, 1, 1));
    }
}
