//! `hx ps`: containers, reconciled with what really runs.
use hx_engine::container::{Container, Status};
use hx_images::Store;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Show all containers (default: running only)
    #[arg(short, long)]
    pub all: bool,
    /// Only container ids
    #[arg(short, long)]
    pub quiet: bool,
    /// JSON output (one array)
    #[arg(long)]
    pub json: bool,
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let list = {
        let _lock = Store::open(&g.root)?.lock()?;
        hx_engine::runtime::reconcile(&g.root)?
    };
    let list: Vec<Container> = list
        .into_iter()
        .filter(|c| args.all || c.status == Status::Running)
        .collect();
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&list)?);
    } else if args.quiet {
        for c in &list {
            outln!("{}", c.short_id());
        }
    } else {
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|c| {
                let mut cmd = c.command.join(" ");
                if cmd.chars().count() > 22 {
                    cmd = format!("{}…", cmd.chars().take(21).collect::<String>());
                }
                vec![
                    c.short_id().to_string(),
                    c.image.clone(),
                    format!("\"{cmd}\""),
                    ago(&c.created),
                    status_text(c, super::pause::is_paused(&g.root, c)),
                    ports_text(c),
                    c.backend.clone(),
                    c.name.clone(),
                ]
            })
            .collect();
        super::images::print_table(
            &[
                "CONTAINER ID",
                "IMAGE",
                "COMMAND",
                "CREATED",
                "STATUS",
                "PORTS",
                "BACKEND",
                "NAMES",
            ],
            &rows,
        );
    }
    Ok(0)
}

/// docker's PORTS column: `0.0.0.0:8080->80/tcp, …` while the container runs.
pub fn ports_text(c: &Container) -> String {
    match (&c.network, c.status) {
        (Some(n), Status::Running) => n
            .ports
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        _ => String::new(),
    }
}

pub fn status_text(c: &Container, paused: bool) -> String {
    match c.status {
        Status::Creating => "Creating".into(),
        Status::Created => "Created".into(),
        Status::Starting => "Starting".into(),
        Status::Running => format!(
            "Up {}{}",
            since(c.started_at.as_deref().unwrap_or(&c.created)),
            if paused { " (Paused)" } else { "" }
        ),
        Status::Exited => {
            let code = c.exit_code.unwrap_or(-1);
            let when = ago(c.finished_at.as_deref().unwrap_or(&c.created));
            match &c.error {
                Some(_) => format!("Exited ({code}) {when} (error)"),
                None => format!("Exited ({code}) {when}"),
            }
        }
    }
}

fn seconds_since(ts: &str) -> i64 {
    let now = hx_engine::container::now_rfc3339();
    parse(&now) - parse(ts)
}

/// Seconds since the epoch of our own RFC 3339 UTC timestamps.
fn parse(ts: &str) -> i64 {
    let n = |a: usize, b: usize| {
        ts.get(a..b)
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(0)
    };
    let (y, m, d) = (n(0, 4), n(5, 7), n(8, 10));
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    days * 86400 + n(11, 13) * 3600 + n(14, 16) * 60 + n(17, 19)
}

fn human(secs: i64) -> String {
    match secs {
        s if s < 2 => "Less than a second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 120 => "About a minute".into(),
        s if s < 3600 => format!("{} minutes", s / 60),
        s if s < 7200 => "About an hour".into(),
        s if s < 86400 * 2 => format!("{} hours", s / 3600),
        s => format!("{} days", s / 86400),
    }
}

pub fn since(ts: &str) -> String {
    human(seconds_since(ts))
}

pub fn ago(ts: &str) -> String {
    format!("{} ago", human(seconds_since(ts)))
}
