//! The name server of a user network (user_net.rs): `hx __net-dns NETID`, one process per
//! network with containers, started by the first container's setup (`ensure`) and gone with
//! the last: `release` stops it, and it ends by itself within seconds once no container's
//! address lease on the network is held (ipam.rs: a VM holds its lease file while it runs), so
//! an hx killed at any point leaves no resolver behind. hx has no daemon; this is the least
//! that serves names while containers come and go.
//!
//! It listens on the network's gateway, port 53 (UDP and TCP), bound to the network's bridge
//! (SO_BINDTODEVICE: another network's containers cannot ask it), and answers from the
//! network's endpoint files: a container's name, its `--network-alias`es and its short id give
//! its address (A; AAAA with its IPv6 address on a `--ipv6` network; other types of a known
//! name: no records), anything else goes to the host's
//! name servers (none, or an `--internal` network: SERVFAIL). Queries come from guests: each is
//! checked (dns_wire.rs), answered once and only to its sender, at most `MAX_IN_FLIGHT`
//! forwarded at once.
use super::dns_wire::{self, check_answer, check_query, MAX_ANSWER, MAX_QUERY};
use super::user_net::{self, UserNet};
use super::{dns, ipam};
use anyhow::{bail, Context};
use std::io::BufRead;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;

const LOCK: &str = "lock";
const RUNNING: &str = "resolver.lock";
const PID: &str = "resolver.pid";
const LOG: &str = "resolver.log";
const MAX_IN_FLIGHT: usize = 64;
const MAX_TCP: usize = 8;
/// A TCP connection without a query for this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// How often it looks for containers, and for how many looks in a row none may run before it
/// ends (a container's hx run holds its lease from before the resolver starts).
const IDLE_CHECK: Duration = Duration::from_secs(1);
const IDLE_LOOKS: u32 = 3;

/// Holds the network's lock (serializes starting, stopping and the resolver's own end).
fn lock(root: &Path, net: &UserNet) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    let p = user_net::dir(root, &net.id).join(LOCK);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .with_context(|| format!("opening {}", p.display()))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| anyhow::anyhow!("locking {}: {e}", p.display()))
}

/// Whether the network's resolver runs (it holds `resolver.lock`).
pub fn running(root: &Path, net: &UserNet) -> bool {
    let Ok(f) = std::fs::File::open(user_net::dir(root, &net.id).join(RUNNING)) else {
        return false;
    };
    matches!(
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock),
        Err((_, nix::errno::Errno::EWOULDBLOCK))
    )
}

/// The resolver's process as it recorded itself.
fn recorded(root: &Path, net: &UserNet) -> Option<crate::process::Tracked> {
    let s = std::fs::read_to_string(user_net::dir(root, &net.id).join(PID)).ok()?;
    let mut w = s.split_whitespace();
    crate::process::Tracked::new(w.next()?.parse().ok(), w.next()?.parse().ok())
}

/// Starts the network's resolver unless it runs; returns once it answers.
pub fn ensure(root: &Path, net: &UserNet) -> anyhow::Result<()> {
    let _lock = lock(root, net)?;
    if running(root, net) {
        return Ok(());
    }
    let dir = user_net::dir(root, &net.id);
    let log = std::fs::File::create(dir.join(LOG)).context(LOG)?;
    let exe = std::env::current_exe().context("finding the hx binary")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--root")
        .arg(root)
        .arg("__net-dns")
        .arg(&net.id)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(log);
    crate::process::detach(&mut cmd, Vec::new());
    let mut child = cmd.spawn().context("starting the network's resolver")?;
    let out = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(out).read_line(&mut line);
        let _ = tx.send(line);
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(l) if l == "ready\n" => Ok(()),
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            let why = std::fs::read_to_string(dir.join(LOG)).unwrap_or_default();
            let why = why
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no answer");
            bail!(
                "the name server of network {} did not start: {}",
                net.name,
                crate::sanitize::line(why)
            )
        }
    }
}

