//! `hx ps`: containers, reconciled with what really runs; docker's `--filter` and `--format`.
use super::filter::{FilterError, Filters};
use super::format::{self, Format};
use super::Fixed;
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
    /// Filter: name=, id=, status=, label=KEY[=VALUE], ancestor=IMAGE, exited=CODE (docker's)
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// A Go template ({{.Names}}, {{json .}}, `table {{.ID}}\t{{.Status}}`), or json, or table
    #[arg(long, value_name = "TEMPLATE")]
    pub format: Option<String>,
    /// Full ids and commands
    #[arg(long)]
    pub no_trunc: bool,
}

/// The filters `docker ps` has that hx knows.
const FILTERS: &[&str] = &[
    "name", "id", "status", "label", "ancestor", "exited", "before", "since", "volume", "network",
    "publish", "expose",
];
/// docker's container states (moby api/types/container/state.go).
const STATES: &[&str] = &[
    "created",
    "running",
    "paused",
    "restarting",
    "removing",
    "exited",
    "dead",
];

/// Columns of docker's container table, by template field.
const HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Names", "NAMES"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Ports", "PORTS"),
    ("State", "STATE"),
    ("Status", "STATUS"),
    ("Size", "SIZE"),
    ("Labels", "LABELS"),
    ("Mounts", "MOUNTS"),
    ("LocalVolumes", "LOCAL VOLUMES"),
    ("Networks", "NETWORKS"),
    ("Backend", "BACKEND"),
];

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let filters = Filters::parse(&args.filter, FILTERS).map_err(filter_error)?;
    let selection = Selection::new(g, &filters)?;
    // docker parses the template before it asks the daemon for anything.
    let custom = args
        .format
        .as_deref()
        .filter(|f| !args.quiet && *f != "table" && !f.is_empty());
    let format = custom
        .map(Format::parse)
        .transpose()
        .map_err(|e| Fixed::wrap(1, e.into()))?;
    let list = {
        let _lock = Store::open(&g.root)?.lock()?;
        hx_engine::runtime::reconcile(&g.root)?
    };
    // A status filter shows stopped containers too, as docker's daemon does.
    let all = args.all || filters.contains("status");
    let list: Vec<(Container, bool)> = list
        .into_iter()
        .map(|c| {
            let paused = super::pause::is_paused(&g.root, &c);
            (c, paused)
        })
        .filter(|(c, _)| all || c.status == Status::Running)
        .filter(|(c, paused)| selection.keeps(g, c, *paused, &filters))
        .collect();
    if let (Some(f), Some(source)) = (&format, custom) {
        let rows: Vec<_> = list
            .iter()
            .map(|(c, paused)| row(g, c, *paused, !args.no_trunc))
            .collect();
        let text = f
            .render_all(source, &rows, HEADERS)
            .map_err(|e| Fixed::wrap(1, e.into()))?;
        hx_engine::output::write_out(format_args!("{text}"));
        return Ok(0);
    }
    if args.json {
        let records: Vec<&Container> = list.iter().map(|(c, _)| c).collect();
        outln!("{}", serde_json::to_string_pretty(&records)?);
    } else if args.quiet {
        for (c, _) in &list {
            match args.no_trunc {
                true => outln!("{}", c.id),
                false => outln!("{}", c.short_id()),
            }
        }
    } else {
        // The POD column only when a listed container is in a pod (docs/pods.md).
        let pods = list.iter().any(|(c, _)| c.pod.is_some());
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|(c, paused)| {
                let mut row = vec![
                    match args.no_trunc {
                        true => c.id.clone(),
                        false => c.short_id().to_string(),
                    },
                    c.image.clone(),
                    command_cell(c, !args.no_trunc),
                    ago(&c.created),
                    status_text(c, *paused),
                    ports_text(c),
                    c.backend.clone(),
                ];
                if pods {
                    row.push(c.pod.clone().unwrap_or_default());
                }
                row.push(c.name.clone());
                row
            })
            .collect();
        let mut headers = vec![
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "BACKEND",
        ];
        if pods {
            headers.push("POD");
        }
        headers.push("NAMES");
        super::table::print(super::table::DOCKER, &headers, &rows);
    }
    Ok(0)
}

/// Filter errors as docker reports them: a malformed flag is a usage error (125), a filter the
/// command does not have is the daemon's refusal (1).
fn filter_error(e: FilterError) -> anyhow::Error {
    let code = match e {
        FilterError::Syntax(_) => 125,
        _ => 1,
    };
    Fixed::wrap(code, e.into())
}

