//! CRI the way kubelet drives it: a Rust CRI client (k8s-cri, runtime API v1, gRPC over the
//! socket) against containerd 1.6 started by the test with its CRI plugin, the `hx` runtime
//! handler (`io.containerd.hx.v2`) and Debian's CNI bridge plugin, containerd itself inside a
//! network namespace of the test's own (common/containerd.rs: start_cri). One pod: one VM,
//! two containers in it. Its own containerd rather than containerd.rs's: that one runs
//! without CRI or CNI, and containerd starts in about a second; the cost is the pod's boot.
mod common;
use common::containerd::{
    netns_names, shim_dir, Containerd, CRI_GATEWAY, CRI_SUBNET, IMAGE, NETNS_DIR, PAUSE_IMAGE,
};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint, Uri};

/// The pod's hostPort (CNI portmap).
const HOST_PORT: i32 = 18080;

async fn channel(socket: PathBuf) -> Channel {
    Endpoint::try_from("http://[::]")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
        .expect("connecting to containerd's CRI socket")
}

/// One CRI call, bounded (a guest boot under TCG takes seconds, not minutes).
async fn call<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    c: &Containerd,
) -> T {
    match tokio::time::timeout(Duration::from_secs(180), f).await {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(e)) => panic!("{what}: {e}\n{}", c.log_tail()),
        Err(_) => panic!("{what}: no answer in 180 s\n{}", c.log_tail()),
    }
}

/// CreateContainer + StartContainer of `config` in the sandbox, then its id and its status
/// once it has exited (at most 120 s).
async fn run_to_exit(
    rs: &mut RuntimeServiceClient<Channel>,
    c: &Containerd,
    sandbox: &str,
    sandbox_config: &PodSandboxConfig,
    config: ContainerConfig,
    logs: &Path,
    hx_root: &Path,
) -> (String, ContainerStatus) {
    let name = config
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    let log = logs.join(&config.log_path);
    let id = create_and_start(rs, c, sandbox, sandbox_config, config).await;
    let st = wait_exited(rs, c, &id, &name, &log, hx_root).await;
    (id, st)
}

/// CreateContainer + StartContainer of `config` in the sandbox: its id.
async fn create_and_start(
    rs: &mut RuntimeServiceClient<Channel>,
    c: &Containerd,
    sandbox: &str,
    sandbox_config: &PodSandboxConfig,
    config: ContainerConfig,
) -> String {
    let name = config
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    let id = call(
        &format!("CreateContainer {name}"),
        rs.create_container(CreateContainerRequest {
            pod_sandbox_id: sandbox.into(),
            config: Some(config),
            sandbox_config: Some(sandbox_config.clone()),
        }),
        c,
    )
    .await
    .container_id;
    call(
        &format!("StartContainer {name}"),
        rs.start_container(StartContainerRequest {
            container_id: id.clone(),
        }),
        c,
    )
    .await;
    id
}

/// `kubectl attach -i[t]`: CreateContainer + StartContainer of `config` (stdin open), then
/// CRI's Attach to it — with a terminal when it has one, else stdout and stderr — and a
/// streaming session sending `input`: its id and what the attach printed on stdout.
async fn start_attached(
    rs: &mut RuntimeServiceClient<Channel>,
    c: &Containerd,
    netns: &str,
    sandbox: &str,
    sandbox_config: &PodSandboxConfig,
    config: ContainerConfig,
    input: &[(u8, &[u8])],
) -> (String, String) {
    let tty = config.tty;
    let id = create_and_start(rs, c, sandbox, sandbox_config, config).await;
    let attach = call(
        &format!("Attach {id}"),
        rs.attach(AttachRequest {
            container_id: id.clone(),
            stdin: true,
            tty,
            stdout: true,
            stderr: !tty,
        }),
        c,
    )
    .await;
    let (out, _, _) = stream_session(netns, &attach.url, input).await;
    (id, out)
}

