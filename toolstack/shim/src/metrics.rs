//! Stats: containerd's cgroup v1 `Metrics` (what `ctr task metrics` and the CRI's
//! ContainerStats read) filled from the guest's own counters — pv-init reads /proc and /sys
//! inside the VM (pv_init::mux::StatsAnswer). The VM is the container's boundary, so its
//! memory in use and total are the container's usage and limit, its busy CPU time the
//! container's CPU usage, its tasks the container's pids; a pod member's are its own cgroup's
//! in the pod's VM (pv-init's cgroup.rs), its network and disks the pod's.
use containerd_shim::protos::cgroups::metrics::{
    BlkIOEntry, BlkIOStat, CPUStat, CPUUsage, MemoryEntry, MemoryStat, Metrics, NetworkStat,
    PidsStat,
};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{Message, MessageField};
use pv_init::mux::StatsAnswer;

/// /proc/stat counts in USER_HZ, which is 100 on every Linux ABI.
const NANOS_PER_TICK: u64 = 1_000_000_000 / 100;

pub fn from_guest(a: &StatsAnswer) -> Metrics {
    let memory = MemoryStat {
        usage: MessageField::some(MemoryEntry {
            usage: a.mem_used,
            limit: a.mem_total,
            ..Default::default()
        }),
        total_rss: a.mem_used,
        rss: a.mem_used,
        ..Default::default()
    };
    let cpu = CPUStat {
        usage: MessageField::some(CPUUsage {
            total: a.cpu_busy.saturating_mul(NANOS_PER_TICK),
            ..Default::default()
        }),
        ..Default::default()
    };
    let blk = |op: &str, value| BlkIOEntry {
        op: op.into(),
        device: "guest".into(),
        value,
        ..Default::default()
    };
    Metrics {
        pids: MessageField::some(PidsStat {
            current: a.pids.into(),
            ..Default::default()
        }),
        cpu: MessageField::some(cpu),
        memory: MessageField::some(memory),
        blkio: MessageField::some(BlkIOStat {
            io_service_bytes_recursive: vec![
                blk("Read", a.block_read),
                blk("Write", a.block_write),
            ],
            ..Default::default()
        }),
        network: vec![NetworkStat {
            name: "eth0".into(),
            rx_bytes: a.net_rx,
            tx_bytes: a.net_tx,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Packed the way containerd's typeurl expects it (the message's full name).
pub fn to_any(m: &Metrics) -> Result<Any, containerd_shim::protos::protobuf::Error> {
    Ok(Any {
        type_url: "io.containerd.cgroups.v1.Metrics".into(),
        value: m.write_to_bytes()?,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_counters_land_where_ctr_reads_them() {
        let a = StatsAnswer {
            cpu_busy: 250,
            cpu_total: 1000,
            cpus: 1,
            mem_used: 6 << 20,
            mem_total: 120 << 20,
            net_rx: 10,
            net_tx: 20,
            block_read: 30,
            block_write: 40,
            pids: 3,
        };
        let any = to_any(&from_guest(&a)).unwrap();
        assert_eq!(
            any.type_url,
            <Metrics as containerd_shim::protos::protobuf::MessageFull>::descriptor().full_name()
        );
        let m = Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(m.memory.usage.usage, 6 << 20);
        assert_eq!(m.memory.usage.limit, 120 << 20);
        assert_eq!(m.cpu.usage.total, 2_500_000_000);
        assert_eq!(m.pids.current, 3);
        assert_eq!(m.network[0].tx_bytes, 20);
    }
}