/// What the filters need looked up once: the image ids `ancestor=` names, the creation times
/// `before=`/`since=` name.
struct Selection {
    ancestors: Vec<String>,
    exited: Vec<i32>,
    publish: Vec<PortSet>,
    expose: Vec<PortSet>,
    before: Option<std::time::SystemTime>,
    since: Option<std::time::SystemTime>,
}

/// When a container was made, finer than its `created` record (whole seconds): its
/// directory's birth time, where the filesystem keeps one.
fn created_time(g: &super::Globals, c: &Container) -> std::time::SystemTime {
    std::fs::metadata(hx_engine::container::dir(&g.root, &c.id))
        .and_then(|m| m.created())
        .ok()
        .or_else(|| {
            let t = chrono::DateTime::parse_from_rfc3339(&c.created).ok()?;
            Some(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.timestamp().max(0) as u64),
            )
        })
        .unwrap_or(std::time::UNIX_EPOCH)
}

impl Selection {
    fn new(g: &super::Globals, f: &Filters) -> anyhow::Result<Selection> {
        for s in f.values("status") {
            if !STATES.contains(&s) {
                return Err(filter_error(FilterError::BadValue {
                    key: "status".into(),
                    value: s.into(),
                    why: format!(
                        ": invalid value for state ({s}): must be one of {}",
                        STATES.join(", ")
                    ),
                }));
            }
        }
        let exited = f
            .values("exited")
            .map(|v| {
                v.parse::<i32>().map_err(|e| {
                    filter_error(FilterError::BadValue {
                        key: "exited".into(),
                        value: v.into(),
                        why: format!(": {e}"),
                    })
                })
            })
            .collect::<anyhow::Result<Vec<i32>>>()?;
        // An image that is not there matches nothing (docker's daemon logs it and goes on).
        let store = Store::open(&g.root)?;
        let ancestors = f
            .values("ancestor")
            .filter_map(|a| store.find_image(a).ok())
            .map(|i| i.id.to_string())
            .collect();
        // docker: the container named must exist (one line, exit 1); several values, the
        // last one counts.
        let edge = |key: &str| -> anyhow::Result<Option<std::time::SystemTime>> {
            match f.values(key).last() {
                Some(name) => {
                    let c =
                        hx_engine::container::find(&g.root, name).map_err(|e| Fixed::wrap(1, e))?;
                    Ok(Some(created_time(g, &c)))
                }
                None => Ok(None),
            }
        };
        let (before, since) = (edge("before")?, edge("since")?);
        let ports = |key: &str| -> anyhow::Result<Vec<PortSet>> {
            f.values(key)
                .map(|v| {
                    PortSet::parse(v).map_err(|why| {
                        filter_error(FilterError::BadValue {
                            key: key.into(),
                            value: v.into(),
                            why: format!(": {why}"),
                        })
                    })
                })
                .collect()
        };
        Ok(Selection {
            ancestors,
            exited,
            publish: ports("publish")?,
            expose: ports("expose")?,
            before,
            since,
        })
    }

    fn keeps(&self, g: &super::Globals, c: &Container, paused: bool, f: &Filters) -> bool {
        let restarting = restarting(g, c);
        (f.matches("name", &c.name) || f.matches("name", &format!("/{}", c.name)))
            && f.matches("id", &c.id)
            && f.labels_match("label", &c.labels)
            && f.matches("status", state(c, paused, restarting))
            && (!f.contains("ancestor") || self.ancestors.contains(&c.image_id))
            && self.before.is_none_or(|t| created_time(g, c) < t)
            && self.since.is_none_or(|t| created_time(g, c) > t)
            && (!f.contains("volume")
                || f.values("volume").any(|v| {
                    c.mounts.iter().any(|m| {
                        (m.kind == "volume" && m.source == v) || m.target == v.trim_end_matches('/')
                    })
                }))
            && (self.exited.is_empty()
                || (c.status == Status::Exited
                    && c.started_at.is_some()
                    && self.exited.contains(&c.exit_code.unwrap_or(-1))))
            && (!f.contains("network")
                || f.values("network").any(|v| v == network_name(&g.root, c)))
            && self.ports_match(c)
    }

    /// docker: a container passes `publish=`/`expose=` when one of the ports its PORTS column
    /// shows has a host port (publish) or container port (expose) in one of the sets.
    fn ports_match(&self, c: &Container) -> bool {
        if self.publish.is_empty() && self.expose.is_empty() {
            return true;
        }
        let Some(n) = c.network.as_ref().filter(|_| c.status == Status::Running) else {
            return false;
        };
        n.ports.iter().any(|p| {
            let proto = p.proto.as_str();
            self.publish.iter().any(|s| s.has(p.host_port, proto))
                || self.expose.iter().any(|s| s.has(p.container_port, proto))
        })
    }
}

