//! Restart policies (`--restart`) and the per-container supervisor that carries them out while
//! no hx command runs: `hx __supervise ID`, spawned in its own session when a container with a
//! policy starts (like podman's conmon, nothing else stays resident). One per container (a
//! flock on `supervisor.lock`); it waits for the VM to end, settles the record, and starts the
//! container again when its policy says so, with docker's back-off. After a host reboot
//! `hx autostart` (run by the systemd unit `hx autostart --install-unit` writes) starts the
//! containers whose policy asks for it and gives each its supervisor again.
use crate::backend;
use crate::container::{self, Container, Status};
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "name")]
pub enum Policy {
    #[default]
    No,
    /// Restart after a non-zero exit, at most `max_retries` times (0: no limit).
    OnFailure {
        max_retries: u32,
    },
    Always,
    UnlessStopped,
}

impl Policy {
    /// docker's syntax: `no`, `on-failure[:N]`, `always`, `unless-stopped`.
    pub fn parse(s: &str) -> anyhow::Result<Policy> {
        let (name, count) = match s.split_once(':') {
            Some((n, c)) => (n, Some(c)),
            None => (s, None),
        };
        let p = match name {
            "no" | "" => Policy::No,
            "on-failure" => {
                let max_retries = match count {
                    None => 0,
                    Some(c) => c.parse::<u32>().map_err(|_| {
                        anyhow::anyhow!(
                            "invalid restart policy {s:?}: the count must be a number (0 to 4294967295)"
                        )
                    })?,
                };
                return Ok(Policy::OnFailure { max_retries });
            }
            "always" => Policy::Always,
            "unless-stopped" => Policy::UnlessStopped,
            _ => bail!(
                "invalid restart policy {s:?}: use no, on-failure[:N], always or unless-stopped"
            ),
        };
        if count.is_some() {
            bail!("invalid restart policy {s:?}: only on-failure takes a count");
        }
        Ok(p)
    }

    /// docker's name (`inspect`'s HostConfig.RestartPolicy.Name).
    pub fn name(&self) -> &'static str {
        match self {
            Policy::No => "no",
            Policy::OnFailure { .. } => "on-failure",
            Policy::Always => "always",
            Policy::UnlessStopped => "unless-stopped",
        }
    }

    pub fn max_retries(&self) -> u32 {
        match self {
            Policy::OnFailure { max_retries } => *max_retries,
            _ => 0,
        }
    }

    /// Whether a container that just ended with `exit_code` is started again by its supervisor.
    pub fn restarts(&self, exit_code: i32, restart_count: u32, manually_stopped: bool) -> bool {
        if manually_stopped {
            return false;
        }
        match self {
            Policy::No => false,
            Policy::OnFailure { max_retries } => {
                exit_code != 0 && (*max_retries == 0 || restart_count < *max_retries)
            }
            Policy::Always | Policy::UnlessStopped => true,
        }
    }

    /// Whether `hx autostart` (a boot) starts a container that is not running: `always` even
    /// after `hx stop` (docker's daemon start), `unless-stopped` unless stopped by hand,
    /// `on-failure` when its last run failed and retries are left.
    pub fn starts_at_boot(&self, c: &Container) -> bool {
        match self {
            Policy::Always => true,
            _ => self.restarts(
                c.exit_code.unwrap_or(0),
                c.restart_count,
                c.manually_stopped,
            ),
        }
    }
}

/// docker's back-off between restarts: 100 ms doubling up to a minute, back to 100 ms once a
/// run lasted 10 s.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(10);

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: BACKOFF_FIRST,
        }
    }
}

impl Backoff {
    /// The delay before the next start, given how long the last run lasted.
    pub fn delay(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= BACKOFF_RESET_AFTER {
            self.next = BACKOFF_FIRST;
        }
        let d = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        d
    }
}

const LOCK_FILE: &str = "supervisor.lock";
const LOG_FILE: &str = "supervisor.log";

