//! Typed requests on an existing container, beside `lifecycle`'s create and start: stop, kill,
//! restart, remove, pause and unpause. Front ends find the container and print the outcome.
use crate::backend::{self, Backend};
use crate::container::{self, Container, Status};
use crate::lifecycle::{self, StartOptions, Started};
use crate::runtime;
use crate::HxError;
use hx_images::Store;
use pv_init::status::Control;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a guest gets to end after its workload was killed.
const KILL_GRACE: Duration = Duration::from_secs(3);

/// `hx stop`: `signal` to the workload, up to `grace` (None: no deadline) for it to end, then
/// pv-init kills it (SIGKILL), syncs the writable layer and powers off — so a killed container
/// keeps what it wrote, like docker's — and only a guest that does not end in time loses its
/// VM the hard way (137). Marks the container stopped by hand (its restart policy waits).
pub fn stop(
    root: &Path,
    c: &Container,
    grace: Option<Duration>,
    signal: i32,
) -> anyhow::Result<()> {
    let be = backend::for_container(c, root)?;
    let dir = container::dir(root, &c.id);
    if c.status == Status::Running && be.is_running(c) {
        runtime::mark_stopped_by_user(root, &c.id)?;
        thaw_for_signal(be.as_ref(), c, &dir)?;
        let _ = be.send_control(c, &dir, &Control::Signal(signal).to_line());
        let deadline = grace.and_then(|g| Instant::now().checked_add(g));
        wait_while_running(be.as_ref(), c, deadline);
        if be.is_running(c) {
            let _ = be.send_control(c, &dir, &Control::Signal(libc::SIGKILL).to_line());
            wait_while_running(be.as_ref(), c, Some(Instant::now() + KILL_GRACE));
        }
        if be.is_running(c) {
            be.kill(c)?;
            let s = container::load(root, &c.id)?;
            if s.status == Status::Running {
                // The guest never reported: docker reports SIGKILL's 137.
                record_killed(&dir)?;
            }
        }
    }
    let _lock = Store::open(root)?.lock()?;
    if let Ok(c) = container::load(root, &c.id) {
        runtime::settle(root, c, be.as_ref())?;
    }
    Ok(())
}

fn wait_while_running(be: &dyn Backend, c: &Container, deadline: Option<Instant>) {
    while be.is_running(c) && deadline.is_none_or(|d| Instant::now() < d) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `hx kill`: `signal` to the workload of a running container (stopped by hand, like docker's).
pub fn kill(root: &Path, c: &Container, signal: i32) -> anyhow::Result<()> {
    let be = backend::for_container(c, root)?;
    if c.status != Status::Running || !be.is_running(c) {
        anyhow::bail!("container {} is not running", c.name);
    }
    let dir = container::dir(root, &c.id);
    runtime::mark_stopped_by_user(root, &c.id)?;
    thaw_for_signal(be.as_ref(), c, &dir)?;
    be.send_control(c, &dir, &Control::Signal(signal).to_line())
}

/// Whether a guest takes `address/prefix` for a hot-plugged NIC (`Control::NetUp`'s rules:
/// a unicast address that is not loopback, a prefix of 1 to 32).
pub fn guest_takes_address(address: std::net::Ipv4Addr, prefix: u8) -> bool {
    let line = Control::NetUp {
        interface: "eth1".into(),
        mac: [2, 0, 0, 0, 0, 1],
        address,
        prefix,
    }
    .to_line();
    Control::parse_line(&line).is_some()
}

/// Tells the guest of running container `c` to configure a NIC hot-plugged into its VM
/// (`hx network-attach ... ip=A/P`): the NIC with `mac` becomes `interface` with `address/prefix`.
pub fn configure_hotplugged_nic(
    root: &Path,
    c: &Container,
    interface: &str,
    mac: [u8; 6],
    address: std::net::Ipv4Addr,
    prefix: u8,
) -> anyhow::Result<()> {
    let be = backend::for_container(c, root)?;
    if c.status != Status::Running || !be.is_running(c) {
        anyhow::bail!("container {} is not running", c.name);
    }
    let line = Control::NetUp {
        interface: interface.to_string(),
        mac,
        address,
        prefix,
    }
    .to_line();
    // What the guest would refuse is refused here, in one line.
    if Control::parse_line(&line).is_none() {
        anyhow::bail!(
            "{interface} {address}/{prefix}: not an interface name and address the guest takes"
        );
    }
    be.send_control(c, &container::dir(root, &c.id), &line)
}

/// SIGKILL for a VM: no guest to ask, the VM ends now and the outcome says 137 (the guest
/// reported nothing else first). The OCI runtime's `kill ID KILL`.
pub fn kill_vm(root: &Path, c: &Container) -> anyhow::Result<()> {
    let be = backend::for_container(c, root)?;
    if c.status != Status::Running || !be.is_running(c) {
        anyhow::bail!("container {} is not running", c.name);
    }
    runtime::mark_stopped_by_user(root, &c.id)?;
    let dir = container::dir(root, &c.id);
    record_killed(&dir)?;
    be.kill(c)
}

/// Appends SIGKILL's status for a guest that was killed without reporting one.
pub(crate) fn record_killed(dir: &Path) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("status.log"))
        .and_then(|mut f| {
            f.write_all(
                pv_init::status::Status::Signaled {
                    signal: 9,
                    oom: false,
                }
                .to_line()
                .as_bytes(),
            )
        })
}

