//! `hx top -b [-d SECS] [-i N]`: xentop's batch mode, its columns and order (by name), for
//! scripts: every domain's CPU, memory, vCPUs, network and block I/O, N times SECS apart. Domains
//! from libxl; network counters from /proc/net/dev (the vifs of each domain: their sysfs
//! `device/nodename`, else a `vifD.N` name) and block counters from blkback's sysfs statistics,
//! as libxenstat reads them.
use super::domain;
use std::collections::BTreeMap;
use xen_bindings::DomainInfo;

/// One domain's network and block totals.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Io {
    pub nets: u32,
    pub net_tx: u64,
    pub net_rx: u64,
    pub vbds: u32,
    /// None when every vbd's statistics were unreadable (xentop prints `-`).
    pub vbd: Option<[u64; 5]>,
}

/// One line of /proc/net/dev: interface, rx bytes, tx bytes. None for the headers or a line
/// that does not parse.
pub fn parse_net_dev_line(line: &str) -> Option<(String, u64, u64)> {
    let (iface, rest) = line.split_once(':')?;
    let iface = iface.trim();
    if iface.is_empty() || iface.len() > 15 {
        return None;
    }
    let n: Vec<u64> = rest
        .split_whitespace()
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    if n.len() < 16 {
        return None;
    }
    Some((iface.to_string(), n[0], n[8]))
}

/// `vifD.N` → (D, N).
pub fn vif_name_domid(iface: &str) -> Option<(u32, u32)> {
    let (d, n) = iface.strip_prefix("vif")?.split_once('.')?;
    Some((d.parse().ok()?, n.parse().ok()?))
}

/// `backend/vif/D/N` (a netback device's sysfs nodename) → D.
pub fn nodename_domid(s: &str) -> Option<u32> {
    let mut parts = s.trim().strip_prefix("backend/vif/")?.split('/');
    let d = parts.next()?.parse().ok()?;
    parts.next()?.parse::<u32>().ok()?;
    Some(d)
}

fn read_small(path: &std::path::Path) -> Option<String> {
    use std::io::Read;
    let mut s = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(256)
        .read_to_string(&mut s)
        .ok()?;
    Some(s)
}

fn collect_io() -> BTreeMap<u32, Io> {
    let mut io: BTreeMap<u32, Io> = BTreeMap::new();
    if let Ok(dev) = std::fs::read_to_string("/proc/net/dev") {
        for line in dev.lines().skip(2) {
            let Some((iface, rx, tx)) = parse_net_dev_line(line) else {
                continue;
            };
            let node = read_small(
                &std::path::Path::new("/sys/class/net")
                    .join(&iface)
                    .join("device/nodename"),
            );
            let domid = node
                .as_deref()
                .and_then(nodename_domid)
                .or_else(|| vif_name_domid(&iface).map(|(d, _)| d));
            if let Some(d) = domid {
                let e = io.entry(d).or_default();
                e.nets += 1;
                e.net_tx += tx;
                e.net_rx += rx;
            }
        }
    }
    let base = std::path::Path::new("/sys/bus/xen-backend/devices");
    if let Ok(rd) = std::fs::read_dir(base) {
        for ent in rd.flatten() {
            let name = ent.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix("vbd-") else {
                continue;
            };
            let Some(domid) = rest.split('-').next().and_then(|d| d.parse::<u32>().ok()) else {
                continue;
            };
            let e = io.entry(domid).or_default();
            e.vbds += 1;
            let stats: Option<Vec<u64>> = ["oo_req", "rd_req", "wr_req", "rd_sect", "wr_sect"]
                .iter()
                .map(|f| {
                    read_small(&ent.path().join("statistics").join(f))?
                        .trim()
                        .parse()
                        .ok()
                })
                .collect();
            if let Some(s) = stats {
                let t = e.vbd.get_or_insert([0; 5]);
                for (a, b) in t.iter_mut().zip(s) {
                    *a += b;
                }
            }
        }
    }
    io
}

const HEADERS: [(&str, usize); 19] = [
    ("NAME", 10),
    ("STATE", 6),
    ("CPU(sec)", 10),
    ("CPU(%)", 6),
    ("MEM(k)", 10),
    ("MEM(%)", 6),
    ("MAXMEM(k)", 10),
    ("MAXMEM(%)", 9),
    ("VCPUS", 5),
    ("NETS", 4),
    ("NETTX(k)", 8),
    ("NETRX(k)", 8),
    ("VBDS", 4),
    ("VBD_OO", 8),
    ("VBD_RD", 8),
    ("VBD_WR", 8),
    ("VBD_RSECT", 10),
    ("VBD_WSECT", 10),
    ("SSID", 4),
];

fn digits(n: u64) -> usize {
    n.to_string().len()
}

/// Column widths: xentop widens the traffic columns to fit the largest value.
fn widths(rows: &[(&DomainInfo, &Io)]) -> [usize; 19] {
    let mut w = HEADERS.map(|(_, w)| w);
    for (_, io) in rows {
        w[10] = w[10].max(digits(io.net_tx / 1024 + 1));
        w[11] = w[11].max(digits(io.net_rx / 1024 + 1));
        let v = io.vbd.unwrap_or([0; 5]);
        w[14] = w[14].max(digits(v[1] + 1));
        w[15] = w[15].max(digits(v[2] + 1));
        w[16] = w[16].max(digits(v[3] + 1));
        w[17] = w[17].max(digits(v[4] + 1));
    }
    w
}

pub fn header(w: &[usize; 19]) -> String {
    let cols: Vec<String> = HEADERS
        .iter()
        .zip(w)
        .map(|((h, _), w)| format!("{h:>w$}"))
        .collect();
    cols.join(" ") + "\n"
}

