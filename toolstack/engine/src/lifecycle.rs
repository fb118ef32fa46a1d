//! The lifecycle of a container as typed requests: `create` (`hx create`), `start` (`hx start`,
//! `hx restart`, the restart supervisor), `create_and_start` (`hx run`), `confirm`
//! (`hx run -d`). Front ends (the hx CLI, next the containerd shim and the OCI runtime) turn
//! their own input into a `CreateRequest` and print what comes back. A container keeps its
//! request (`create.json`) and writable layer (`upper.img`) until it is removed, so every
//! start boots the same container again. A `-i` container's input is held by its log relay
//! from boot (`VmSpec::stdin`, attach_channel): front ends attach with `attach_channel::connect`.
//!
//! Creation is a transaction on the container's record: the directory and a `creating` record
//! come first (with the `Owner` lock, in one hold of the store lock), and every resource —
//! volumes and file binds, address and port rules, the VM process — is written into the
//! record before it is acquired. A failure here and a creator killed at any point are undone
//! the same way, from the record: `runtime::discard`, run by the one undo guard (`Undo`) on
//! any error or drop, or by the next reconcile once the owner lock is free.
use crate::assets::GuestAssets;
use crate::backend::{self, Backend, Disk, VmSpec};
use crate::checkpoint::{self, Checkpoint};
use crate::container::{self, Container, Owner, Status};
use crate::network::{self, NetworkState};
use crate::restart::Policy;
use crate::runtime;
use crate::volume;
use anyhow::{bail, Context};
use hx_images::store::StoreLock;
use hx_images::{ImageRecord, Store};
use pv_init::spec::{
    Capabilities, ContainerSpec, DiskFs, Mount, Rlimit, Sysctl, TtySize, Upper, SPEC_VERSION,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A container to create (and start), its flags already checked by the front end. The docker
/// syntaxes of networks, ports, DNS, hosts and volumes are parsed here (with the engine's own
/// parsers), after the image is found. Kept beside the container (`create.json`): `hx start`
/// boots it again from the same request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateRequest {
    /// The image as the user named it.
    pub image: String,
    /// The command and its arguments (empty: the image's CMD).
    pub command: Vec<String>,
    /// Replaces the image's entrypoint (`Some("")`: none).
    pub entrypoint: Option<String>,
    /// Files of KEY=VALUE lines, then `-e` entries (`KEY` takes hx's own value), over the
    /// image's environment in that order.
    pub env_files: Vec<PathBuf>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub name: Option<String>,
    pub hostname: Option<String>,
    /// Checked by the front end (`parse_signal`); the image's STOPSIGNAL is checked here.
    pub stop_signal: Option<String>,
    /// `--stop-timeout`: `hx stop`'s grace without `-t`.
    #[serde(default)]
    pub stop_timeout: Option<u64>,
    pub memory_mb: u64,
    /// `memory_mb` was asked for (`-m`, a spec's memory limit), not hx's default: a pod
    /// member's limit inside its pod's VM.
    #[serde(default)]
    pub memory_limited: bool,
    pub cpus: u32,
    /// A cap on the VM's CPU time in percent of one CPU and docker's CPU shares (an OCI spec's
    /// fractional quota, docker's `--cpus 0.5`, and `--cpu-shares`): kept where the backend can
    /// limit CPU time (limits.rs) and the container has a VM of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_cap_pct: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<u64>,
    /// `--pids-limit`, an OCI spec's `linux.resources.pids.limit`: at most this many processes
    /// and threads at once (a cgroup in the VM: the workload's and its execs', or the pod
    /// member's). None: the VM's own bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<u64>,
    /// The host cgroup (a path below each hierarchy's root) the caller made and runs the VM's
    /// process in: hx-runtime's, from the spec's `cgroupsPath`. CPU limits are written there,
    /// where docker reads them back, instead of moving the VM to hx's own group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_cgroup: Option<std::path::PathBuf>,
    /// The writable layer on a disk of this many bytes. None: in guest memory for `--rm`
    /// containers, else on a disk of `DEFAULT_LAYER_SIZE` (it outlives the VM until `hx rm`).
    pub upper_size: Option<u64>,
    pub shm_size: u64,
    pub rlimits: Vec<Rlimit>,
    pub sysctls: Vec<Sysctl>,
    pub tmpfs: Vec<Mount>,
    /// `bridge`, `bridge=NAME`, `none`, `ns:PATH` or a user network (None: the default bridge).
    pub network: Option<String>,
    /// `--ip` on a user network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<std::net::Ipv4Addr>,
    /// `--ip6` on a `--ipv6` user network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<std::net::Ipv6Addr>,
    /// `--network-alias` on a user network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_aliases: Vec<String>,
    /// `[IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp]` each.
    pub publish: Vec<String>,
    pub publish_all: bool,
    /// `SRC:DST[:ro]` each.
    pub volumes: Vec<String>,
    pub dns: Vec<String>,
    /// `HOST:IP` each.
    pub add_hosts: Vec<String>,
    /// `qemu` or `xen` (None: xen on a dom0, else qemu).
    pub backend: Option<String>,
    pub kernel: Option<PathBuf>,
    /// `pvh` or `pv`, Xen only.
    pub xen_type: Option<String>,
    /// The workload's stdin comes from the caller (`-i`).
    pub stdin: bool,
    /// docker's StdinOnce (with `stdin`): a client attaches at creation (`hx create -i`, `hx
    /// run -i` without `-d`), and the end of the first attached client's input is the
    /// workload's. docker/cli: `OpenStdin && AttachStdin`, cleared by `run -d`.
    #[serde(default)]
    pub stdin_once: bool,
    /// A terminal of this size for the workload (`-t`).
    pub tty: Option<TtySize>,
    /// Removed when it exits (`--rm`).
    pub auto_remove: bool,
    /// `--restart`.
    #[serde(default)]
    pub restart: Policy,
    /// `--read-only`: the root read-only, no writable layer.
    #[serde(default)]
    pub read_only: bool,
    /// `--privileged`: every capability.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    /// `--cap-add`/`--cap-drop` (docker's names, or `ALL`) over docker's default set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    /// The exact sets of an OCI spec (the OCI runtime, the shim), instead of the flags above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    /// `--security-opt no-new-privileges`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_new_privileges: bool,
    /// The system-call filter (`--security-opt seccomp=`, an OCI spec's `linux.seccomp`).
    #[serde(default)]
    pub seccomp: crate::seccomp::SeccompPolicy,
    /// `-l`/`--label-file`, over the image's labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// A root filesystem image made by the caller (an erofs file: the OCI runtime's bundle)
    /// instead of the image's from the store; `image` then only names it. Such a container
    /// has no image config and keeps its writable layer in guest memory (it lives for one run).
    #[serde(default)]
    pub rootfs: Option<PathBuf>,
    /// `--pod`: a member of this pod, run in the pod's VM (docs/pods.md); with `pod_infra`,
    /// the pod's own VM (`hx pod create`), which gets the bus members' disks are plugged into.
    #[serde(default)]
    pub pod: Option<String>,
    #[serde(default)]
    pub pod_infra: bool,
    /// `--init`: the workload runs under pv-init, in its PID namespace, instead of being the
    /// init of its own (docker's `--init`, pv-init standing for docker-init).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub init: bool,
    /// A pod member in the pod VM's PID namespace, seeing the pod's processes (CRI's
    /// `shareProcessNamespace`), instead of one of its own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared_pids: bool,
    /// A pod member in this running member's PID namespace (its container id): CRI's
    /// NamespaceMode TARGET (`kubectl debug --target`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_target: Option<String>,
}

