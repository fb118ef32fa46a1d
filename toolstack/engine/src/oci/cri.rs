//! Kubernetes pods under an OCI caller (containerd's CRI plugin): the spec's CRI annotations
//! say whether a container is a pod's sandbox — its VM, an hx pod (pod.rs) — or a member of
//! the sandbox it names (docs/kubernetes.md). The annotations come from whoever wrote
//! config.json: bounded and checked like an id before they name anything.
use super::record;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";

/// What a container is in its pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodRole {
    /// The pod's sandbox: its VM. `pod` is the engine's pod name.
    Sandbox { pod: String },
    /// A container of the pod `pod`, run in its VM.
    Member { pod: String },
}

impl PodRole {
    pub fn pod(&self) -> &str {
        match self {
            PodRole::Sandbox { pod } | PodRole::Member { pod } => pod,
        }
    }
}

/// The engine's pod name for a CRI sandbox id (an OCI id: 64 hex digits under containerd),
/// the same rule as the sandbox's own engine container name.
pub fn pod_name(sandbox_id: &str) -> String {
    record::engine_name(sandbox_id)
}

/// The container's role from its annotations: none without `container-type`; a sandbox
/// (`sandbox`) is its own pod (`id`), a container (`container`) is in the pod its
/// `sandbox-id` names. Anything else is refused with the annotation named.
pub fn role(id: &str, annotations: &BTreeMap<String, String>) -> anyhow::Result<Option<PodRole>> {
    let Some(kind) = annotations.get(CONTAINER_TYPE) else {
        return Ok(None);
    };
    match kind.as_str() {
        "sandbox" => Ok(Some(PodRole::Sandbox { pod: pod_name(id) })),
        "container" => {
            let Some(sandbox) = annotations.get(SANDBOX_ID) else {
                anyhow::bail!("annotation {CONTAINER_TYPE}=container without {SANDBOX_ID}");
            };
            if !record::valid_id(sandbox) {
                anyhow::bail!(
                    "annotation {SANDBOX_ID}: \"{}\" is not a container id",
                    crate::sanitize::line(sandbox)
                );
            }
            if sandbox == id {
                anyhow::bail!("annotation {SANDBOX_ID}: a container cannot be its own sandbox");
            }
            Ok(Some(PodRole::Member {
                pod: pod_name(sandbox),
            }))
        }
        other => anyhow::bail!(
            "annotation {CONTAINER_TYPE}: \"{}\" is neither sandbox nor container",
            crate::sanitize::line(other)
        ),
    }
}

/// What the pod's containers may use together, from containerd's sandbox annotations
/// (kubelet 1.23+ sends the sum of the containers' limits in `PodSandboxConfig.linux.resources`;
/// containerd 1.6.7+ writes it on the sandbox's spec).
pub const SANDBOX_MEMORY: &str = "io.kubernetes.cri.sandbox-memory";
pub const SANDBOX_CPU_QUOTA: &str = "io.kubernetes.cri.sandbox-cpu-quota";
pub const SANDBOX_CPU_PERIOD: &str = "io.kubernetes.cri.sandbox-cpu-period";

/// The sum of a pod's containers' limits: memory in bytes and CPU as a CFS quota over a
/// period (both in µs). Zero: no limit.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PodResources {
    pub memory_bytes: u64,
    pub cpu_quota: u64,
    pub cpu_period: u64,
}

impl PodResources {
    /// Whole CPUs the quota asks for (1.5 → 2); 0 without a quota.
    pub fn cpus(&self) -> u64 {
        if self.cpu_quota == 0 {
            return 0;
        }
        self.cpu_quota.div_ceil(self.cpu_period)
    }
}

/// The pod's resources from the sandbox's annotations; absent ones are no limit. Anything but
/// a plain number in range is refused with the annotation named.
pub fn pod_resources(annotations: &BTreeMap<String, String>) -> anyhow::Result<PodResources> {
    let number = |key: &str, max: u64| -> anyhow::Result<Option<i64>> {
        let Some(v) = annotations.get(key) else {
            return Ok(None);
        };
        let n: i64 = v
            .parse()
            .ok()
            .filter(|n: &i64| *n >= -1 && (*n < 0 || *n as u64 <= max))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "annotation {key}: \"{}\" is not a number from -1 to {max}",
                    crate::sanitize::line(v)
                )
            })?;
        Ok(Some(n))
    };
    // 1 TiB of memory, a thousand CPUs: beyond any VM hx makes.
    let memory = number(SANDBOX_MEMORY, 1 << 40)?.unwrap_or(0).max(0) as u64;
    let quota = number(SANDBOX_CPU_QUOTA, 1_000_000_000)?
        .unwrap_or(0)
        .max(0) as u64;
    let period = number(SANDBOX_CPU_PERIOD, 1_000_000)?.unwrap_or(0);
    // CFS's own bounds for a period: 1 ms to 1 s (none given: its default, 100 ms).
    let period = match period {
        p if p <= 0 => 100_000,
        p if p < 1000 => anyhow::bail!("annotation {SANDBOX_CPU_PERIOD}: {p} µs is below 1 ms"),
        p => p as u64,
    };
    Ok(PodResources {
        memory_bytes: memory,
        cpu_quota: quota,
        cpu_period: period,
    })
}

