//! The Linux devices under a vchan: /dev/xen/gntalloc (the server shares pages),
//! /dev/xen/gntdev (the client maps them), /dev/xen/evtchn (the event channel), and `bridge`,
//! which copies between a connected vchan and a socket.
use super::{Endpoint, Layout, Region, RingPlace, Side, VchanError, CLI_LIVE, PAGE, SRV_LIVE};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

// ioctl numbers: _IOC(_IOC_NONE, type, nr, size) = size << 16 | type << 8 | nr.
const fn ioc(ty: u8, nr: u8, size: usize) -> libc::c_ulong {
    ((size as libc::c_ulong) << 16) | ((ty as libc::c_ulong) << 8) | nr as libc::c_ulong
}
const EVTCHN_BIND_INTERDOMAIN: libc::c_ulong = ioc(b'E', 1, 8);
const EVTCHN_BIND_UNBOUND_PORT: libc::c_ulong = ioc(b'E', 2, 4);
const EVTCHN_NOTIFY: libc::c_ulong = ioc(b'E', 4, 4);
const GNTDEV_MAP_GRANT_REF: libc::c_ulong = ioc(b'G', 0, 24);
const GNTDEV_SET_UNMAP_NOTIFY: libc::c_ulong = ioc(b'G', 7, 16);
const GNTALLOC_ALLOC_GREF: libc::c_ulong = ioc(b'G', 5, 24);
const GNTALLOC_SET_UNMAP_NOTIFY: libc::c_ulong = ioc(b'G', 7, 16);
const UNMAP_NOTIFY_CLEAR_BYTE: u32 = 1;
const UNMAP_NOTIFY_SEND_EVENT: u32 = 2;
const GNTALLOC_FLAG_WRITABLE: u16 = 1;

fn open_rw(path: &str) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))
}