/// `hx restart`: `stop` a running container, then `lifecycle::start` it (the caller confirms
/// and supervises what it gets).
pub fn restart(
    root: &Path,
    c: &Container,
    grace: Option<Duration>,
    signal: i32,
) -> anyhow::Result<Started> {
    if c.status == Status::Running {
        stop(root, c, grace, signal)?;
    }
    lifecycle::start(root, &c.id, StartOptions::default())
}

/// `hx rm`: removes the container `key` names (`force`: a running one too, killed first;
/// `volumes`: its anonymous volumes as well). A container a live hx is creating or starting is
/// left to that hx.
pub fn remove(root: &Path, key: &str, force: bool, volumes: bool) -> anyhow::Result<()> {
    let _lock = Store::open(root)?.lock()?;
    let c = container::find(root, key)?;
    if let (true, Some(pod)) = (c.pod_infra, &c.pod) {
        // Its members would be left without their VM and their pod.
        if !crate::pod::members(root, pod)?.is_empty() {
            anyhow::bail!("{} is pod {pod}'s VM: hx pod rm [-f] {pod}", c.name);
        }
    }
    let be = backend::for_container(&c, root)?;
    let owned = container::owner_alive(root, &c.id);
    match c.status {
        // Its creator is still acquiring resources: removing them under it would race with
        // that; once it is gone, its creation is undone as a whole.
        Status::Creating if owned => Err(HxError::Creating(c.name.clone()).into()),
        Status::Creating => runtime::discard(root, &c, be.as_ref()),
        Status::Starting if owned => Err(HxError::Starting(c.name.clone()).into()),
        Status::Running if be.is_running(&c) && !force => {
            Err(HxError::Running(c.name.clone()).into())
        }
        _ => runtime::remove_with(root, &c, be.as_ref(), volumes),
    }
}

/// `hx pause` (`freeze`) or `hx unpause` of a running container.
pub fn pause(root: &Path, c: &Container, freeze: bool) -> anyhow::Result<()> {
    let be = backend::for_container(c, root)?;
    if c.status != Status::Running || !be.is_running(c) {
        anyhow::bail!("container {} is not running", c.name);
    }
    if !be.can_pause() {
        anyhow::bail!("container {}: its backend cannot pause", c.name);
    }
    let dir = container::dir(root, &c.id);
    match (freeze, be.is_paused(c, &dir)) {
        (true, true) => anyhow::bail!("container {} is already paused", c.name),
        (false, false) => anyhow::bail!("container {} is not paused", c.name),
        (true, false) => be.pause(c, &dir),
        (false, true) => be.unpause(c, &dir),
    }
}

/// Whether a running container's VM is paused now (asked of its backend; false if unknown).
pub fn is_paused(root: &Path, c: &Container) -> bool {
    c.status == Status::Running
        && backend::for_container(c, root)
            .is_ok_and(|be| be.is_paused(c, &container::dir(root, &c.id)))
}

/// A paused guest cannot act on a signal: stop and kill thaw it first, so the workload gets
/// the signal and can shut down cleanly.
fn thaw_for_signal(be: &dyn Backend, c: &Container, dir: &Path) -> anyhow::Result<()> {
    if be.is_paused(c, dir) {
        be.unpause(c, dir)?;
    }
    Ok(())
}
