//! Address management: one JSON file per bridge in the store (`<root>/network/<bridge>.json`),
//! changed under its own flock, so concurrent `hx run`s never hand out one address twice.
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

pub const DIR: &str = "network";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Pool {
    /// address → container id
    allocated: BTreeMap<Ipv4Addr, String>,
}

fn file(root: &Path, bridge: &str) -> PathBuf {
    root.join(DIR).join(format!("{bridge}.json"))
}

/// Runs `f` on the bridge's pool under the network lock and saves it.
fn with_pool<T>(
    root: &Path,
    bridge: &str,
    f: impl FnOnce(&mut Pool) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let dir = root.join(DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let lock = std::fs::File::create(dir.join("lock"))?;
    let _guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| anyhow::anyhow!("locking {}: {e}", dir.display()))?;
    let p = file(root, bridge);
    let mut pool: Pool = match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).with_context(|| format!("parsing {}", p.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Pool::default(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
    };
    let before = serde_json::to_vec_pretty(&pool)?;
    let out = f(&mut pool)?;
    let after = serde_json::to_vec_pretty(&pool)?;
    // Reconcile runs on every command: only real changes are written.
    if after != before || !p.exists() {
        hx_images::store::write_atomic(&p, &after)?;
    }
    Ok(out)
}

/// The lowest free host address of the gateway's subnet (not the network, broadcast or
/// gateway address) for container `id`; the same one again if `id` has one.
pub fn allocate(
    root: &Path,
    bridge: &str,
    gateway: Ipv4Addr,
    prefix: u8,
    id: &str,
) -> anyhow::Result<Ipv4Addr> {
    with_pool(root, bridge, |pool| {
        if let Some((ip, _)) = pool.allocated.iter().find(|(_, v)| *v == id) {
            return Ok(*ip);
        }
        let Some(ip) = first_free(gateway, prefix, |ip| pool.allocated.contains_key(&ip)) else {
            bail!("no free address left in {gateway}/{prefix} on bridge {bridge}");
        };
        pool.allocated.insert(ip, id.to_string());
        Ok(ip)
    })
}

fn first_free(gateway: Ipv4Addr, prefix: u8, used: impl Fn(Ipv4Addr) -> bool) -> Option<Ipv4Addr> {
    if prefix > 30 {
        return None;
    }
    let mask = u32::MAX << (32 - prefix as u32);
    let net = u32::from(gateway) & mask;
    let broadcast = net | !mask;
    (net + 1..broadcast)
        .map(Ipv4Addr::from)
        .find(|&ip| ip != gateway && !used(ip))
}

pub fn release(root: &Path, bridge: &str, id: &str) -> anyhow::Result<()> {
    if !file(root, bridge).exists() {
        return Ok(());
    }
    with_pool(root, bridge, |pool| {
        pool.allocated.retain(|_, v| v != id);
        Ok(())
    })
}

/// Keeps only the addresses of `live` containers, on every bridge.
pub fn retain(root: &Path, live: &[&str]) -> anyhow::Result<()> {
    let Ok(rd) = std::fs::read_dir(root.join(DIR)) else {
        return Ok(());
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(bridge) = name.strip_suffix(".json") {
            with_pool(root, bridge, |pool| {
                pool.allocated.retain(|_, id| live.contains(&id.as_str()));
                Ok(())
            })?;
        }
    }
    Ok(())
}

/// Every allocation (for tests and `hx inspect`-style listings): (bridge, address, id).
#[allow(dead_code)]
pub fn list(root: &Path) -> Vec<(String, Ipv4Addr, String)> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(root.join(DIR)) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let Some(bridge) = name.strip_suffix(".json") else {
                continue;
            };
            if let Ok(pool) = std::fs::read(e.path())
                .map_err(anyhow::Error::from)
                .and_then(|b| Ok(serde_json::from_slice::<Pool>(&b)?))
            {
                out.extend(
                    pool.allocated
                        .into_iter()
                        .map(|(ip, id)| (bridge.to_string(), ip, id)),
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_lowest_free_and_reuses_released() {
        let d = tempfile::tempdir().unwrap();
        let gw = Ipv4Addr::new(10, 88, 0, 1);
        let a = allocate(d.path(), "hx0", gw, 16, "a").unwrap();
        let b = allocate(d.path(), "hx0", gw, 16, "b").unwrap();
        assert_eq!(
            (a, b),
            (Ipv4Addr::new(10, 88, 0, 2), Ipv4Addr::new(10, 88, 0, 3))
        );
        assert_eq!(allocate(d.path(), "hx0", gw, 16, "a").unwrap(), a);
        release(d.path(), "hx0", "a").unwrap();
        assert_eq!(allocate(d.path(), "hx0", gw, 16, "c").unwrap(), a);
        retain(d.path(), &["c"]).unwrap();
        assert_eq!(
            list(d.path()),
            vec![("hx0".to_string(), a, "c".to_string())]
        );
    }

    #[test]
    fn small_subnet_runs_out_with_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        let gw = Ipv4Addr::new(192, 168, 5, 1);
        // /30: .1 gateway, .2 the only host address.
        assert_eq!(
            allocate(d.path(), "br", gw, 30, "a").unwrap(),
            Ipv4Addr::new(192, 168, 5, 2)
        );
        let e = allocate(d.path(), "br", gw, 30, "b")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no free address left in 192.168.5.1/30"), "{e}");
    }
}