/// The writable layer of a container that outlives its VM: a sparse file, so its size is a
/// ceiling (like the host filesystem docker's layers live on), not space taken.
pub const DEFAULT_LAYER_SIZE: u64 = 10 << 30;
const REQUEST_FILE: &str = "create.json";
pub(crate) const LAYER_FILE: &str = "upper.img";

/// A container whose VM was started by `start` or `create_and_start`.
pub struct Started {
    pub container: Container,
    /// The caller owns the container until it has read its outcome (or confirmed it, `-d`).
    pub owner: Owner,
}

#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// A restart by the container's policy (keeps the restart count).
    pub by_policy: bool,
    /// This start's `--network` instead of the request's: the OCI runtime's keeper decides
    /// it from the network namespace it finds at start (oci::netns).
    pub network: Option<String>,
    /// `hx start --checkpoint NAME`: resume the VM saved in that checkpoint (its writable
    /// layer too) instead of booting.
    pub checkpoint: Option<String>,
}

/// The undo of partial creates: a stack of steps run in reverse order when it is dropped —
/// on an error return, a `?`, a panic — unless `commit` emptied it first. A step that
/// supersedes the ones before it (the discard of the whole record replaces the removal of its
/// bare directory) is pushed with `supersede`.
#[derive(Default)]
pub struct Undo<'a> {
    steps: Vec<Box<dyn FnOnce() + 'a>>,
}

impl<'a> Undo<'a> {
    pub fn new() -> Self {
        Undo { steps: Vec::new() }
    }

    /// Adds a step, run before those already there.
    pub fn push(&mut self, step: impl FnOnce() + 'a) {
        self.steps.push(Box::new(step));
    }

    /// Forgets the steps there (without running them) and adds this one, which undoes them
    /// too.
    pub fn supersede(&mut self, step: impl FnOnce() + 'a) {
        self.steps.clear();
        self.push(step);
    }

    /// Success: nothing is undone.
    pub fn commit(mut self) {
        self.steps.clear();
    }
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        while let Some(step) = self.steps.pop() {
            step();
        }
    }
}

/// `hx create`: the container's record, request, writable layer — everything but its VM and
/// network, which `start` makes each time. On any error everything made so far is undone.
pub fn create(
    root: &Path,
    req: CreateRequest,
    find_image: &dyn Fn(&Store, &str) -> anyhow::Result<ImageRecord>,
) -> anyhow::Result<Container> {
    let created = create_inner(root, req, find_image, false)?;
    Ok(created.container)
}

/// `hx run`: creates the container `req` asks for and starts its VM. `find_image` gets the
/// image from the store (the caller decides whether and how to pull one that is missing). On
/// any error everything made so far is undone: a run that fails leaves no container.
pub fn create_and_start(
    root: &Path,
    req: CreateRequest,
    find_image: &dyn Fn(&Store, &str) -> anyhow::Result<ImageRecord>,
) -> anyhow::Result<Started> {
    create_inner(root, req, find_image, true)
}