/// `hx update --restart`: a new policy for container `key`, recorded under the store lock; a
/// running container gets its supervisor now. As docker: not for a `--rm` container (nor a pod
/// member, which takes no policy).
pub fn set_policy(root: &Path, key: &str, policy: Policy) -> anyhow::Result<()> {
    let store = hx_images::Store::open(root)?;
    let lock = store.lock()?;
    let mut c = container::find(root, key)?;
    if c.auto_remove && policy != Policy::No {
        anyhow::bail!(
            "container {}: its restart policy cannot change: it is removed when it ends (--rm)",
            c.name
        );
    }
    if c.is_pod_member() && policy != Policy::No {
        anyhow::bail!("container {}: a pod member takes no restart policy", c.name);
    }
    c.restart_policy = policy;
    container::save(root, &c)?;
    drop(lock);
    if c.status == Status::Running {
        ensure_supervisor(root, &c)?;
    }
    Ok(())
}

/// Starts the supervisor of container `id` unless its policy is `no` or one already runs.
pub fn ensure_supervisor(root: &Path, c: &Container) -> anyhow::Result<()> {
    if c.restart_policy == Policy::No || supervised(root, &c.id) {
        return Ok(());
    }
    let dir = container::dir(root, &c.id);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(LOG_FILE))
        .context(LOG_FILE)?;
    let exe = std::env::current_exe().context("finding the hx binary")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--root")
        .arg(root)
        .arg("__supervise")
        .arg(&c.id)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // Its own session: it outlives the hx that started it and the terminal's signals. Not
    // waited for: it lives as long as the container's policy has work for it.
    crate::process::spawn_detached(&mut cmd).context("starting the supervisor")?;
    Ok(())
}

/// Whether a supervisor holds the container's lock.
pub fn supervised(root: &Path, id: &str) -> bool {
    let Ok(f) = std::fs::File::open(container::dir(root, id).join(LOCK_FILE)) else {
        return false;
    };
    match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockSharedNonblock) {
        Ok(_) => false,
        Err((_, e)) => e == nix::errno::Errno::EWOULDBLOCK,
    }
}

/// What the supervisor does after a VM ended.
enum Next {
    /// Wait for the VM (or for whoever is starting or owning it).
    Wait(Box<Container>),
    /// Start it again (after the back-off).
    Restart,
    /// The container is gone, stopped by hand, or its policy is done.
    Exit,
}

/// The body of `hx __supervise ID`: returns when the container no longer needs one.
pub fn supervise(root: &Path, id: &str) -> anyhow::Result<()> {
    let lock_path = container::dir(root, id).join(LOCK_FILE);
    loop {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("{}", lock_path.display()))?;
        let Ok(lock) = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock)
        else {
            return Ok(()); // another supervisor has it
        };
        supervise_locked(root, id)?;
        drop(lock);
        // A start that raced with this ending saw the lock still held and started no
        // supervisor: this one carries on.
        match container::load(root, id) {
            Ok(c)
                if c.restart_policy != Policy::No
                    && !c.manually_stopped
                    && matches!(
                        c.status,
                        Status::Running | Status::Starting | Status::Creating
                    ) => {}
            _ => return Ok(()),
        }
    }
}

fn supervise_locked(root: &Path, id: &str) -> anyhow::Result<()> {
    let mut backoff = Backoff::default();
    let mut started = Instant::now();
    loop {
        match next(root, id)? {
            Next::Exit => return Ok(()),
            Next::Wait(c) => wait_for_vm(&c),
            Next::Restart => {
                let delay = backoff.delay(started.elapsed());
                std::thread::sleep(delay);
                match restart_once(root, id) {
                    Ok(true) => started = Instant::now(),
                    Ok(false) => return Ok(()),
                    Err(e) => {
                        // Counted like a failed run: the policy decides whether to try again.
                        errln!(
                            "{} hx supervisor: restarting {id}: {}",
                            container::now_rfc3339(),
                            crate::one_line(&e)
                        );
                        started = Instant::now();
                    }
                }
            }
        }
    }
}

fn next(root: &Path, id: &str) -> anyhow::Result<Next> {
    let Ok(c) = container::load(root, id) else {
        return Ok(Next::Exit);
    };
    if container::owner_alive(root, id) || matches!(c.status, Status::Creating | Status::Starting) {
        return Ok(Next::Wait(Box::new(c)));
    }
    let be = backend::for_container(&c, root)?;
    if c.status == Status::Running && be.is_running(&c) {
        return Ok(Next::Wait(Box::new(c)));
    }
    let _lock = hx_images::Store::open(root)?.lock()?;
    let Ok(c) = container::load(root, id) else {
        return Ok(Next::Exit);
    };
    let Some(c) = crate::runtime::settle(root, c, be.as_ref())? else {
        return Ok(Next::Exit);
    };
    Ok(match c.status {
        Status::Exited
            if c.restart_policy.restarts(
                c.exit_code.unwrap_or(0),
                c.restart_count,
                c.manually_stopped,
            ) =>
        {
            Next::Restart
        }
        Status::Running | Status::Starting | Status::Creating => Next::Wait(Box::new(c)),
        _ => Next::Exit,
    })
}

