//! Answers to `hx top` and `hx stats` (pv_init::mux::Query), read from the guest's /proc and
//! /sys. pv-init itself (PID 1) and kernel threads are not the container's processes.
use pv_init::mux::{ProcessInfo, StatsAnswer, TopAnswer, MAX_TOP_CMD, MAX_TOP_PROCESSES};
use std::fs;

/// Clock ticks per second of /proc's times (USER_HZ on x86 Linux).
const TICKS: u64 = 100;

pub fn top() -> TopAnswer {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let btime = boot_time();
    let mut processes = Vec::new();
    let mut more = 0u32;
    for pid in pids() {
        let Some(p) = process(pid, btime, &passwd) else {
            continue;
        };
        if processes.len() < MAX_TOP_PROCESSES {
            processes.push(p);
        } else {
            more += 1;
        }
    }
    TopAnswer { processes, more }
}

pub fn stats() -> StatsAnswer {
    let (cpu_busy, cpu_total, cpus) = cpu();
    let (mem_used, mem_total) = memory();
    let (net_rx, net_tx) = network();
    let (block_read, block_write) = block();
    StatsAnswer {
        cpu_busy,
        cpu_total,
        cpus,
        mem_used,
        mem_total,
        net_rx,
        net_tx,
        block_read,
        block_write,
        pids: pids().filter(|p| is_user_process(*p)).count() as u32,
    }
}

/// Every pid in /proc except pv-init's.
fn pids() -> impl Iterator<Item = u32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| *p != 1)
}

/// Kernel threads have no command line and are children of kthreadd (2) or it.
fn is_user_process(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}

/// The number after `key` (its separator included: `"btime "`, `"MemTotal:"`) on the first
/// line of a kernel `key value [unit]` file that has it (/proc/stat, /proc/meminfo,
/// /proc/vmstat, cgroup v2's stat and events files).
pub fn counter(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.split_whitespace().next()?.parse().ok())
}

fn boot_time() -> u64 {
    counter(
        &fs::read_to_string("/proc/stat").unwrap_or_default(),
        "btime ",
    )
    .unwrap_or(0)
}

fn process(pid: u32, btime: u64, passwd: &str) -> Option<ProcessInfo> {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if cmdline.is_empty() {
        return None;
    }
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which may itself hold spaces and parentheses.
    let rest: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let field = |i: usize| rest.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // rest[0] is field 3 (state): ppid 4, tty_nr 7, utime 14, stime 15, starttime 22.
    let ppid = field(1) as u32;
    let tty_nr = field(4);
    let cpu_secs = (field(11) + field(12)) / TICKS;
    let started = btime + field(19) / TICKS;
    let uid = fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| {
            l.strip_prefix("Uid:")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    let user = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 3 && f[2].parse::<u32>() == Ok(uid))
        .map(|f| f[0].to_string())
        .unwrap_or_default();
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
    let tty = match major {
        0 => "?".to_string(),
        136..=143 => format!("pts/{}", (major - 136) * 256 + minor),
        _ => format!("{major}:{minor}"),
    };
    let mut cmd: String = String::from_utf8_lossy(&cmdline)
        .trim_end_matches('\0')
        .replace('\0', " ");
    if cmd.len() > MAX_TOP_CMD {
        let mut end = MAX_TOP_CMD;
        while !cmd.is_char_boundary(end) {
            end -= 1;
        }
        cmd.truncate(end);
    }
    Some(ProcessInfo {
        pid,
        ppid,
        uid,
        user,
        started,
        cpu_secs,
        tty,
        cmd,
    })
}

fn cpu() -> (u64, u64, u32) {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpus = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count() as u32;
    let Some(total_line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0, cpus);
    };
    let v: Vec<u64> = total_line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    // idle and iowait are not busy.
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total, cpus.max(1))
}

fn memory() -> (u64, u64) {
    let info = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kb = |key: &str| counter(&info, key).unwrap_or(0) * 1024;
    let total = kb("MemTotal:");
    (total.saturating_sub(kb("MemAvailable:")), total)
}

fn network() -> (u64, u64) {
    let dev = fs::read_to_string("/proc/net/dev").unwrap_or_default();
    let mut rx = 0;
    let mut tx = 0;
    for l in dev.lines().skip(2) {
        let Some((name, counters)) = l.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let v: Vec<u64> = counters
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        rx += v.first().copied().unwrap_or(0);
        tx += v.get(8).copied().unwrap_or(0);
    }
    (rx, tx)
}

fn block() -> (u64, u64) {
    let mut read = 0;
    let mut written = 0;
    for e in fs::read_dir("/sys/block").into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !(name.starts_with("vd") || name.starts_with("xvd")) {
            continue;
        }
        let stat = fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let v: Vec<u64> = stat
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        // Sectors read is field 3, sectors written field 7 (512 bytes each).
        read += v.get(2).copied().unwrap_or(0) * 512;
        written += v.get(6).copied().unwrap_or(0) * 512;
    }
    (read, written)
}