fn create_inner(
    root: &Path,
    mut req: CreateRequest,
    find_image: &dyn Fn(&Store, &str) -> anyhow::Result<ImageRecord>,
    and_start: bool,
) -> anyhow::Result<Started> {
    if req.auto_remove && req.restart != Policy::No {
        bail!("conflicting options: --restart and --rm");
    }
    if req.read_only && req.upper_size.is_some() {
        bail!("conflicting options: --read-only and --disk-size");
    }
    if let (None, Some(t)) = (&req.pod, &req.pid_target) {
        bail!(
            "--pid container:{}: a container's PID namespace is inside its own VM; only \
             members of one pod (--pod) share one",
            crate::sanitize::text(t).to_cow()
        );
    }
    capabilities(&req)?;
    // A read-only root needs no writable layer on disk: /etc's files go in a small tmpfs.
    if req.upper_size.is_none() && !req.auto_remove && !req.read_only && req.rootfs.is_none() {
        req.upper_size = Some(DEFAULT_LAYER_SIZE);
    }
    let host = crate::hostconfig::load(root)?;
    // The same image limits as hx pull / load / import: a run pulls and unpacks too.
    let store = Store::open(root)?.with_limits(host.limits.images()?);
    let img = match &req.rootfs {
        Some(path) => supplied_image(&req.image, path),
        None => find_image(&store, &req.image)?,
    };
    let be: Box<dyn Backend> = match (&req.pod, req.pod_infra) {
        (Some(pod), false) => {
            crate::pod::check_member_request(root, pod, &req)?;
            let pod = pod.clone();
            let pod_spec = crate::pod::infra_spec(root, &pod);
            let shares_pids = pod_spec.as_ref().is_some_and(|s| s.shared_pids);
            crate::pod::resolve_pid_namespace(root, &pod, shares_pids, &mut req)?;
            req.network = Some("none".into());
            // What the member sees (pv-init gives it the pod's /etc/hostname).
            req.hostname = pod_spec.map(|s| s.hostname);
            Box::new(backend::pod::PodMember::new(root, &pod))
        }
        (_, infra) => {
            let be = backend::select(req.backend.as_deref(), root)?;
            if infra && !be.can_host_pod_members() {
                bail!(
                    "the {} backend cannot run pods (no hot-plug of members' disks)",
                    be.name()
                );
            }
            be
        }
    };
    // Checked now, so that a bad flag fails `hx create` rather than the first start.
    let prepared = Launch::prepare(root, &req, &img, be.as_ref(), &host)?;
    let id = container::new_id();
    let image_cfg = img.config.config().clone().unwrap_or_default();
    let volume_args = req
        .volumes
        .iter()
        .map(|v| volume::parse_arg(v))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let dir = container::dir(root, &id);

    // Under the store lock: the name, the volumes' records, the first state record (and, with
    // `and_start`, the address and ports, checked against the other active containers).
    let lock = store.lock()?;
    let existing = runtime::reconcile(root)?;
    let taken: Vec<String> = existing.iter().map(|c| c.name.clone()).collect();
    let name = match &req.name {
        Some(n) if !container::valid_name(n) => {
            bail!("invalid container name {n:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*")
        }
        Some(n) if taken.contains(n) => return Err(crate::HxError::NameInUse(n.clone()).into()),
        Some(n) => n.clone(),
        None => container::random_name(&id, &taken),
    };
    // Pinned in the request: every start sees what the create saw.
    req.env = resolved_env(&req)?;
    req.env_files.clear();
    let spec = build_spec(&req, &img, &hostname_of(&req, &id))?;
    let active: Vec<&Container> = existing
        .iter()
        .filter(|c| runtime::is_active(root, c))
        .collect();
    let busy = |vol: &str| {
        active
            .iter()
            .find(|c| {
                c.mounts
                    .iter()
                    .any(|m| m.kind == "volume" && m.source == vol)
            })
            .map(|c| c.name.clone())
    };
    // A pod member's image VOLUMEs stay in its writable layer: members have no volume disks.
    let image_volumes = match (&req.pod, req.pod_infra) {
        (Some(_), false) => Vec::new(),
        _ => image_cfg.volumes().clone().unwrap_or_default(),
    };
    let mut records = volume::resolve(&volume_args, &image_volumes, &busy)?;
    // A --tmpfs replaces an image VOLUME at its path, like docker (-v there was refused).
    records.retain(|r| !req.tmpfs.iter().any(|t| t.target == r.target));
    // The image's STOPSIGNAL is checked here: a bad one fails the run, not a later hx stop.
    let stop_signal = match (&req.stop_signal, image_cfg.stop_signal()) {
        (Some(s), _) => Some(s.clone()),
        (None, Some(s)) => {
            parse_signal(s).with_context(|| format!("image {}: STOPSIGNAL", req.image))?;
            Some(s.clone())
        }
        (None, None) => None,
    };
    // A pod member's limits are kept inside its pod's VM (cgroups, limits::member_limits).
    let cpu_limited = be.limit_caps().cpu || (req.pod.is_some() && !req.pod_infra);
    if !cpu_limited && (req.cpu_cap_pct.is_some() || req.cpu_shares.is_some()) {
        tracing::warn!(
            "the CPU cap and shares asked for do not apply: the VM's vCPUs are its limit"
        );
    }
    let c = Container {
        id: id.clone(),
        name,
        image: req.image.clone(),
        image_id: img.id.to_string(),
        command: spec.args.clone(),
        created: container::now_rfc3339(),
        backend: be.name().to_string(),
        status: Status::Creating,
        pid: None,
        pid_start: None,
        started_at: None,
        finished_at: None,
        exit_code: None,
        error: None,
        auto_remove: req.auto_remove,
        memory_mb: req.memory_mb,
        memory_limited: req.memory_limited,
        oom_killed: false,
        cpus: req.cpus,
        cpu_cap_pct: req.cpu_cap_pct.filter(|_| cpu_limited),
        cpu_shares: req.cpu_shares.filter(|_| cpu_limited),
        pids_limit: req.pids_limit,
        host_cgroup: req.host_cgroup.clone(),
        domid: None,
        network: None,
        mounts: records,
        stop_signal,
        stop_timeout: req.stop_timeout,
        restart_policy: req.restart,
        restart_count: 0,
        manually_stopped: false,
        labels: image_cfg
            .labels()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .chain(req.labels.clone())
            .collect(),
        stdin_once: req.stdin && req.stdin_once,
        pod: req.pod.clone(),
        pod_infra: req.pod_infra,
    };
    // The record being made, shared with the undo: its last state is the undo's fallback
    // when the one on disk cannot be read.
    let made = std::cell::RefCell::new(c);
    let owner_slot: std::cell::Cell<Option<Owner>> = std::cell::Cell::new(None);
    let mut undo = Undo::new();
    {
        let dir = dir.clone();
        undo.push(move || {
            let _ = volume::remove_container_dir(&dir);
        });
    }
    std::fs::create_dir_all(container::containers_dir(root))?;
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    owner_slot.set(Some(Owner::acquire(root, &id)?));
    container::save(root, &made.borrow())?;
    // From here the record is the truth, and undoing means discarding it (which takes the
    // store lock: no error may return before the lock is dropped).
    {
        let (made, owner_slot, be) = (&made, &owner_slot, be.as_ref());
        undo.supersede(move || {
            if let Some(owner) = owner_slot.take() {
                discard_partial(root, &made.borrow(), owner, be);
            }
        });
    }
    let saved = serde_json::to_vec_pretty(&req)
        .map_err(anyhow::Error::from)
        .and_then(|b| Ok(hx_images::store::write_atomic(&dir.join(REQUEST_FILE), &b)?))
        // What `hx inspect` shows of a container never started (each start writes it again,
        // with the network and mounts).
        .and_then(|()| {
            let b = serde_json::to_vec_pretty(&spec)?;
            Ok(hx_images::store::write_atomic(&dir.join("spec.json"), &b)?)
        });
    match saved {
        Ok(()) if and_start => launch(
            root,
            &made,
            &req,
            &img,
            prepared,
            lock,
            &existing,
            be.as_ref(),
        )?,
        Ok(()) => drop(lock),
        Err(e) => {
            drop(lock);
            return Err(e);
        }
    }
    if !and_start {
        if let Some(size) = req.upper_size {
            hx_images::rootfs::make_ext4(None, &dir.join(LAYER_FILE), size)?;
        }
        made.borrow_mut().status = Status::Created;
        container::save(root, &made.borrow())?;
    }
    undo.commit();
    let owner = owner_slot
        .take()
        .expect("the owner lock is held until commit");
    Ok(Started {
        container: made.into_inner(),
        owner,
    })
}

