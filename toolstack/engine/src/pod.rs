//! Pods (docs/pods.md): one VM, several containers sharing its network, hostname and
//! published ports. The pod's VM is its infra container (`NAME-infra`, like podman's): a
//! container whose root is an empty filesystem and whose workload is pv-init's pause
//! process, booted with a hot-plug bus. Members are containers of their own (records,
//! images, writable layers, logs) whose backend is backend/pod.rs. Here: the pod-level
//! operations the CLI (and later the shim and CRI) call.
use crate::container::{self, Container, Status};
use crate::lifecycle::{self, CreateRequest, Started};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The image name an infra container shows.
pub const INFRA_IMAGE: &str = "hx-pod";
const EMPTY_ROOTFS: &str = "pod-root.erofs";

pub fn infra_name(pod: &str) -> String {
    format!("{pod}-infra")
}

/// What `hx pod create` asks for: the pod-wide settings (the infra container's).
#[derive(Debug, Clone, Default)]
pub struct PodRequest {
    pub name: String,
    pub publish: Vec<String>,
    pub network: Option<String>,
    pub memory_mb: u64,
    pub cpus: u32,
    /// A cap on the pod VM's CPU time, in percent of one CPU (`--cpus 1.5`: 150).
    pub cpu_cap_pct: Option<u32>,
    pub hostname: Option<String>,
    pub dns: Vec<String>,
    pub add_hosts: Vec<String>,
    pub labels: std::collections::BTreeMap<String, String>,
    /// The pod VM's backend (`--backend`; default as for any container), which must be able to
    /// hot-plug members' disks (`Backend::can_host_pod_members`).
    pub backend: Option<String>,
    /// Xen domain type of the pod's VM (`--type`).
    pub xen_type: Option<String>,
    /// `--share pid` (podman's): the members are born in the pod VM's PID namespace and see
    /// each other's processes, instead of one namespace each.
    pub share_pid: bool,
}

/// One VM is one kernel: a pod's members always share its IPC, network and UTS namespaces
/// (podman's default `--share`); the PID namespace only when asked (`pid`).
const ALWAYS_SHARED: [&str; 3] = ["ipc", "net", "uts"];

/// `--share` as podman reads it: a comma-separated list that replaces the default
/// (`ipc,net,uts`), or one that starts with `+` and adds to it. Ok(true): the PID namespace
/// is shared. A list that leaves out a namespace one VM cannot give each member its own of
/// is refused rather than ignored.
pub fn parse_share(arg: &str) -> anyhow::Result<bool> {
    let (added, list) = match arg.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, arg),
    };
    let mut named = Vec::new();
    for ns in list.split(',') {
        if !ALWAYS_SHARED.contains(&ns) && ns != "pid" {
            bail!(
                "--share: unknown or unsupported namespace \"{}\" (ipc, net, uts, pid)",
                crate::sanitize::text(ns).to_cow()
            );
        }
        named.push(ns);
    }
    if !added {
        if let Some(missing) = ALWAYS_SHARED.iter().find(|ns| !named.contains(ns)) {
            bail!(
                "--share {arg}: a pod's members always share its {missing} namespace (one VM, \
                 one kernel); give --share +pid to add the PID namespace"
            );
        }
    }
    Ok(named.contains(&"pid"))
}

/// How long a member that runs may take to have its workload started in the pod's VM: its
/// disks' hotplug (QEMU's SCSI scan, Xen's blkback), then its root's assembly.
const MEMBER_START_WAIT: Duration = Duration::from_secs(60);

