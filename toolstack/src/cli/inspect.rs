//! `hx inspect`: a container's state, spec and files as JSON.
use hx_engine::container;
use hx_images::Store;
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Container names or ids
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    {
        let _lock = Store::open(&g.root)?.lock()?;
        hx_engine::runtime::reconcile(&g.root)?;
    }
    let mut out = vec![];
    for name in &args.containers {
        let c = container::find(&g.root, name)?;
        let dir = container::dir(&g.root, &c.id);
        let paused = super::pause::is_paused(&g.root, &c);
        let req = hx_engine::lifecycle::request_of(&g.root, &c).ok();
        let spec: serde_json::Value = std::fs::read(dir.join("spec.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(json!(null));
        out.push(json!({
            "Id": c.id,
            "Name": c.name,
            "Image": c.image,
            "ImageId": c.image_id,
            "Created": c.created,
            "Backend": c.backend,
            "State": {
                "Status": if paused { json!("paused") } else { json!(c.status) },
                "Running": c.status == container::Status::Running,
                "Paused": paused,
                "Pid": c.pid,
                "DomId": c.domid,
                "StartedAt": c.started_at,
                "FinishedAt": c.finished_at,
                "ExitCode": c.exit_code,
                "Error": c.error,
                "Restarting": c.status == container::Status::Exited
                    && hx_engine::restart::supervised(&g.root, &c.id),
            },
            // docker's names for the input settings, from the request (a created container
            // has no spec yet).
            "Config": {
                "Tty": req.as_ref().is_some_and(|r| r.tty.is_some()),
                "OpenStdin": req.as_ref().is_some_and(|r| r.stdin),
                "StdinOnce": c.stdin_once,
            },
            "Spec": spec,
            "NetworkSettings": network_settings(&c),
            "Mounts": c.mounts,
            "RestartCount": c.restart_count,
            "HostConfig": {
                "Memory": c.memory_mb * 1024 * 1024,
                "Cpus": c.cpus,
                "AutoRemove": c.auto_remove,
                "RestartPolicy": {
                    "Name": c.restart_policy.name(),
                    "MaximumRetryCount": c.restart_policy.max_retries(),
                },
            },
            "Files": {
                "Dir": dir,
                "Console": dir.join("console.log"),
                "Stdout": dir.join("stdout.log"),
                "Stderr": dir.join("stderr.log"),
            },
        }));
    }
    outln!("{}", serde_json::to_string_pretty(&out)?);
    Ok(0)
}

/// docker's shape: IPAddress, Gateway, MacAddress, Ports {"80/tcp": [{HostIp, HostPort}]}.
fn network_settings(c: &container::Container) -> serde_json::Value {
    let Some(n) = &c.network else {
        return json!(null);
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
    json!({
        "Mode": n.mode,
        "Bridge": n.bridge,
        "IPAddress": n.ip.map(|i| i.to_string()).unwrap_or_default(),
        "IPPrefixLen": n.prefix_len,
        "Gateway": n.gateway.map(|i| i.to_string()).unwrap_or_default(),
        "MacAddress": n.mac.clone().unwrap_or_default(),
        "HostInterface": n.ifname,
        "Ports": ports,
    })
}
