//! What happened to a container's VM, reconciling state with reality, and removal.
use crate::backend::{self, Backend};
use crate::container::{self, Container, Status};
use pv_init::status::{RawStatus, Status as GuestStatus};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The workload ended: exit code (128+N for signal N).
    Exited(i32),
    /// pv-init could not start the workload (docker's 125/126/127).
    InitError { code: i32, message: String },
    /// The guest kernel panicked.
    Panic(String),
    /// The VM ended without a word from the guest.
    Lost(String),
    /// The guest's last status is outside the protocol (`exited -255`, `signaled 2147483647`).
    Invalid(String),
}

impl Outcome {
    /// Always 0..=255.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Exited(c) => *c,
            Outcome::InitError { code, .. } => *code,
            Outcome::Panic(_) | Outcome::Lost(_) | Outcome::Invalid(_) => 125,
        }
    }

    /// The message for the user. Guest text in it is raw here (and in state.json); hx's
    /// output sinks escape it (sanitize.rs).
    pub fn error(&self) -> Option<String> {
        match self {
            Outcome::Exited(_) => None,
            Outcome::InitError { message, .. } => Some(message.clone()),
            Outcome::Panic(m) => Some(format!("guest kernel panicked: {m}")),
            Outcome::Lost(m) => Some(m.clone()),
            Outcome::Invalid(m) => Some(format!("the guest reported an invalid status: {m}")),
        }
    }
}

/// How much of the end of the status log is read: its last lines are what count, and a
/// guest that floods it must not make hx read (or hold) megabytes.
const STATUS_TAIL: u64 = 16 << 10;
/// How much of the end of the console log is searched for a kernel panic.
const CONSOLE_TAIL: u64 = 64 << 10;
/// Longest panic message quoted from the console.
const PANIC_MAX: usize = 240;

/// The guest's last final status: the newest line that is one, valid or not. Bytes, line by
/// line: one bad line (invalid UTF-8, garbage, too long) is skipped, not the whole log.
fn last_status(dir: &Path) -> Option<Result<GuestStatus, String>> {
    let path = dir.join("status.log");
    let mut bytes = crate::logfile::read_end(&path, STATUS_TAIL);
    if (bytes.len() as u64) < STATUS_TAIL {
        // Just rotated: the last lines may have started in the older file.
        let older = crate::logfile::read_end(
            &crate::logfile::rotated(&path, 1),
            STATUS_TAIL - bytes.len() as u64,
        );
        bytes = [older, bytes].concat();
    }
    bytes
        .split(|&b| b == b'\n')
        .rev()
        .filter_map(|l| RawStatus::parse(l).ok())
        .find(RawStatus::is_final)
        .map(|raw| raw.validate().map_err(|e| e.to_string()))
}

/// Whether the guest's last final status says the OOM killer ended the workload.
pub fn oom_killed(dir: &Path) -> bool {
    matches!(
        last_status(dir),
        Some(Ok(GuestStatus::Signaled { oom: true, .. }))
    )
}

/// Whether the newest event of the status log is a start (`Some(true)`), an end
/// (`Some(false)`), or there is none yet.
pub fn last_event_is_start(dir: &Path) -> Option<bool> {
    let bytes = crate::logfile::read_end(&dir.join("status.log"), STATUS_TAIL);
    bytes
        .split(|&b| b == b'\n')
        .rev()
        .find_map(|l| RawStatus::parse(l).ok())
        .map(|raw| matches!(raw, RawStatus::Started { .. }))
}