/// Sleeps until the VM of `c` ends (its process's pidfd), or a second passed (the record may
/// have changed under us: a user's `hx restart` makes a new VM).
fn wait_for_vm(c: &Container) {
    // VMs and log relays this supervisor started are its children: reaped here, or they
    // stay zombies (a VM's would look alive).
    crate::process::reap_exited_children();
    match (c.vm_process(), c.status) {
        (Some(vm), Status::Running) => {
            vm.wait(Duration::from_secs(1));
        }
        _ => std::thread::sleep(Duration::from_millis(100)),
    }
}

/// One restart by the policy: counted, then started like `hx start` (without resetting the
/// count). Ok(false): somebody stopped or removed it meanwhile.
fn restart_once(root: &Path, id: &str) -> anyhow::Result<bool> {
    {
        let _lock = hx_images::Store::open(root)?.lock()?;
        let Ok(mut c) = container::load(root, id) else {
            return Ok(false);
        };
        if c.status != Status::Exited
            || !c.restart_policy.restarts(
                c.exit_code.unwrap_or(0),
                c.restart_count,
                c.manually_stopped,
            )
        {
            return Ok(false);
        }
        c.restart_count += 1;
        container::save(root, &c)?;
    }
    let started = crate::lifecycle::start(
        root,
        id,
        crate::lifecycle::StartOptions {
            by_policy: true,
            ..Default::default()
        },
    )?;
    drop(started.owner);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dockers_policies_and_refuses_others() {
        assert_eq!(Policy::parse("no").unwrap(), Policy::No);
        assert_eq!(Policy::parse("always").unwrap(), Policy::Always);
        assert_eq!(
            Policy::parse("unless-stopped").unwrap(),
            Policy::UnlessStopped
        );
        assert_eq!(
            Policy::parse("on-failure").unwrap(),
            Policy::OnFailure { max_retries: 0 }
        );
        assert_eq!(
            Policy::parse("on-failure:3").unwrap(),
            Policy::OnFailure { max_retries: 3 }
        );
        for bad in [
            "sometimes",
            "always:3",
            "on-failure:x",
            "on-failure:-1",
            "no:1",
        ] {
            let e = Policy::parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn on_failure_counts_and_manual_stops_win() {
        let p = Policy::OnFailure { max_retries: 3 };
        assert!(p.restarts(1, 0, false));
        assert!(p.restarts(1, 2, false));
        assert!(!p.restarts(1, 3, false));
        assert!(!p.restarts(0, 0, false));
        assert!(Policy::OnFailure { max_retries: 0 }.restarts(1, 1000, false));
        assert!(Policy::Always.restarts(0, 99, false));
        assert!(!Policy::Always.restarts(1, 0, true));
        assert!(!Policy::UnlessStopped.restarts(1, 0, true));
        assert!(!Policy::No.restarts(1, 0, false));
    }

    #[test]
    fn backoff_doubles_to_a_minute_and_resets_after_a_long_run() {
        let mut b = Backoff::default();
        let short = Duration::from_millis(10);
        assert_eq!(b.delay(short), Duration::from_millis(100));
        assert_eq!(b.delay(short), Duration::from_millis(200));
        for _ in 0..20 {
            b.delay(short);
        }
        assert_eq!(b.delay(short), BACKOFF_MAX);
        assert_eq!(b.delay(Duration::from_secs(11)), BACKOFF_FIRST);
    }

    #[test]
    fn serialises_like_the_record_expects() {
        let j = serde_json::to_string(&Policy::OnFailure { max_retries: 3 }).unwrap();
        assert_eq!(j, r#"{"name":"on-failure","max_retries":3}"#);
        let back: Policy = serde_json::from_str(&j).unwrap();
        assert_eq!(back, Policy::OnFailure { max_retries: 3 });
    }
}