/// `hx start`, `hx restart` and the supervisor: boots the VM of an existing container that is
/// not running, from its request, with its writable layer, name, volumes, and (when still
/// free) its address and host ports. A failed start leaves the container as it was.
pub fn start(root: &Path, key: &str, opts: StartOptions) -> anyhow::Result<Started> {
    let store = Store::open(root)?;
    let lock = store.lock()?;
    let existing = runtime::reconcile(root)?;
    let c = container::find(root, key)?;
    let be = backend::for_container(&c, root)?;
    match c.status {
        Status::Created | Status::Exited => {}
        Status::Running => bail!("container {} is already running", c.name),
        Status::Creating => return Err(crate::HxError::Creating(c.name.clone()).into()),
        Status::Starting => return Err(crate::HxError::Starting(c.name.clone()).into()),
    }
    // Before anything changes: an unknown or unusable checkpoint starts nothing.
    let restore = match &opts.checkpoint {
        Some(name) => {
            if !be.can_checkpoint() {
                bail!(
                    "container {}: the {} backend cannot start from a checkpoint",
                    c.name,
                    be.name()
                );
            }
            let ck = checkpoint::open(root, &c, name)?;
            if ck.meta.backend != c.backend {
                bail!(
                    "checkpoint {name} was made on the {} backend, container {} runs on {}",
                    ck.meta.backend,
                    c.name,
                    c.backend
                );
            }
            ck.check_boot_files()?;
            Some(ck)
        }
        None => None,
    };
    let owner = Owner::acquire(root, &c.id)
        .map_err(|_| anyhow::anyhow!("container {} is being started by another hx", c.name))?;
    // A -i container's stdin is held by its log relay whether or not this start attaches
    // to it (attach_channel): open, like docker's OpenStdin, for `hx attach`.
    let mut req = request_of(root, &c)?;
    // `hx update` of a stopped container changed the record: the next VM is made with it.
    req.memory_mb = c.memory_mb;
    if let Some(n) = &opts.network {
        req.network = Some(n.clone());
    }
    let img = match &req.rootfs {
        Some(path) => supplied_image(&req.image, path),
        None => store
            .find_image(&c.image_id)
            .with_context(|| format!("the image of container {} ({})", c.name, c.image))?,
    };
    let mut c = c;
    c.status = Status::Starting;
    c.manually_stopped = false;
    if !opts.by_policy {
        c.restart_count = 0;
    }
    let previous_net = c.network.take();
    c.network = provisional_network(root, &network::Mode::parse(req.network.as_deref())?, &c.id);
    container::save(root, &c)?;
    let keep = Keep {
        // A restored guest has its address configured already.
        ip: match &restore {
            Some(ck) => ck.meta.ip,
            None => previous_net.as_ref().and_then(|n| n.ip),
        },
        ip6: previous_net.as_ref().and_then(|n| n.ip6),
        ports: previous_net
            .as_ref()
            .map(|n| n.ports.clone())
            .unwrap_or_default(),
    };
    let made = std::cell::RefCell::new(c);
    let owner_slot = std::cell::Cell::new(Some(owner));
    let mut undo = Undo::new();
    {
        let (made, owner_slot, be) = (&made, &owner_slot, be.as_ref());
        undo.push(move || {
            if let Some(owner) = owner_slot.take() {
                unstart_partial(root, &made.borrow(), owner, be, previous_net);
            }
        });
    }
    let prepared = crate::hostconfig::load(root)
        .and_then(|host| Launch::prepare(root, &req, &img, be.as_ref(), &host));
    let prepared = match prepared {
        Ok(p) => p,
        Err(e) => {
            // The undo takes the store lock itself.
            drop(lock);
            return Err(e);
        }
    };
    launch_keeping(
        root,
        &made,
        &req,
        &img,
        prepared,
        lock,
        &existing,
        be.as_ref(),
        &keep,
        restore.as_ref(),
    )?;
    undo.commit();
    let container = made.into_inner();
    let owner = owner_slot.take().expect("held until commit");
    Ok(Started { container, owner })
}