/// Reads the guest's status channel and console log after the VM has gone.
pub fn outcome(dir: &Path) -> Outcome {
    match last_status(dir) {
        Some(Ok(GuestStatus::InitError { code, message })) => {
            return Outcome::InitError { code, message }
        }
        Some(Ok(s)) => return Outcome::Exited(s.exit_code().unwrap_or(125)),
        Some(Err(why)) => return Outcome::Invalid(why),
        None => {}
    }
    let console = crate::logfile::read_end(&dir.join("console.log"), CONSOLE_TAIL);
    let console = String::from_utf8_lossy(&console);
    if let Some(line) = console
        .lines()
        .find(|l| l.contains("Kernel panic - not syncing"))
    {
        let msg = line
            .split("Kernel panic - not syncing:")
            .nth(1)
            .unwrap_or(line)
            .trim();
        return Outcome::Panic(msg.chars().take(PANIC_MAX).collect());
    }
    // The VM's host process: QEMU, or the Xen domain's monitor.
    let mut host = crate::logfile::read_end(&dir.join("qemu.log"), 4096);
    if host.is_empty() {
        host = crate::logfile::read_end(&dir.join("monitor.log"), 4096);
    }
    let detail = String::from_utf8_lossy(&host)
        .lines()
        .last()
        .map(|l| format!(": {}", l.chars().take(PANIC_MAX).collect::<String>()))
        .unwrap_or_default();
    Outcome::Lost(format!(
        "the VM ended without reporting a status (console log: {}){detail}",
        dir.join("console.log").display()
    ))
}

/// The exit code of container `c`, whose VM has gone (`hx wait`, `hx attach`): settled from
/// its outcome if nobody recorded it yet, else as recorded (the record itself gone with `--rm`:
/// what `c` says). Takes the store lock.
pub fn exit_code_after_stop(root: &Path, c: &Container, be: &dyn Backend) -> anyhow::Result<i32> {
    let _lock = hx_images::Store::open(root)?.lock()?;
    Ok(match container::load(root, &c.id) {
        Ok(cur) if cur.status == Status::Running => {
            let o = outcome(&container::dir(root, &c.id));
            settle(root, cur, be)?;
            o.exit_code()
        }
        Ok(cur) => cur.exit_code.unwrap_or(0),
        Err(_) => c.exit_code.unwrap_or(0),
    })
}

/// Records that a user stopped (or killed) the container, before its VM is told: its restart
/// policy must not bring it back (docker's "manually stopped").
pub fn mark_stopped_by_user(root: &Path, id: &str) -> anyhow::Result<()> {
    let _lock = hx_images::Store::open(root)?.lock()?;
    let mut c = container::load(root, id)?;
    if !c.manually_stopped {
        c.manually_stopped = true;
        container::save(root, &c)?;
    }
    Ok(())
}

/// Brings one container in line with reality:
/// - `creating` and its creator (the `Owner` lock holder) is gone: the creation is undone
///   (`discard`) — whatever the record says was acquired is released;
/// - `running` and its VM is gone: marked exited with the outcome, runtime files, address and
///   port rules released;
/// - exited and `--rm`: removed, unless a live `hx run` owns it (that one removes it after
///   reading the outcome itself).
///
/// Returns the updated container, or None if it is gone. Callers hold the store lock.
pub fn settle(
    root: &Path,
    mut c: Container,
    be: &dyn Backend,
) -> anyhow::Result<Option<Container>> {
    let owned = container::owner_alive(root, &c.id);
    if c.status == Status::Starting {
        if owned {
            return Ok(Some(c));
        }
        tracing::info!(
            "undoing the start of container {}: its hx start died",
            c.name
        );
        unstart(root, c.clone(), be)?;
        return Ok(container::load(root, &c.id).ok());
    }
    if c.status == Status::Creating {
        if owned {
            return Ok(Some(c));
        }
        tracing::info!(
            "undoing container {}: its hx run died while creating it",
            c.name
        );
        discard(root, &c, be)?;
        return Ok(None);
    }
    let dir = container::dir(root, &c.id);
    if c.status == Status::Running && !be.is_running(&c) {
        let o = outcome(&dir);
        c.status = Status::Exited;
        c.exit_code = Some(o.exit_code());
        c.oom_killed = oom_killed(&dir);
        c.error = o.error();
        c.finished_at = Some(container::now_rfc3339());
        be.cleanup(&c, &dir)?;
        release_network(root, &c)?;
        container::save(root, &c)?;
    }
    if c.status == Status::Exited && c.auto_remove && !owned {
        // The volumes before the record that names them: killed in between, the next
        // settle finds the record and finishes.
        crate::volume::remove_anonymous(root, &c.mounts);
        remove_dir(root, &c)?;
        return Ok(None);
    }
    Ok(Some(c))
}