/// xentop's six state letters: dying, shutdown, blocked, crashed, paused, running.
pub fn state(d: &DomainInfo) -> String {
    let crashed = d.shutdown && d.shutdown_reason == Some(xen_bindings::ShutdownReason::Crash);
    let f = |on: bool, c: char| if on { c } else { '-' };
    [
        f(d.dying, 'd'),
        f(d.shutdown, 's'),
        f(d.blocked, 'b'),
        f(crashed, 'c'),
        f(d.paused, 'p'),
        f(d.running, 'r'),
    ]
    .iter()
    .collect()
}

/// One domain's line; `cpu_pct` from the previous sample (0 on the first), `total_kb` the host's
/// memory.
pub fn row(d: &DomainInfo, io: &Io, cpu_pct: f64, total_kb: u64, w: &[usize; 19]) -> String {
    let name: String = d.name.as_deref().unwrap_or("").chars().take(10).collect();
    let pct = |kb: u64| kb as f64 / total_kb.max(1) as f64 * 100.0;
    let no_limit = d.max_memory_kb >= u32::MAX as u64 * 4;
    let (maxmem, maxpct) = if no_limit {
        (format!("{:>10}", "no limit"), format!("{:>9}", "n/a"))
    } else {
        (
            format!("{:>10}", d.max_memory_kb),
            format!("{:>9.1}", pct(d.max_memory_kb)),
        )
    };
    let vbd = |i: usize, width: usize| match (io.vbds, io.vbd) {
        (0, _) => format!("{:>width$}", 0),
        (_, Some(v)) => format!("{:>width$}", v[i]),
        (_, None) => format!("{:>width$}", '-'),
    };
    let cols = [
        format!("{name:>10}"),
        state(d),
        format!("{:>10}", d.cpu_time_ns / 1_000_000_000),
        format!("{cpu_pct:>6.1}"),
        format!("{:>10}", d.memory_kb),
        format!("{:>6.1}", pct(d.memory_kb)),
        maxmem,
        maxpct,
        format!("{:>5}", d.vcpus_max),
        format!("{:>4}", io.nets),
        format!("{:>w$}", io.net_tx / 1024, w = w[10]),
        format!("{:>w$}", io.net_rx / 1024, w = w[11]),
        format!("{:>4}", io.vbds),
        vbd(0, 8),
        vbd(1, w[14]),
        vbd(2, w[15]),
        vbd(3, w[16]),
        vbd(4, w[17]),
        format!("{:>4}", d.ssidref),
    ];
    cols.join(" ") + "\n"
}

pub async fn run(delay_s: u64, iterations: Option<u64>) -> anyhow::Result<i32> {
    let ctx = domain::open()?;
    let total_kb = ctx.host_info()?.total_memory_mb * 1024;
    let mut prev: Option<(std::time::Instant, BTreeMap<u32, u64>)> = None;
    let mut n = 0u64;
    loop {
        let now = std::time::Instant::now();
        let mut doms = ctx.list()?;
        doms.sort_by_key(|d| d.name.clone().unwrap_or_default().to_ascii_lowercase());
        let io = collect_io();
        let empty = Io::default();
        let rows: Vec<(&DomainInfo, &Io)> = doms
            .iter()
            .map(|d| (d, io.get(&d.domid).unwrap_or(&empty)))
            .collect();
        let w = widths(&rows);
        let mut out = header(&w);
        for (d, io) in &rows {
            let pct = prev
                .as_ref()
                .and_then(|(t, cpu)| {
                    let before = cpu.get(&d.domid)?;
                    let us = now.duration_since(*t).as_micros() as f64;
                    Some(d.cpu_time_ns.saturating_sub(*before) as f64 / 10.0 / us)
                })
                .unwrap_or(0.0);
            out.push_str(&row(d, io, pct, total_kb, &w));
        }
        domain::print(&out)?;
        prev = Some((now, doms.iter().map(|d| (d.domid, d.cpu_time_ns)).collect()));
        n += 1;
        if iterations.is_some_and(|i| n >= i) {
            return Ok(0);
        }
        tokio::time::sleep(std::time::Duration::from_secs(delay_s)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn net_dev_lines() {
        let l = "vif3.0: 1234 10 0 0 0 0 0 0 5678 20 0 0 0 0 0 0";
        assert_eq!(parse_net_dev_line(l), Some(("vif3.0".into(), 1234, 5678)));
        assert_eq!(parse_net_dev_line("Inter-|   Receive"), None);
        assert_eq!(parse_net_dev_line("eth0: 1 2 3"), None);
        assert_eq!(vif_name_domid("vif12.1"), Some((12, 1)));
        assert_eq!(vif_name_domid("virbr0"), None);
        assert_eq!(nodename_domid("backend/vif/7/0\n"), Some(7));
        assert_eq!(nodename_domid("backend/vbd/7/0"), None);
    }

    #[test]
    fn header_is_xentops() {
        let w = HEADERS.map(|(_, w)| w);
        assert_eq!(
            header(&w),
            "      NAME  STATE   CPU(sec) CPU(%)     MEM(k) MEM(%)  MAXMEM(k) MAXMEM(%) VCPUS NETS NETTX(k) NETRX(k) VBDS   VBD_OO   VBD_RD   VBD_WR  VBD_RSECT  VBD_WSECT SSID\n"
        );
    }

    proptest! {
        #[test]
        fn any_net_dev_line(l in ".{0,200}") {
            let _ = parse_net_dev_line(&l);
            let _ = nodename_domid(&l);
            let _ = vif_name_domid(&l);
        }
    }
}