/// The request container `c` was created from (`create.json`).
pub fn request_of(root: &Path, c: &Container) -> anyhow::Result<CreateRequest> {
    std::fs::read(container::dir(root, &c.id).join(REQUEST_FILE))
        .map_err(anyhow::Error::from)
        .and_then(|b| Ok(serde_json::from_slice(&b)?))
        .with_context(|| {
            format!(
                "container {} has no usable {REQUEST_FILE} (made by an older hx?): recreate it",
                c.name
            )
        })
}

/// Changes the network request of a container that does not run (`hx network connect` and
/// `disconnect`: a container has one NIC, chosen at start), under the store lock; `change`
/// decides and may refuse. The next `hx start` uses the new request.
pub fn change_network(
    root: &Path,
    key: &str,
    change: impl FnOnce(&Container, &mut CreateRequest) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let _lock = Store::open(root)?.lock()?;
    runtime::reconcile(root)?;
    let c = container::find(root, key)?;
    match c.status {
        Status::Created | Status::Exited => {}
        Status::Running | Status::Starting | Status::Creating => {
            return Err(crate::HxError::Network(format!(
                "container {} is running: an hx container's network is chosen when it starts (stop it, connect, start it again)",
                c.name
            ))
            .into())
        }
    }
    let mut req = request_of(root, &c)?;
    change(&c, &mut req)?;
    let b = serde_json::to_vec_pretty(&req)?;
    hx_images::store::write_atomic(&container::dir(root, &c.id).join(REQUEST_FILE), &b)?;
    Ok(())
}

/// What a started-again container keeps when it is free: its address and host ports.
#[derive(Default)]
struct Keep {
    ip: Option<std::net::Ipv4Addr>,
    ip6: Option<std::net::Ipv6Addr>,
    ports: Vec<network::Published>,
}

/// Everything about starting a container's VM that follows from its request, the image and
/// the host, checked without side effects.
pub(crate) struct Launch {
    pub(crate) xen_type: backend::XenType,
    pub(crate) assets: GuestAssets,
    pub(crate) rootfs: PathBuf,
    net_mode: network::Mode,
    port_requests: Vec<network::ports::Request>,
    dns_servers: Vec<String>,
    extra_hosts: Vec<String>,
}

impl Launch {
    pub(crate) fn prepare(
        root: &Path,
        req: &CreateRequest,
        img: &ImageRecord,
        be: &dyn Backend,
        host: &crate::hostconfig::HostConfig,
    ) -> anyhow::Result<Launch> {
        let store = Store::open(root)?.with_limits(host.limits.images()?);
        let xen_type = match &req.xen_type {
            Some(_) if !be.has_domain_types() => bail!("--type applies to the xen backend only"),
            Some(t) => backend::XenType::parse(t)?,
            None => match &host.xen.domain_type {
                Some(t) => backend::XenType::parse(t)?,
                None => backend::XenType::default(),
            },
        };
        let kernel = req.kernel.clone().or_else(|| be.configured_kernel(host));
        let assets = GuestAssets::find(root, kernel.as_deref(), be.kernel_file())?;
        let net_mode = network::Mode::parse(req.network.as_deref())?;
        let mut port_requests = Vec::new();
        for p in &req.publish {
            port_requests.extend(network::ports::parse(p)?);
        }
        let image_cfg = img.config.config().clone().unwrap_or_default();
        if req.publish_all {
            let exposed =
                network::ports::exposed(&image_cfg.exposed_ports().clone().unwrap_or_default())?;
            let extra: Vec<_> = exposed
                .into_iter()
                .filter(|e| {
                    !port_requests
                        .iter()
                        .any(|r| r.container_port == e.container_port && r.proto == e.proto)
                })
                .collect();
            port_requests.extend(extra);
        }
        let dns_servers = network::dns::parse_servers(&req.dns)?;
        let extra_hosts = network::dns::parse_add_hosts(&req.add_hosts)?;
        // Last: it may unpack the image.
        let rootfs = match &req.rootfs {
            Some(path) => path.clone(),
            None => store.rootfs(img)?,
        };
        Ok(Launch {
            xen_type,
            assets,
            rootfs,
            net_mode,
            port_requests,
            dns_servers,
            extra_hosts,
        })
    }
}

/// The stand-in image record of a container whose root filesystem the caller made: no
/// configuration (the caller's request says everything), an id derived from the file's path.
pub(crate) fn supplied_image(name: &str, rootfs: &Path) -> ImageRecord {
    let id = hx_images::Digest::of_bytes(rootfs.as_os_str().as_encoded_bytes());
    ImageRecord {
        id: id.clone(),
        manifest_digest: id,
        names: vec![name.to_string()],
        layers: vec![],
        config: Default::default(),
        size: 0,
        created: None,
    }
}

pub(crate) fn hostname_of(req: &CreateRequest, id: &str) -> String {
    req.hostname.clone().unwrap_or_else(|| id[..12].to_string())
}

/// The first start of a container (`hx run`): see `launch_keeping`.
#[allow(clippy::too_many_arguments)]
fn launch(
    root: &Path,
    made: &std::cell::RefCell<Container>,
    req: &CreateRequest,
    img: &ImageRecord,
    launch: Launch,
    lock: StoreLock,
    existing: &[Container],
    be: &dyn Backend,
) -> anyhow::Result<()> {
    let provisional = network::Mode::parse(req.network.as_deref())
        .map(|m| provisional_network(root, &m, &made.borrow().id));
    let saved = provisional.and_then(|n| {
        made.borrow_mut().network = n;
        container::save(root, &made.borrow())
    });
    if let Err(e) = saved {
        drop(lock);
        return Err(e);
    }
    launch_keeping(
        root,
        made,
        req,
        img,
        launch,
        lock,
        existing,
        be,
        &Keep::default(),
        None,
    )
}