fn ioctl<T>(f: &File, req: libc::c_ulong, arg: *mut T) -> io::Result<i32> {
    // SAFETY: `arg` points to a live, correctly sized argument for `req` (callers pass the
    // kernel's struct layouts, repr(C)).
    let r = unsafe { libc::ioctl(f.as_raw_fd(), req as _, arg) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// An event channel bound through /dev/xen/evtchn.
pub struct Evtchn {
    f: File,
    port: u32,
}

impl Evtchn {
    fn open() -> io::Result<File> {
        let f = open_rw("/dev/xen/evtchn")?;
        // SAFETY: setting O_NONBLOCK on our own fd.
        unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
        Ok(f)
    }

    /// A new port `remote` may bind to (the server's side).
    pub fn unbound(remote: u32) -> io::Result<Evtchn> {
        let f = Self::open()?;
        let mut arg = [remote];
        let port = ioctl(&f, EVTCHN_BIND_UNBOUND_PORT, arg.as_mut_ptr())? as u32;
        let e = Evtchn { f, port };
        e.unmask();
        Ok(e)
    }

    /// Binds to port `rport` of domain `remote` (the client's side).
    pub fn interdomain(remote: u32, rport: u32) -> io::Result<Evtchn> {
        let f = Self::open()?;
        let mut arg = [remote, rport];
        let port = ioctl(&f, EVTCHN_BIND_INTERDOMAIN, arg.as_mut_ptr())? as u32;
        let e = Evtchn { f, port };
        e.unmask();
        Ok(e)
    }

    pub fn port(&self) -> u32 {
        self.port
    }

    pub fn notify(&self) {
        let mut arg = [self.port];
        let _ = ioctl(&self.f, EVTCHN_NOTIFY, arg.as_mut_ptr());
    }

    fn unmask(&self) {
        let _ = (&self.f).write(&self.port.to_ne_bytes());
    }

    /// Takes the pending events (and unmasks the port): whether there were any.
    pub fn take(&self) -> bool {
        let mut buf = [0u8; 64];
        let mut any = false;
        while let Ok(n) = (&self.f).read(&mut buf) {
            if n == 0 {
                break;
            }
            any = true;
            if n < buf.len() {
                break;
            }
        }
        if any {
            self.unmask();
        }
        any
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.f.as_fd()
    }
}

/// Pages mapped from a grant device, unmapped on drop.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain shared memory, usable from any thread.
unsafe impl Send for Mapping {}

impl Mapping {
    fn new(f: &File, pages: usize, offset: u64, writable: bool) -> io::Result<Mapping> {
        let len = pages * PAGE;
        let prot = libc::PROT_READ | if writable { libc::PROT_WRITE } else { 0 };
        // SAFETY: mapping `len` bytes of the grant device at the offset its ioctl gave us.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: p as *mut u8,
            len,
        })
    }

    fn region(&self) -> Region {
        // SAFETY: the mapping lives as long as the Connected holding both.
        unsafe { Region::new(self.ptr, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what mmap gave us, once.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

/// A connected vchan: the endpoint, its event channel, and what keeps its memory mapped.
pub struct Connected {
    pub ep: Endpoint,
    pub evt: Evtchn,
    // Dropped in this order: the endpoint's memory, then the grant device.
    maps: Vec<Mapping>,
    _dev: File,
}

fn regions(ctrl: &Mapping, rings: Option<&Mapping>, layout: &Layout) -> (Region, Region) {
    let place = |p: RingPlace, order: u16| match p {
        RingPlace::InPage(off) => ctrl.region().sub(off, 1 << order),
        RingPlace::Granted { first, pages } => rings
            .expect("granted rings are mapped")
            .region()
            .sub(first * PAGE, pages * PAGE),
    };
    (
        place(layout.left, layout.left_order),
        place(layout.right, layout.right_order),
    )
}

#[repr(C)]
struct UnmapNotify {
    index: u64,
    action: u32,
    port: u32,
}

impl Connected {
    /// The server (pv-init): shares a control page and two rings of `order` with domain
    /// `remote`, and an unbound event channel port for it. Returns the connection and the
    /// rendezvous: (grant reference of the control page, event channel port).
    pub fn serve(remote: u16, order: u16) -> io::Result<(Connected, u32, u32)> {
        let layout = Layout::parse(order, order).map_err(io::Error::other)?;
        let dev = open_rw("/dev/xen/gntalloc")?;
        let evt = Evtchn::unbound(remote as u32)?;
        let alloc = |count: usize| -> io::Result<(u64, Vec<u32>)> {
            // struct ioctl_gntalloc_alloc_gref: domid u16, flags u16, count u32, index u64,
            // gref_ids[count] u32.
            let mut buf = vec![0u64; 2 + count.div_ceil(2)];
            let words = buf.as_mut_ptr() as *mut u8;
            // SAFETY: writing the header fields inside our buffer.
            unsafe {
                std::ptr::write(words as *mut u16, remote);
                std::ptr::write(words.add(2) as *mut u16, GNTALLOC_FLAG_WRITABLE);
                std::ptr::write(words.add(4) as *mut u32, count as u32);
            }
            ioctl(&dev, GNTALLOC_ALLOC_GREF, buf.as_mut_ptr())?;
            let index = buf[1];
            // SAFETY: the kernel wrote `count` u32 grant ids after the 16-byte header.
            let ids = (0..count)
                .map(|i| unsafe { std::ptr::read((words.add(16) as *const u32).add(i)) })
                .collect();
            Ok((index, ids))
        };
        let (ci, cref) = alloc(1)?;
        let ctrl = Mapping::new(&dev, 1, ci, true)?;
        let (ri, rrefs) = alloc(layout.grants)?;
        let rings = Mapping::new(&dev, layout.grants, ri, true)?;
        let page = ctrl.region();
        for i in 0..PAGE / 4 {
            page.write_u32(i * 4, 0);
        }
        super::init_server_page(&page, order, order, &rrefs);
        // If pv-init goes away, the client sees srv_live = 0 and an event.
        let mut n = UnmapNotify {
            index: ci + SRV_LIVE as u64,
            action: UNMAP_NOTIFY_CLEAR_BYTE | UNMAP_NOTIFY_SEND_EVENT,
            port: evt.port(),
        };
        ioctl(&dev, GNTALLOC_SET_UNMAP_NOTIFY, &mut n)?;
        let (left, right) = regions(&ctrl, Some(&rings), &layout);
        let ep = Endpoint::new(Side::Server, page, left, right);
        let port = evt.port();
        Ok((
            Connected {
                ep,
                evt,
                maps: vec![ctrl, rings],
                _dev: dev,
            },
            cref[0],
            port,
        ))
    }

    /// The client (dom0): maps domain `domid`'s control page `ring_ref` and the rings it
    /// lists, binds to its port `port`. The page is the guest's: its layout is checked
    /// (Layout::parse) and read once.
    pub fn connect(domid: u32, ring_ref: u32, port: u32) -> io::Result<Connected> {
        let dev = open_rw("/dev/xen/gntdev")?;
        let evt = Evtchn::interdomain(domid, port)?;
        let map = |refs: &[u32], writable: bool| -> io::Result<Mapping> {
            // struct ioctl_gntdev_map_grant_ref: count u32, pad u32, index u64, then
            // {domid u32, ref u32} per grant.
            let mut buf = vec![0u32; 4 + 2 * refs.len()];
            buf[0] = refs.len() as u32;
            for (i, r) in refs.iter().enumerate() {
                buf[4 + 2 * i] = domid;
                buf[5 + 2 * i] = *r;
            }
            ioctl(&dev, GNTDEV_MAP_GRANT_REF, buf.as_mut_ptr())?;
            let index = buf[2] as u64 | (buf[3] as u64) << 32;
            let m = Mapping::new(&dev, refs.len(), index, writable)?;
            if refs.len() == 1 && writable {
                // The control page: if hx goes away, the guest sees cli_live = 0.
                let mut n = UnmapNotify {
                    index: index + CLI_LIVE as u64,
                    action: UNMAP_NOTIFY_CLEAR_BYTE | UNMAP_NOTIFY_SEND_EVENT,
                    port: evt.port(),
                };
                let _ = ioctl(&dev, GNTDEV_SET_UNMAP_NOTIFY, &mut n);
            }
            Ok(m)
        };
        let ctrl = map(&[ring_ref], true)?;
        let page = ctrl.region();
        let (lo, ro) = super::read_orders(&page);
        let layout = Layout::parse(lo, ro).map_err(io::Error::other)?;
        let grants = super::read_grants(&page, layout.grants);
        let mut maps = Vec::new();
        // The client writes `left` and only reads `right`: map them apart, `right` read-only.
        let mut ring = |p: RingPlace, writable: bool| -> io::Result<Option<Region>> {
            match p {
                RingPlace::InPage(_) => Ok(None),
                RingPlace::Granted { first, pages } => {
                    let m = map(&grants[first..first + pages], writable)?;
                    let r = m.region();
                    maps.push(m);
                    Ok(Some(r))
                }
            }
        };
        let left = ring(layout.left, true)?;
        let right = ring(layout.right, false)?;
        let pick = |r: Option<Region>, p: RingPlace, order: u16| match (r, p) {
            (Some(r), _) => r,
            (None, RingPlace::InPage(off)) => page.sub(off, 1 << order),
            (None, RingPlace::Granted { .. }) => unreachable!("granted rings are mapped"),
        };
        let left = pick(left, layout.left, layout.left_order);
        let right = pick(right, layout.right, layout.right_order);
        let ep = Endpoint::new(Side::Client, page, left, right);
        super::client_hello(&page);
        maps.insert(0, ctrl);
        evt.notify();
        Ok(Connected {
            ep,
            evt,
            maps,
            _dev: dev,
        })
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.ep.set_live(0);
        self.evt.notify();
        self.maps.clear();
    }
}

/// After this many wake-ups in a row that moved nothing, each further one costs a pause: a
/// peer raising events without cause cannot make us spin.
const SPURIOUS_FREE: u32 = 64;
const SPURIOUS_PAUSE: Duration = Duration::from_millis(5);

/// Copies between the vchan and `sock` (set non-blocking here) until either ends: the peer
/// leaves (its live byte 0), breaks the ring (an index out of bounds: Err), our side of the
/// socket closes, or `stop` becomes readable (Ok(why)). Holds at most one ring's worth of data.
pub fn bridge(
    c: &mut Connected,
    sock: &std::os::unix::net::UnixStream,
    stop: Option<BorrowedFd<'_>>,
) -> io::Result<&'static str> {
    use super::{NOTIFY_READ, NOTIFY_WRITE};
    sock.set_nonblocking(true)?;
    let to_io = |e: VchanError| io::Error::new(io::ErrorKind::InvalidData, e);
    let (rx_size, _) = c.ep.ring_sizes();
    let mut out = vec![0u8; rx_size];
    let (mut out_at, mut out_len) = (0usize, 0usize);
    let mut inbuf = vec![0u8; 64 << 10];
    let mut spurious = 0u32;
    let mut sock_eof = false;
    let mut s = sock;
    loop {
        let mut moved = false;
        // Guest → socket.
        if out_len == 0 {
            let n = c.ep.read(&mut out).map_err(to_io)?;
            if n > 0 {
                (out_at, out_len) = (0, n);
                moved = true;
                if c.ep.should_notify(NOTIFY_READ) {
                    c.evt.notify();
                }
            }
        }
        while out_len > 0 {
            match s.write(&out[out_at..out_at + out_len]) {
                Ok(0) => return Ok("our socket took nothing"),
                Ok(n) => {
                    out_at += n;
                    out_len -= n;
                    moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Ok("our socket failed"),
            }
        }
        // Socket → ring, only what fits.
        let room = c.ep.writable().map_err(to_io)?;
        let mut want_room = false;
        if !sock_eof {
            if room == 0 {
                want_room = true;
            } else {
                let cap = room.min(inbuf.len());
                match s.read(&mut inbuf[..cap]) {
                    Ok(0) => sock_eof = true,
                    Ok(n) => {
                        let w = c.ep.write(&inbuf[..n]).map_err(to_io)?;
                        debug_assert_eq!(w, n);
                        moved = true;
                        if c.ep.should_notify(NOTIFY_WRITE) {
                            c.evt.notify();
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) => {}
                    Err(_) => sock_eof = true,
                }
            }
        }
        if sock_eof && out_len == 0 {
            // Our side is gone (the agent or the broker ended).
            return Ok("our socket closed");
        }
        if c.ep.peer_live() == 0 && !moved && out_len == 0 {
            return Ok("the peer left");
        }
        if moved {
            spurious = 0;
            continue;
        }
        // Nothing to do: ask for events, look once more, then sleep.
        c.ep.request(NOTIFY_WRITE | if want_room { NOTIFY_READ } else { 0 });
        if out_len == 0 && c.ep.readable().map_err(to_io)? > 0 {
            continue;
        }
        if want_room && c.ep.writable().map_err(to_io)? > 0 {
            continue;
        }
        let mut fds = vec![
            libc::pollfd {
                fd: c.evt.fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: s.as_raw_fd(),
                events: if out_len > 0 {
                    libc::POLLOUT
                } else if !want_room && !sock_eof {
                    libc::POLLIN
                } else {
                    0
                },
                revents: 0,
            },
        ];
        if let Some(stop) = stop {
            fds.push(libc::pollfd {
                fd: stop.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // SAFETY: polling our own fds for at most a second.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 1000) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
            continue;
        }
        if fds.len() > 2 && fds[2].revents != 0 {
            return Ok("stopped");
        }
        if fds[0].revents != 0 && c.evt.take() {
            spurious += 1;
            if spurious > SPURIOUS_FREE {
                std::thread::sleep(SPURIOUS_PAUSE);
            }
        }
        if fds[1].revents & (libc::POLLHUP | libc::POLLERR) != 0 {
            // Our side hung up: what it wrote before is read on the next round.
            if out_len > 0 {
                return Ok("our socket hung up");
            }
            if want_room {
                sock_eof = true;
            }
        }
    }
}
