//! `hx pod create|start|stop|rm|ps|inspect`: pods, containers sharing one VM (hx_engine::pod,
//! docs/pods.md). Members are added with `hx run --pod P` / `hx create --pod P`.
use anyhow::Context;
use hx_engine::container::Container;
use std::time::Duration;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Create a pod and start its VM; print its name
    Create(Box<CreateArgs>),
    /// Start a stopped pod's VM
    Start(NamesArgs),
    /// Stop a pod's containers, then its VM
    Stop(StopArgs),
    /// Remove pods (-f: running ones too, with their containers)
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// List pods
    #[command(alias = "ls", alias = "list")]
    Ps(PsArgs),
    /// Show pods' details as JSON
    Inspect(NamesArgs),
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// Pod name (default: a random one)
    #[arg(long)]
    pub name: Option<String>,
    /// Publish a port of the pod on the host: [IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp]
    #[arg(short = 'p', long = "publish", value_name = "[IP:]HOSTPORT:PORT")]
    pub publish: Vec<String>,
    /// The pod's network: bridge (default), bridge=NAME, ns:PATH, or none
    #[arg(long, value_name = "MODE", env = "HX_NETWORK")]
    pub network: Option<String>,
    /// Memory for the pod's VM, shared by its containers (e.g. 256m, 1g)
    #[arg(short, long, default_value = "256m")]
    pub memory: String,
    /// CPUs of the pod's VM: its vCPUs, rounded up; a fraction (0.5, 1.5) also caps its CPU
    /// time there
    #[arg(long, default_value_t = 1.0, value_name = "N")]
    pub cpus: f64,
    /// The pod's hostname (default: its name)
    #[arg(long)]
    pub hostname: Option<String>,
    /// DNS server for the pod
    #[arg(long = "dns", value_name = "IP")]
    pub dns: Vec<String>,
    /// Add a line to the pod's /etc/hosts: HOST:IP
    #[arg(long = "add-host", value_name = "HOST:IP")]
    pub add_host: Vec<String>,
    /// Backend of the pod's VM: qemu or xen (default: xen on a dom0, else qemu)
    #[arg(long, env = "HX_BACKEND")]
    pub backend: Option<String>,
    /// Xen domain type of the pod's VM: pvh (default) or pv (default from [xen] type)
    #[arg(long = "type", value_name = "pvh|pv")]
    pub xen_type: Option<String>,
    /// Namespaces the pod's containers share (podman's): ipc,net,uts always (one VM); +pid
    /// adds the PID namespace, so that they see each other's processes
    #[arg(long, value_name = "NS[,NS...]|+pid")]
    pub share: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct NamesArgs {
    #[arg(required = true)]
    pub pods: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait for each container before killing it
    #[arg(short, long, default_value_t = 10)]
    pub time: u64,
    #[arg(required = true)]
    pub pods: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct RmArgs {
    /// Stop and remove running pods and their containers too
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub pods: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct PsArgs {
    /// Only names
    #[arg(short, long)]
    pub quiet: bool,
}

pub async fn run(g: &super::Globals, c: Command) -> anyhow::Result<i32> {
    let root = g.root.clone();
    match c {
        Command::Create(a) => {
            let a = *a;
            let name = a.name.clone().unwrap_or_else(random_name);
            let memory_mb = super::run::parse_size_in(
                "--memory",
                &a.memory,
                super::run::MIN_MEMORY,
                super::run::MAX_MEMORY,
            )?
            .div_ceil(1 << 20);
            let (vcpus, cpu_cap_pct) = super::run::vcpus_and_cap(a.cpus)?;
            let share_pid = match &a.share {
                Some(arg) => hx_engine::pod::parse_share(arg)?,
                None => false,
            };
            let req = hx_engine::pod::PodRequest {
                name: name.clone(),
                publish: a.publish,
                network: a.network,
                memory_mb,
                cpus: vcpus,
                cpu_cap_pct,
                hostname: a.hostname,
                dns: a.dns,
                add_hosts: a.add_host,
                labels: Default::default(),
                backend: a.backend,
                xen_type: a.xen_type,
                share_pid,
            };
            let started =
                tokio::task::spawn_blocking(move || hx_engine::pod::create(&root, req)).await??;
            hx_engine::lifecycle::confirm(&g.root, &started.container, started.owner).await?;
            outln!("{name}");
            Ok(0)
        }
        Command::Start(a) => {
            for p in a.pods {
                let r = root.clone();
                let q = p.clone();
                let started =
                    tokio::task::spawn_blocking(move || hx_engine::pod::start(&r, &q)).await??;
                if let Some(s) = started {
                    hx_engine::lifecycle::confirm(&g.root, &s.container, s.owner).await?;
                }
                outln!("{p}");
            }
            Ok(0)
        }
        Command::Stop(a) => {
            for p in a.pods {
                let r = root.clone();
                let q = p.clone();
                let grace = Duration::from_secs(a.time);
                tokio::task::spawn_blocking(move || hx_engine::pod::stop(&r, &q, Some(grace)))
                    .await??;
                outln!("{p}");
            }
            Ok(0)
        }
        Command::Rm(a) => {
            for p in a.pods {
                let r = root.clone();
                let q = p.clone();
                let force = a.force;
                tokio::task::spawn_blocking(move || hx_engine::pod::remove(&r, &q, force))
                    .await??;
                outln!("{p}");
            }
            Ok(0)
        }
        Command::Ps(a) => {
            let pods = tokio::task::spawn_blocking(move || hx_engine::pod::list(&root)).await??;
            if a.quiet {
                for (i, _) in &pods {
                    outln!("{}", i.pod.as_deref().unwrap_or(""));
                }
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = pods
                .iter()
                .map(|(i, members)| {
                    let running = members.iter().filter(|m| is_running(m)).count();
                    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
                    vec![
                        i.pod.clone().unwrap_or_default(),
                        if is_running(i) { "Running" } else { "Exited" }.into(),
                        i.short_id().to_string(),
                        format!("{running}/{}", members.len()),
                        names.join(","),
                    ]
                })
                .collect();
            super::table::print(
                super::table::DOCKER,
                &["POD", "STATUS", "INFRA ID", "CONTAINERS", "NAMES"],
                &rows,
            );
            Ok(0)
        }
        Command::Inspect(a) => {
            let pods = tokio::task::spawn_blocking(move || hx_engine::pod::list(&root)).await??;
            let mut out = Vec::new();
            for p in &a.pods {
                let (i, members) = pods
                    .iter()
                    .find(|(i, _)| i.pod.as_deref() == Some(p.as_str()))
                    .with_context(|| format!("no such pod: {p}"))?;
                let spec = hx_engine::pod::infra_spec_of(&g.root, i);
                out.push(serde_json::json!({
                    "Name": p,
                    "State": if is_running(i) { "Running" } else { "Exited" },
                    "InfraContainerID": i.id,
                    "Created": i.created,
                    "Hostname": spec.as_ref().map(|s| &s.hostname),
                    "Network": i.network,
                    "SharedNamespaces": hx_engine::pod::shared_namespaces(spec.as_ref()),
                    "Containers": members.iter().map(|m| serde_json::json!({
                        "Id": m.id, "Name": m.name,
                        "State": if is_running(m) { "running" } else { "exited" },
                        "ExitCode": m.exit_code,
                    })).collect::<Vec<_>>(),
                }));
            }
            outln!("{}", serde_json::to_string_pretty(&out)?);
            Ok(0)
        }
    }
}

fn is_running(c: &Container) -> bool {
    c.status == hx_engine::container::Status::Running && c.vm_alive()
}

fn random_name() -> String {
    let id = hx_engine::container::new_id();
    format!("pod-{}", &id[..8])
}