/// Container `id`'s status once it has exited (at most 120 s).
async fn wait_exited(
    rs: &mut RuntimeServiceClient<Channel>,
    c: &Containerd,
    id: &str,
    name: &str,
    log: &Path,
    hx_root: &Path,
) -> ContainerStatus {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let st = call(
            &format!("ContainerStatus {name}"),
            rs.container_status(ContainerStatusRequest {
                container_id: id.to_string(),
                verbose: false,
            }),
            c,
        )
        .await
        .status
        .unwrap();
        if st.state == ContainerState::ContainerExited as i32 {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not exit: {st:?}\n{name}'s log: {}\n{}\n{}",
            std::fs::read_to_string(log).unwrap_or_default(),
            c.log_tail(),
            engine_logs(hx_root)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn container_config(name: &str, script: &str, log: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: IMAGE.into(),
            ..Default::default()
        }),
        command: vec!["sh".into(), "-c".into(), script.into()],
        envs: vec![KeyValue {
            key: "WHO".into(),
            value: name.into(),
        }],
        log_path: log.into(),
        linux: Some(LinuxContainerConfig {
            security_context: Some(pid_namespace(NamespaceMode::Container)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What kubelet asks of a container's PID namespace: its own (`Container`), or the pod's
/// (`Pod`, `shareProcessNamespace: true`); and containerd's default seccomp profile
/// (`seccompProfile: RuntimeDefault`, what the restricted Pod Security Standard requires).
fn pid_namespace(mode: NamespaceMode) -> LinuxContainerSecurityContext {
    LinuxContainerSecurityContext {
        namespace_options: Some(NamespaceOption {
            pid: mode as i32,
            ..Default::default()
        }),
        seccomp: Some(SecurityProfile {
            profile_type: security_profile::ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        }),
        ..Default::default()
    }
}

/// `curl` from containerd's network namespace (where the CNI bridge is): the page, if any.
fn fetch(netns: &str, url: &str) -> Option<String> {
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net={NETNS_DIR}/{netns}"))
        .args(["curl", "-sf", "--max-time", "3", url])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// kubectl's side of CRI's streaming calls (`kubectl exec -it`, `kubectl attach`): the URL the
/// Exec/Attach answer names is containerd's streaming server, inside containerd's network
/// namespace, spoken to over WebSocket with the `v4.channel.k8s.io` protocol — every message
/// a channel byte then data: 0 stdin, 1 stdout, 2 stderr, 3 the session's status (JSON),
/// 4 a terminal resize. Sends `input` (channel, bytes) in order, then reads until the server
/// closes: (stdout, stderr, status).
async fn stream_session(netns: &str, url: &str, input: &[(u8, &[u8])]) -> (String, String, String) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("streaming URL {url:?}"));
    let addr = rest.split('/').next().unwrap().to_string();
    // The socket is made inside containerd's namespace (a thread's setns); it stays there.
    let ns = format!("{NETNS_DIR}/{netns}");
    let tcp = std::thread::spawn(move || {
        let f = std::fs::File::open(&ns).unwrap();
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        std::net::TcpStream::connect(&addr).unwrap()
    })
    .join()
    .unwrap();
    tcp.set_nonblocking(true).unwrap();
    let tcp = tokio::net::TcpStream::from_std(tcp).unwrap();
    let mut request = format!("ws://{rest}").into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v4.channel.k8s.io".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::client_async(request, tcp)
        .await
        .unwrap_or_else(|e| panic!("WebSocket to {url}: {e}"));
    for (channel, bytes) in input {
        let mut m = vec![*channel];
        m.extend_from_slice(bytes);
        ws.send(Message::binary(m)).await.unwrap();
    }
    let (mut out, mut err, mut status) = (Vec::new(), Vec::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let m = match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(m))) => m,
            Ok(_) => break,
            Err(_) => panic!(
                "streaming session {url}: no end in 60 s; stdout {:?}, stderr {:?}, status {:?}",
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err),
                String::from_utf8_lossy(&status)
            ),
        };
        match m {
            Message::Binary(data) => match data.split_first() {
                Some((1, rest)) => out.extend_from_slice(rest),
                Some((2, rest)) => err.extend_from_slice(rest),
                Some((3, rest)) => status.extend_from_slice(rest),
                _ => {}
            },
            Message::Close(_) => break,
            _ => {}
        }
    }
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (text(&out), text(&err), text(&status))
}

/// The CRI log file's lines (`TIMESTAMP STREAM P|F TEXT`) of stream `stream`: their text.
/// What the runtime bounds a VM's vCPUs by: the CPUs this process may run on (the shim's
/// are the same; on Xen, dom0's vCPUs).
fn host_cpus() -> usize {
    std::thread::available_parallelism().unwrap().get()
}

fn log_lines(path: &Path, stream: &str) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(4, ' ');
            let (ts, s, tag, msg) = (f.next()?, f.next()?, f.next()?, f.next().unwrap_or(""));
            assert!(
                ts.contains('T') && (tag == "F" || tag == "P"),
                "not a CRI log line: {l:?}"
            );
            (s == stream && tag == "F").then(|| msg.to_string())
        })
        .collect()
}

fn links(netns: &str) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["-n", netns, "-o", "link", "show"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap().to_string())
        .collect()
}

/// A Xen dom0 (the lab runs this test there, tests/xen-lab/checks/cri.sh): pods are domains.
fn on_xen() -> bool {
    std::fs::read_to_string("/proc/xen/capabilities").is_ok_and(|c| c.contains("control_d"))
}

/// The VMs of the test's pods: domains other than dom0 on Xen, QEMU processes elsewhere.
fn vms(c: &Containerd) -> usize {
    if !on_xen() {
        return qemu_pids(c).len();
    }
    let out = std::process::Command::new("xl")
        .arg("list")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().skip(2).count()
}

/// What a wrong VM count names: Xen's domains with their `hx/id` nodes, or the QEMUs counted
/// with their command lines.
fn vm_listing(c: &Containerd) -> String {
    if !on_xen() {
        return qemu_pids(c)
            .iter()
            .map(|p| {
                let args = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                let args = String::from_utf8_lossy(&args).replace('\0', " ");
                format!("{p} {}\n", args.chars().take(300).collect::<String>())
            })
            .collect();
    }
    let out = std::process::Command::new("xl")
        .arg("list")
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout).into_owned();
    let ids: String = list
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|domid| {
            let id = std::process::Command::new("xenstore-read")
                .arg(format!("/local/domain/{domid}/hx/id"))
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default();
            format!("domain {domid}: hx/id {id:?}\n")
        })
        .collect();
    list + &ids
}

/// The QEMU processes under the test's containerd.
fn qemu_pids(c: &Containerd) -> Vec<i32> {
    c.processes()
        .into_iter()
        .filter(|p| {
            std::fs::read_link(format!("/proc/{p}/exe"))
                .is_ok_and(|e| e.to_string_lossy().contains("qemu-system"))
        })
        .collect()
}

