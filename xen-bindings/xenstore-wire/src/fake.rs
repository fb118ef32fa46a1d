//! A small in-process xenstored for protocol tests: the documented wire protocol over a unix
//! socket, a node tree with permissions, transactions that fail with EAGAIN on conflict, and
//! watches. Every client is treated as dom0; permissions are stored, not enforced.
use crate::msg::{nul_strings, split_nul_strings, Msg, MsgType};
use crate::path::Perm;
use std::collections::BTreeMap;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Clone)]
struct Node {
    value: Vec<u8>,
    perms: Vec<Perm>,
}

type Tree = BTreeMap<String, Node>;

struct Watch {
    path: String,
    token: String,
    conn: Arc<Mutex<UnixStream>>,
}

struct State {
    tree: Tree,
    generation: u64,
    next_tx: u32,
    /// Transaction id → (its copy of the tree, generation at start).
    txs: BTreeMap<u32, (Tree, u64)>,
    watches: Vec<Watch>,
}

pub struct FakeXenstored {
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl FakeXenstored {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("socket");
        let listener = UnixListener::bind(&socket).unwrap();
        let mut tree = Tree::new();
        tree.insert(
            "/".into(),
            Node {
                value: Vec::new(),
                perms: vec![Perm::none(0)],
            },
        );
        let state = Arc::new(Mutex::new(State {
            tree,
            generation: 0,
            next_tx: 1,
            txs: BTreeMap::new(),
            watches: Vec::new(),
        }));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let state = state.clone();
                std::thread::spawn(move || serve(conn, state));
            }
        });
        FakeXenstored { socket, _dir: dir }
    }

    pub fn path(&self) -> &Path {
        &self.socket
    }
}

fn parent(path: &str) -> Option<String> {
    if path == "/" {
        return None;
    }
    let i = path.rfind('/')?;
    Some(if i == 0 {
        "/".into()
    } else {
        path[..i].to_string()
    })
}

/// Creates `path` and its missing parents, which inherit their parent's permissions.
fn create(tree: &mut Tree, path: &str) {
    if tree.contains_key(path) {
        return;
    }
    let p = parent(path).expect("not the root");
    create(tree, &p);
    let perms = tree[&p].perms.clone();
    tree.insert(
        path.to_string(),
        Node {
            value: Vec::new(),
            perms,
        },
    );
}

fn under(node: &str, path: &str) -> bool {
    node == path || path == "/" || node.starts_with(&format!("{path}/"))
}

fn serve(conn: UnixStream, state: Arc<Mutex<State>>) {
    let mut reader = conn.try_clone().unwrap();
    let writer = Arc::new(Mutex::new(conn));
    while let Ok(Some(req)) = Msg::read_from(&mut reader) {
        let mut st = state.lock().unwrap();
        let (reply, fired) = handle(&mut st, &req, &writer);
        let reply = match reply {
            Ok(payload) => Msg {
                kind: req.kind,
                req_id: req.req_id,
                tx_id: req.tx_id,
                payload,
            },
            Err(errno) => Msg {
                kind: MsgType::Error,
                req_id: req.req_id,
                tx_id: req.tx_id,
                payload: nul_strings(&[errno.as_bytes()]),
            },
        };
        reply.write_to(&mut *writer.lock().unwrap()).unwrap();
        // Like xenstored: watch events after the reply of the request that fired them.
        for changed in fired {
            for w in st.watches.iter().filter(|w| under(&changed, &w.path)) {
                let ev = Msg {
                    kind: MsgType::WatchEvent,
                    req_id: 0,
                    tx_id: 0,
                    payload: nul_strings(&[changed.as_bytes(), w.token.as_bytes()]),
                };
                let _ = ev.write_to(&mut *w.conn.lock().unwrap());
            }
        }
    }
}

