//! Checkpoints of a QEMU container's VM (docs/checkpoint.md): paused, its devices' state and
//! all of its RAM written with `migrate` to `<checkpoint>/state`; a restore is a new QEMU with
//! the container's devices and `-incoming defer` that loads it, `cont`, and pv-init's
//! `resumed` line. Unlike a warm template's, a checkpoint's RAM is in the stream: a warm
//! guest's RAM is a private mapping of its template's file (its own pages are nowhere else),
//! and a cold guest's is anonymous.
use super::qmp;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const STATE: &str = "state";
const META: &str = "qemu.json";
/// Saving or loading a few hundred MiB of RAM under TCG on a busy host.
const DEADLINE: Duration = Duration::from_secs(300);
const MAPPED_RAM: &str = "mapped-ram";

/// What a restore must rebuild for the stream to load: the RAM block's name (a warm guest's
/// is `warm::RAM_ID`, a cold one's the machine's default) and its size.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Saved {
    pub ram_id: String,
    pub ram_bytes: u64,
    /// Saved with QEMU's `mapped-ram` capability (each RAM page at its own offset of a sparse
    /// `state`, HX_CHECKPOINT_RAM=mapped) rather than as a stream; the load needs it too.
    #[serde(default)]
    pub mapped_ram: bool,
}

impl Saved {
    pub fn read(checkpoint: &Path) -> anyhow::Result<Saved> {
        let p = checkpoint.join(META);
        let bytes = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", p.display()))
    }

    pub fn warm_ram(&self) -> bool {
        self.ram_id == super::warm::RAM_ID
    }
}

pub fn state_file(checkpoint: &Path) -> PathBuf {
    checkpoint.join(STATE)
}

/// Pauses the VM of the container directory `dir`, runs `while_paused`, saves the VM into
/// `into`. The VM stays paused (QEMU's `postmigrate`; `cont` resumes it).
pub fn save(
    dir: &Path,
    into: &Path,
    while_paused: &mut dyn FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut q = qmp::Qmp::connect(dir)?;
    q.execute("stop")?;
    let mut saved = ram_of(&mut q)?;
    saved.mapped_ram = std::env::var("HX_CHECKPOINT_RAM").is_ok_and(|v| v == "mapped");
    while_paused()?;
    let t = Instant::now();
    // A warm restore left x-ignore-shared set; a checkpoint holds the RAM whatever it is.
    super::warm::set_capability_to(&mut q, super::warm::IGNORE_SHARED, false)?;
    // QEMU before 9.0 has no mapped-ram: asking for it fails there, leaving it off need not.
    match super::warm::set_capability_to(&mut q, MAPPED_RAM, saved.mapped_ram) {
        Err(e) if !saved.mapped_ram => tracing::debug!("{MAPPED_RAM} left as it is: {e:#}"),
        r => r?,
    }
    let uri = format!("file:{}", state_file(into).display());
    q.execute_with("migrate", Some(serde_json::json!({ "uri": uri })))?;
    q.wait_migration(DEADLINE)
        .context("saving the VM's memory and devices")?;
    tracing::info!("checkpoint: VM saved in {:?}", t.elapsed());
    std::fs::write(into.join(META), serde_json::to_vec(&saved)?)?;
    Ok(())
}

/// The guest RAM's backend, as QEMU reports it (`query-memdev`: one for a microvm).
fn ram_of(q: &mut qmp::Qmp) -> anyhow::Result<Saved> {
    let r = q.execute("query-memdev")?;
    let list = r.as_array().map(Vec::as_slice).unwrap_or_default();
    let [dev] = list else {
        anyhow::bail!(
            "QMP query-memdev: {} memory backends, expected one",
            list.len()
        );
    };
    let id = dev.get("id").and_then(|v| v.as_str()).unwrap_or_default();
    let size = dev.get("size").and_then(|v| v.as_u64()).unwrap_or_default();
    let id_ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
    if !id_ok || size == 0 {
        anyhow::bail!("QMP query-memdev: an unusable memory backend");
    }
    Ok(Saved {
        ram_id: id.to_string(),
        ram_bytes: size,
        mapped_ram: false,
    })
}

/// After QEMU started with `-incoming defer` and the container's devices: loads `state`,
/// resumes the guest and tells pv-init (`resumed`: the host's clock, new host ends on the
/// channels, so its exec agent greets the new broker).
pub fn resume(dir: &Path, state: &Path, saved: &Saved) -> anyhow::Result<()> {
    let t = Instant::now();
    let mut q = qmp::Qmp::connect(dir)?;
    if saved.mapped_ram {
        super::warm::set_capability_to(&mut q, MAPPED_RAM, true)?;
    }
    q.execute_with(
        "migrate-incoming",
        Some(serde_json::json!({ "uri": format!("file:{}", state.display()) })),
    )?;
    q.wait_migration(DEADLINE)
        .context("loading the checkpoint")?;
    tracing::info!("checkpoint: VM loaded {:?} after QEMU's start", t.elapsed());
    q.execute("cont")?;
    let resumed = pv_init::status::Control::Resumed {
        unix_nanos: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos(),
    };
    use std::os::unix::fs::OpenOptionsExt;
    let p = dir.join("control.in");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&p)
        .with_context(|| format!("control channel {}", p.display()))?;
    std::io::Write::write_all(&mut f, resumed.to_line().as_bytes())?;
    Ok(())
}