/// The engine's logs and errors under the shim's root, for a failure's message.
fn engine_logs(root: &Path) -> String {
    let mut out = String::new();
    for kind in ["containers", "oci"] {
        for id in files_in(&root.join(kind)) {
            let dir = root.join(kind).join(&id);
            for f in files_in(&dir) {
                if f.ends_with(".log") || f == "start-error" || f == "state.json" {
                    let text = std::fs::read(dir.join(&f)).unwrap_or_default();
                    let tail = &text[text.len().saturating_sub(1500)..];
                    out += &format!("--- {kind}/{id}/{f}\n{}\n", String::from_utf8_lossy(tail));
                }
            }
        }
    }
    out
}

fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn cri_pod_with_two_containers() {
    let Some((kernel, init)) = common::guest_assets() else {
        return;
    };
    let Some(c) = Containerd::start_cri(&shim_dir(), &kernel, &init, IMAGE) else {
        return;
    };
    let netns = c.netns.clone().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(pod(&c, &netns));
}

async fn pod(c: &Containerd, netns: &str) {
    let t_all = Instant::now();
    c.import_busybox_in("k8s.io");
    let channel = channel(c.dir.join("containerd.sock")).await;
    let mut rs = RuntimeServiceClient::new(channel.clone());
    let mut is = ImageServiceClient::new(channel);
    // The imported image is what CRI sees (no pull: no registry here).
    let img = call(
        "ImageStatus",
        is.image_status(ImageStatusRequest {
            image: Some(ImageSpec {
                image: IMAGE.into(),
                ..Default::default()
            }),
            verbose: false,
        }),
        c,
    )
    .await;
    assert!(img.image.is_some(), "CRI does not see {IMAGE}");
    let mounts_before = c.mounts();
    let cni_before = netns_names();
    let hx_root = c.dir.join("hx").join("k8s.io");

    let logs = c.dir.join("pod-logs");
    std::fs::create_dir_all(&logs).unwrap();
    let sandbox_config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "web".into(),
            uid: "uid-web-1".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "webpod".into(),
        log_directory: logs.to_string_lossy().into_owned(),
        // Kubelet's sum of the containers' limits: one CPU and 128 MiB. The VM is sized for
        // them on top of its own 256 MiB and one vCPU.
        linux: Some(LinuxPodSandboxConfig {
            resources: Some(LinuxContainerResources {
                cpu_period: 100_000,
                cpu_quota: 100_000,
                memory_limit_in_bytes: 128 << 20,
                ..Default::default()
            }),
            ..Default::default()
        }),
        // A hostPort: CNI's portmap plugin DNATs the node's port to the pod's address.
        port_mappings: vec![PortMapping {
            protocol: Protocol::Tcp as i32,
            container_port: 8080,
            host_port: HOST_PORT,
            host_ip: String::new(),
        }],
        // Kubelet's cluster DNS: containerd writes it as the pod's resolv.conf.
        dns_config: Some(DnsConfig {
            servers: vec!["10.231.77.53".into()],
            searches: vec!["default.svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        }),
        ..Default::default()
    };
    let t0 = Instant::now();
    let sandbox = call(
        "RunPodSandbox",
        rs.run_pod_sandbox(RunPodSandboxRequest {
            config: Some(sandbox_config.clone()),
            runtime_handler: "hx".into(),
        }),
        c,
    )
    .await
    .pod_sandbox_id;
    eprintln!("RunPodSandbox: {:?}", t0.elapsed());
    let status = call(
        "PodSandboxStatus",
        rs.pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: sandbox.clone(),
            verbose: false,
        }),
        c,
    )
    .await
    .status
    .unwrap();
    assert_eq!(status.state, PodSandboxState::SandboxReady as i32);
    let ip = status.network.unwrap().ip;
    let prefix = CRI_SUBNET.rsplit_once('.').unwrap().0;
    assert!(
        ip.starts_with(&format!("{prefix}.")),
        "pod IP {ip:?} not in {CRI_SUBNET}"
    );
    // The server: serves a page on 8080.
    let t0 = Instant::now();
    let srv = call(
        "CreateContainer srv",
        rs.create_container(CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(container_config(
                "srv",
                "mkdir -p /www && echo hello-from-$WHO > /www/index.html && echo serving \
                 && exec httpd -f -p 8080 -h /www",
                "srv.log",
            )),
            sandbox_config: Some(sandbox_config.clone()),
        }),
        c,
    )
    .await
    .container_id;
    call(
        "StartContainer srv",
        rs.start_container(StartContainerRequest {
            container_id: srv.clone(),
        }),
        c,
    )
    .await;
    eprintln!("CreateContainer + StartContainer srv: {:?}", t0.elapsed());

    // The pod's IP from the host side of the CNI bridge.
    let url = format!("http://{ip}:8080/");
    let deadline = Instant::now() + Duration::from_secs(120);
    let page = loop {
        if let Some(p) = fetch(netns, &url) {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "{url} not reachable from containerd's namespace\n{}\n{}",
            c.log_tail(),
            engine_logs(&hx_root)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(page, "hello-from-srv\n");
    // The pod's hostPort on the node (here containerd's namespace, whose address on the CNI
    // bridge is the gateway): the same server.
    let host_url = format!("http://{CRI_GATEWAY}:{HOST_PORT}/");
    assert_eq!(
        fetch(netns, &host_url).as_deref(),
        Some("hello-from-srv\n"),
        "hostPort {host_url}\n{}",
        c.log_tail()
    );
    // The sandbox and its container: one VM.
    assert_eq!(
        vms(c),
        1,
        "VMs (QEMU processes, Xen domains) for one pod\n{}\n{}\n{}",
        vm_listing(c),
        c.log_tail(),
        engine_logs(&hx_root)
    );

    // Kubernetes' in-place resize: UpdateContainerResources reaches the shim's Update: the
    // member's own cgroup in the pod's VM takes the limits (checked below, from inside it),
    // and on Xen the pod's domain gets its members' CPU cap and weight. The memory (32 MiB) is
    // within the pod VM's 128 MiB and below a VM's least (40 MiB), which is no member's bound.
    let resized = rs
        .update_container_resources(UpdateContainerResourcesRequest {
            container_id: srv.clone(),
            linux: Some(LinuxContainerResources {
                cpu_period: 100_000,
                cpu_quota: 50_000,
                cpu_shares: 512,
                memory_limit_in_bytes: 32 << 20,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    resized.unwrap_or_else(|e| panic!("UpdateContainerResources: {e}\n{}", c.log_tail()));
    if on_xen() {
        let out = std::process::Command::new("xl")
            .args(["sched-credit2"])
            .output()
            .unwrap();
        let table = String::from_utf8_lossy(&out.stdout).into_owned();
        let pod_row = table
            .lines()
            .filter(|l| l.split_whitespace().count() == 4 && !l.starts_with("Name"))
            .find(|l| !l.starts_with("Domain-0"))
            .unwrap_or_else(|| panic!("no pod domain in xl sched-credit2:\n{table}"));
        let fields: Vec<&str> = pod_row.split_whitespace().collect();
        assert_eq!(fields[2..], ["128", "50"], "weight and cap: {table}");
    }

    // The client: the server over localhost (the pod's one network), the pod's hostname,
    // its own root (srv's /www is not there), a known exit code; it shares the pod's PID
    // namespace (shareProcessNamespace), so it sees srv's httpd and the VM's init as PID 1.
    let mut cli = container_config(
        "cli",
        "wget -qO- http://localhost:8080/; echo host=$(hostname); \
         ls /www 2>/dev/null || echo no-www; echo cpus=$(nproc); \
         echo pid1=$(cat /proc/1/comm) httpd=$(cat /proc/[0-9]*/comm | grep -c '^httpd$'); \
         awk '/^MemTotal:/ { print \"memkb=\" $2 }' /proc/meminfo; \
         echo to-stderr >&2; exit 7",
        "cli.log",
    );
    cli.linux = Some(LinuxContainerConfig {
        security_context: Some(pid_namespace(NamespaceMode::Pod)),
        ..Default::default()
    });
    let (_, st) = run_to_exit(&mut rs, c, &sandbox, &sandbox_config, cli, &logs, &hx_root).await;
    assert_eq!(
        st.exit_code,
        7,
        "{st:?}\n{}\n{}",
        std::fs::read_to_string(logs.join("cli.log")).unwrap_or_default(),
        engine_logs(&hx_root)
    );
    assert_eq!(st.log_path, logs.join("cli.log").to_string_lossy());
    // The CRI log format at the path kubelet asked for.
    let log = logs.join("cli.log");
    let mut out = log_lines(&log, "stdout");
    let memkb = out.pop().unwrap_or_default();
    // The pod's VM: its own vCPU and one for the containers' CPU limit (as many as the host
    // has at most), its 256 MiB and the limits' 128 MiB (less what the guest kernel keeps).
    let host_cpus = host_cpus().min(2);
    assert_eq!(
        out,
        [
            "hello-from-srv",
            "host=webpod",
            "no-www",
            &format!("cpus={host_cpus}"),
            "pid1=init httpd=1",
        ],
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let kb: u64 = memkb
        .strip_prefix("memkb=")
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(|| panic!("no MemTotal: {memkb:?}"));
    assert!(
        (300 << 10..=384 << 10).contains(&kb),
        "MemTotal {kb} kB: not a 384 MiB VM"
    );
    assert_eq!(log_lines(&log, "stderr"), ["to-stderr"]);
    assert_eq!(log_lines(&logs.join("srv.log"), "stdout"), ["serving"]);

    // A container's memory limit is its own inside the pod's VM: over it, the OOM killer ends
    // that container alone (busybox's tail buffers all it reads) and CRI reports OOMKilled
    // (the shim's TaskOOM), as for runc; the server runs on. Its CPU limit of one whole CPU is
    // its cgroup's cpu.max too (its own vCPUs are not its bound in the pod's VM).
    let mut hog = container_config(
        "hog",
        "cat /sys/fs/cgroup/cpu.max; exec tail < /dev/zero",
        "hog.log",
    );
    hog.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 100_000,
            memory_limit_in_bytes: 32 << 20,
            ..Default::default()
        }),
        security_context: Some(pid_namespace(NamespaceMode::Container)),
    });
    let (_, st) = run_to_exit(&mut rs, c, &sandbox, &sandbox_config, hog, &logs, &hx_root).await;
    assert_eq!(
        (st.exit_code, st.reason.as_str()),
        (137, "OOMKilled"),
        "{st:?}\n{}",
        engine_logs(&hx_root)
    );
    assert_eq!(
        log_lines(&logs.join("hog.log"), "stdout"),
        ["100000 100000"]
    );
    // The server runs on: under nested TCG the pod's domain (capped at half a CPU by the
    // update above) may take a while to answer after the OOM kill, not forever.
    let deadline = Instant::now() + Duration::from_secs(60);
    while fetch(netns, &url).as_deref() != Some("hello-from-srv\n") {
        assert!(
            Instant::now() < deadline,
            "srv stopped serving after hog's OOM kill\n{}\n{}",
            c.log_tail(),
            engine_logs(&hx_root)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Kubelet's volumes: a host directory read-write (an emptyDir), one read-only (a
    // ConfigMap); and the pod's DNS config in its resolv.conf. Live both ways, :ro enforced.
    // On Xen both go through the pod domain's members exports (9pfs from boot; the read-only
    // one made read-only in the monitor's mount namespace, kubelet's `..data` links kept).
    let empty_dir = c.dir.join("empty-dir");
    let config_map = c.dir.join("config-map");
    std::fs::create_dir_all(&empty_dir).unwrap();
    std::fs::create_dir_all(&config_map).unwrap();
    // kubelet's layout: the data in a timestamped directory, `..data` and the key links.
    std::fs::create_dir_all(config_map.join("..2026_12_05")).unwrap();
    std::fs::write(
        config_map.join("..2026_12_05/key"),
        "value-from-configmap\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("..2026_12_05", config_map.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/key", config_map.join("key")).unwrap();
    let mut with_volumes = container_config(
        "vol",
        "cat /cfg/key; echo from-member > /data/out.txt; \
         (echo x > /cfg/key) 2>/dev/null && echo cfg-writable || echo cfg-ro; \
         grep -E '^(nameserver|search|options)' /etc/resolv.conf",
        "vol.log",
    );
    let data = Mount {
        container_path: "/data".into(),
        host_path: empty_dir.to_string_lossy().into_owned(),
        ..Default::default()
    };
    with_volumes.mounts = vec![
        data,
        Mount {
            container_path: "/cfg".into(),
            host_path: config_map.to_string_lossy().into_owned(),
            readonly: true,
            ..Default::default()
        },
    ];
    let (vol, st) = run_to_exit(
        &mut rs,
        c,
        &sandbox,
        &sandbox_config,
        with_volumes,
        &logs,
        &hx_root,
    )
    .await;
    let vol_log = logs.join("vol.log");
    assert_eq!(
        (st.exit_code, log_lines(&vol_log, "stdout")),
        (
            0,
            vec![
                "value-from-configmap".to_string(),
                "cfg-ro".into(),
                // containerd's order.
                "search default.svc.cluster.local".into(),
                "nameserver 10.231.77.53".into(),
                "options ndots:5".into(),
            ]
        ),
        "{}\n{}",
        std::fs::read_to_string(&vol_log).unwrap_or_default(),
        engine_logs(&hx_root)
    );
    assert_eq!(
        std::fs::read_to_string(empty_dir.join("out.txt")).unwrap(),
        "from-member\n"
    );
    assert_eq!(
        std::fs::read_to_string(config_map.join("key")).unwrap(),
        "value-from-configmap\n"
    );
    call(
        "RemoveContainer vol",
        rs.remove_container(RemoveContainerRequest { container_id: vol }),
        c,
    )
    .await;

    // ExecSync in the server: its root, its env, its capabilities, an exit code; the member
    // runs on. (Its deadline is containerd's: 60 s expired once in the lab under the CI's two
    // parallel TCG boots; `call` still bounds each request at 180 s.)
    let r = call(
        "ExecSync",
        rs.exec_sync(ExecSyncRequest {
            container_id: srv.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "cat /www/index.html; echo $WHO; grep -E '^(CapBnd|Seccomp):' /proc/self/status; \
                 echo pid1=$(cat /proc/1/comm) httpd=$(cat /proc/[0-9]*/comm | grep -c '^httpd$'); \
                 exit 3"
                    .into(),
            ],
            timeout: 150,
        }),
        c,
    )
    .await;
    assert_eq!(
        (String::from_utf8_lossy(&r.stdout).as_ref(), r.exit_code),
        // containerd's default capabilities (docker's 14), not the pod VM's all, and its
        // default seccomp profile (RuntimeDefault).
        // Its own PID namespace (kubelet's default): its workload is PID 1.
        (
            "hello-from-srv\nsrv\nCapBnd:\t00000000a80425fb\nSeccomp:\t2\npid1=httpd httpd=1\n",
            3
        ),
        "stderr: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    // A member's exit did not end the pod: the server still answers.
    assert_eq!(fetch(netns, &url).as_deref(), Some("hello-from-srv\n"));

    let t_stream = Instant::now();
    // `kubectl exec -it srv -- sh`: CRI's streaming Exec with a terminal, through containerd's
    // streaming server: a resize, then typed lines; the shell sees the size, its output comes
    // back on the terminal, and its exit code in the session's status.
    let exec = call(
        "Exec (streaming, tty)",
        rs.exec(ExecRequest {
            container_id: srv.clone(),
            cmd: vec!["sh".into()],
            tty: true,
            stdin: true,
            stdout: true,
            stderr: false,
        }),
        c,
    )
    .await;
    let (out, _, status) = stream_session(
        netns,
        &exec.url,
        &[
            (4, br#"{"Width":100,"Height":30}"#),
            (0, b"stty size; tty; echo typed-$((6*7)); exit 5\n"),
        ],
    )
    .await;
    assert!(out.contains("30 100\r\n"), "terminal size: {out:?}");
    assert!(out.contains("/dev/pts/"), "no terminal: {out:?}");
    assert!(out.contains("typed-42\r\n"), "{out:?}");
    assert!(
        status.contains("NonZeroExitCode") && status.contains(r#""message":"5""#),
        "status {status:?}"
    );
    // Without a terminal: stdout and stderr apart, success.
    let exec = call(
        "Exec (streaming)",
        rs.exec(ExecRequest {
            container_id: srv.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "read l; echo \"$l\"; echo to-err >&2".into(),
            ],
            tty: false,
            stdin: true,
            stdout: true,
            stderr: true,
        }),
        c,
    )
    .await;
    let (out, err, status) = stream_session(netns, &exec.url, &[(0, b"piped-in\n")]).await;
    // (No end of input: WebSocket's v4 protocol has no way to close stdin, v5 came later.)
    assert_eq!(
        (out.as_str(), err.as_str()),
        ("piped-in\n", "to-err\n"),
        "{status}"
    );
    assert!(
        status.contains(r#""status":"Success""#),
        "status {status:?}"
    );

    // `kubectl attach -i`: a container with stdin open (`stdin: true, stdin_once: true`) reads
    // what the attached client types and exits with its own code.
    let mut att = container_config(
        "att",
        "echo waiting; read line; echo got:$line; exit 7",
        "att.log",
    );
    att.stdin = true;
    att.stdin_once = true;
    let (att_id, out) = start_attached(
        &mut rs,
        c,
        netns,
        &sandbox,
        &sandbox_config,
        att,
        &[(0, b"hello-attach\n")],
    )
    .await;
    assert!(out.contains("got:hello-attach\n"), "attach output {out:?}");
    let st = wait_exited(&mut rs, c, &att_id, "att", &logs.join("att.log"), &hx_root).await;
    assert_eq!(
        (st.exit_code, log_lines(&logs.join("att.log"), "stdout")),
        (
            7,
            vec!["waiting".to_string(), "got:hello-attach".to_string()]
        ),
        "{st:?}\n{}",
        engine_logs(&hx_root)
    );
    call(
        "RemoveContainer att",
        rs.remove_container(RemoveContainerRequest {
            container_id: att_id,
        }),
        c,
    )
    .await;

    // `kubectl run -it`: a container with a terminal (`tty: true`) and stdin open; the
    // attached client's resize reaches its terminal, its typed line comes back echoed, and
    // its output is the CRI log's stdout.
    let mut term = container_config(
        "term",
        "read line; stty size; tty; echo got:$line; exit 4",
        "term.log",
    );
    (term.stdin, term.stdin_once, term.tty) = (true, true, true);
    let (term_id, out) = start_attached(
        &mut rs,
        c,
        netns,
        &sandbox,
        &sandbox_config,
        term,
        &[(4, br#"{"Width":90,"Height":20}"#), (0, b"hello-tty\n")],
    )
    .await;
    for want in [
        "hello-tty\r\n",
        "20 90\r\n",
        "/dev/pts/",
        "got:hello-tty\r\n",
    ] {
        assert!(
            out.contains(want),
            "{want:?} not in the attach output {out:?}\n{}\n{}",
            c.log_tail(),
            engine_logs(&hx_root)
        );
    }
    let st = wait_exited(
        &mut rs,
        c,
        &term_id,
        "term",
        &logs.join("term.log"),
        &hx_root,
    )
    .await;
    let logged = log_lines(&logs.join("term.log"), "stdout").join("\n");
    assert_eq!(st.exit_code, 4, "{st:?}\n{}", engine_logs(&hx_root));
    assert!(
        logged.contains("got:hello-tty"),
        "term's CRI log: {logged:?}"
    );
    call(
        "RemoveContainer term",
        rs.remove_container(RemoveContainerRequest {
            container_id: term_id,
        }),
        c,
    )
    .await;
    eprintln!(
        "Streaming Exec x2 + Attach x2 (two containers' runs): {:?}",
        t_stream.elapsed()
    );

    // An ephemeral debug container (`kubectl debug --target srv`, NamespaceMode TARGET): in
    // srv's PID namespace, where srv's httpd is PID 1 and the VM's init is not to be seen.
    let mut dbg = container_config(
        "dbg",
        "echo pid1=$(cat /proc/1/comm) init=$(cat /proc/[0-9]*/comm | grep -c '^init$')",
        "dbg.log",
    );
    dbg.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            namespace_options: Some(NamespaceOption {
                pid: NamespaceMode::Target as i32,
                target_id: srv.clone(),
                ..Default::default()
            }),
            ..pid_namespace(NamespaceMode::Target)
        }),
        ..Default::default()
    });
    let (_, st) = run_to_exit(&mut rs, c, &sandbox, &sandbox_config, dbg, &logs, &hx_root).await;
    assert_eq!(
        (st.exit_code, log_lines(&logs.join("dbg.log"), "stdout")),
        (0, vec!["pid1=httpd init=0".to_string()]),
        "{st:?}\n{}",
        engine_logs(&hx_root)
    );
    // The limits UpdateContainerResources gave srv, as its cgroup shows them to it.
    let r = call(
        "ExecSync limits",
        rs.exec_sync(ExecSyncRequest {
            container_id: srv.clone(),
            cmd: vec![
                "cat".into(),
                "/sys/fs/cgroup/memory.max".into(),
                "/sys/fs/cgroup/cpu.max".into(),
                "/sys/fs/cgroup/cpu.weight".into(),
            ],
            timeout: 150,
        }),
        c,
    )
    .await;
    assert_eq!(
        String::from_utf8_lossy(&r.stdout),
        format!("{}\n50000 100000\n20\n", 32 << 20),
        "stderr: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    // ContainerStats (kubelet's resource metrics): the member's own group, not the pod VM's
    // (whose guest alone has ~10 MiB in use): httpd's few hundred KiB, some CPU time.
    let stats = call(
        "ContainerStats srv",
        rs.container_stats(ContainerStatsRequest {
            container_id: srv.clone(),
        }),
        c,
    )
    .await
    .stats
    .unwrap();
    let working_set = stats
        .memory
        .as_ref()
        .and_then(|m| m.working_set_bytes.as_ref())
        .map_or(0, |v| v.value);
    assert!(
        working_set > 0 && working_set < 8 << 20,
        "srv's working set {working_set}: {stats:?}"
    );
    assert!(
        stats
            .cpu
            .as_ref()
            .and_then(|c| c.usage_core_nano_seconds.as_ref())
            .is_some_and(|v| v.value > 0),
        "{stats:?}"
    );
    // The lab asks for a guest type (HX_CONFIG's `[xen] type` reaches the shim through
    // containerd): the pod's domain is of that type.
    if let Ok(want) = std::env::var("HX_TEST_XEN_TYPE") {
        let r = call(
            "ExecSync guest_type",
            rs.exec_sync(ExecSyncRequest {
                container_id: srv.clone(),
                cmd: vec!["cat".into(), "/sys/hypervisor/guest_type".into()],
                timeout: 150,
            }),
            c,
        )
        .await;
        assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), want);
    }

    // kubelet's teardown: StopPodSandbox stops the containers and the pod's VM, then
    // RemovePodSandbox removes everything.
    let t0 = Instant::now();
    call(
        "StopPodSandbox",
        rs.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        }),
        c,
    )
    .await;
    let srv_status = call(
        "ContainerStatus srv",
        rs.container_status(ContainerStatusRequest {
            container_id: srv.clone(),
            verbose: false,
        }),
        c,
    )
    .await
    .status
    .unwrap();
    assert_eq!(
        srv_status.state,
        ContainerState::ContainerExited as i32,
        "{srv_status:?}"
    );
    call(
        "RemovePodSandbox",
        rs.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        }),
        c,
    )
    .await;
    eprintln!("StopPodSandbox + RemovePodSandbox: {:?}", t0.elapsed());

    // Nothing left: no shim, keeper or QEMU; no mount beyond containerd's own; no engine
    // or OCI record; no CNI namespace; only lo and the CNI bridge in containerd's namespace.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !c.processes().is_empty() {
        assert!(
            Instant::now() < deadline,
            "left running: {:?}",
            c.processes()
                .iter()
                .map(|p| std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                    .unwrap_or_default()
                    .replace('\0', " "))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left: Vec<PathBuf> = c
        .mounts()
        .into_iter()
        .filter(|m| !mounts_before.contains(m))
        .collect();
    assert!(left.is_empty(), "mounts left: {left:?}");
    assert_eq!(files_in(&hx_root.join("containers")), Vec::<String>::new());
    assert_eq!(files_in(&hx_root.join("oci")), Vec::<String>::new());
    // Every member's root was busybox's layers over an empty upper: one image, packed once
    // and kept while containerd keeps the snapshots, linked by no container now.
    let cache = hx_root.join("rootfs-cache");
    let cached = files_in(&cache);
    assert!(
        cached.len() == 2 && cached.iter().any(|f| f.ends_with(".lowers")),
        "rootfs cache: {cached:?}"
    );
    let image = cached.iter().find(|f| f.ends_with(".erofs")).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::nlink(&std::fs::metadata(cache.join(image)).unwrap()),
        1
    );
    let cni_left: Vec<String> = netns_names()
        .into_iter()
        .filter(|n| n.starts_with("cni-") && !cni_before.contains(n))
        .collect();
    assert!(cni_left.is_empty(), "CNI namespaces left: {cni_left:?}");
    let cached = format!("/var/lib/cni/results/hxcri-{sandbox}-eth0");
    assert!(!Path::new(&cached).exists(), "CNI's cache kept {cached}");
    let mut l = links(netns);
    l.sort();
    assert_eq!(l, ["hxcri0", "lo"], "links left in containerd's namespace");
    // portmap's DNAT for the pod's hostPort went with it (CNI DEL).
    let nat = std::process::Command::new("nsenter")
        .arg(format!("--net={NETNS_DIR}/{netns}"))
        .args(["iptables-save", "-t", "nat"])
        .output()
        .expect("iptables-save");
    let nat = String::from_utf8_lossy(&nat.stdout);
    assert!(
        nat.contains("CNI-HOSTPORT-DNAT") && !nat.contains(&format!("--dport {HOST_PORT}")),
        "hostPort rules left (or portmap never ran):\n{nat}"
    );
    eprintln!("CRI pod test: {:?}", t_all.elapsed());
}

