//! `hx volume create|ls|rm|inspect|prune`: named volumes (ext4 disk images in the store).
use hx_engine::volume::{self, VolumeError};
use hx_images::Store;
use serde_json::json;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Create a volume (an existing one of that name is kept) and print its name
    Create(CreateArgs),
    /// List volumes
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Remove volumes no container uses
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Show volumes' details as JSON
    Inspect(InspectArgs),
    /// Remove anonymous volumes no container uses (-a: every unused volume)
    Prune(PruneArgs),
    /// A point-in-time copy of a volume as a new volume, consistent while containers write
    Snapshot(super::volume_snapshot::Args),
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// Volume name (default: a random id)
    pub name: Option<String>,
    /// Capacity of the volume's disk (sparse: the host only stores what is written)
    #[arg(long, default_value = "10g")]
    pub size: String,
    /// Set metadata on the volume: KEY=VALUE (or KEY, an empty value)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Start as a copy of this snapshot (or of any volume no running container writes)
    #[arg(long, value_name = "SNAPSHOT", conflicts_with = "label")]
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::volumes))]
    pub from_snapshot: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct LsArgs {
    /// Only names
    #[arg(short, long)]
    pub quiet: bool,
    /// JSON output (one array)
    #[arg(long)]
    pub json: bool,
    /// Filter: name= (a regular expression), label=KEY[=VALUE], dangling=true|false (docker's)
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct RmArgs {
    /// Volume names
    #[arg(required = true)]
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::volumes))]
    pub volumes: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// Volume names
    #[arg(required = true)]
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::volumes))]
    pub volumes: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    /// Named volumes too, not only anonymous ones
    #[arg(short, long)]
    pub all: bool,
}

/// Names of the containers (running or not) that use the volume.
fn users(g: &super::Globals, name: &str) -> anyhow::Result<Vec<String>> {
    Ok(hx_engine::container::list(&g.root)?
        .into_iter()
        .filter(|c| {
            c.mounts
                .iter()
                .any(|m| m.kind == "volume" && m.source == name)
        })
        .map(|c| c.name)
        .collect())
}

fn details(g: &super::Globals, v: &volume::Volume) -> anyhow::Result<serde_json::Value> {
    Ok(json!({
        "Name": v.name,
        "CreatedAt": v.created,
        "Driver": "ext4-image",
        "Mountpoint": volume::disk_path(&g.root, &v.name)?,
        "Scope": "local",
        "Anonymous": v.anonymous,
        "Labels": v.labels,
        "SnapshotOf": v.snapshot_of,
        "Size": v.size,
        "UsedBytes": volume::used_bytes(&g.root, &v.name),
        "UsedBy": users(g, &v.name)?,
    }))
}

pub async fn run(g: &super::Globals, cmd: Command) -> anyhow::Result<i32> {
    match cmd {
        Command::Create(a) => {
            let size = super::run::parse_size_in(
                "--size",
                &a.size,
                16 << 20,
                super::run::MAX_VOLUME_SIZE,
            )?;
            let labels = hx_engine::kvfile::labels(&[], &a.label)?;
            let _lock = Store::open(&g.root)?.lock()?;
            if let Some(snap) = &a.from_snapshot {
                let Some(name) = a.name.as_deref() else {
                    anyhow::bail!("--from-snapshot needs the new volume's name");
                };
                let writers: Vec<String> = hx_engine::container::list(&g.root)?
                    .into_iter()
                    .filter(|c| c.status == hx_engine::container::Status::Running)
                    .filter(|c| {
                        c.mounts
                            .iter()
                            .any(|m| m.kind == "volume" && &m.source == snap)
                    })
                    .map(|c| c.name)
                    .collect();
                if let Some(by) = writers.first() {
                    return Err(super::Fixed::wrap(
                        3,
                        anyhow::anyhow!("volume {snap} is in use by running container {by}: take a snapshot of it (hx volume snapshot)"),
                    ));
                }
                let v = volume::copy_of(&g.root, snap, name, None)?;
                outln!("{}", v.name);
                return Ok(0);
            }
            let v = volume::create_labelled(&g.root, a.name.as_deref(), size, labels)?;
            outln!("{}", v.name);
            Ok(0)
        }
        Command::Ls(a) => {
            use super::filter::{FilterError, Filters};
            let f = Filters::parse(&a.filter, &["name", "label", "dangling"]).map_err(|e| {
                let code = match e {
                    FilterError::Syntax(_) => 125,
                    _ => 1,
                };
                super::Fixed::wrap(code, e.into())
            })?;
            let dangling = f
                .bool_value("dangling")
                .map_err(|e| super::Fixed::wrap(1, e.into()))?;
            let mut list = vec![];
            for v in volume::list(&g.root) {
                let unused = users(g, &v.name)?.is_empty();
                if f.matches("name", &v.name)
                    && f.labels_match("label", &v.labels)
                    && dangling.is_none_or(|d| d == unused)
                {
                    list.push(v);
                }
            }
            if a.json {
                let all = list
                    .iter()
                    .map(|v| details(g, v))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                outln!("{}", serde_json::to_string_pretty(&all)?);
            } else if a.quiet {
                for v in &list {
                    outln!("{}", v.name);
                }
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|v| {
                        vec![
                            "ext4-image".into(),
                            v.name.clone(),
                            super::images::human_size(v.size),
                        ]
                    })
                    .collect();
                super::table::print(
                    super::table::DOCKER,
                    &["DRIVER", "VOLUME NAME", "SIZE"],
                    &rows,
                );
            }
            Ok(0)
        }
        Command::Rm(a) => Ok(super::each_name(&a.volumes, |name| {
            let r = (|| -> anyhow::Result<()> {
                let _lock = Store::open(&g.root)?.lock()?;
                hx_engine::runtime::reconcile(&g.root)?;
                volume::get(&g.root, name)?;
                if let Some(by) = users(g, name)?.into_iter().next() {
                    return Err(VolumeError::InUse {
                        name: name.to_string(),
                        by,
                    }
                    .into());
                }
                volume::remove(&g.root, name)
            })();
            std::future::ready(r)
        })
        .await),
        Command::Inspect(a) => {
            let mut out = Vec::new();
            for name in &a.volumes {
                out.push(details(g, &volume::get(&g.root, name)?)?);
            }
            outln!("{}", serde_json::to_string_pretty(&out)?);
            Ok(0)
        }
        Command::Snapshot(a) => super::volume_snapshot::run(g, a),
        Command::Prune(a) => {
            let _lock = Store::open(&g.root)?.lock()?;
            hx_engine::runtime::reconcile(&g.root)?;
            let mut freed = 0;
            for v in volume::list(&g.root) {
                if (a.all || v.anonymous) && users(g, &v.name)?.is_empty() {
                    freed += volume::used_bytes(&g.root, &v.name);
                    volume::remove(&g.root, &v.name)?;
                    outln!("Deleted: {}", v.name);
                }
            }
            outln!(
                "Total reclaimed space: {}",
                super::images::human_size(freed)
            );
            Ok(0)
        }
    }
}