/// The files CRI binds into every container of a pod that the pod's VM has its own copies of
/// (`/etc/hosts`, `/etc/hostname`: pv-init copies them into the member's root), so these binds
/// are dropped rather than shared again. CRI's `/etc/resolv.conf` is kept: it carries the
/// pod's `dns_config`.
pub fn is_pod_file(destination: &str) -> bool {
    matches!(destination, "/etc/hosts" | "/etc/hostname")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn pod_resources_from_annotations() {
        let r = pod_resources(&ann(&[
            (SANDBOX_MEMORY, "134217728"),
            (SANDBOX_CPU_QUOTA, "150000"),
            (SANDBOX_CPU_PERIOD, "100000"),
        ]))
        .unwrap();
        assert_eq!(r.memory_bytes, 128 << 20);
        assert_eq!(r.cpus(), 2);
        // containerd's values for a pod without limits.
        let none = pod_resources(&ann(&[
            (SANDBOX_MEMORY, "0"),
            (SANDBOX_CPU_QUOTA, "0"),
            (SANDBOX_CPU_PERIOD, "100000"),
        ]))
        .unwrap();
        assert_eq!((none.memory_bytes, none.cpus()), (0, 0));
        assert_eq!(
            pod_resources(&ann(&[(SANDBOX_CPU_QUOTA, "-1")]))
                .unwrap()
                .cpus(),
            0
        );
        assert_eq!(
            pod_resources(&ann(&[])).unwrap(),
            PodResources {
                cpu_period: 100_000,
                ..Default::default()
            }
        );
        for (k, v) in [
            (SANDBOX_MEMORY, "lots"),
            (SANDBOX_MEMORY, "-5"),
            (SANDBOX_MEMORY, "99999999999999999999"),
            (SANDBOX_MEMORY, "2199023255553"),
            (SANDBOX_CPU_QUOTA, "1e6"),
            (SANDBOX_CPU_PERIOD, "10"),
            (SANDBOX_CPU_PERIOD, "2000000"),
            (SANDBOX_MEMORY, " 1"),
        ] {
            let e = pod_resources(&ann(&[(k, v)])).unwrap_err().to_string();
            assert!(e.contains(k), "{k}={v}: {e}");
        }
    }

    #[test]
    fn roles_from_annotations() {
        let sb = "a".repeat(64);
        assert_eq!(role("x", &ann(&[])).unwrap(), None);
        assert_eq!(
            role(&sb, &ann(&[(CONTAINER_TYPE, "sandbox")])).unwrap(),
            Some(PodRole::Sandbox {
                pod: "a".repeat(63)
            })
        );
        assert_eq!(
            role(
                "c1",
                &ann(&[(CONTAINER_TYPE, "container"), (SANDBOX_ID, &sb)])
            )
            .unwrap(),
            Some(PodRole::Member {
                pod: "a".repeat(63)
            })
        );
        for bad in [
            ann(&[(CONTAINER_TYPE, "container")]),
            ann(&[(CONTAINER_TYPE, "container"), (SANDBOX_ID, "../x")]),
            ann(&[(CONTAINER_TYPE, "container"), (SANDBOX_ID, "c1")]),
            ann(&[(CONTAINER_TYPE, "pod\x1b[2J")]),
        ] {
            let e = role("c1", &bad).unwrap_err().to_string();
            assert!(!e.contains('\x1b'), "{e:?}");
        }
    }

    proptest! {
        // Hostile resource annotations: never a panic, never more than the bounds.
        #[test]
        fn any_resource_annotations(mem in ".{0,24}", quota in "-?[0-9]{0,12}", period in "-?[0-9]{0,9}") {
            let a = ann(&[(SANDBOX_MEMORY, &mem), (SANDBOX_CPU_QUOTA, &quota), (SANDBOX_CPU_PERIOD, &period)]);
            if let Ok(r) = pod_resources(&a) {
                prop_assert!(r.memory_bytes <= 1 << 40);
                prop_assert!(r.cpus() <= 1_000_000);
                prop_assert!((1000..=1_000_000).contains(&r.cpu_period));
            }
        }

        // Hostile annotations: never a panic; a member's pod is always a valid pod name.
        #[test]
        fn any_annotations(kind in ".{0,20}", sandbox in ".{0,200}", id in "[a-z0-9]{1,64}") {
            let a = ann(&[(CONTAINER_TYPE, &kind), (SANDBOX_ID, &sandbox)]);
            if let Ok(Some(r)) = role(&id, &a) {
                prop_assert!(crate::container::valid_name(r.pod()));
            }
        }
    }
}
