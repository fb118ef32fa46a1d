//! The DNS relay of a VM that took over a namespace's interface (netns_link.rs): docker's
//! embedded DNS answers at 127.0.0.11:53 only for packets the namespace's own stack sends
//! (iptables DNAT in that namespace's OUTPUT chain to dockerd's socket), and the guest has a
//! loopback of its own. So the VM's interface in the namespace has a link-local address
//! (`RELAY_HOST`) that tc lets through to the namespace's stack instead of mirroring it; the
//! guest has `RELAY_GUEST` beside it and its resolv.conf names `RELAY_HOST` in place of
//! 127.0.0.11 (pv-init); this relay, in a process living in the namespace (the OCI runtime's
//! keeper), sends each query on to 127.0.0.11:53 from the namespace's stack.
//!
//! The guest is hostile: only queries from `RELAY_GUEST` are relayed, each must be one standard
//! query (dns_wire.rs) of at most 512 bytes, each gets at most one answer (checked to be the
//! answer to that question) and only back to the guest, so nothing is amplified or reflected
//! anywhere else; at most `MAX_IN_FLIGHT` UDP queries and `MAX_TCP` connections at once, with
//! timeouts.
use super::dns_wire::{check_answer, check_query, MAX_ANSWER, MAX_QUERY};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;

/// The relay's address on the VM's interface in the namespace.
pub const RELAY_HOST: Ipv4Addr = Ipv4Addr::new(169, 254, 53, 1);
/// The guest's second address, the source of its queries.
pub const RELAY_GUEST: Ipv4Addr = Ipv4Addr::new(169, 254, 53, 2);
pub const RELAY_PREFIX: u8 = 30;
/// Docker's embedded DNS, as the container's resolv.conf names it.
pub const EMBEDDED_DNS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

const MAX_IN_FLIGHT: usize = 64;
const MAX_TCP: usize = 8;
/// How long a query waits for its answer (a resolver retries after ~5 s).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// A TCP connection without a query for this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// What the guest's pv-init needs (spec `Network::dns_relay`).
pub fn guest_config() -> pv_init::spec::DnsRelay {
    pv_init::spec::DnsRelay {
        address: format!("{RELAY_GUEST}/{RELAY_PREFIX}"),
        server: RELAY_HOST.to_string(),
        replaces: EMBEDDED_DNS.to_string(),
    }
}

/// Binds the relay's UDP and TCP sockets on `listen` (RELAY_HOST:53 in the namespace; the
/// address must exist) and serves until the process ends, sending queries to `upstream`.
pub async fn serve(listen: SocketAddr, upstream: SocketAddr) -> anyhow::Result<()> {
    let udp = Arc::new(UdpSocket::bind(listen).await?);
    let tcp = TcpListener::bind(listen).await?;
    tokio::spawn(serve_tcp(tcp, upstream));
    serve_udp(udp, upstream).await
}

fn from_guest(peer: &SocketAddr) -> bool {
    peer.ip() == std::net::IpAddr::V4(RELAY_GUEST)
}

async fn serve_udp(sock: Arc<UdpSocket>, upstream: SocketAddr) -> anyhow::Result<()> {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut buf = vec![0u8; MAX_QUERY + 1];
    loop {
        let (n, from) = sock.recv_from(&mut buf).await?;
        // n > MAX_QUERY: a longer datagram was cut, check_query refuses it by its size.
        if !from_guest(&from) || check_query(&buf[..n]).is_err() {
            continue;
        }
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            continue;
        };
        let query = buf[..n].to_vec();
        let sock = sock.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Ok(Some(answer)) =
                tokio::time::timeout(ANSWER_TIMEOUT, ask_udp(upstream, &query)).await
            {
                let _ = sock.send_to(&answer, from).await;
            }
        });
    }
}

/// One query to `upstream` from a socket of its own; the first datagram that answers it.
async fn ask_udp(upstream: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    let q = check_query(query).ok()?;
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await.ok()?;
    sock.connect(upstream).await.ok()?;
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

async fn serve_tcp(listener: TcpListener, upstream: SocketAddr) {
    let conns = Arc::new(Semaphore::new(MAX_TCP));
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if !from_guest(&peer) {
            continue;
        }
        let Ok(permit) = conns.clone().try_acquire_owned() else {
            continue;
        };
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tcp_session(stream, upstream).await;
        });
    }
}

/// Length-prefixed messages (RFC 1035 4.2.2), one answer per query, over one upstream
/// connection made at the first query.
async fn tcp_session(mut guest: TcpStream, upstream: SocketAddr) -> anyhow::Result<()> {
    let mut up: Option<TcpStream> = None;
    loop {
        let Ok(len) = tokio::time::timeout(TCP_IDLE, guest.read_u16()).await else {
            return Ok(());
        };
        let len = len? as usize;
        if len > MAX_QUERY {
            anyhow::bail!("query of {len} bytes");
        }
        let mut query = vec![0u8; len];
        tokio::time::timeout(ANSWER_TIMEOUT, guest.read_exact(&mut query)).await??;
        let q = check_query(&query)?;
        let answer = tokio::time::timeout(ANSWER_TIMEOUT, async {
            if up.is_none() {
                up = Some(TcpStream::connect(upstream).await?);
            }
            let up = up.as_mut().expect("connected above");
            up.write_all(&(len as u16).to_be_bytes()).await?;
            up.write_all(&query).await?;
            let n = up.read_u16().await? as usize;
            let mut answer = vec![0u8; n];
            up.read_exact(&mut answer).await?;
            anyhow::Ok(answer)
        })
        .await??;
        check_answer(&q, &answer)?;
        guest
            .write_all(&(answer.len() as u16).to_be_bytes())
            .await?;
        guest.write_all(&answer).await?;
    }
}