type Outcome = (Result<Vec<u8>, &'static str>, Vec<String>);

fn handle(st: &mut State, req: &Msg, conn: &Arc<Mutex<UnixStream>>) -> Outcome {
    let args = |n: usize| -> Option<Vec<String>> {
        let end = req
            .payload
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == 0)
            .nth(n - 1)?
            .0;
        split_nul_strings(&req.payload[..=end]).ok()
    };
    let ok = || Ok(b"OK\0".to_vec());
    let tx = req.tx_id;
    if tx != 0 && !st.txs.contains_key(&tx) {
        return (Err("ENOENT"), vec![]);
    }
    let State { tree, txs, .. } = st;
    let tree: &mut Tree = if tx == 0 {
        tree
    } else {
        &mut txs.get_mut(&tx).unwrap().0
    };
    let mut changed = Vec::new();
    let r = match req.kind {
        MsgType::Read => match args(1) {
            Some(a) => tree.get(&a[0]).map(|n| n.value.clone()).ok_or("ENOENT"),
            None => Err("EINVAL"),
        },
        MsgType::Write => match args(1) {
            Some(a) => {
                let value = req.payload[a[0].len() + 1..].to_vec();
                create(tree, &a[0]);
                tree.get_mut(&a[0]).unwrap().value = value;
                changed.push(a[0].clone());
                ok()
            }
            None => Err("EINVAL"),
        },
        MsgType::Mkdir => {
            let a = args(1).unwrap();
            create(tree, &a[0]);
            changed.push(a[0].clone());
            ok()
        }
        MsgType::Rm => {
            let a = args(1).unwrap();
            if !tree.contains_key(&a[0]) {
                Err("ENOENT")
            } else {
                tree.retain(|k, _| !under(k, &a[0]) || (a[0] == "/" && k == "/"));
                changed.push(a[0].clone());
                ok()
            }
        }
        MsgType::Directory => {
            let a = args(1).unwrap();
            if !tree.contains_key(&a[0]) {
                Err("ENOENT")
            } else {
                let children: Vec<&str> = tree
                    .keys()
                    .filter(|k| parent(k).as_deref() == Some(a[0].as_str()))
                    .map(|k| k.rsplit('/').next().unwrap())
                    .collect();
                Ok(children.iter().flat_map(|c| c.bytes().chain([0])).collect())
            }
        }
        MsgType::GetPerms => {
            let a = args(1).unwrap();
            match tree.get(&a[0]) {
                Some(n) => Ok(n
                    .perms
                    .iter()
                    .flat_map(|p| p.to_string().into_bytes().into_iter().chain([0]))
                    .collect()),
                None => Err("ENOENT"),
            }
        }
        MsgType::SetPerms => {
            let all = split_nul_strings(&req.payload).unwrap_or_default();
            let perms: Option<Vec<Perm>> = all.iter().skip(1).map(|p| Perm::parse(p)).collect();
            match (all.first().and_then(|p| tree.get_mut(p)), perms) {
                (Some(node), Some(perms)) if !perms.is_empty() => {
                    node.perms = perms;
                    changed.push(all[0].clone());
                    ok()
                }
                (None, _) => Err("ENOENT"),
                _ => Err("EINVAL"),
            }
        }
        MsgType::GetDomainPath => {
            let a = args(1).unwrap();
            Ok(nul_strings(&[format!("/local/domain/{}", a[0]).as_bytes()]))
        }
        MsgType::Watch => {
            let a = args(2).unwrap();
            st.watches.push(Watch {
                path: a[0].clone(),
                token: a[1].clone(),
                conn: conn.clone(),
            });
            changed.push(a[0].clone());
            return (ok(), changed.into_iter().map(|_| a[0].clone()).collect());
        }
        MsgType::Unwatch => {
            let a = args(2).unwrap();
            st.watches
                .retain(|w| !(w.path == a[0] && w.token == a[1] && Arc::ptr_eq(&w.conn, conn)));
            return (ok(), vec![]);
        }
        MsgType::TransactionStart => {
            let id = st.next_tx;
            st.next_tx += 1;
            st.txs.insert(id, (st.tree.clone(), st.generation));
            return (Ok(nul_strings(&[id.to_string().as_bytes()])), vec![]);
        }
        MsgType::TransactionEnd => {
            let (copy, started) = st.txs.remove(&tx).unwrap();
            if req.payload != b"T\0" {
                return (ok(), vec![]);
            }
            if started != st.generation {
                return (Err("EAGAIN"), vec![]);
            }
            let fired: Vec<String> = copy
                .iter()
                .filter(|(k, n)| st.tree.get(*k).map(|o| o.value != n.value) != Some(false))
                .map(|(k, _)| k.clone())
                .collect();
            st.tree = copy;
            st.generation += 1;
            return (ok(), fired);
        }
        _ => Err("ENOSYS"),
    };
    if r.is_ok() && !changed.is_empty() && tx == 0 {
        st.generation += 1;
    }
    // Changes inside a transaction fire at commit.
    (r, if tx == 0 { changed } else { vec![] })
}