/// Starts the VM of the container being made or started (`made`, whose record on disk the
/// caller's undo reverts): its address and port rules (under `lock`, which it drops after),
/// volumes and binds, config disk, writable layer, the VM. The record says `running` when it
/// returns.
#[allow(clippy::too_many_arguments)]
fn launch_keeping(
    root: &Path,
    made: &std::cell::RefCell<Container>,
    req: &CreateRequest,
    img: &ImageRecord,
    launch: Launch,
    lock: StoreLock,
    existing: &[Container],
    be: &dyn Backend,
    keep: &Keep,
    restore: Option<&Checkpoint>,
) -> anyhow::Result<()> {
    let id = made.borrow().id.clone();
    let dir = container::dir(root, &id);
    let ports_taken: Vec<(String, network::Published)> = existing
        .iter()
        .filter(|c| c.id != id && runtime::is_active(root, c))
        .flat_map(|c| {
            c.network
                .iter()
                .flat_map(|n| n.ports.iter().map(|p| (c.name.clone(), p.clone())))
        })
        .collect();
    // A port the user left to hx (`-p 80`, `-P`) is the one it had, when nobody took it.
    let fixed: Vec<u16> = launch
        .port_requests
        .iter()
        .filter(|r| r.host_port != 0)
        .map(|r| r.host_port)
        .collect();
    let mut reusable: Vec<&network::Published> = keep
        .ports
        .iter()
        .filter(|p| !fixed.contains(&p.host_port))
        .filter(|p| {
            !ports_taken
                .iter()
                .any(|(_, t)| t.host_port == p.host_port && t.proto == p.proto)
        })
        .collect();
    let port_requests: Vec<network::ports::Request> = launch
        .port_requests
        .iter()
        .map(|r| {
            let mut r = r.clone();
            if r.host_port == 0 {
                if let Some(i) = reusable.iter().position(|p| {
                    p.container_port == r.container_port
                        && p.proto == r.proto
                        && p.host_ip == r.host_ip
                }) {
                    r.host_port = reusable.remove(i).host_port;
                }
            }
            r
        })
        .collect();
    let on_network = network::OnNetwork {
        name: made.borrow().name.clone(),
        ip: req.ip,
        aliases: req.network_aliases.clone(),
        ip6: req.ip6,
        preferred_ip6: keep.ip6,
    };
    let net = network::setup(
        root,
        &id,
        &launch.net_mode,
        &port_requests,
        &ports_taken,
        keep.ip,
        &on_network,
    )
    .and_then(|net| {
        made.borrow_mut().network = Some(net.state.clone());
        container::save(root, &made.borrow())?;
        Ok(net)
    });
    // The undo takes the store lock itself.
    drop(lock);
    let net = net?;
    if let Some(ck) = restore {
        if net.state.ip != ck.meta.ip {
            bail!(
                "checkpoint {}: the container's address {} is taken (by another container)",
                ck.meta.name,
                ck.meta.ip.map_or("(none)".into(), |ip| ip.to_string())
            );
        }
    }

    // Without the store lock: volumes (mkfs), binds, disks and the VM.
    let first_volume_disk = if req.upper_size.is_some() { 3 } else { 2 };
    let host_dirs = be.host_dirs(&dir);
    let plan = volume::acquire(root, &made.borrow().mounts, first_volume_disk, host_dirs)?;
    let mut spec = build_spec(req, img, &hostname_of(req, &id))?;
    spec.network = net.guest.clone().map(|mut g| {
        if !launch.dns_servers.is_empty() {
            g.dns = launch.dns_servers.clone();
        }
        g
    });
    // Written to /etc/hosts with or without a network, like docker's.
    spec.extra_hosts = launch.extra_hosts.clone();
    spec.mounts = plan.mounts.clone();
    spec.mounts.extend(req.tmpfs.iter().cloned());
    sort_mounts(&mut spec.mounts);
    std::fs::write(dir.join("config.img"), spec.to_config_disk())?;
    std::fs::write(dir.join("spec.json"), serde_json::to_vec_pretty(&spec)?)?;
    // What the VM boots from; a restore's are the checkpoint's (checked unchanged).
    let boot = match restore {
        Some(ck) => ck.meta.boot.clone(),
        None => checkpoint::BootFiles {
            kernel: launch.assets.kernel.clone(),
            initramfs: launch.assets.initramfs.clone(),
            rootfs: launch.rootfs.clone(),
        },
    };
    hx_images::store::write_atomic(
        &dir.join(checkpoint::BOOT_FILE),
        &serde_json::to_vec(&boot)?,
    )?;
    let mut disks = vec![
        Disk {
            path: boot.rootfs.clone(),
            readonly: true,
            durable: false,
        },
        Disk {
            path: dir.join("config.img"),
            readonly: true,
            durable: false,
        },
    ];
    if let Some(size) = req.upper_size {
        let upper = dir.join(LAYER_FILE);
        if let Some(ck) = restore {
            // The layer as the saved memory knows it (never e2fsck'ed: it is mounted there).
            ck.restore_layer(&upper)?;
        } else if upper.exists() {
            checkpoint::forget_partial_restore(&dir);
            check_layer(&upper, &made.borrow().name)?;
        } else {
            hx_images::rootfs::make_ext4(None, &upper, size)?;
        }
        disks.push(Disk {
            path: upper,
            readonly: false,
            // The next start reads it: the guest's flushes must reach the host's disk.
            durable: !req.auto_remove,
        });
    }
    disks.extend(plan.disks);
    let h = {
        let c = made.borrow().clone();
        let record = |h: &backend::VmHandle| {
            let mut c = c.clone();
            c.pid = Some(h.pid);
            c.pid_start = Some(h.pid_start);
            container::save(root, &c)
        };
        let vm = VmSpec {
            id: &c.id,
            name: &c.name,
            dir: &dir,
            kernel: &boot.kernel,
            initramfs: &boot.initramfs,
            disks,
            memory_mb: restore.map_or(req.memory_mb, |ck| ck.meta.memory_mb),
            cpus: restore.map_or(req.cpus, |ck| ck.meta.cpus),
            cpu_limits: crate::limits::CpuLimits::of(&c),
            cpu_group: c.host_cgroup.as_deref(),
            nic: net.nic,
            extra_nics: net.extra_nics,
            shares: plan.shares,
            xen_type: launch.xen_type,
            // The relay holds the workload's input (-i) from boot: attach_channel.
            stdin: req.stdin && be.stdin_over_socket(),
            hotplug_bus: req.pod_infra,
            on_spawn: &record,
            restore: restore.map(|ck| ck.dir.as_path()),
        };
        be.start(&vm)?
    };
    {
        let mut c = made.borrow_mut();
        c.pid = Some(h.pid);
        c.pid_start = Some(h.pid_start);
        c.domid = h.domid;
        c.status = Status::Running;
        c.started_at = Some(container::now_rfc3339());
        c.finished_at = None;
        c.exit_code = None;
        c.oom_killed = false;
        c.error = None;
    }
    container::save(root, &made.borrow())?;
    Ok(())
}

