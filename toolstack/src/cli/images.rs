//! `hx images`: the local images, as a table or JSON.
use hx_images::Store;
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
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let store = Store::open(&g.root)?;
    let images = store.images()?;
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
            outln!("{}", i.id.short());
        }
        return Ok(0);
    }
    let mut rows = vec![];
    for i in &images {
        let mut names = i.display_names();
        if names.is_empty() {
            names.push(("<none>".into(), "<none>".into()));
        }
        for (repo, tag) in names {
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
    print_table(&header, &rows);
    Ok(0)
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

/// A docker-style table. A cell is one line: a newline in an image's CMD would otherwise fake a
/// row (`outln!` escapes the rest).
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|c| hx_engine::sanitize::line(c).to_string())
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{:<w$}   ", c, w = widths[i]));
            }
        }
        outln!("{}", s.trim_end());
    };
    line(header.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
}
