//! `hx images`: the local images, as a table or JSON, filtered and formatted like docker's.
use super::filter::{FilterError, Filters};
use super::format::{self, Format};
use super::Fixed;
use hx_images::{ImageRecord, Store};
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// JSON output (one array)
    #[arg(long)]
    pub json: bool,
    /// Only image ids
    #[arg(short, long)]
    pub quiet: bool,
    /// Show manifest digests
    #[arg(long)]
    pub digests: bool,
    /// Filter: reference=PATTERN (docker's glob on the name), dangling=true|false,
    /// label=KEY[=VALUE]
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// A Go template ({{.Repository}}:{{.Tag}}, {{json .}}, `table {{.ID}}\t{{.Size}}`), or json
    #[arg(long, value_name = "TEMPLATE")]
    pub format: Option<String>,
    /// Full image ids
    #[arg(long)]
    pub no_trunc: bool,
    /// Only images matching REPOSITORY[:TAG] (docker's `reference=` filter)
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::images))]
    pub repository: Option<String>,
}

const FILTERS: &[&str] = &["reference", "dangling", "label"];

const HEADERS: &[(&str, &str)] = &[
    ("ID", "IMAGE ID"),
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("Digest", "DIGEST"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("Size", "SIZE"),
    ("Containers", "CONTAINERS"),
    ("SharedSize", "SHARED SIZE"),
    ("UniqueSize", "UNIQUE SIZE"),
    ("VirtualSize", "SIZE"),
];

pub async fn run(g: &super::Globals, mut args: Args) -> anyhow::Result<i32> {
    // docker's CLI turns the argument into a filter.
    if let Some(r) = args.repository.take() {
        args.filter.push(format!("reference={r}"));
    }
    let filters = Filters::parse(&args.filter, FILTERS).map_err(|e| {
        let code = match e {
            FilterError::Syntax(_) => 125,
            _ => 1,
        };
        Fixed::wrap(code, e.into())
    })?;
    let dangling = filters
        .bool_value("dangling")
        .map_err(|e| Fixed::wrap(1, e.into()))?;
    let custom = args
        .format
        .as_deref()
        .filter(|f| !args.quiet && *f != "table" && !f.is_empty());
    let format = custom
        .map(Format::parse)
        .transpose()
        .map_err(|e| Fixed::wrap(1, e.into()))?;
    let store = Store::open(&g.root)?;
    let images: Vec<ImageRecord> = store
        .images()?
        .into_iter()
        .filter(|i| dangling.is_none_or(|d| d == i.names.is_empty()))
        .filter(|i| filters.labels_match("label", &labels(i)))
        .filter(|i| !filters.contains("reference") || references_match(&filters, i))
        .collect();
    if let (Some(f), Some(source)) = (&format, custom) {
        let mut rows = vec![];
        for i in &images {
            for (repo, tag) in names_or_none(i) {
                rows.push(row(i, &repo, &tag, !args.no_trunc));
            }
        }
        let text = f
            .render_all(source, &rows, HEADERS)
            .map_err(|e| Fixed::wrap(1, e.into()))?;
        hx_engine::output::write_out(format_args!("{text}"));
        return Ok(0);
    }
    if args.json {
        let v: Vec<_> = images
            .iter()
            .map(|i| json!({"id": i.id, "digest": i.manifest_digest, "names": i.names, "size": i.size, "created": i.created}))
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    if args.quiet {
        for i in &images {
            match args.no_trunc {
                true => outln!("{}", i.id),
                false => outln!("{}", i.id.short()),
            }
        }
        return Ok(0);
    }
    let mut rows = vec![];
    for i in &images {
        for (repo, tag) in names_or_none(i) {
            let mut row = vec![repo, tag];
            if args.digests {
                row.push(i.manifest_digest.to_string());
            }
            row.push(i.id.short().to_string());
            row.push(
                i.created
                    .clone()
                    .unwrap_or_default()
                    .chars()
                    .take(19)
                    .collect::<String>()
                    .replace('T', " "),
            );
            row.push(human_size(i.size));
            rows.push(row);
        }
    }
    let mut header = vec!["REPOSITORY", "TAG"];
    if args.digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "CREATED", "SIZE"]);
    super::table::print(super::table::DOCKER, &header, &rows);
    Ok(0)
}

fn names_or_none(i: &ImageRecord) -> Vec<(String, String)> {
    let mut names = i.display_names();
    if names.is_empty() {
        names.push(("<none>".into(), "<none>".into()));
    }
    names
}

fn labels(i: &ImageRecord) -> std::collections::BTreeMap<String, String> {
    i.config
        .config()
        .as_ref()
        .and_then(|c| c.labels().clone())
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// docker's reference filter: a glob (Go's path.Match: `*` stops at `/`) on `repo:tag`, or on
/// the repository alone; any pattern may match. A pattern that is no glob matches nothing.
fn references_match(f: &Filters, i: &ImageRecord) -> bool {
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    f.values("reference").any(|pattern| {
        let Ok(p) = glob::Pattern::new(pattern) else {
            return false;
        };
        i.display_names().iter().any(|(repo, tag)| {
            p.matches_with(&format!("{repo}:{tag}"), opts) || p.matches_with(repo, opts)
        })
    })
}

/// One image name as docker's images template sees it.
fn row(i: &ImageRecord, repo: &str, tag: &str, trunc: bool) -> gtmpl_ng::Value {
    let created = i.created.clone().unwrap_or_default();
    format::row(&[
        (
            "ID",
            match trunc {
                true => i.id.short().to_string(),
                false => i.id.to_string(),
            },
        ),
        ("Repository", repo.into()),
        ("Tag", tag.into()),
        ("Digest", i.manifest_digest.to_string()),
        (
            "CreatedSince",
            match created.is_empty() {
                true => "N/A".into(),
                false => super::ps::ago(&created),
            },
        ),
        (
            "CreatedAt",
            match created.is_empty() {
                true => String::new(),
                false => super::ps::created_at(&created),
            },
        ),
        ("Size", human_size(i.size)),
        ("Containers", "N/A".into()),
        ("SharedSize", "N/A".into()),
        ("UniqueSize", "N/A".into()),
        ("VirtualSize", human_size(i.size)),
    ])
}

pub fn human_size(n: u64) -> String {
    let f = n as f64;
    if f >= 1e9 {
        format!("{:.2}GB", f / 1e9)
    } else if f >= 1e6 {
        format!("{:.2}MB", f / 1e6)
    } else if f >= 1e3 {
        format!("{:.2}kB", f / 1e3)
    } else {
        format!("{n}B")
    }
}
