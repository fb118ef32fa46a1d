//! `hx inspect`: a container's state, spec and files as JSON, or through a Go template
//! (`-f '{{.State.ExitCode}}'`) as docker inspect does.
use super::format::{self, Format};
use super::Fixed;
use hx_engine::container;
use hx_images::Store;
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Container names or ids
    #[arg(required = true)]
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::containers))]
    pub containers: Vec<String>,
    /// A Go template ({{.State.ExitCode}}, {{json .Config}}), or json (one compact array)
    #[arg(short, long, value_name = "TEMPLATE")]
    pub format: Option<String>,
}

/// Objects that are Go maps in docker's types: a missing key there is `<no value>`, not an error.
const GO_MAPS: &[&str] = &["Labels", "Ports", "Networks"];

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    // docker: a template that does not parse is exit 64, before anything is looked up.
    let template = match args.format.as_deref() {
        None | Some("") | Some("json") => None,
        Some(f) => Some((Format::parse(f).map_err(|e| Fixed::wrap(64, e.into()))?, f)),
    };
    {
        let _lock = Store::open(&g.root)?.lock()?;
        hx_engine::runtime::reconcile(&g.root)?;
    }
    let mut out = vec![];
    let mut errors = vec![];
    for name in &args.containers {
        match describe(g, name) {
            Ok(v) => out.push(v),
            Err(e) => errors.push(e),
        }
    }
    // Like docker: every container that exists is shown, then the failures, exit 1.
    match (&template, args.format.as_deref()) {
        (Some((t, source)), _) => {
            let mut text = String::new();
            for v in &out {
                match t.render(&format::from_json(v, GO_MAPS), source) {
                    Ok(s) => {
                        text.push_str(&s);
                        text.push('\n');
                    }
                    Err(e) => errors.push(e.into()),
                }
            }
            hx_engine::output::write_out(format_args!("{text}"));
        }
        (None, Some("json")) => outln!("{}", serde_json::to_string(&out)?),
        (None, _) => outln!("{}", serde_json::to_string_pretty(&out)?),
    }
    let code = match errors.is_empty() {
        true => 0,
        false => 1,
    };
    for e in &errors {
        errln!("hx: {}", super::one_line(e));
    }
    Ok(code)
}