/// Pod start through CRI, hx against runc in the same containerd: RunPodSandbox +
/// CreateContainer + StartContainer until the container's first line is in its log file.
/// Not a timed test: `cargo test --release -p hx-toolstack --test cri -- --ignored
/// --nocapture` (HX_BENCH_RUNS, default 5); docs/benchmarks.md.
#[test]
#[ignore = "a benchmark, run by hand (docs/benchmarks.md)"]
fn bench_pod_start() {
    let Some((kernel, init)) = common::guest_assets() else {
        return;
    };
    let Some(c) = Containerd::start_cri(&shim_dir(), &kernel, &init, PAUSE_IMAGE) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(bench(&c));
}

async fn bench(c: &Containerd) {
    c.import_busybox_in("k8s.io");
    c.import_pause_in("k8s.io");
    let runs: usize = std::env::var("HX_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let mut rs = RuntimeServiceClient::new(channel(c.dir.join("containerd.sock")).await);
    let mut times: std::collections::BTreeMap<String, Vec<Duration>> = Default::default();
    let mut handlers = vec!["hx", "runc"];
    // Round 0 warms up (hx: the pod's empty root, the initramfs; both: the snapshots).
    for round in 0..=runs {
        for handler in handlers.clone() {
            match pod_start(c, &mut rs, handler, round).await {
                Ok(t) => {
                    eprintln!("{handler} round {round}: {t:?}");
                    if round > 0 {
                        times
                            .entry(format!("CRI pod, {handler}"))
                            .or_default()
                            .push(t);
                    }
                }
                Err(e) => {
                    eprintln!("BENCH {handler}: RunPodSandbox failed, dropped: {e}");
                    handlers.retain(|h| *h != handler);
                }
            }
        }
        // The same containerd's plain task, ctr run --rm (start, exit, delete), both shims.
        for rt in ["hx", "runc"] {
            let id = format!("t-{rt}-{round}");
            let t0 = Instant::now();
            let runtime = format!("io.containerd.{rt}.v2");
            c.ctr_ok(&[
                "-n",
                "k8s.io",
                "run",
                "--rm",
                "--runtime",
                &runtime,
                IMAGE,
                &id,
                "true",
            ]);
            if round > 0 {
                times
                    .entry(format!("ctr run --rm true, {rt}"))
                    .or_default()
                    .push(t0.elapsed());
            }
        }
    }
    // Which VMs had a warm-start template (a pod's VM: DEVICES ends in +pod).
    let templates = c.dir.join("hx").join("k8s.io").join("templates");
    for entry in std::fs::read_dir(&templates)
        .into_iter()
        .flatten()
        .flatten()
    {
        let meta = std::fs::read_to_string(entry.path().join("meta.json")).unwrap_or_default();
        eprintln!("BENCH template {:?}: {meta}", entry.file_name());
    }
    for (handler, mut v) in times {
        v.sort();
        eprintln!(
            "BENCH {handler}: median {:?} over {} (min {:?}, max {:?})",
            v[v.len() / 2],
            v.len(),
            v[0],
            v[v.len() - 1]
        );
    }
}

async fn pod_start(
    c: &Containerd,
    rs: &mut RuntimeServiceClient<Channel>,
    handler: &str,
    round: usize,
) -> Result<Duration, tonic::Status> {
    let name = format!("b-{handler}-{round}");
    let logs = c.dir.join("bench-logs").join(&name);
    std::fs::create_dir_all(&logs).unwrap();
    let config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.clone(),
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.clone(),
        log_directory: logs.to_string_lossy().into_owned(),
        linux: Some(LinuxPodSandboxConfig::default()),
        ..Default::default()
    };
    let t0 = Instant::now();
    let sandbox = rs
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.into(),
        })
        .await?
        .into_inner()
        .pod_sandbox_id;
    let t_sandbox = t0.elapsed();
    let id = call(
        "CreateContainer",
        rs.create_container(CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(container_config("up", "echo up; exec sleep 600", "up.log")),
            sandbox_config: Some(config),
        }),
        c,
    )
    .await
    .container_id;
    let t_create = t0.elapsed();
    call(
        "StartContainer",
        rs.start_container(StartContainerRequest { container_id: id }),
        c,
    )
    .await;
    let t_start = t0.elapsed();
    let log = logs.join("up.log");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains(" stdout F up\n")
    {
        assert!(
            Instant::now() < deadline,
            "{handler}: the container did not run"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let t = t0.elapsed();
    // The host's share: every process the pod's runtime left (shims, keepers, relays, QEMU;
    // runc's container processes do not name the temp dir: its figure is its shim's only).
    let mut rss: std::collections::BTreeMap<String, (usize, u64)> = Default::default();
    for p in c.processes() {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{p}/status")) else {
            continue;
        };
        let field = |k: &str| {
            status
                .lines()
                .find(|l| l.starts_with(k))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        };
        // PSS: the shim binary's pages that its many processes share are counted once.
        let pss = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Pss:"))
                    .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
            });
        let (Some(name), Some(kib)) = (field("Name:"), pss) else {
            continue;
        };
        let e = rss.entry(name).or_default();
        e.0 += 1;
        e.1 += kib.parse::<u64>().unwrap_or(0);
    }
    let total: u64 = rss.values().map(|v| v.1).sum();
    eprintln!(
        "{handler} round {round}: RunPodSandbox {t_sandbox:?}, +CreateContainer {t_create:?}, \
         +StartContainer {t_start:?}, running {t:?}, host PSS {} MiB (process name: count, KiB: \
         {rss:?})",
        total / 1024
    );
    call(
        "StopPodSandbox",
        rs.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        }),
        c,
    )
    .await;
    call(
        "RemovePodSandbox",
        rs.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: sandbox,
        }),
        c,
    )
    .await;
    Ok(t)
}
