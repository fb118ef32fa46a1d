//! docker's `--filter KEY=VALUE` (docker/cli opts.FilterOpt; the daemon's filters.Args): values
//! of one key are alternatives (any may match), different keys must all match, and `label`
//! values must all match. `name` and `id` (and `reference` for images) are unanchored regular
//! expressions, as the daemon matches them.
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Filters {
    fields: BTreeMap<String, BTreeSet<String>>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FilterError {
    /// docker/cli's flag error (exit 125 there, a usage error).
    #[error("invalid argument {0:?} for \"-f, --filter\" flag: bad format of filter (expected name=value)")]
    Syntax(String),
    /// The daemon's answer for a key the command does not know.
    #[error("invalid filter '{0}'")]
    UnknownKey(String),
    #[error("invalid filter '{key}={value}'{why}")]
    BadValue {
        key: String,
        value: String,
        why: String,
    },
}

impl Filters {
    /// Each `--filter` as docker's FilterOpt.Set takes it: empty is nothing, no `=` is an
    /// error, the key is trimmed and lower-cased, the value trimmed.
    pub fn parse(args: &[String], accepted: &[&str]) -> Result<Filters, FilterError> {
        let mut f = Filters::default();
        for a in args {
            if a.is_empty() {
                continue;
            }
            let Some((k, v)) = a.split_once('=') else {
                return Err(FilterError::Syntax(a.clone()));
            };
            let key = k.trim().to_lowercase();
            f.fields
                .entry(key)
                .or_default()
                .insert(v.trim().to_string());
        }
        if let Some(k) = f.fields.keys().find(|k| !accepted.contains(&k.as_str())) {
            return Err(FilterError::UnknownKey(k.clone()));
        }
        Ok(f)
    }

    pub fn values(&self, key: &str) -> impl Iterator<Item = &str> {
        self.fields
            .get(key)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.fields.contains_key(key)
    }

    /// The daemon's Match: true without values for `key`, else when `source` equals one or one
    /// (as an unanchored regular expression) matches it. An invalid expression matches nothing.
    pub fn matches(&self, key: &str, source: &str) -> bool {
        let Some(values) = self.fields.get(key) else {
            return true;
        };
        values.contains(source)
            || values.iter().any(|v| {
                regex::Regex::new(v)
                    .map(|re| re.is_match(source))
                    .unwrap_or(false)
            })
    }

    /// `label=KEY` (present) and `label=KEY=VALUE` (equal), every one of them.
    pub fn labels_match(&self, key: &str, labels: &BTreeMap<String, String>) -> bool {
        self.values(key).all(|want| match want.split_once('=') {
            Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
            None => labels.contains_key(want),
        })
    }

    /// A boolean filter (`dangling=true`): docker's GetBoolOrDefault.
    pub fn bool_value(&self, key: &str) -> Result<Option<bool>, FilterError> {
        let mut out = None;
        for v in self.values(key) {
            let b = match v.to_lowercase().as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => {
                    return Err(FilterError::BadValue {
                        key: key.into(),
                        value: v.into(),
                        why: String::new(),
                    })
                }
            };
            if out.is_some_and(|o| o != b) {
                return Err(FilterError::BadValue {
                    key: key.into(),
                    value: v.into(),
                    why: ": conflicting values".into(),
                });
            }
            out = Some(b);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(a: &[&str]) -> Result<Filters, FilterError> {
        let args: Vec<String> = a.iter().map(|s| s.to_string()).collect();
        Filters::parse(&args, &["name", "label", "status", "dangling"])
    }

    #[test]
    fn docker_semantics() {
        let f = parse(&["name=web", " Name = db ", ""]).unwrap();
        assert!(f.matches("name", "web-1"), "unanchored");
        assert!(f.matches("name", "db"));
        assert!(!f.matches("name", "cache"));
        assert!(parse(&["name=^web$"]).unwrap().matches("name", "web"));
        assert!(!parse(&["name=^web$"]).unwrap().matches("name", "web-1"));
        assert!(!parse(&["name=("]).unwrap().matches("name", "x("));
        assert!(
            parse(&["name=x("]).unwrap().matches("name", "x("),
            "exact wins"
        );
        assert_eq!(parse(&["name"]), Err(FilterError::Syntax("name".into())));
        assert_eq!(
            parse(&["foo=1"]),
            Err(FilterError::UnknownKey("foo".into()))
        );
        let labels: BTreeMap<String, String> =
            [("a".into(), "1".into()), ("b".into(), "".into())].into();
        assert!(parse(&["label=a", "label=b="])
            .unwrap()
            .labels_match("label", &labels));
        assert!(!parse(&["label=a", "label=c"])
            .unwrap()
            .labels_match("label", &labels));
        assert!(!parse(&["label=a=2"])
            .unwrap()
            .labels_match("label", &labels));
        assert_eq!(
            parse(&["dangling=true"]).unwrap().bool_value("dangling"),
            Ok(Some(true))
        );
        assert!(parse(&["dangling=yes"])
            .unwrap()
            .bool_value("dangling")
            .is_err());
        assert!(parse(&["dangling=true", "dangling=false"])
            .unwrap()
            .bool_value("dangling")
            .is_err());
    }

    proptest! {
        /// Any flag value parses or is refused, and matching any source returns.
        #[test]
        fn any_filter_parses_or_fails_cleanly(args in proptest::collection::vec("\\PC{0,12}", 0..4),
                                              source in "\\PC{0,12}") {
            if let Ok(f) = Filters::parse(&args, &["name", "label", "status", "dangling"]) {
                let _ = f.matches("name", &source);
                let _ = f.labels_match("label", &BTreeMap::new());
                let _ = f.bool_value("dangling");
                for a in &args {
                    if let Some((k, v)) = a.split_once('=') {
                        prop_assert!(f.values(&k.trim().to_lowercase()).any(|x| x == v.trim()));
                    }
                }
            }
        }
    }
}
