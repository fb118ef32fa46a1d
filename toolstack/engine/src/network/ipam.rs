//! Address management: one pool per bridge, shared by every store (`hx --root`) of the host.
//!
//! A bridge belongs to a network namespace, not to a store, so its pool does too:
//! `/run/hx/ipam/net-<netns inode>/<bridge>/pool.json`, changed under `lock` (flock) in that
//! directory and written atomically. Every lease names its owner (store root, container id),
//! and has a lease file `<ip>` beside the pool that the VM's process keeps flocked (the fd
//! travels in `VmNic::hold`, like the port sockets): a lease whose file nobody holds belongs to
//! a VM that is gone, however it died, and the next allocation of any store takes it back.
//! A store releases and reconciles only its own leases.
//!
//! IPv6 (a user network made with `--ipv6`) has a second pool per bridge, `pool6.json`, under
//! the same lock, with the same lease files named by the v6 address: `Pools` is generic over
//! `Addr` (Ipv4Addr, Ipv6Addr).
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The store's marker that it uses bridge networking (reconcile has nothing to do without it).
pub const DIR: &str = "network";
/// Where the pools of all stores live (tmpfs: nothing survives the reboot that ends every VM).
pub const RUN_DIR: &str = "/run/hx/ipam";
const LOCK: &str = "lock";
/// A /16 full of leases is about 10 MiB of JSON.
const MAX_POOL_BYTES: u64 = 64 << 20;

/// Who holds a lease: a container of a store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    pub root: String,
    pub id: String,
}

impl Owner {
    pub fn of(root: &Path, id: &str) -> Owner {
        Owner {
            root: store_root(root),
            id: id.to_string(),
        }
    }
}