fn describe(g: &super::Globals, name: &str) -> anyhow::Result<serde_json::Value> {
    let c = container::find(&g.root, name)?;
    let dir = container::dir(&g.root, &c.id);
    let paused = super::pause::is_paused(&g.root, &c);
    // docker's input settings come from the request (a created container has no spec yet).
    let req = hx_engine::lifecycle::request_of(&g.root, &c).ok();
    let spec: serde_json::Value = std::fs::read(dir.join("spec.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(json!(null));
    let argv: Vec<String> = spec["args"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_else(|| c.command.clone());
    Ok(json!({
        "Id": c.id,
        "Name": c.name,
        "Image": c.image,
        "ImageId": c.image_id,
        "Created": c.created,
        "Path": argv.first().cloned().unwrap_or_default(),
        "Args": argv.iter().skip(1).collect::<Vec<_>>(),
        "Backend": c.backend,
        // podman's field: the pod's name (docs/pods.md), empty outside a pod.
        "Pod": c.pod.clone().unwrap_or_default(),
        "Config": {
            "Hostname": spec["hostname"].as_str().unwrap_or_default(),
            "User": spec["user"].as_str().unwrap_or_default(),
            "Env": spec["env"].as_array().cloned().unwrap_or_default(),
            "Cmd": argv,
            "Image": c.image,
            "WorkingDir": spec["cwd"].as_str().unwrap_or_default(),
            "Labels": c.labels,
            "StopSignal": c.stop_signal,
            "StopTimeout": c.stop_timeout,
            "Tty": req.as_ref().is_some_and(|r| r.tty.is_some()),
            "OpenStdin": req.as_ref().is_some_and(|r| r.stdin),
            "StdinOnce": c.stdin_once,
        },
        "State": {
            "Status": if paused { json!("paused") } else { json!(c.status) },
            "Running": c.status == container::Status::Running,
            "Paused": paused,
            "OOMKilled": c.oom_killed,
            "Pid": c.pid.unwrap_or(0),
            "DomId": c.domid,
            "StartedAt": c.started_at,
            "FinishedAt": c.finished_at,
            "ExitCode": c.exit_code.unwrap_or(0),
            "Error": c.error.clone().unwrap_or_default(),
            "Restarting": c.status == container::Status::Exited
                && hx_engine::restart::supervised(&g.root, &c.id),
        },
        "Spec": spec,
        "NetworkSettings": network_settings(&g.root, &c),
        "Mounts": c.mounts,
        "RestartCount": c.restart_count,
        "HostConfig": {
            "Memory": c.memory_mb * 1024 * 1024,
            "Cpus": c.cpus,
            "NanoCpus": u64::from(c.cpu_cap_pct.unwrap_or(0)) * 10_000_000,
            "CpuShares": c.cpu_shares.unwrap_or(0),
            "PidsLimit": c.pids_limit,
            // docker's `container:ID`; `pod` for a member born in its pod's shared namespace.
            "PidMode": match (spec["pid_target"].as_str(), spec["shared_pids"].as_bool()) {
                (Some(id), _) => format!("container:{id}"),
                (None, Some(true)) if !c.pod_infra => "pod".to_string(),
                _ => String::new(),
            },
            // docker's null for "the daemon's default" (no init): hx's default is none too.
            "Init": spec["init"].as_bool().filter(|i| *i && !c.pod_infra),
            "AutoRemove": c.auto_remove,
            "ReadonlyRootfs": spec["read_only"].as_bool().unwrap_or(false),
            "Privileged": req.as_ref().is_some_and(|r| r.privileged),
            "CapAdd": req.as_ref().map(|r| r.cap_add.clone()).unwrap_or_default(),
            "CapDrop": req.as_ref().map(|r| r.cap_drop.clone()).unwrap_or_default(),
            "SecurityOpt": security_opt(req.as_ref(), &spec),
            "RestartPolicy": {
                "Name": c.restart_policy.name(),
                "MaximumRetryCount": c.restart_policy.max_retries(),
            },
        },
        "Files": {
            "Dir": dir,
            "Console": dir.join("console.log"),
            // Both streams, framed with their times (output_log.rs); raw stdout.log/stderr.log
            // on Xen.
            "Output": dir.join(hx_engine::output_log::FILE),
        },
    }))
}

/// docker's shape: IPAddress, Gateway, MacAddress, Ports {"80/tcp": [{HostIp, HostPort}]}.
fn network_settings(root: &std::path::Path, c: &container::Container) -> serde_json::Value {
    let Some(n) = &c.network else {
        // docker's NetworkSettings is always there (empty before a start).
        return json!({"IPAddress": "", "Gateway": "", "MacAddress": "", "Ports": {}});
    };
    let mut ports = serde_json::Map::new();
    if c.status == container::Status::Running {
        for p in &n.ports {
            let key = format!("{}/{}", p.container_port, p.proto.as_str());
            let entry = ports.entry(key).or_insert_with(|| json!([]));
            if let Some(a) = entry.as_array_mut() {
                a.push(
                    json!({"HostIp": p.host_ip.to_string(), "HostPort": p.host_port.to_string()}),
                );
            }
        }
    }
    // docker's per-network view: the user network by name, else the default `bridge`.
    let (net_name, net_id) = match &n.network {
        Some(id) => (
            hx_engine::network::user_net::find(root, id)
                .map(|u| u.name)
                .unwrap_or_else(|_| id.clone()),
            id.clone(),
        ),
        None => {
            let name = if n.mode == "none" { "none" } else { "bridge" };
            (
                name.to_string(),
                hx_engine::network::user_net::predefined_id(root, name),
            )
        }
    };
    let mut networks = serde_json::Map::new();
    if n.mode != "netns" {
        networks.insert(
            net_name,
            json!({
                "NetworkID": net_id,
                "EndpointID": if n.ip.is_some() { c.id.clone() } else { String::new() },
                "IPAddress": n.ip.map(|i| i.to_string()).unwrap_or_default(),
                "IPPrefixLen": n.prefix_len,
                "Gateway": n.gateway.map(|i| i.to_string()).unwrap_or_default(),
                "MacAddress": n.mac.clone().unwrap_or_default(),
                "Aliases": n.aliases,
                "GlobalIPv6Address": n.ip6.map(|i| i.to_string()).unwrap_or_default(),
                "GlobalIPv6PrefixLen": n.prefix_len6,
                "IPv6Gateway": n.gateway6.map(|i| i.to_string()).unwrap_or_default(),
            }),
        );
    }
    json!({
        "Mode": n.mode,
        "Bridge": n.bridge,
        "Networks": networks,
        "IPAddress": n.ip.map(|i| i.to_string()).unwrap_or_default(),
        "IPPrefixLen": n.prefix_len,
        "Gateway": n.gateway.map(|i| i.to_string()).unwrap_or_default(),
        "MacAddress": n.mac.clone().unwrap_or_default(),
        "GlobalIPv6Address": n.ip6.map(|i| i.to_string()).unwrap_or_default(),
        "GlobalIPv6PrefixLen": n.prefix_len6,
        "IPv6Gateway": n.gateway6.map(|i| i.to_string()).unwrap_or_default(),
        "HostInterface": n.ifname,
        "Ports": ports,
    })
}

/// docker's `HostConfig.SecurityOpt`: what the options changed (a profile file as docker
/// shows it, `seccomp=` and the JSON itself).
fn security_opt(
    req: Option<&hx_engine::lifecycle::CreateRequest>,
    spec: &serde_json::Value,
) -> Vec<String> {
    use hx_engine::seccomp::SeccompPolicy;
    let mut out = Vec::new();
    if spec["no_new_privileges"].as_bool().unwrap_or(false) {
        out.push("no-new-privileges".to_string());
    }
    match req.map(|r| (&r.seccomp, r.privileged)) {
        Some((SeccompPolicy::Unconfined, false)) => out.push("seccomp=unconfined".to_string()),
        Some((SeccompPolicy::Docker { profile }, _)) => out.push(format!("seccomp={profile}")),
        _ => {}
    }
    out
}