/// A `publish=`/`expose=` value: `PORT[/PROTO]` or `START-END[/PROTO]`, tcp when no protocol
/// is given (docker's nat.ParsePortRange).
#[derive(Debug, PartialEq, Eq)]
struct PortSet {
    first: u16,
    last: u16,
    proto: String,
}

impl PortSet {
    fn parse(v: &str) -> Result<PortSet, String> {
        if v.contains(':') {
            return Err("should not contain ':'".into());
        }
        let (range, proto) = match v.split_once('/') {
            Some((r, p)) if !p.is_empty() => (r, p.to_ascii_lowercase()),
            Some((r, _)) => (r, "tcp".to_string()),
            None => (v, "tcp".to_string()),
        };
        let port = |t: &str| -> Result<u16, String> {
            t.parse::<u16>()
                .map_err(|_| format!("invalid port number {t:?}"))
        };
        let (first, last) = match range.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => (port(range)?, port(range)?),
        };
        if last < first {
            return Err(format!("invalid range {range:?}: {last} < {first}"));
        }
        Ok(PortSet { first, last, proto })
    }

    fn has(&self, port: u16, proto: &str) -> bool {
        (self.first..=self.last).contains(&port) && self.proto == proto
    }
}

/// The network a container is on as `ps` names it (NETWORKS column, `network=` filter).
fn network_name(root: &std::path::Path, c: &Container) -> String {
    match &c.network {
        Some(n) if n.network.is_some() => {
            let id = n.network.as_deref().unwrap_or_default();
            hx_engine::network::user_net::find(root, id)
                .map(|u| u.name)
                .unwrap_or_else(|_| id.to_string())
        }
        Some(n) if n.mode != "none" => "bridge".into(),
        Some(_) => "none".into(),
        None => String::new(),
    }
}

fn restarting(g: &super::Globals, c: &Container) -> bool {
    c.status == Status::Exited && hx_engine::restart::supervised(&g.root, c.id.as_str())
}

/// docker's State: created, running, paused, restarting, exited (a container being made or
/// booting counts as created or restarting).
pub fn state(c: &Container, paused: bool, restarting: bool) -> &'static str {
    match c.status {
        Status::Creating | Status::Created => "created",
        Status::Starting => "restarting",
        Status::Running if paused => "paused",
        Status::Running => "running",
        Status::Exited if restarting => "restarting",
        Status::Exited => "exited",
    }
}

/// One container as docker's ps template sees it: every field a string.
fn row(g: &super::Globals, c: &Container, paused: bool, trunc: bool) -> gtmpl_ng::Value {
    let labels: Vec<String> = c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mounts: Vec<String> = c
        .mounts
        .iter()
        .map(|m| match trunc && m.source.chars().count() > 15 {
            true => format!("{}…", m.source.chars().take(14).collect::<String>()),
            false => m.source.clone(),
        })
        .collect();
    let local_volumes = c.mounts.iter().filter(|m| m.kind == "volume").count();
    let network = network_name(&g.root, c);
    let mut row = format::row(&[
        (
            "ID",
            match trunc {
                true => c.short_id().to_string(),
                false => c.id.clone(),
            },
        ),
        ("Names", c.name.clone()),
        ("Image", c.image.clone()),
        ("Command", command_cell(c, trunc)),
        ("CreatedAt", created_at(&c.created)),
        ("RunningFor", ago(&c.created)),
        ("Ports", ports_text(c)),
        ("State", state(c, paused, restarting(g, c)).into()),
        ("Status", status_text(c, paused)),
        ("Size", String::new()),
        ("Labels", labels.join(",")),
        ("Mounts", mounts.join(",")),
        ("LocalVolumes", local_volumes.to_string()),
        ("Networks", network),
        ("Backend", c.backend.clone()),
    ]);
    if let gtmpl_ng::Value::Object(fields) = &mut row {
        let labels = c
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), gtmpl_ng::Value::from(v.as_str())))
            .collect();
        fields.insert(format::LABELS_KEY.into(), gtmpl_ng::Value::Map(labels));
    }
    row
}

/// Go's strconv.Quote, for the characters a command has: `"`, `\` and control characters
/// escaped.
/// docker's COMMAND: the command line cut to 20 columns (unless --no-trunc), Go-quoted.
fn command_cell(c: &Container, trunc: bool) -> String {
    let command = c.command.join(" ");
    match trunc {
        true => go_quote(&super::table::ellipsis(&command, 20)),
        false => go_quote(&command),
    }
}

