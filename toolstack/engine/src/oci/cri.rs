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