/// Stops the network's resolver if it runs.
pub fn stop(root: &Path, net: &UserNet) {
    let Ok(_lock) = lock(root, net) else {
        return;
    };
    stop_locked(root, net);
}

fn stop_locked(root: &Path, net: &UserNet) {
    if !running(root, net) {
        return;
    }
    if let Some(p) = recorded(root, net) {
        p.signal(libc::SIGTERM);
        if !p.wait(Duration::from_secs(2)) {
            p.kill_and_wait(Duration::from_secs(2));
        }
    }
}

/// Stops the resolver when no container but `leaving` holds an address on the network.
pub fn stop_if_idle(root: &Path, net: &UserNet, leaving: &str) {
    let Ok(_lock) = lock(root, net) else {
        return;
    };
    if live_endpoints(root, net).iter().all(|e| e.id == leaving) {
        stop_locked(root, net);
    }
}

/// The endpoints whose container's lease is held (its VM runs, or is being started).
fn live_endpoints(root: &Path, net: &UserNet) -> Vec<user_net::Endpoint> {
    live(net, user_net::endpoints(root, &net.id))
}

fn live(net: &UserNet, endpoints: Vec<user_net::Endpoint>) -> Vec<user_net::Endpoint> {
    let Ok(pools) = ipam::Pools::host() else {
        return vec![];
    };
    let ips: Vec<Ipv4Addr> = endpoints.iter().map(|e| e.ip).collect();
    let held = pools.held_of(&net.bridge(), &ips);
    endpoints
        .into_iter()
        .zip(held)
        .filter(|(_, h)| *h)
        .map(|(e, _)| e)
        .collect()
}

/// The body of `hx __net-dns NETID`: serves until no container is left.
pub async fn serve(root: &Path, net_id: &str) -> anyhow::Result<()> {
    let net = user_net::find(root, net_id)?;
    let dir = user_net::dir(root, &net.id);
    let running = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(RUNNING))?;
    let _running =
        match nix::fcntl::Flock::lock(running, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            // Another one serves the network.
            Err(_) => {
                crate::outln!("ready");
                return Ok(());
            }
        };
    let me = crate::process::Tracked::current().context("reading this process's start time")?;
    std::fs::write(dir.join(PID), format!("{} {}\n", me.pid, me.start))?;
    let sock = std::net::UdpSocket::bind((net.gateway, 53))
        .with_context(|| format!("binding {}:53", net.gateway))?;
    bind_to_device(sock.as_raw_fd(), &net.bridge())
        .context("binding the name server to the network's bridge")?;
    sock.set_nonblocking(true)?;
    let sock = Arc::new(UdpSocket::from_std(sock)?);
    let tcp = std::net::TcpListener::bind((net.gateway, 53))
        .with_context(|| format!("binding {}:53 (TCP)", net.gateway))?;
    bind_to_device(tcp.as_raw_fd(), &net.bridge())
        .context("binding the name server to the network's bridge")?;
    tcp.set_nonblocking(true)?;
    let tcp = TcpListener::from_std(tcp)?;
    let upstream: Vec<SocketAddr> = if net.internal {
        vec![]
    } else {
        dns::host_resolv()
            .nameservers
            .iter()
            .filter_map(|s| s.parse::<Ipv4Addr>().ok())
            .map(|ip| SocketAddr::from((ip, 53)))
            .collect()
    };
    crate::outln!("ready");
    // Nothing more goes to the pipe `ensure` reads (it is gone once it read the line).
    if let Ok(null) = std::fs::File::open("/dev/null") {
        unsafe { libc::dup2(null.as_raw_fd(), 1) };
    }
    tracing::info!(
        "serving names of network {} on {}:53",
        net.name,
        net.gateway
    );
    let upstream = Arc::new(upstream);
    let serving = tokio::spawn(serve_udp(
        root.to_path_buf(),
        net.clone(),
        sock,
        upstream.clone(),
    ));
    let serving_tcp = tokio::spawn(serve_tcp(root.to_path_buf(), net.clone(), tcp, upstream));
    let mut idle = 0;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(IDLE_CHECK) => {}
            _ = term.recv() => break,
        }
        if serving.is_finished() || serving_tcp.is_finished() {
            break;
        }
        if live_endpoints(root, &net).is_empty() {
            idle += 1;
        } else {
            idle = 0;
        }
        if idle >= IDLE_LOOKS {
            // Under the lock, so a container's setup either sees this one gone or is seen.
            let _lock = lock(root, &net)?;
            if live_endpoints(root, &net).is_empty() {
                break;
            }
            idle = 0;
        }
    }
    let _ = std::fs::remove_file(dir.join(PID));
    Ok(())
}