/// The canonical spelling of a store root, as leases record it.
pub fn store_root(root: &Path) -> String {
    std::fs::canonicalize(root)
        .unwrap_or_else(|_| root.to_path_buf())
        .to_string_lossy()
        .into_owned()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Lease {
    owner: Owner,
    /// Alive as long as its owner store says the container runs, not by its lease file: a
    /// running container whose VM does not hold the file (started by an hx that kept
    /// addresses per store), re-registered by its store's reconcile.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pinned: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound = "")]
struct Pool<A: Addr> {
    leases: BTreeMap<A, Lease>,
}

impl<A: Addr> Default for Pool<A> {
    fn default() -> Self {
        Pool {
            leases: BTreeMap::new(),
        }
    }
}

/// An address family's addresses, as the pools hand them out.
pub trait Addr:
    Copy + Ord + std::fmt::Display + std::fmt::Debug + Serialize + serde::de::DeserializeOwned + 'static
{
    /// The pool's file in the bridge's directory.
    const POOL: &'static str;
    /// Bits in an address.
    const WIDTH: u32;
    fn to_bits(self) -> u128;
    /// The subnet's host addresses other than the gateway, lowest first.
    fn hosts(gateway: Self, prefix: u8) -> Box<dyn Iterator<Item = Self>>;
}

impl Addr for Ipv4Addr {
    const POOL: &'static str = "pool.json";
    const WIDTH: u32 = 32;
    fn to_bits(self) -> u128 {
        u32::from(self) as u128
    }
    fn hosts(gateway: Self, prefix: u8) -> Box<dyn Iterator<Item = Self>> {
        Box::new(hosts(gateway, prefix))
    }
}

impl Addr for Ipv6Addr {
    const POOL: &'static str = "pool6.json";
    const WIDTH: u32 = 128;
    fn to_bits(self) -> u128 {
        u128::from(self)
    }
    /// From the subnet's `::1` up (the subnet-router anycast address `::` is left out, as
    /// docker does), the gateway skipped; prefixes longer than 126 have none.
    fn hosts(gateway: Self, prefix: u8) -> Box<dyn Iterator<Item = Self>> {
        if prefix > 126 {
            return Box::new(std::iter::empty());
        }
        let mask = if prefix == 0 {
            0
        } else {
            u128::MAX << (128 - prefix as u32)
        };
        let net = u128::from(gateway) & mask;
        let last = net | !mask;
        Box::new(
            (net + 1..=last)
                .map(Ipv6Addr::from)
                .filter(move |&ip| ip != gateway),
        )
    }
}

/// The pools of one network namespace.
pub struct Pools {
    dir: PathBuf,
}

impl Pools {
    /// The pools of the network namespace hx runs in.
    pub fn host() -> anyhow::Result<Pools> {
        let ns = std::fs::metadata("/proc/self/ns/net").context("reading /proc/self/ns/net")?;
        Ok(Pools::at(
            Path::new(RUN_DIR).join(format!("net-{}", ns.ino())),
        ))
    }

    pub fn at(dir: PathBuf) -> Pools {
        Pools { dir }
    }

    fn bridge_dir(&self, bridge: &str) -> anyhow::Result<PathBuf> {
        if !super::bridge::valid_ifname(bridge) {
            bail!("bridge name {bridge:?} is not a valid interface name");
        }
        Ok(self.dir.join(bridge))
    }

    /// Runs `f` on the bridge's pool under its lock and saves it if it changed.
    fn with_pool<A: Addr, T>(
        &self,
        bridge: &str,
        f: impl FnOnce(&Path, &mut Pool<A>) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let dir = self.bridge_dir(bridge)?;
        // Root's business only: the pools name every store and container.
        for (d, mode) in [(self.dir.parent(), 0o755), (Some(dir.as_path()), 0o700)] {
            if let Some(d) = d {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(mode)
                    .create(d)
                    .with_context(|| format!("creating {}", d.display()))?;
            }
        }
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(dir.join(LOCK))
            .with_context(|| format!("opening {}", dir.join(LOCK).display()))?;
        let _guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| anyhow::anyhow!("locking {}: {e}", dir.display()))?;
        let p = dir.join(A::POOL);
        let mut pool = read_pool::<A>(&p)?;
        let before = serde_json::to_vec_pretty(&pool)?;
        let out = f(&dir, &mut pool)?;
        let after = serde_json::to_vec_pretty(&pool)?;
        // Reconcile runs on every command: only real changes are written.
        if after != before || !p.exists() {
            hx_images::store::write_atomic(&p, &after)?;
        }
        Ok(out)
    }

    /// The lowest free host address of the gateway's subnet (not the network, broadcast or
    /// gateway address) for `owner`, and the locked lease file that keeps it taken: the
    /// caller hands it to the VM's process. Leases of VMs that are gone are taken back first.
    pub fn allocate<A: Addr>(
        &self,
        owner: &Owner,
        bridge: &str,
        gateway: A,
        prefix: u8,
        preferred: Option<A>,
    ) -> anyhow::Result<(A, OwnedFd)> {
        self.with_pool::<A, _>(bridge, |dir, pool| {
            sweep(dir, pool);
            if let Some((&ip, _)) = pool.leases.iter().find(|(_, l)| l.owner == *owner) {
                let Some(fd) = lock_lease(dir, ip)? else {
                    bail!(
                        "address {ip} of container {} is still held by its VM",
                        owner.id
                    );
                };
                pool.leases.insert(
                    ip,
                    Lease {
                        owner: owner.clone(),
                        pinned: false,
                    },
                );
                return Ok((ip, fd));
            }
            // A restarted container gets its old address back when nobody took it meanwhile.
            let wanted = preferred.filter(|ip| is_host(gateway, prefix, *ip));
            for ip in wanted.into_iter().chain(A::hosts(gateway, prefix)) {
                if pool.leases.contains_key(&ip) {
                    continue;
                }
                // A held file without a lease: its pool was lost while its VM runs.
                let Some(fd) = lock_lease(dir, ip)? else {
                    tracing::warn!(
                        "{ip} on {bridge} is held by a VM but not in the pool; skipping it"
                    );
                    continue;
                };
                pool.leases.insert(
                    ip,
                    Lease {
                        owner: owner.clone(),
                        pinned: false,
                    },
                );
                return Ok((ip, fd));
            }
            bail!("no free address left in {gateway}/{prefix} on bridge {bridge}")
        })
    }

    /// `--ip`: exactly `ip` for `owner`, or an error when another container holds it.
    pub fn allocate_fixed<A: Addr>(
        &self,
        owner: &Owner,
        bridge: &str,
        gateway: A,
        prefix: u8,
        ip: A,
    ) -> anyhow::Result<OwnedFd> {
        if !is_host(gateway, prefix, ip) {
            let flag = if A::WIDTH == 128 { "--ip6" } else { "--ip" };
            bail!("invalid {flag} {ip}: not a container address of {gateway}/{prefix}");
        }
        self.with_pool::<A, _>(bridge, |dir, pool| {
            sweep(dir, pool);
            if pool.leases.get(&ip).is_some_and(|l| l.owner != *owner) {
                return Err(
                    crate::HxError::Network(format!("Address already in use: {ip}")).into(),
                );
            }
            drop_where(dir, pool, |other, l| l.owner == *owner && other != ip);
            let Some(fd) = lock_lease(dir, ip)? else {
                return Err(
                    crate::HxError::Network(format!("Address already in use: {ip}")).into(),
                );
            };
            pool.leases.insert(
                ip,
                Lease {
                    owner: owner.clone(),
                    pinned: false,
                },
            );
            Ok(fd)
        })
    }

    /// Frees the owner's addresses on the bridge, both families (its VM is gone).
    pub fn release(&self, owner: &Owner, bridge: &str) -> anyhow::Result<()> {
        let dir = self.bridge_dir(bridge)?;
        if !dir.is_dir() {
            return Ok(());
        }
        self.with_pool::<Ipv4Addr, _>(bridge, |dir, pool| {
            drop_where(dir, pool, |_, l| l.owner == *owner);
            Ok(())
        })?;
        if !dir.join(Ipv6Addr::POOL).exists() {
            return Ok(());
        }
        self.with_pool::<Ipv6Addr, _>(bridge, |dir, pool| {
            drop_where(dir, pool, |_, l| l.owner == *owner);
            Ok(())
        })
    }

    /// The store `root`'s leases follow what runs: leases of its containers that do not run
    /// (on that bridge) go; a running container missing from the pool, or whose lease file
    /// its VM does not hold, gets a pinned lease. Other stores' leases are never touched.
    /// `running`: (container id, bridge, address).
    pub fn reconcile<A: Addr>(
        &self,
        root: &str,
        running: &[(String, String, A)],
    ) -> anyhow::Result<()> {
        // A family's pool exists where it was ever used (no pool6.json on v4-only bridges).
        let mut bridges: Vec<String> = self
            .bridges()
            .into_iter()
            .filter(|b| self.dir.join(b).join(A::POOL).exists())
            .collect();
        for (_, b, _) in running {
            if !bridges.contains(b) {
                bridges.push(b.clone());
            }
        }
        for bridge in bridges {
            self.with_pool::<A, _>(&bridge, |dir, pool| {
                let mine = |l: &Lease| l.owner.root == root;
                // A held lease of a container that does not run yet is one `hx run` is
                // still starting (outside the store lock): it stays.
                let stale: Vec<A> = pool
                    .leases
                    .iter()
                    .filter(|(ip, l)| {
                        mine(l)
                            && !running
                                .iter()
                                .any(|(id, b, _)| *b == bridge && *id == l.owner.id)
                            && (l.pinned || !held(dir, **ip))
                    })
                    .map(|(ip, _)| *ip)
                    .collect();
                drop_where(dir, pool, |ip, _| stale.contains(&ip));
                for (id, _, ip) in running.iter().filter(|(_, b, _)| *b == bridge) {
                    match pool.leases.get_mut(ip) {
                        None => {
                            tracing::info!("registering address {ip} of running container {id}");
                            pool.leases.insert(
                                *ip,
                                Lease {
                                    owner: Owner {
                                        root: root.to_string(),
                                        id: id.clone(),
                                    },
                                    pinned: true,
                                },
                            );
                        }
                        Some(l) if mine(l) && l.owner.id == *id => {
                            if !l.pinned && !held(dir, *ip) {
                                l.pinned = true;
                            }
                        }
                        Some(l) => tracing::warn!(
                            "address {ip} of running container {id} is leased to container {} of store {}",
                            l.owner.id,
                            l.owner.root
                        ),
                    }
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Containers of the store `root` whose lease file is held: their VM runs, or their
    /// `hx run` is still starting it.
    pub fn held(&self, root: &str) -> Vec<String> {
        let mut out = Vec::new();
        for b in self.bridges() {
            let dir = self.dir.join(&b);
            let Ok(pool) = read_pool::<Ipv4Addr>(&dir.join(Ipv4Addr::POOL)) else {
                continue;
            };
            out.extend(
                pool.leases
                    .into_iter()
                    .filter(|(ip, l)| l.owner.root == root && held(&dir, *ip))
                    .map(|(_, l)| l.owner.id),
            );
        }
        out
    }

    /// Which of `ips` on `bridge` have their lease file held (a VM runs, or an hx run is
    /// starting one). Probed under the pool's lock: a probe takes a free lease file's lock for
    /// a moment, which must not make an allocation think the address is held.
    pub fn held_of<A: Addr>(&self, bridge: &str, ips: &[A]) -> Vec<bool> {
        let none = vec![false; ips.len()];
        let Ok(dir) = self.bridge_dir(bridge) else {
            return none;
        };
        // No pool (removed, or never made in this namespace): nothing is held.
        let Ok(lock) = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(dir.join(LOCK))
        else {
            return none;
        };
        let Ok(_guard) = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive) else {
            return none;
        };
        ips.iter().map(|ip| held(&dir, *ip)).collect()
    }

    /// Drops a removed bridge's pool (user networks: `hx network rm`, no container on it).
    pub fn forget(&self, bridge: &str) {
        if let Ok(d) = self.bridge_dir(bridge) {
            let _ = std::fs::remove_dir_all(d);
        }
    }

    fn bridges(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return vec![];
        };
        rd.flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|b| super::bridge::valid_ifname(b))
            .collect()
    }

    /// Every lease (for tests and listings): (bridge, address, owner).
    #[allow(dead_code)]
    pub fn list<A: Addr>(&self) -> anyhow::Result<Vec<(String, A, Owner)>> {
        let mut out = Vec::new();
        for b in self.bridges() {
            let pool = read_pool::<A>(&self.dir.join(&b).join(A::POOL))?;
            out.extend(
                pool.leases
                    .into_iter()
                    .map(|(ip, l)| (b.clone(), ip, l.owner)),
            );
        }
        Ok(out)
    }
}

fn read_pool<A: Addr>(p: &Path) -> anyhow::Result<Pool<A>> {
    let f = match File::open(p) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Pool::default()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
    };
    let mut bytes = Vec::new();
    f.take(MAX_POOL_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", p.display()))?;
    if bytes.len() as u64 > MAX_POOL_BYTES {
        bail!("{}: larger than {MAX_POOL_BYTES} bytes", p.display());
    }
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", p.display()))
}

/// Whether `ip` is one of `A::hosts(gateway, prefix)` (without walking a /64): on the
/// gateway's subnet, not the gateway, not the subnet's own address, nor (IPv4) its broadcast.
fn is_host<A: Addr>(gateway: A, prefix: u8, ip: A) -> bool {
    let width = A::WIDTH;
    if prefix as u32 >= width.saturating_sub(1) {
        return false;
    }
    let host_mask = 1u128
        .checked_shl(width - prefix as u32)
        .map_or(u128::MAX, |v| v - 1);
    let (g, i) = (gateway.to_bits(), ip.to_bits());
    let host = i & host_mask;
    ip != gateway
        && g & !host_mask == i & !host_mask
        && host != 0
        && (width == 128 || host != host_mask)
}

/// The subnet's host addresses other than the gateway, lowest first.
fn hosts(gateway: Ipv4Addr, prefix: u8) -> impl Iterator<Item = Ipv4Addr> {
    let (net, broadcast) = if prefix > 30 {
        (1, 1)
    } else {
        let mask = u32::MAX << (32 - prefix as u32);
        let net = u32::from(gateway) & mask;
        (net, net | !mask)
    };
    (net + 1..broadcast)
        .map(Ipv4Addr::from)
        .filter(move |&ip| ip != gateway)
}

/// Opens the address's lease file and locks it, None if a VM holds it.
fn lock_lease<A: Addr>(dir: &Path, ip: A) -> anyhow::Result<Option<OwnedFd>> {
    let p = dir.join(ip.to_string());
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&p)
        .with_context(|| format!("opening {}", p.display()))?;
    // Not nix's Flock: it unlocks on drop, and this lock must live as long as the fd does,
    // in whichever process inherits it.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Ok(None);
        }
        return Err(e).with_context(|| format!("locking {}", p.display()));
    }
    Ok(Some(f.into()))
}