/// A writable layer whose last VM was killed may not be clean (it has no journal): repaired
/// the way a boot would (`e2fsck -p`), or the start fails with what e2fsck said.
pub(crate) fn check_layer(path: &Path, name: &str) -> anyhow::Result<()> {
    let out = std::process::Command::new("e2fsck")
        .arg("-p")
        .arg(path)
        .output()
        .context("running e2fsck (install e2fsprogs)")?;
    // 0: clean, 1: errors fixed; anything else needs a human.
    match out.status.code() {
        Some(0) | Some(1) => Ok(()),
        code => {
            let text = String::from_utf8_lossy(&out.stdout);
            bail!(
                "the writable layer of container {name} is damaged (e2fsck {}: {}): inspect {} by hand",
                code.map_or("killed".into(), |c| format!("exit {c}")),
                text.lines().last().unwrap_or("").trim(),
                path.display()
            )
        }
    }
}

/// Undoes a failed creation (the record on disk is the truth: it may name a VM process the
/// in-memory copy does not). Under the store lock, with the owner lock given up inside it so
/// that no reconcile sees the container ownerless before it is gone.
fn discard_partial(root: &Path, c: &Container, owner: Owner, be: &dyn Backend) {
    let r = (|| -> anyhow::Result<()> {
        let _lock = Store::open(root)?.lock()?;
        drop(owner);
        let rec = container::load(root, &c.id).unwrap_or_else(|_| c.clone());
        runtime::discard(root, &rec, be)
    })();
    if let Err(e) = r {
        tracing::warn!(
            "undoing container {}: {e:#} (the next hx ps retries)",
            c.name
        );
    }
}

/// Undoes a failed start: the VM (if one was spawned), its address and rules go, the record
/// goes back to `created` or `exited`.
fn unstart_partial(
    root: &Path,
    c: &Container,
    owner: Owner,
    be: &dyn Backend,
    previous_net: Option<NetworkState>,
) {
    let r = (|| -> anyhow::Result<()> {
        let _lock = Store::open(root)?.lock()?;
        drop(owner);
        let rec = container::load(root, &c.id).unwrap_or_else(|_| c.clone());
        runtime::unstart(root, rec, be)?;
        // What the last run had, for the next start to ask for again.
        let mut rec = container::load(root, &c.id)?;
        rec.network = previous_net;
        container::save(root, &rec)
    })();
    if let Err(e) = r {
        tracing::warn!(
            "undoing the start of container {}: {e:#} (the next hx ps retries)",
            c.name
        );
    }
}

/// A VM that dies at once (bad QEMU options, no hypervisor resources) is an error of a
/// detached run rather than a container that silently exited: a short wait, then the VM's
/// state; a lost VM's container is discarded. The owner lock ends here.
pub async fn confirm(root: &Path, c: &Container, owner: Owner) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_millis(50)).await;
    let be = backend::for_container(c, root)?;
    if be.is_running(c) {
        return Ok(());
    }
    let outcome = runtime::outcome(&container::dir(root, &c.id));
    match outcome {
        runtime::Outcome::Lost(why) => {
            let _lock = Store::open(root)?.lock()?;
            drop(owner);
            runtime::discard(root, c, be.as_ref())?;
            bail!("the VM did not start: {why}")
        }
        _ => Ok(()),
    }
}

/// What the record says about the network before `network::setup` runs: enough for the undo
/// to find the address, rules and interface setup may have made before the creator died.
fn provisional_network(root: &Path, mode: &network::Mode, id: &str) -> Option<NetworkState> {
    if let network::Mode::Network(key) = mode {
        let net = network::user_net::find(root, key).ok()?;
        let mut state = provisional_network(root, &network::Mode::Bridge(net.bridge()), id)?;
        state.network = Some(net.id);
        return Some(state);
    }
    match mode {
        network::Mode::Bridge(b) if network::is_root() => Some(NetworkState {
            mode: "bridge".into(),
            bridge: Some(b.clone()),
            ip: None,
            prefix_len: 0,
            gateway: None,
            mac: None,
            ifname: Some(network::ifname_for(id)),
            ports: vec![],
            netns: None,
            link: None,
            netns_inode: None,
            network: None,
            aliases: vec![],
            ip6: None,
            prefix_len6: 0,
            gateway6: None,
            extra_links: vec![],
        }),
        _ => None,
    }
}

/// A signal by name (`TERM`, `SIGTERM`, any case) or number (1..=64).
pub fn parse_signal(s: &str) -> anyhow::Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let up = s.to_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    nix::sys::signal::Signal::iterator()
        .find(|sig| sig.as_str().strip_prefix("SIG") == Some(name))
        .map(|sig| sig as i32)
        .ok_or_else(|| anyhow::anyhow!("invalid signal {s:?}"))
}

/// KEY=VALUE lines of an env file, by docker's rules (kvfile.rs): `KEY` alone takes hx's own
/// value and is left out when hx has none; a key with whitespace is refused.
pub fn read_env_file(p: &Path) -> anyhow::Result<Vec<String>> {
    crate::kvfile::read(p, crate::kvfile::Bare::FromHost)
}