/// A name of the network: its container's endpoint (its addresses).
fn lookup(root: &Path, net: &UserNet, name: &str) -> Option<user_net::Endpoint> {
    let named: Vec<user_net::Endpoint> = user_net::endpoints(root, &net.id)
        .into_iter()
        .filter(|e| {
            e.name.eq_ignore_ascii_case(name)
                || e.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
                || e.id.get(..12) == Some(name)
        })
        .collect();
    if named.is_empty() {
        return None;
    }
    live(net, named).into_iter().next()
}

async fn serve_udp(
    root: std::path::PathBuf,
    net: UserNet,
    sock: Arc<UdpSocket>,
    upstream: Arc<Vec<SocketAddr>>,
) -> anyhow::Result<()> {
    let subnet = net.subnet()?;
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut buf = vec![0u8; MAX_QUERY + 1];
    loop {
        let (n, from) = sock.recv_from(&mut buf).await?;
        let SocketAddr::V4(v4) = from else { continue };
        if !subnet.is_host(*v4.ip()) {
            continue;
        }
        let msg = &buf[..n];
        if check_query(msg).is_err() {
            continue;
        }
        if let Some(reply) = local_answer(&root, &net, msg, &upstream) {
            let _ = sock.send_to(&reply, from).await;
            continue;
        }
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            continue;
        };
        let query = msg.to_vec();
        let (sock, upstream) = (sock.clone(), upstream.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let Ok(q) = check_query(&query) else { return };
            let mut reply = None;
            for server in upstream.iter() {
                if let Ok(Some(a)) =
                    tokio::time::timeout(UPSTREAM_TIMEOUT, ask(*server, &query)).await
                {
                    reply = Some(a);
                    break;
                }
            }
            let reply = reply.unwrap_or_else(|| {
                dns_wire::answer(&q, dns_wire::flags(&query), dns_wire::SERVFAIL, &[])
            });
            let _ = sock.send_to(&reply, from).await;
        });
    }
}

/// hx's own answer to a checked query: a name of the network, or SERVFAIL when there is no
/// server to forward to. None: forward it.
fn local_answer(
    root: &Path,
    net: &UserNet,
    msg: &[u8],
    upstream: &[SocketAddr],
) -> Option<Vec<u8>> {
    let q = check_query(msg).ok()?;
    let question = dns_wire::question(&q);
    let flags = dns_wire::flags(msg);
    if let Some(name) = question.name.as_deref().filter(|_| question.is_in()) {
        if let Some(ep) = lookup(root, net, name) {
            let a: Vec<std::net::IpAddr> = match question.qtype {
                dns_wire::TYPE_A => vec![ep.ip.into()],
                dns_wire::TYPE_AAAA => ep.ip6.into_iter().map(Into::into).collect(),
                _ => vec![],
            };
            return Some(dns_wire::answer(&q, flags, dns_wire::NOERROR, &a));
        }
    }
    upstream
        .is_empty()
        .then(|| dns_wire::answer(&q, flags, dns_wire::SERVFAIL, &[]))
}