/// Whether the container holds its resources: running, or being created by a live `hx run`.
/// Its address, ports and volumes are not anybody else's.
pub fn is_active(root: &Path, c: &Container) -> bool {
    match c.status {
        Status::Running => true,
        Status::Creating | Status::Starting => container::owner_alive(root, &c.id),
        Status::Exited | Status::Created => false,
    }
}

/// Brings every container's state in line with what really runs, network included.
/// Callers hold the store lock.
pub fn reconcile(root: &Path) -> anyhow::Result<Vec<Container>> {
    for d in container::orphan_dirs(root) {
        tracing::info!(
            "removing {}: a container directory without state",
            d.display()
        );
        if let Err(e) = crate::volume::remove_container_dir(&d) {
            tracing::warn!("removing {}: {e}", d.display());
        }
    }
    crate::volume::sweep(root);
    let mut out = Vec::new();
    for c in container::list(root)? {
        let be = backend::for_container(&c, root)?;
        crate::offline::sweep(root, &c, be.as_ref(), false);
        if let Some(c) = settle(root, c, be.as_ref())? {
            out.push(c);
        }
    }
    let active: Vec<(String, crate::network::NetworkState)> = out
        .iter()
        .filter(|c| is_active(root, c))
        .filter_map(|c| Some((c.id.clone(), c.network.clone()?)))
        .collect();
    if let Err(e) = crate::network::reconcile(root, &active) {
        tracing::warn!("reconciling the network: {e:#}");
    }
    Ok(out)
}

/// Frees the container's address, port rules and host interface. A container still being
/// created may have rules its record does not list yet (its ports are written after
/// `network::setup` returns): those are found by the container's id.
fn release_network(root: &Path, c: &Container) -> anyhow::Result<()> {
    let Some(n) = &c.network else { return Ok(()) };
    if matches!(c.status, Status::Creating | Status::Starting)
        && n.mode == "bridge"
        && crate::network::is_root()
    {
        crate::network::nat::remove_container(&crate::network::store_key(root), &c.id)?;
    }
    crate::network::release(root, &c.id, n)
}

/// Kills the VM if needed and removes everything the container left (its anonymous volumes
/// stay: `hx rm -v`).
pub fn remove(root: &Path, c: &Container, be: &dyn Backend) -> anyhow::Result<()> {
    remove_with(root, c, be, false)
}

/// `remove`, and with `anonymous_volumes` (`hx rm -v`, a discard) the container's anonymous
/// volumes, removed before the record that names them: an hx killed in between leaves a record
/// that the next removal finishes, never a volume nobody knows.
pub fn remove_with(
    root: &Path,
    c: &Container,
    be: &dyn Backend,
    anonymous_volumes: bool,
) -> anyhow::Result<()> {
    crate::offline::sweep(root, c, be, true);
    be.kill(c)?;
    be.cleanup(c, &container::dir(root, &c.id))?;
    release_network(root, c)?;
    if anonymous_volumes {
        crate::volume::remove_anonymous(root, &c.mounts);
    }
    remove_dir(root, c)
}

/// Undoes a start that did not complete (failed, or its hx died): the VM if one was spawned,
/// runtime files, address and port rules; the record goes back to `created` (never started)
/// or `exited`, its writable layer and volumes stay. Callers hold the store lock.
pub fn unstart(root: &Path, mut c: Container, be: &dyn Backend) -> anyhow::Result<()> {
    be.kill(&c)?;
    be.cleanup(&c, &container::dir(root, &c.id))?;
    release_network(root, &c)?;
    c.status = if c.started_at.is_none() {
        Status::Created
    } else {
        Status::Exited
    };
    c.pid = None;
    c.pid_start = None;
    c.domid = None;
    container::save(root, &c)
}

