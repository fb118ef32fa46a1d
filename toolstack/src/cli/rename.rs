//! `hx rename CONTAINER NEW_NAME` (docker rename): a container's new name, running or not; its
//! id, files, volumes, address and ports stay. Prints nothing; errors exit 1 as docker's do.
use hx_engine::backend;
use hx_engine::container::{self, Status};
use hx_images::Store;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Container (name or id)
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::containers))]
    pub container: String,
    /// Its new name
    pub new_name: String,
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    match rename(&g.root, &args.container, &args.new_name) {
        Ok(()) => Ok(0),
        Err(e) => {
            errln!("hx: {}", super::one_line(&e));
            Ok(1)
        }
    }
}

fn rename(root: &std::path::Path, key: &str, new: &str) -> anyhow::Result<()> {
    if !container::valid_name(new) {
        anyhow::bail!("invalid container name {new:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*");
    }
    // Under the store lock, as `hx run` takes a name.
    let _lock = Store::open(root)?.lock()?;
    let mut c = container::find(root, key)?;
    if c.name == new {
        anyhow::bail!("container {new} already has that name");
    }
    if container::list(root)?.iter().any(|o| o.name == new) {
        return Err(hx_engine::HxError::NameInUse(new.to_string()).into());
    }
    let be = backend::for_container(&c, root)?;
    let renamed = c.status == Status::Running && be.is_running(&c);
    if renamed {
        be.rename_running(&c, new)?;
    }
    let old = std::mem::replace(&mut c.name, new.to_string());
    if let Err(e) = container::save(root, &c) {
        // The VM keeps the name the record keeps.
        if renamed {
            let _ = be.rename_running(&c, &old);
        }
        return Err(e);
    }
    // Its user network's resolver answers for the new name (docker's does too).
    if let Some(net) = c.network.as_ref().and_then(|n| n.network.as_ref()) {
        hx_engine::network::user_net::rename_endpoint(root, net, &c.id, new);
    }
    Ok(())
}