/// Waits until member `c`'s workload has started in the pod's VM (`hx run -d` returns once
/// its keeper runs, before that): an `hx exec`, `hx update` or CRI ExecSync right after it
/// finds the member there.
pub fn wait_member_started(root: &Path, c: &Container) -> anyhow::Result<()> {
    let dir = container::dir(root, &c.id);
    let deadline = std::time::Instant::now() + MEMBER_START_WAIT;
    loop {
        // An end as the newest event is a previous run's until the record says otherwise.
        if crate::runtime::last_event_is_start(&dir) == Some(true) {
            return Ok(());
        }
        // Its keeper gone: it ended before it started (the record may follow only later: the
        // caller can hold the store lock).
        let now = container::load(root, &c.id)?;
        if now.status != Status::Running || !now.vm_alive() {
            bail!("container {} is not running", c.name);
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "container {}: its workload did not start in its pod's VM within {} s",
                c.name,
                MEMBER_START_WAIT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The pod's infra container.
pub fn infra(root: &Path, pod: &str) -> anyhow::Result<Container> {
    container::list(root)?
        .into_iter()
        .find(|c| c.pod_infra && c.pod.as_deref() == Some(pod))
        .ok_or_else(|| anyhow::anyhow!("no such pod: {}", crate::sanitize::text(pod).to_cow()))
}

/// The pod's members (not its infra container).
pub fn members(root: &Path, pod: &str) -> anyhow::Result<Vec<Container>> {
    Ok(container::list(root)?
        .into_iter()
        .filter(|c| !c.pod_infra && c.pod.as_deref() == Some(pod))
        .collect())
}

/// Every pod: its infra container and members.
pub fn list(root: &Path) -> anyhow::Result<Vec<(Container, Vec<Container>)>> {
    let all = crate::runtime::reconcile(root)?;
    Ok(all
        .iter()
        .filter(|c| c.pod_infra)
        .map(|i| {
            let m = all
                .iter()
                .filter(|c| !c.pod_infra && c.pod == i.pod)
                .cloned()
                .collect();
            (i.clone(), m)
        })
        .collect())
}

/// The spec of a pod's VM (its infra container): the pod's hostname, and whether its members
/// share its PID namespace (`--share pid`, kept as its `shared_pids`, which means nothing for
/// the VM's own workload, the pause process).
pub fn infra_spec_of(root: &Path, infra: &Container) -> Option<pv_init::spec::ContainerSpec> {
    let b = std::fs::read(container::dir(root, &infra.id).join("spec.json")).ok()?;
    serde_json::from_slice(&b).ok()
}

/// The spec of pod `pod`'s VM (infra_spec_of).
pub fn infra_spec(root: &Path, pod: &str) -> Option<pv_init::spec::ContainerSpec> {
    infra_spec_of(root, &infra(root, pod).ok()?)
}

/// What the members of the pod whose VM has `spec` share (podman's `SharedNamespaces`).
pub fn shared_namespaces(spec: Option<&pv_init::spec::ContainerSpec>) -> Vec<&'static str> {
    let mut v = ALWAYS_SHARED.to_vec();
    if spec.is_some_and(|s| s.shared_pids) {
        v.push("pid");
    }
    v
}

/// Where a new member of `pod` is born: `--pid container:NAME` (docker's) names another
/// member of the same pod, whose PID namespace it joins (the pod's VM itself, its infra
/// container, stands for the pod's shared one); without it, the pod's when `pod_shares_pids`
/// (`--share pid`), or one of its own.
pub fn resolve_pid_namespace(
    root: &Path,
    pod: &str,
    pod_shares_pids: bool,
    req: &mut CreateRequest,
) -> anyhow::Result<()> {
    let Some(key) = req.pid_target.clone() else {
        req.shared_pids |= pod_shares_pids;
        return Ok(());
    };
    let target = container::find(root, &key)
        .with_context(|| format!("--pid container:{}", crate::sanitize::text(&key).to_cow()))?;
    if target.pod.as_deref() != Some(pod) {
        bail!(
            "--pid container:{}: not a member of pod {pod} (a container's PID namespace is \
             inside its own VM)",
            crate::sanitize::text(&key).to_cow()
        );
    }
    if target.pod_infra {
        req.pid_target = None;
        req.shared_pids = true;
    } else {
        req.shared_pids = false;
        req.pid_target = Some(target.id);
    }
    Ok(())
}

/// What a member may not ask for (yet): checked before anything is made.
pub fn check_member_request(root: &Path, pod: &str, req: &CreateRequest) -> anyhow::Result<()> {
    let infra = infra(root, pod)?;
    if !infra.vm_alive() {
        bail!("pod {pod} is not running (hx pod start {pod})");
    }
    let refuse = |what: &str| -> anyhow::Result<()> {
        bail!("--pod: {what} belongs to the pod (hx pod create), not to a member")
    };
    if !req.publish.is_empty() || req.publish_all {
        return refuse("publishing ports");
    }
    if req.hostname.is_some() || !req.dns.is_empty() || !req.add_hosts.is_empty() {
        return refuse("the hostname, DNS and hosts");
    }
    let pod_be = crate::backend::for_container(&infra, root)?;
    copies_fit(pod_be.name(), pod_be.member_shares(&infra), &req.volumes)?;
    volumes_fit(pod_be.name(), pod_be.max_member_volumes(), &req.volumes)?;
    if req.read_only || !req.sysctls.is_empty() {
        bail!("--pod: --read-only and --sysctl in a pod member are not supported yet");
    }
    if req.restart != crate::restart::Policy::No {
        bail!("--pod: restart policies in a pod member are not supported yet");
    }
    Ok(())
}

/// A member's named and anonymous volumes are disks its pod VM's backend plugs: at most
/// `max` of them.
fn volumes_fit(backend: &str, max: usize, volumes: &[String]) -> anyhow::Result<()> {
    let mut n = 0;
    for v in volumes {
        let arg = crate::volume::parse_arg(v)?;
        if !matches!(arg.source, crate::volume::Source::Host(_)) {
            n += 1;
        }
    }
    if n > max {
        bail!("--pod: {n} volumes: a pod member takes at most {max} on the {backend} backend");
    }
    Ok(())
}

/// The host `-v` values the pod's VM does not take live (`Backend::member_shares`,
/// backend/pod.rs) must be host files and read-only host directories that fit in the member's
/// start request as copies: checked before anything is made, each culprit named.
fn copies_fit(
    backend: &str,
    live: crate::backend::MemberShares,
    volumes: &[String],
) -> anyhow::Result<()> {
    use pv_init::mux::MAX_MEMBER_FILE_BYTES;
    let (mut files, mut trees, mut total) = (0, 0, 0);
    for v in volumes {
        let refuse = |why: &str| {
            anyhow::anyhow!(
                "--pod: -v {v}: {why} (this {backend} pod's VM has no members export for it: it takes copies of small host files and read-only host directories at a member's start; docs/pods.md)"
            )
        };
        let arg = crate::volume::parse_arg(v)?;
        let crate::volume::Source::Host(p) = arg.source else {
            continue;
        };
        if live.live(arg.readonly) {
            continue;
        }
        let meta = std::fs::metadata(&p).map_err(|e| refuse(&e.to_string()))?;
        if meta.is_dir() {
            if !arg.readonly {
                return Err(refuse("a writable host directory"));
            }
            let (_, bytes) =
                crate::backend::pod::read_tree(&p).map_err(|e| refuse(&format!("{e:#}")))?;
            trees += 1;
            total += bytes;
        } else if meta.is_file() && meta.len() <= MAX_MEMBER_FILE_BYTES as u64 {
            files += 1;
            total += meta.len() as usize;
        } else {
            return Err(refuse(&format!(
                "not a regular file of at most {MAX_MEMBER_FILE_BYTES} bytes"
            )));
        }
    }
    if let Err(e) = pv_init::mux::check_copies(files, trees, total) {
        bail!("--pod: the host files and directories to copy into the member: {e} (the {backend} backend copies them at its start)");
    }
    Ok(())
}

/// An empty root filesystem for infra containers (made once, kept in the store's assets).
fn empty_rootfs(root: &Path) -> anyhow::Result<PathBuf> {
    let assets = root.join("assets");
    let out = assets.join(EMPTY_ROOTFS);
    if out.exists() {
        return Ok(out);
    }
    std::fs::create_dir_all(&assets)?;
    let tmp = assets.join(format!(".pod-root-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    for d in ["dev", "proc", "sys", "etc", "tmp", "run"] {
        std::fs::create_dir_all(tmp.join("tree").join(d))?;
    }
    let image = tmp.join("root.erofs");
    let made = std::process::Command::new("mkfs.erofs")
        .arg(&image)
        .arg(tmp.join("tree"))
        .output()
        .context("mkfs.erofs (apt-get install erofs-utils)")?;
    if !made.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        bail!(
            "mkfs.erofs failed making the pod's root: {}",
            crate::sanitize::text(String::from_utf8_lossy(&made.stderr).trim()).to_cow()
        );
    }
    std::fs::rename(&image, &out)?;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(out)
}

/// `hx pod create` (and starts the pod's VM, like podman's `pod create` + `pod start` does
/// on its first member: hx starts it at once, so members can be added right away).
pub fn create(root: &Path, req: PodRequest) -> anyhow::Result<Started> {
    if !container::valid_name(&req.name) {
        bail!(
            "invalid pod name {:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*",
            crate::sanitize::text(&req.name).to_cow()
        );
    }
    if infra(root, &req.name).is_ok() {
        bail!("pod {} already exists", req.name);
    }
    let creq = infra_request(root, &req)?;
    lifecycle::create_and_start(root, creq, &|_, _| {
        bail!("a pod's root filesystem is made by hx")
    })
}

/// The pod's infra container: what `hx pod create` boots, and what a CRI sandbox becomes
/// (oci/cri.rs).
pub fn infra_request(root: &Path, req: &PodRequest) -> anyhow::Result<CreateRequest> {
    let rootfs = empty_rootfs(root)?;
    Ok(CreateRequest {
        image: INFRA_IMAGE.into(),
        command: vec!["/proc/1/exe".into(), pv_init_pause_arg().into()],
        entrypoint: Some(String::new()),
        user: Some("0:0".into()),
        name: Some(infra_name(&req.name)),
        hostname: Some(req.hostname.clone().unwrap_or_else(|| req.name.clone())),
        memory_mb: req.memory_mb,
        cpus: req.cpus,
        cpu_cap_pct: req.cpu_cap_pct,
        network: req.network.clone(),
        publish: req.publish.clone(),
        dns: req.dns.clone(),
        add_hosts: req.add_hosts.clone(),
        labels: req.labels.clone(),
        shm_size: 64 << 20,
        rootfs: Some(rootfs),
        pod: Some(req.name.clone()),
        pod_infra: true,
        // The pause process is pv-init itself, reached through /proc/1/exe: following that
        // link takes pv-init's capabilities (ptrace's access check), and it runs no image code.
        privileged: true,
        backend: req.backend.clone(),
        xen_type: req.xen_type.clone(),
        shared_pids: req.share_pid,
        ..Default::default()
    })
}

/// pv-init's argument for the pause process (pv-init/src/pod.rs; the binary is not linked).
fn pv_init_pause_arg() -> &'static str {
    "--hx-pod-pause"
}

/// `hx pod start`: boots a stopped pod's VM again (its members stay exited: start them with
/// `hx start`... not supported yet, docs/pods.md).
pub fn start(root: &Path, pod: &str) -> anyhow::Result<Option<Started>> {
    let i = infra(root, pod)?;
    if i.vm_alive() {
        return Ok(None);
    }
    lifecycle::start(root, &i.id, lifecycle::StartOptions::default()).map(Some)
}

/// `hx pod stop`: stops the members (their stop signal, then SIGKILL after `grace`), then the
/// pod's VM.
pub fn stop(root: &Path, pod: &str, grace: Option<Duration>) -> anyhow::Result<()> {
    let i = infra(root, pod)?;
    for m in members(root, pod)? {
        if m.status == Status::Running {
            let sig = stop_signal(&m)?;
            crate::ops::stop(root, &m, grace, sig)?;
        }
    }
    if i.status == Status::Running {
        crate::ops::stop(root, &i, grace, libc::SIGTERM)?;
    }
    Ok(())
}

fn stop_signal(c: &Container) -> anyhow::Result<i32> {
    match &c.stop_signal {
        Some(s) => lifecycle::parse_signal(s),
        None => Ok(libc::SIGTERM),
    }
}

/// `hx pod rm [-f]`: the members, then the pod's VM. Without `force` a running pod (or
/// member) is refused.
pub fn remove(root: &Path, pod: &str, force: bool) -> anyhow::Result<()> {
    let i = infra(root, pod)?;
    let ms = members(root, pod)?;
    if !force {
        if let Some(r) = ms
            .iter()
            .chain(std::iter::once(&i))
            .find(|c| c.status == Status::Running && c.vm_alive())
        {
            bail!(
                "pod {pod} is running ({} is): stop it first or use hx pod rm -f",
                r.name
            );
        }
    }
    for m in &ms {
        crate::ops::remove(root, &m.id, force, false)
            .with_context(|| format!("removing pod member {}", m.name))?;
    }
    crate::ops::remove(root, &i.id, force, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_is_read_as_podman_reads_it() {
        for (arg, pid) in [
            ("ipc,net,uts", false),
            ("net,uts,ipc,pid", true),
            ("+pid", true),
            ("+ipc", false),
        ] {
            assert_eq!(parse_share(arg).unwrap(), pid, "{arg}");
        }
        for (arg, want) in [
            ("net", "always share its ipc namespace"),
            ("ipc,net", "always share its uts namespace"),
            ("+mnt", "unknown or unsupported namespace \"mnt\""),
            ("ipc,net,uts,cgroup", "\"cgroup\""),
            ("", "namespace \"\""),
            ("ipc,net,uts,\u{1b}[2J", "\"\\x1b[2J\" (ipc"),
        ] {
            let e = parse_share(arg).unwrap_err().to_string();
            assert!(e.contains(want), "{arg:?}: {e}");
            assert!(!e.contains('\u{1b}'), "{arg:?}: raw ESC in {e:?}");
        }
    }

    #[test]
    fn a_members_volumes_are_counted_against_its_backends_limit() {
        let args = |n: usize| -> Vec<String> {
            let mut v: Vec<String> = (0..n).map(|i| format!("vol{i}:/v{i}")).collect();
            v.push("/tmp:/host".into());
            v
        };
        assert!(volumes_fit("xen", 8, &args(8)).is_ok());
        let e = volumes_fit("xen", 8, &args(9)).unwrap_err().to_string();
        assert_eq!(
            e,
            "--pod: 9 volumes: a pod member takes at most 8 on the xen backend"
        );
        // Anonymous volumes count too; host paths do not.
        assert!(volumes_fit("xen", 1, &["/anon".into(), "/tmp:/t".into()]).is_ok());
        assert!(volumes_fit("xen", 0, &["/anon".into()]).is_err());
    }
}