/// Undoes a creation that did not complete, from what its record says was acquired: the VM
/// (by pid + start time, recorded before it could run), file binds, address and port rules,
/// anonymous volumes, the directory. The one undo of `hx run`, whether it failed or died.
pub fn discard(root: &Path, c: &Container, be: &dyn Backend) -> anyhow::Result<()> {
    remove_with(root, c, be, true)
}

fn remove_dir(root: &Path, c: &Container) -> anyhow::Result<()> {
    let d = container::dir(root, &c.id);
    match crate::volume::remove_container_dir(&d) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(anyhow::anyhow!("removing {}: {e}", d.display()))
        }
        _ => {
            // A pod member gone (`hx rm`, `--rm`, an undone creation): its pod's VM no longer
            // counts its CPU limits. The member is gone either way.
            if let (Some(pod), true) = (&c.pod, c.is_pod_member()) {
                if let Err(e) = crate::limits::pod_vm_follows_members(root, pod, c) {
                    tracing::warn!("{e:#}");
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod outcome_tests {
    use super::*;

    fn with_status(bytes: &[u8]) -> Outcome {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("status.log"), bytes).unwrap();
        outcome(d.path())
    }

    #[test]
    fn one_bad_byte_costs_one_line_not_the_status() {
        let o = with_status(b"{\"event\":\"started\",\"pid\":2,\"uptime_ms\":9}\n{\"event\":\"exited\",\"code\":3}\n\xff\xfe garbage\n");
        assert_eq!(o, Outcome::Exited(3));
        let o = with_status(
            b"{\"event\":\"exited\",\"code\":4}\n{\"event\":\"exited\",\"code\":\xff}\n",
        );
        assert_eq!(o, Outcome::Exited(4));
    }

    #[test]
    fn out_of_range_statuses_are_125_and_say_so() {
        for (line, why) in [
            (
                &br#"{"event":"signaled","signal":2147483647}"#[..],
                "signal 2147483647",
            ),
            (br#"{"event":"exited","code":-255}"#, "code -255"),
            (br#"{"event":"exited","code":256}"#, "code 256"),
            (
                br#"{"event":"init_error","code":0,"message":"ok?"}"#,
                "code 0",
            ),
        ] {
            let o = with_status(&[line, b"\n"].concat());
            assert_eq!(o.exit_code(), 125, "{o:?}");
            let msg = o.error().unwrap();
            assert!(
                msg.starts_with("the guest reported an invalid status: ") && msg.contains(why),
                "{msg}"
            );
        }
        assert_eq!(
            with_status(b"{\"event\":\"signaled\",\"signal\":9}\n").exit_code(),
            137
        );
    }

    #[test]
    fn only_the_end_of_a_huge_status_log_is_read() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("status.log");
        let f = std::fs::File::create(&p).unwrap();
        // 1 GiB of (sparse) zeros, then the real status: found without reading the rest.
        f.set_len(1 << 30).unwrap();
        drop(f);
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"\n{\"event\":\"exited\",\"code\":7}\n")
            .unwrap();
        let t = std::time::Instant::now();
        assert_eq!(outcome(d.path()), Outcome::Exited(7));
        assert!(
            t.elapsed() < std::time::Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        // Just rotated: the final line is in status.log.1.
        std::fs::write(&p, b"").unwrap();
        std::fs::write(
            d.path().join("status.log.1"),
            b"{\"event\":\"exited\",\"code\":8}\n",
        )
        .unwrap();
        assert_eq!(outcome(d.path()), Outcome::Exited(8));
    }

    #[test]
    fn a_panic_line_is_quoted_bounded() {
        let d = tempfile::tempdir().unwrap();
        let line = format!(
            "[ 1.0] Kernel panic - not syncing: \x1b]0;pwned\x07{}\n",
            "A".repeat(10_000)
        );
        std::fs::write(d.path().join("console.log"), line).unwrap();
        let o = outcome(d.path());
        let msg = o.error().unwrap();
        assert!(
            msg.starts_with("guest kernel panicked: \x1b]0;pwned") && msg.len() < 300,
            "{msg}"
        );
        assert_eq!(o.exit_code(), 125);
    }
}
