//! Capabilities by name — docker's `--cap-add`/`--cap-drop`/`--privileged` and an OCI spec's
//! `process.capabilities` — as the bit masks pv-init applies to a workload
//! (`pv_init::spec::Capabilities`). The names and numbers are the `caps` crate's.
use pv_init::spec::Capabilities;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CapError {
    #[error("unknown capability: {0:?}")]
    Unknown(String),
}

/// docker's spelling rules: `NET_ADMIN`, `net_admin` and `CAP_NET_ADMIN` are one capability.
fn normalize(name: &str) -> String {
    let upper = name.trim().to_ascii_uppercase();
    if upper == "ALL" || upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

/// The bit of one capability.
pub fn bit(name: &str) -> Result<u64, CapError> {
    let full = normalize(name);
    let cap: caps::Capability = full.parse().map_err(|_| CapError::Unknown(full.clone()))?;
    Ok(1u64 << cap.index())
}

/// Every capability the caps crate knows.
fn all_known() -> u64 {
    caps::all().iter().fold(0, |m, c| m | 1u64 << c.index())
}

/// A workload's sets from docker's flags (moby's `TweakCapabilities`): `--privileged` gives
/// every capability; `--cap-add ALL` every one but those dropped; `--cap-drop ALL` only
/// those added; else docker's default set less the dropped, plus the added. Unknown names are
/// refused before anything is made.
pub fn from_flags(
    add: &[String],
    drop: &[String],
    privileged: bool,
) -> Result<Capabilities, CapError> {
    if privileged {
        return Ok(Capabilities::all());
    }
    let mask = |names: &[String]| -> Result<(bool, u64), CapError> {
        let mut all = false;
        let mut m = 0;
        for n in names {
            if normalize(n) == "ALL" {
                all = true;
            } else {
                m |= bit(n)?;
            }
        }
        Ok((all, m))
    };
    let (add_all, added) = mask(add)?;
    let (drop_all, dropped) = mask(drop)?;
    let set = if add_all {
        all_known() & !dropped
    } else if drop_all {
        added
    } else {
        (Capabilities::DOCKER_DEFAULT & !dropped) | added
    };
    Ok(Capabilities::of(set))
}

/// An OCI spec's `process.capabilities`. None gives nothing (runc's reading of a missing
/// object); docker and containerd always write one.
pub fn from_oci(
    c: Option<&oci_spec::runtime::LinuxCapabilities>,
) -> Result<Capabilities, CapError> {
    let Some(c) = c else {
        return Ok(Capabilities::of(0));
    };
    let mask = |set: &Option<oci_spec::runtime::Capabilities>| -> Result<u64, CapError> {
        set.iter()
            .flatten()
            // oci-spec spells them without the prefix (`NET_ADMIN`).
            .try_fold(0, |m, cap| Ok(m | bit(&cap.to_string())?))
    };
    Ok(Capabilities {
        bounding: mask(c.bounding())?,
        effective: mask(c.effective())?,
        permitted: mask(c.permitted())?,
        inheritable: mask(c.inheritable())?,
        ambient: mask(c.ambient())?,
    })
}

/// The names in a mask, `CAP_` and all, in the kernel's order (for `hx inspect`).
pub fn names(mask: u64) -> Vec<String> {
    let mut known: Vec<caps::Capability> = caps::all().into_iter().collect();
    known.sort_by_key(|c| c.index());
    known
        .into_iter()
        .filter(|c| mask & (1u64 << c.index()) != 0)
        .map(|c| c.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn docker_default_is_the_fourteen_docker_names() {
        let names = names(Capabilities::DOCKER_DEFAULT);
        assert_eq!(names.len(), 14);
        for n in ["CAP_CHOWN", "CAP_NET_RAW", "CAP_SETFCAP", "CAP_AUDIT_WRITE"] {
            assert!(names.contains(&n.to_string()), "{n}");
        }
        assert!(!names.contains(&"CAP_SYS_ADMIN".to_string()));
        assert_eq!(
            from_flags(&[], &[], false).unwrap(),
            Capabilities::docker_default()
        );
    }

    #[test]
    fn docker_flags_tweak_the_default_set() {
        let raw = bit("NET_RAW").unwrap();
        let admin = bit("cap_net_admin").unwrap();
        assert_eq!(admin, 1 << 12);
        let c = from_flags(&v(&["net_admin"]), &v(&["CAP_NET_RAW"]), false).unwrap();
        assert_eq!(c.bounding, (Capabilities::DOCKER_DEFAULT & !raw) | admin);
        assert_eq!(c.effective, c.bounding);
        assert_eq!((c.inheritable, c.ambient), (0, 0));
        assert_eq!(from_flags(&[], &v(&["all"]), false).unwrap().bounding, 0);
        assert_eq!(
            from_flags(&v(&["NET_ADMIN"]), &v(&["ALL"]), false)
                .unwrap()
                .bounding,
            admin
        );
        let all = from_flags(&v(&["ALL"]), &v(&["SYS_ADMIN"]), false).unwrap();
        assert_eq!(all.bounding & bit("SYS_ADMIN").unwrap(), 0);
        assert_ne!(all.bounding & bit("SYS_MODULE").unwrap(), 0);
        assert_eq!(
            from_flags(&[], &v(&["ALL"]), true).unwrap(),
            Capabilities::all()
        );
        assert_eq!(
            from_flags(&v(&["NET_FOO"]), &[], false)
                .unwrap_err()
                .to_string(),
            "unknown capability: \"CAP_NET_FOO\""
        );
    }

    #[test]
    fn an_oci_spec_gives_its_own_sets() {
        let c: oci_spec::runtime::LinuxCapabilities = serde_json::from_value(serde_json::json!({
            "bounding": ["CAP_CHOWN", "CAP_NET_ADMIN"],
            "effective": ["CAP_CHOWN"],
            "permitted": ["CAP_CHOWN", "CAP_NET_ADMIN"],
            "ambient": ["CAP_NET_ADMIN"]
        }))
        .unwrap();
        let got = from_oci(Some(&c)).unwrap();
        assert_eq!(got.bounding, 1 | 1 << 12);
        assert_eq!(got.effective, 1);
        assert_eq!(got.inheritable, 0);
        assert_eq!(got.ambient, 1 << 12);
        assert_eq!(from_oci(None).unwrap(), Capabilities::of(0));
    }

    #[test]
    fn every_oci_name_has_a_number() {
        for c in caps::all() {
            let json = serde_json::Value::String(c.to_string());
            let oci: oci_spec::runtime::Capability = serde_json::from_value(json).unwrap();
            assert_eq!(bit(&oci.to_string()).unwrap(), 1 << c.index(), "{c}");
        }
    }

    proptest! {
        #[test]
        fn any_flags_give_a_set_or_name_the_culprit(
            add in proptest::collection::vec("[A-Za-z_]{0,20}", 0..4),
            drop in proptest::collection::vec("[A-Za-z_]{0,20}", 0..4),
        ) {
            match from_flags(&add, &drop, false) {
                Ok(c) => prop_assert_eq!(c.bounding & !all_known(), 0),
                Err(CapError::Unknown(n)) => prop_assert!(n.starts_with("CAP_")),
            }
        }
    }
}