/// DNS over TCP (RFC 1035 4.2.2: each message after its 2-byte length), for clients that
/// retry there after a truncated UDP answer: at most `MAX_TCP` connections from the network's
/// subnet, each closed after `TCP_IDLE` without a query; every query is checked and answered
/// like a UDP one, forwarded ones over TCP.
async fn serve_tcp(
    root: std::path::PathBuf,
    net: UserNet,
    listener: TcpListener,
    upstream: Arc<Vec<SocketAddr>>,
) -> anyhow::Result<()> {
    let subnet = net.subnet()?;
    let conns = Arc::new(Semaphore::new(MAX_TCP));
    let (root, net) = (Arc::new(root), Arc::new(net));
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let SocketAddr::V4(v4) = peer else { continue };
        if !subnet.is_host(*v4.ip()) {
            continue;
        }
        let Ok(permit) = conns.clone().try_acquire_owned() else {
            continue;
        };
        let (root, net, upstream) = (root.clone(), net.clone(), upstream.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tcp_session(&root, &net, stream, &upstream).await;
        });
    }
}

async fn tcp_session(
    root: &Path,
    net: &UserNet,
    mut guest: TcpStream,
    upstream: &[SocketAddr],
) -> anyhow::Result<()> {
    loop {
        let Ok(len) = tokio::time::timeout(TCP_IDLE, guest.read_u16()).await else {
            return Ok(());
        };
        let len = len? as usize;
        if len > MAX_QUERY {
            bail!("query of {len} bytes");
        }
        let mut query = vec![0u8; len];
        tokio::time::timeout(UPSTREAM_TIMEOUT, guest.read_exact(&mut query)).await??;
        let q = check_query(&query)?;
        let reply = match local_answer(root, net, &query, upstream) {
            Some(r) => r,
            None => {
                let mut reply = None;
                for server in upstream {
                    if let Ok(Ok(a)) =
                        tokio::time::timeout(UPSTREAM_TIMEOUT, ask_tcp(*server, &query)).await
                    {
                        reply = Some(a);
                        break;
                    }
                }
                reply.unwrap_or_else(|| {
                    dns_wire::answer(&q, dns_wire::flags(&query), dns_wire::SERVFAIL, &[])
                })
            }
        };
        guest.write_all(&(reply.len() as u16).to_be_bytes()).await?;
        guest.write_all(&reply).await?;
    }
}

/// One query to an upstream server over TCP; its answer, checked.
async fn ask_tcp(server: SocketAddr, query: &[u8]) -> anyhow::Result<Vec<u8>> {
    let q = check_query(query)?;
    let mut up = TcpStream::connect(server).await?;
    up.write_all(&(query.len() as u16).to_be_bytes()).await?;
    up.write_all(query).await?;
    let n = up.read_u16().await? as usize;
    let mut answer = vec![0u8; n];
    up.read_exact(&mut answer).await?;
    check_answer(&q, &answer)?;
    Ok(answer)
}

/// One query to an upstream server; the first datagram that answers it.
async fn ask(server: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    let q = check_query(query).ok()?;
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await.ok()?;
    sock.connect(server).await.ok()?;
    sock.send(query).await.ok()?;
    let mut buf = vec![0u8; MAX_ANSWER];
    loop {
        let n = sock.recv(&mut buf).await.ok()?;
        if check_answer(&q, &buf[..n]).is_ok() {
            buf.truncate(n);
            return Some(buf);
        }
    }
}

/// SO_BINDTODEVICE: only datagrams that arrive on `ifname` reach the socket.
fn bind_to_device(sock: std::os::fd::RawFd, ifname: &str) -> std::io::Result<()> {
    // SAFETY: a valid socket and a buffer of the given length.
    let r = unsafe {
        libc::setsockopt(
            sock,
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            ifname.as_ptr().cast(),
            ifname.len() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