/// Whether some process holds the address's lease file locked (its VM runs).
fn held<A: Addr>(dir: &Path, ip: A) -> bool {
    let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dir.join(ip.to_string()))
    else {
        return false;
    };
    // Probing takes the lock for a moment; closing `f` drops it again.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EWOULDBLOCK)
}

/// Takes back the leases whose VM is gone: not held, or pinned by a store that no longer exists.
fn sweep<A: Addr>(dir: &Path, pool: &mut Pool<A>) {
    let dead: Vec<A> = pool
        .leases
        .iter()
        .filter(|(ip, l)| {
            if l.pinned {
                !Path::new(&l.owner.root).join(DIR).is_dir()
            } else {
                !held(dir, **ip)
            }
        })
        .map(|(ip, _)| *ip)
        .collect();
    for ip in dead {
        if let Some(l) = pool.leases.remove(&ip) {
            tracing::info!(
                "taking back {ip}: container {} of store {} is gone",
                l.owner.id,
                l.owner.root
            );
        }
        let _ = std::fs::remove_file(dir.join(ip.to_string()));
    }
}

fn drop_where<A: Addr>(dir: &Path, pool: &mut Pool<A>, gone: impl Fn(A, &Lease) -> bool) {
    pool.leases.retain(|ip, l| {
        if gone(*ip, l) {
            let _ = std::fs::remove_file(dir.join(ip.to_string()));
            false
        } else {
            true
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 1);

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 88, 0, last)
    }

    /// Two stores whose roots exist (pinned leases need their store).
    fn stores() -> (tempfile::TempDir, Owner, Owner) {
        let d = tempfile::tempdir().unwrap();
        for s in ["a", "b"] {
            std::fs::create_dir_all(d.path().join(s).join(DIR)).unwrap();
        }
        let a = Owner::of(&d.path().join("a"), "c1");
        let b = Owner::of(&d.path().join("b"), "c1");
        (d, a, b)
    }

    #[test]
    fn a_restart_gets_its_old_address_unless_taken() {
        let d = tempfile::tempdir().unwrap();
        let pools = Pools::at(d.path().join("ipam"));
        let o = |id: &str| Owner::of(d.path(), id);
        let (a, fa) = pools.allocate(&o("a"), "hx0", GW, 16, Some(ip(9))).unwrap();
        assert_eq!(a, ip(9));
        let (b, _fb) = pools.allocate(&o("b"), "hx0", GW, 16, Some(ip(9))).unwrap();
        assert_eq!(b, ip(2), "taken: the lowest free one instead");
        drop(fa);
        pools.release(&o("a"), "hx0").unwrap();
        let (a2, _fa2) = pools.allocate(&o("a"), "hx0", GW, 16, Some(ip(9))).unwrap();
        assert_eq!(a2, ip(9));
        let outside = Ipv4Addr::new(192, 168, 1, 1);
        let (c, _fc) = pools
            .allocate(&o("c"), "hx0", GW, 16, Some(outside))
            .unwrap();
        assert_eq!(
            c,
            ip(3),
            "an address outside the bridge's subnet is ignored"
        );
    }

    #[test]
    fn allocates_lowest_free_and_reuses_released() {
        let d = tempfile::tempdir().unwrap();
        let pools = Pools::at(d.path().join("ipam"));
        let o = |id: &str| Owner::of(d.path(), id);
        let (a, _fa) = pools.allocate(&o("a"), "hx0", GW, 16, None).unwrap();
        let (b, _fb) = pools.allocate(&o("b"), "hx0", GW, 16, None).unwrap();
        assert_eq!((a, b), (ip(2), ip(3)));
        pools.release(&o("a"), "hx0").unwrap();
        let (c, _fc) = pools.allocate(&o("c"), "hx0", GW, 16, None).unwrap();
        assert_eq!(c, a);
        let owners: Vec<(Ipv4Addr, String)> = pools
            .list::<Ipv4Addr>()
            .unwrap()
            .into_iter()
            .map(|(_, ip, o)| (ip, o.id))
            .collect();
        assert_eq!(owners, vec![(ip(2), "c".into()), (ip(3), "b".into())]);
    }

    #[test]
    fn two_stores_on_one_bridge_get_distinct_addresses() {
        let (d, a, b) = stores();
        let pools = Pools::at(d.path().join("ipam"));
        // The same container id in both stores: still two owners.
        let (ia, _fa) = pools.allocate(&a, "hx0", GW, 16, None).unwrap();
        let (ib, _fb) = pools.allocate(&b, "hx0", GW, 16, None).unwrap();
        assert_eq!((ia, ib), (ip(2), ip(3)));
        // Another process's view of the same pool (a second `hx --root`) agrees.
        let other = Pools::at(d.path().join("ipam"));
        let (ic, _fc) = other
            .allocate(&Owner::of(&d.path().join("b"), "c2"), "hx0", GW, 16, None)
            .unwrap();
        assert_eq!(ic, ip(4));
    }

    #[test]
    fn reconcile_and_release_of_one_store_never_free_anothers_leases() {
        let (d, a, b) = stores();
        let pools = Pools::at(d.path().join("ipam"));
        let (ia, fa) = pools.allocate(&a, "hx0", GW, 16, None).unwrap();
        let (ib, fb) = pools.allocate(&b, "hx0", GW, 16, None).unwrap();
        let b2 = Owner::of(&d.path().join("b"), "c2");
        let (ib2, _fb2) = pools.allocate(&b2, "hx0", GW, 16, None).unwrap();
        // B's first container is known to run only through its store (pinned), the second
        // through its held lease file. A's VM is gone and A runs nothing.
        pools
            .reconcile(
                &b.root,
                &[
                    (b.id.clone(), "hx0".into(), ib),
                    (b2.id.clone(), "hx0".into(), ib2),
                ],
            )
            .unwrap();
        drop(fb);
        drop(fa);
        pools.reconcile::<Ipv4Addr>(&a.root, &[]).unwrap();
        pools.release(&a, "hx0").unwrap();
        let left: Vec<(Ipv4Addr, Owner)> = pools
            .list::<Ipv4Addr>()
            .unwrap()
            .into_iter()
            .map(|(_, ip, o)| (ip, o))
            .collect();
        assert_eq!(left, vec![(ib, b.clone()), (ib2, b2.clone())]);
        // A's next container gets A's old address, not one of B's.
        let (next, _fn) = pools
            .allocate(&Owner::of(&d.path().join("a"), "c9"), "hx0", GW, 16, None)
            .unwrap();
        assert_eq!(next, ia);
    }

    #[test]
    fn reconcile_keeps_a_held_lease_of_a_container_still_starting() {
        let (d, a, _) = stores();
        let pools = Pools::at(d.path().join("ipam"));
        // `hx run` holds the lease between setup and the VM's start, outside the store lock.
        let (ia, _fa) = pools.allocate(&a, "hx0", GW, 16, None).unwrap();
        pools.reconcile::<Ipv4Addr>(&a.root, &[]).unwrap();
        assert_eq!(pools.list::<Ipv4Addr>().unwrap().len(), 1);
        assert_eq!(pools.list::<Ipv4Addr>().unwrap()[0].1, ia);
        assert_eq!(pools.held(&a.root), vec![a.id.clone()]);
        drop(_fa);
        assert_eq!(pools.held(&a.root), Vec::<String>::new());
    }

    #[test]
    fn leases_of_dead_vms_are_taken_back_by_any_store() {
        let (d, a, b) = stores();
        let pools = Pools::at(d.path().join("ipam"));
        let (ia, fa) = pools.allocate(&a, "hx0", GW, 16, None).unwrap();
        // A's VM dies without anyone releasing (kill -9, and store A runs no command).
        drop(fa);
        let (ib, _fb) = pools.allocate(&b, "hx0", GW, 16, None).unwrap();
        assert_eq!(ib, ia);
        assert_eq!(pools.list::<Ipv4Addr>().unwrap().len(), 1);
    }

    #[test]
    fn lease_is_held_across_exec_by_an_inheriting_process() {
        let (d, a, b) = stores();
        let pools = Pools::at(d.path().join("ipam"));
        let (ia, fa) = pools.allocate(&a, "hx0", GW, 16, None).unwrap();
        // The VM's process inherits the fd (as QEMU does), the allocating process closes its copy.
        let raw = fa.as_raw_fd();
        let mut cmd = std::process::Command::new("sleep");
        cmd.arg("30");
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                libc::fcntl(raw, libc::F_SETFD, 0);
                Ok(())
            });
        }
        let mut vm = cmd.spawn().unwrap();
        drop(fa);
        let (ib, _fb) = pools.allocate(&b, "hx0", GW, 16, None).unwrap();
        assert_ne!(ib, ia);
        vm.kill().unwrap();
        vm.wait().unwrap();
        let (ic, _fc) = pools
            .allocate(&Owner::of(&d.path().join("b"), "c3"), "hx0", GW, 16, None)
            .unwrap();
        assert_eq!(ic, ia, "the dead VM's address is taken back");
    }

    #[test]
    fn reconcile_pins_running_containers_whose_vm_holds_no_lease() {
        let (d, a, b) = stores();
        let pools = Pools::at(d.path().join("ipam"));
        // A container started before pools were shared: running, known only to its store.
        pools
            .reconcile(&a.root, &[(a.id.clone(), "hx0".into(), ip(2))])
            .unwrap();
        let (ib, _fb) = pools.allocate(&b, "hx0", GW, 16, None).unwrap();
        assert_eq!(ib, ip(3));
        // It stops: its store's next reconcile frees it.
        pools.reconcile::<Ipv4Addr>(&a.root, &[]).unwrap();
        let (ic, _fc) = pools
            .allocate(&Owner::of(&d.path().join("b"), "c2"), "hx0", GW, 16, None)
            .unwrap();
        assert_eq!(ic, ip(2));
        // A pinned lease of a store that was deleted is taken back too.
        pools
            .reconcile(&a.root, &[(a.id.clone(), "hx0".into(), ip(9))])
            .unwrap();
        std::fs::remove_dir_all(d.path().join("a")).unwrap();
        pools.release(&b, "hx0").unwrap();
        let (_, _f) = pools.allocate(&b, "hx0", GW, 16, None).unwrap();
        assert!(pools
            .list::<Ipv4Addr>()
            .unwrap()
            .iter()
            .all(|(_, a, _)| *a != ip(9)));
    }

    #[test]
    fn small_subnet_runs_out_with_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        let pools = Pools::at(d.path().join("ipam"));
        let gw = Ipv4Addr::new(192, 168, 5, 1);
        // /30: .1 gateway, .2 the only host address.
        let (a, _fa) = pools
            .allocate(&Owner::of(d.path(), "a"), "br", gw, 30, None)
            .unwrap();
        assert_eq!(a, Ipv4Addr::new(192, 168, 5, 2));
        let e = pools
            .allocate(&Owner::of(d.path(), "b"), "br", gw, 30, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no free address left in 192.168.5.1/30"), "{e}");
        assert!(pools
            .allocate(&Owner::of(d.path(), "c"), "..", gw, 30, None)
            .is_err());
    }

    #[test]
    fn a_corrupt_pool_is_an_error_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        let pools = Pools::at(d.path().join("ipam"));
        std::fs::create_dir_all(d.path().join("ipam/hx0")).unwrap();
        std::fs::write(d.path().join("ipam/hx0/pool.json"), b"{\"leases\": 7}").unwrap();
        let e = format!(
            "{:#}",
            pools
                .allocate(&Owner::of(d.path(), "a"), "hx0", GW, 16, None)
                .unwrap_err()
        );
        assert!(e.contains("parsing") && e.contains("pool.json"), "{e}");
    }

    const GW6: Ipv6Addr = Ipv6Addr::new(0xfd42, 1, 0, 0, 0, 0, 0, 1);

    fn ip6(last: u16) -> Ipv6Addr {
        Ipv6Addr::new(0xfd42, 1, 0, 0, 0, 0, 0, last)
    }

    #[test]
    fn ipv6_addresses_are_allocated_fixed_and_freed_beside_the_v4_ones() {
        let d = tempfile::tempdir().unwrap();
        let pools = Pools::at(d.path().join("ipam"));
        let o = |id: &str| Owner::of(d.path(), id);
        let (a4, _fa4) = pools.allocate(&o("a"), "br", GW, 16, None).unwrap();
        let (a6, fa6) = pools.allocate(&o("a"), "br", GW6, 64, None).unwrap();
        assert_eq!(
            (a4, a6),
            (ip(2), ip6(2)),
            "lowest free, the gateway skipped"
        );
        // --ip6: exactly that address; taken: docker's message.
        let _fb = pools
            .allocate_fixed(&o("b"), "br", GW6, 64, ip6(0x50))
            .unwrap();
        let e = pools
            .allocate_fixed(&o("c"), "br", GW6, 64, ip6(0x50))
            .unwrap_err();
        assert_eq!(e.to_string(), "Address already in use: fd42:1::50");
        for bad in [GW6, Ipv6Addr::new(0xfd42, 1, 0, 0, 0, 0, 0, 0), ip6(1)] {
            let e = pools
                .allocate_fixed(&o("c"), "br", GW6, 64, bad)
                .unwrap_err();
            assert!(e.to_string().starts_with("invalid --ip6 "), "{e}");
        }
        let outside = "fd42:2::5".parse().unwrap();
        assert!(pools
            .allocate_fixed(&o("c"), "br", GW6, 64, outside)
            .is_err());
        let mut v6: Vec<Ipv6Addr> = pools
            .list()
            .unwrap()
            .into_iter()
            .map(|(_, ip, _)| ip)
            .collect();
        v6.sort();
        assert_eq!(v6, vec![ip6(2), ip6(0x50)]);
        assert_eq!(
            pools.list::<Ipv4Addr>().unwrap().len(),
            1,
            "the v4 pool apart"
        );
        // Release frees both families of the owner.
        drop(fa6);
        pools.release(&o("a"), "br").unwrap();
        assert_eq!(pools.list::<Ipv4Addr>().unwrap().len(), 0);
        let left: Vec<Ipv6Addr> = pools
            .list()
            .unwrap()
            .into_iter()
            .map(|(_, ip, _)| ip)
            .collect();
        assert_eq!(left, vec![ip6(0x50)]);
        assert!(
            !d.path().join("ipam/br/fd42:1::2").exists(),
            "lease file left"
        );
        // A restart gets its old v6 address back when free.
        let (again, _f) = pools
            .allocate(&o("a"), "br", GW6, 64, Some(ip6(9)))
            .unwrap();
        assert_eq!(again, ip6(9));
    }

    #[test]
    fn ipv6_reconcile_follows_what_runs() {
        let (d, a, _) = stores();
        let pools = Pools::at(d.path().join("ipam"));
        let (ia, fa) = pools.allocate(&a, "br", GW6, 64, None).unwrap();
        pools.reconcile::<Ipv6Addr>(&a.root, &[]).unwrap();
        assert_eq!(pools.list::<Ipv6Addr>().unwrap().len(), 1, "held: kept");
        drop(fa);
        pools.reconcile::<Ipv6Addr>(&a.root, &[]).unwrap();
        assert_eq!(pools.list::<Ipv6Addr>().unwrap().len(), 0, "gone: freed");
        pools
            .reconcile(&a.root, &[(a.id.clone(), "br".to_string(), ia)])
            .unwrap();
        assert_eq!(
            pools.list::<Ipv6Addr>().unwrap()[0].1,
            ia,
            "running: pinned"
        );
        // A v4-only bridge gets no v6 pool from reconcile.
        let (_, _f4) = pools.allocate(&a, "hx0", GW, 16, None).unwrap();
        pools.reconcile::<Ipv6Addr>(&a.root, &[]).unwrap();
        assert!(!d.path().join("ipam/hx0").join(Ipv6Addr::POOL).exists());
    }

    proptest::proptest! {
        /// `is_host` (the check `--ip`/`--ip6` and a preferred address go through) agrees with
        /// the addresses `hosts` hands out, for both families.
        #[test]
        fn is_host_agrees_with_hosts(gw in proptest::prelude::any::<u32>(), p4 in 20u8..=32,
                                     g6 in proptest::prelude::any::<u128>(), p6 in 116u8..=128,
                                     pick in proptest::prelude::any::<u16>()) {
            let gw = Ipv4Addr::from(gw);
            let hosts4: Vec<Ipv4Addr> = Ipv4Addr::hosts(gw, p4).collect();
            let base4 = u32::from(gw) & u32::MAX.checked_shl(32 - p4 as u32).unwrap_or(0);
            let span4 = 1u64 << (32 - p4 as u32);
            let probe4 = Ipv4Addr::from(base4.wrapping_add((pick as u64 % span4) as u32));
            proptest::prop_assert_eq!(is_host(gw, p4, probe4), hosts4.contains(&probe4));
            let gw6 = Ipv6Addr::from(g6);
            let hosts6: Vec<Ipv6Addr> = Ipv6Addr::hosts(gw6, p6).collect();
            let base6 = g6 & u128::MAX.checked_shl(128 - p6 as u32).unwrap_or(0);
            let span6 = 1u128 << (128 - p6 as u32);
            let probe6 = Ipv6Addr::from(base6.wrapping_add(pick as u128 % span6));
            proptest::prop_assert_eq!(is_host(gw6, p6, probe6), hosts6.contains(&probe6));
            proptest::prop_assert!(!is_host(gw6, p6, Ipv6Addr::from(!g6)) || hosts6.contains(&Ipv6Addr::from(!g6)));
        }
    }
}