/// Go's strconv.Quote: `\a \b \f \n \r \t \v` by name, other ASCII controls as `\x1b`, other
/// characters Go does not print (C1 controls, spaces but U+0020, format characters such as
/// bidi overrides) as `\u009b`, so docker's COMMAND and hx's read the same.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if !go_prints(c) && (c as u32) < 0x10000 => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if !go_prints(c) => out.push_str(&format!("\\U{:08x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's unicode.IsPrint, closely enough for a command line: not a control, not a space other
/// than U+0020, not an invisible format character.
fn go_prints(c: char) -> bool {
    !(c.is_control()
        || (c.is_whitespace() && c != ' ')
        || matches!(c, '\u{ad}' | '\u{61c}' | '\u{180e}' | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206f}'
            | '\u{feff}' | '\u{fff9}'..='\u{fffb}'))
}

/// Go's time.Time.String() of our UTC timestamps: `2026-12-03 19:03:49 +0000 UTC`.
pub fn created_at(ts: &str) -> String {
    let date = ts.get(0..10).unwrap_or("");
    let time = ts.get(11..19).unwrap_or("");
    format!("{date} {time} +0000 UTC")
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

/// docker's rule (go-units' HumanDuration): "Less than a second" up to "N years", hours
/// rounded to the nearest, the larger units truncated.
fn human(secs: i64) -> String {
    let hours = (secs + 1800) / 3600;
    match secs {
        s if s < 1 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 120 => "About a minute".into(),
        s if s < 3600 => format!("{} minutes", s / 60),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        s => format!("{} years", s / 3600 / 24 / 365),
    }
}

pub fn since(ts: &str) -> String {
    human(seconds_since(ts))
}

pub fn ago(ts: &str) -> String {
    format!("{} ago", human(seconds_since(ts)))
}

#[cfg(test)]
mod tests {
    use super::PortSet;
    use proptest::prelude::*;

    #[test]
    fn port_sets_in_dockers_forms() {
        let set = |first, last, proto: &str| PortSet {
            first,
            last,
            proto: proto.into(),
        };
        assert_eq!(PortSet::parse("80"), Ok(set(80, 80, "tcp")));
        assert_eq!(PortSet::parse("53/udp"), Ok(set(53, 53, "udp")));
        assert_eq!(PortSet::parse("8000-8080/"), Ok(set(8000, 8080, "tcp")));
        assert!(PortSet::parse("8080:80").unwrap_err().contains("':'"));
        assert!(PortSet::parse("90-80").is_err());
        assert!(PortSet::parse("70000").is_err());
        assert!(PortSet::parse("").is_err());
        assert!(PortSet::parse("http").is_err());
    }

    #[test]
    fn durations_read_as_dockers() {
        let cases = [
            (0, "Less than a second"),
            (1, "1 second"),
            (59, "59 seconds"),
            (60, "About a minute"),
            (119, "About a minute"),
            (120, "2 minutes"),
            (3599, "59 minutes"),
            (3600, "About an hour"),
            (5399, "About an hour"),
            (5400, "2 hours"),
            (47 * 3600, "47 hours"),
            (48 * 3600 - 1800, "2 days"),
            (13 * 86400, "13 days"),
            (14 * 86400, "2 weeks"),
            (59 * 86400, "8 weeks"),
            (60 * 86400, "2 months"),
            (729 * 86400, "24 months"),
            (730 * 86400, "2 years"),
            (3 * 365 * 86400 + 5, "3 years"),
        ];
        for (secs, want) in cases {
            assert_eq!(super::human(secs), want, "{secs} s");
        }
    }

    #[test]
    fn commands_are_quoted_as_gos_strconv_quote() {
        assert_eq!(
            super::go_quote("\u{1b}[31mred\u{9b}2J\u{202e} \n\t\u{7}\u{7f}\"\\ é\u{a0}"),
            "\"\\x1b[31mred\\u009b2J\\u202e \\n\\t\\a\\x7f\\\"\\\\ é\\u00a0\""
        );
    }

    proptest! {
        #[test]
        fn any_value_parses_or_is_refused_and_ranges_hold_their_ends(
            v in "\\PC{0,24}", a in any::<u16>(), b in any::<u16>()
        ) {
            let _ = PortSet::parse(&v);
            let (lo, hi) = (a.min(b), a.max(b));
            let s = PortSet::parse(&format!("{lo}-{hi}/udp")).unwrap();
            prop_assert!(s.has(lo, "udp") && s.has(hi, "udp") && !s.has(lo, "tcp"));
        }
    }
}
