//! `hx inspect`: a container's state, spec and files as JSON.
use crate::container;
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
        crate::runtime::reconcile(&g.root)?;
    }
    let mut out = vec![];
    for name in &args.containers {
        let c = container::find(&g.root, name)?;
        let dir = container::dir(&g.root, &c.id);
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
                "Status": c.status,
                "Running": c.status == container::Status::Running,
                "Pid": c.pid,
                "DomId": c.domid,
                "StartedAt": c.started_at,
                "FinishedAt": c.finished_at,
                "ExitCode": c.exit_code,
                "Error": c.error,
            },
            "Spec": spec,
            "HostConfig": { "Memory": c.memory_mb * 1024 * 1024, "Cpus": c.cpus, "AutoRemove": c.auto_remove },
            "Files": {
                "Dir": dir,
                "Console": dir.join("console.log"),
                "Stdout": dir.join("stdout.log"),
                "Stderr": dir.join("stderr.log"),
            },
        }));
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(0)
}