/// `K=V` as is; `K` as `K=` hx's own value, or nothing when hx has no K (docker's rule).
pub fn expand_env_opt(e: &str) -> Option<String> {
    crate::kvfile::env_arg(e).ok().flatten()
}

/// Mounts in the order docker makes them: by the depth of their target (a parent before what
/// is mounted inside it), keeping the given order otherwise.
pub fn sort_mounts(mounts: &mut [Mount]) {
    mounts.sort_by_key(|m| m.target.split('/').filter(|p| !p.is_empty()).count());
}

/// The variables `--env-file` and `-e` set, in that order: files read and bare `-e KEY`s given
/// hx's own value (or left out) once, when the container is created, as docker's client does.
fn resolved_env(req: &CreateRequest) -> anyhow::Result<Vec<String>> {
    let mut extra = Vec::new();
    for f in &req.env_files {
        extra.extend(read_env_file(f)?);
    }
    for e in &req.env {
        extra.extend(crate::kvfile::env_arg(e)?);
    }
    Ok(extra)
}

/// Builds the spec the way docker merges image config and flags.
pub fn build_spec(
    req: &CreateRequest,
    img: &ImageRecord,
    hostname: &str,
) -> anyhow::Result<ContainerSpec> {
    let cfg = img.config.config().clone().unwrap_or_default();
    let entrypoint: Vec<String> = match &req.entrypoint {
        Some(e) if e.is_empty() => vec![],
        Some(e) => vec![e.clone()],
        None => cfg.entrypoint().clone().unwrap_or_default(),
    };
    let cmd: Vec<String> = if !req.command.is_empty() {
        req.command.clone()
    } else if req.entrypoint.is_some() {
        vec![]
    } else {
        cfg.cmd().clone().unwrap_or_default()
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        bail!(
            "no command specified and image {} has no CMD or ENTRYPOINT",
            req.image
        );
    }
    let mut env: Vec<String> = cfg.env().clone().unwrap_or_default();
    for e in resolved_env(req)? {
        let key = e.split('=').next().unwrap_or("").to_string();
        if key.is_empty() {
            bail!("invalid environment variable {e:?}");
        }
        env.retain(|x| x.split('=').next() != Some(&key));
        env.push(e);
    }
    let cwd = req
        .workdir
        .clone()
        .or_else(|| cfg.working_dir().clone())
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        bail!("the working directory {cwd:?} is not absolute");
    }
    let upper = match &req.upper_size {
        Some(_) => Upper::Disk {
            disk: 2,
            fstype: "ext4".into(),
        },
        None if req.read_only => Upper::Tmpfs { size_mb: 1 },
        None => Upper::Tmpfs { size_mb: 0 },
    };
    let caps = capabilities(req)?;
    Ok(ContainerSpec {
        version: SPEC_VERSION,
        args: argv,
        env,
        cwd,
        user: req
            .user
            .clone()
            .or_else(|| cfg.user().clone())
            .unwrap_or_default(),
        hostname: hostname.to_string(),
        rootfs: DiskFs {
            disk: 0,
            fstype: hx_images::rootfs::FSTYPE.into(),
        },
        upper,
        mounts: vec![],
        network: None,
        stdin: req.stdin,
        tty: req.tty,
        shm_size: Some(req.shm_size),
        rlimits: req.rlimits.clone(),
        sysctls: req.sysctls.clone(),
        // docker resolves a container's name on user networks (its embedded DNS); hx writes
        // an explicit --name into /etc/hosts beside the hostname.
        aliases: req
            .name
            .iter()
            .filter(|n| **n != hostname)
            .cloned()
            .collect(),
        extra_hosts: vec![],
        read_only: req.read_only,
        capabilities: Some(caps),
        no_new_privileges: req.no_new_privileges,
        // A pod's VM keeps pv-init as the init its members' shared namespace shows.
        init: req.init || req.pod_infra,
        shared_pids: req.shared_pids,
        // A pod member's is its cgroup's in the pod's VM (limits::member_limits).
        pids_limit: req.pids_limit.filter(|_| req.pod.is_none()),
        pid_target: req.pid_target.clone(),
        seccomp: crate::seccomp::program(&req.seccomp, &caps)
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    })
}

/// The workload's capability sets: an OCI spec's own, else docker's flags over its default.
fn capabilities(req: &CreateRequest) -> anyhow::Result<Capabilities> {
    match req.capabilities {
        Some(c) => Ok(c),
        None => crate::capabilities::from_flags(&req.cap_add, &req.cap_drop, req.privileged)
            .map_err(|e| anyhow::anyhow!("invalid --cap-add/--cap-drop: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undo_runs_its_steps_newest_first_unless_committed() {
        let log = std::cell::RefCell::new(Vec::new());
        {
            let mut u = Undo::new();
            u.push(|| log.borrow_mut().push("dir"));
            u.push(|| log.borrow_mut().push("net"));
        }
        assert_eq!(*log.borrow(), ["net", "dir"]);
        log.borrow_mut().clear();
        {
            let mut u = Undo::new();
            u.push(|| log.borrow_mut().push("dir"));
            u.supersede(|| log.borrow_mut().push("discard"));
        }
        assert_eq!(*log.borrow(), ["discard"]);
        log.borrow_mut().clear();
        let mut u = Undo::new();
        u.push(|| log.borrow_mut().push("dir"));
        u.commit();
        assert!(log.borrow().is_empty());
    }

    #[test]
    fn an_error_return_undoes_what_was_made() {
        let d = tempfile::tempdir().unwrap();
        let made = d.path().join("c");
        let create = || -> anyhow::Result<()> {
            let mut undo = Undo::new();
            undo.push(|| {
                let _ = std::fs::remove_dir_all(&made);
            });
            std::fs::create_dir(&made)?;
            bail!("the VM did not start");
        };
        assert!(create().is_err());
        assert!(!made.exists());
    }
}
