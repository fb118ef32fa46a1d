//! `user[:group]` resolved in the image's /etc/passwd and /etc/group (no libc NSS in a static binary).
use crate::InitError;

#[derive(Debug, PartialEq, Eq)]
pub struct Ident {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
}

pub fn resolve(user: &str, passwd: &str, group: &str) -> Result<Ident, InitError> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 7)
        .find(|f| f[0] == u || (u.parse::<u32>().ok().is_some_and(|n| f[2].parse() == Ok(n))));
    let (uid, mut gid, home, name) = match (entry, u.parse::<u32>()) {
        (Some(f), _) => (
            f[2].parse()
                .map_err(|_| InitError::setup(format!("bad uid in /etc/passwd for {u}")))?,
            f[3].parse()
                .map_err(|_| InitError::setup(format!("bad gid in /etc/passwd for {u}")))?,
            f[5].to_string(),
            Some(f[0].to_string()),
        ),
        (None, Ok(n)) => (n, 0, "/".to_string(), None),
        (None, Err(_)) => {
            return Err(InitError {
                code: 126,
                message: format!("unable to find user {u}: no matching entries in passwd file"),
            })
        }
    };
    let groups_tbl: Vec<Vec<&str>> = group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    if let Some(g) = g {
        gid = match groups_tbl.iter().find(|f| f[0] == g) {
            Some(f) => f[2]
                .parse()
                .map_err(|_| InitError::setup(format!("bad gid in /etc/group for {g}")))?,
            None => g.parse().map_err(|_| InitError {
                code: 126,
                message: format!("unable to find group {g}: no matching entries in group file"),
            })?,
        };
    }
    let mut groups = vec![gid];
    if let Some(name) = &name {
        for f in &groups_tbl {
            if f[3].split(',').any(|m| m == name) {
                if let Ok(n) = f[2].parse() {
                    if !groups.contains(&n) {
                        groups.push(n);
                    }
                }
            }
        }
    }
    Ok(Ident {
        uid,
        gid,
        groups,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
    const GROUP: &str = "root:x:0:\nwww-data:x:33:\nnogroup:x:65534:\nvideo:x:44:www-data,other\n";

    #[test]
    fn resolves_names_and_numbers() {
        assert_eq!(
            resolve("", PASSWD, GROUP).unwrap(),
            Ident {
                uid: 0,
                gid: 0,
                groups: vec![0],
                home: "/root".into()
            }
        );
        assert_eq!(
            resolve("www-data", PASSWD, GROUP).unwrap(),
            Ident {
                uid: 33,
                gid: 33,
                groups: vec![33, 44],
                home: "/var/www".into()
            }
        );
        assert_eq!(resolve("nobody:nogroup", PASSWD, GROUP).unwrap().gid, 65534);
        assert_eq!(
            resolve("1000:1000", PASSWD, GROUP).unwrap(),
            Ident {
                uid: 1000,
                gid: 1000,
                groups: vec![1000],
                home: "/".into()
            }
        );
        assert_eq!(resolve("33", PASSWD, GROUP).unwrap().home, "/var/www");
        let e = resolve("ghost", PASSWD, GROUP).unwrap_err();
        assert_eq!(e.code, 126);
        assert!(e.message.contains("unable to find user ghost"));
        assert!(resolve("root:nosuchgroup", PASSWD, GROUP).is_err());
    }
}
