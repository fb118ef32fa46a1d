//! The Task service (containerd's `containerd.task.v2.Task` over ttrpc) for one container:
//! its init process is hx_engine::oci's keeper (the VM's owner; its exit code is the
//! workload's), each exec an exec keeper. Both are the shim's children, reaped by pid on a
//! thread of their own, which records the exit and publishes TaskExit.
use crate::stdio::{self, Paths, StdinFeed};
use containerd_shim::api::*;
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::MessageDyn;
use containerd_shim::protos::topics;
use containerd_shim::protos::ttrpc::{self, Code, TtrpcContext};
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::ExitSignal;
use hx_engine::oci::{self, console::ConsoleTo, record};
use pv_init::mux::ExecRequest;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

type TtrpcResult<T> = ttrpc::Result<T>;

fn status(code: Code, msg: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, msg.into()))
}

fn failed(e: anyhow::Error) -> ttrpc::Error {
    status(
        Code::UNKNOWN,
        hx_engine::sanitize::line(&format!("{e:#}")).to_string(),
    )
}

/// One process's life as containerd sees it: its pid once started, its exit, its stdio.
#[derive(Default)]
struct Proc {
    pid: Mutex<u32>,
    /// Start returned: until then containerd sees CREATED (the VM may still be booting, and
    /// a signal then would only reach the keeper).
    started: std::sync::atomic::AtomicBool,
    exit: Mutex<Option<(u32, Timestamp)>>,
    exited: Condvar,
    console: Mutex<Option<File>>,
    stdin: Mutex<StdinFeed>,
}

impl Proc {
    fn pid(&self) -> u32 {
        *self.pid.lock().unwrap()
    }

    fn exit(&self) -> Option<(u32, Timestamp)> {
        self.exit.lock().unwrap().clone()
    }

    fn set_exit(&self, code: u32) -> Timestamp {
        let at = Timestamp::now();
        *self.exit.lock().unwrap() = Some((code, at.clone()));
        self.exited.notify_all();
        at
    }

    fn wait(&self, limit: Option<Duration>) -> Option<(u32, Timestamp)> {
        let mut g = self.exit.lock().unwrap();
        match limit {
            None => {
                while g.is_none() {
                    g = self.exited.wait(g).unwrap();
                }
            }
            Some(l) => {
                g = self
                    .exited
                    .wait_timeout_while(g, l, |e| e.is_none())
                    .unwrap()
                    .0
            }
        }
        g.clone()
    }
}

struct Exec {
    request: ExecRequest,
    paths: Paths,
    proc: Arc<Proc>,
}

struct Init {
    id: String,
    bundle: PathBuf,
    paths: Paths,
    proc: Arc<Proc>,
    execs: HashMap<String, Exec>,
}

pub struct Service {
    root: PathBuf,
    namespace: String,
    exe: PathBuf,
    publisher: Arc<RemotePublisher>,
    exit: Arc<ExitSignal>,
    init: Mutex<Option<Init>>,
}

impl Service {
    pub fn new(
        root: PathBuf,
        namespace: String,
        publisher: RemotePublisher,
        exit: Arc<ExitSignal>,
    ) -> Service {
        Service {
            root,
            namespace,
            exe: std::env::current_exe().unwrap_or_else(|_| "containerd-shim-hx-v2".into()),
            publisher: Arc::new(publisher),
            exit,
            init: Mutex::new(None),
        }
    }

    /// The shim binary as the engine's helper (`--root R`; oci adds `__keeper ID` etc.).
    fn helper(&self) -> Command {
        let mut c = Command::new(&self.exe);
        c.arg("--root").arg(&self.root);
        c
    }

    fn publish(&self, topic: &str, event: Box<dyn MessageDyn>) {
        publish(&self.publisher, &self.namespace, topic, event);
    }

    /// The init (`exec_id` empty) or an exec of container `id`.
    fn proc(&self, id: &str, exec_id: &str) -> TtrpcResult<Arc<Proc>> {
        let g = self.init.lock().unwrap();
        let init = checked(&g, id)?;
        if exec_id.is_empty() {
            return Ok(init.proc.clone());
        }
        match init.execs.get(exec_id) {
            Some(e) => Ok(e.proc.clone()),
            None => Err(status(Code::NOT_FOUND, format!("exec {exec_id} not found"))),
        }
    }

    /// Runs `f` (engine work, on this ttrpc worker thread); its error as containerd sees it.
    fn engine_call<T>(&self, f: impl FnOnce() -> anyhow::Result<T>) -> TtrpcResult<T> {
        f().map_err(failed)
    }
}

fn checked<'a>(g: &'a Option<Init>, id: &str) -> TtrpcResult<&'a Init> {
    match g.as_ref() {
        Some(i) if i.id == id => Ok(i),
        _ => Err(status(Code::NOT_FOUND, format!("container {id} not found"))),
    }
}

fn publish(p: &RemotePublisher, namespace: &str, topic: &str, event: Box<dyn MessageDyn>) {
    let ctx = ttrpc::context::with_timeout(5_000_000_000);
    if let Err(e) = p.publish(ctx, topic, namespace, event) {
        tracing::warn!("publishing {topic}: {e}");
    }
}

/// An exit status as containerd reports it: the code, or 128+N for a signal.
fn exit_code(st: nix::sys::wait::WaitStatus) -> Option<u32> {
    use nix::sys::wait::WaitStatus;
    match st {
        WaitStatus::Exited(_, c) => Some(c as u32),
        WaitStatus::Signaled(_, s, _) => Some(128 + s as u32),
        _ => None,
    }
}

impl Service {
    /// Reaps the keeper (our child) and publishes its exit, after the terminal's output
    /// is drained. A keeper some other wait reaped first (the engine's liveness checks reap
    /// zombie children) gives the exit code the engine recorded.
    fn watch_init(
        &self,
        id: String,
        keeper: i32,
        proc: Arc<Proc>,
        drained: Option<std::sync::mpsc::Receiver<()>>,
    ) {
        let publisher = self.publisher.clone();
        let namespace = self.namespace.clone();
        let root = self.root.clone();
        std::thread::spawn(move || {
            let pid = nix::unistd::Pid::from_raw(keeper);
            let code = loop {
                match nix::sys::wait::waitpid(pid, None) {
                    Ok(st) => match exit_code(st) {
                        Some(c) => break c,
                        None => continue,
                    },
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => break recorded_exit(&root, &id).unwrap_or(255),
                }
            };
            if let Some(d) = drained {
                let _ = d.recv_timeout(Duration::from_secs(2));
            }
            // CRI marks the container OOMKilled on this event, before its exit.
            if recorded_oom(&root, &id) {
                publish(
                    &publisher,
                    &namespace,
                    topics::TASK_OOM_EVENT_TOPIC,
                    Box::new(TaskOOM {
                        container_id: id.clone(),
                        ..Default::default()
                    }),
                );
            }
            let at = proc.set_exit(code);
            publish(
                &publisher,
                &namespace,
                topics::TASK_EXIT_EVENT_TOPIC,
                Box::new(TaskExit {
                    container_id: id.clone(),
                    id,
                    pid: keeper as u32,
                    exit_status: code,
                    exited_at: Some(at).into(),
                    ..Default::default()
                }),
            );
        });
    }
}

/// Whether the engine recorded the container as ended by the OOM killer (a pod member at its
/// own memory limit).
fn recorded_oom(root: &Path, id: &str) -> bool {
    let Some(engine_id) = record::load(root, id).ok().and_then(|r| r.engine_id) else {
        return false;
    };
    hx_engine::container::load(root, &engine_id).is_ok_and(|c| c.oom_killed)
}

fn recorded_exit(root: &Path, id: &str) -> Option<u32> {
    let rec = record::load(root, id).ok()?;
    let c = hx_engine::container::load(root, rec.engine_id.as_deref()?).ok()?;
    c.exit_code.map(|c| c as u32)
}

fn paths(stdin: &str, stdout: &str, stderr: &str, terminal: bool) -> Paths {
    Paths {
        stdin: stdin.into(),
        stdout: stdout.into(),
        stderr: stderr.into(),
        terminal,
    }
}

impl containerd_shim::Task for Service {
    fn create(
        &self,
        _ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> TtrpcResult<CreateTaskResponse> {
        let mut g = self.init.lock().unwrap();
        if g.is_some() {
            return Err(status(
                Code::ALREADY_EXISTS,
                "this shim already has its container",
            ));
        }
        if !req.checkpoint.is_empty() {
            return Err(status(Code::UNIMPLEMENTED, "hx cannot restore checkpoints"));
        }
        let bundle = PathBuf::from(&req.bundle);
        let p = paths(&req.stdin, &req.stdout, &req.stderr, req.terminal);
        if !req.rootfs.is_empty() {
            self.engine_call(|| crate::rootfs::mount(&bundle, &req.rootfs))?;
        }
        let proc = Arc::new(Proc::default());
        let made = self.engine_call(|| {
            let mut keeper = self.helper();
            keeper.arg("__keeper").arg(&req.id);
            if !p.terminal {
                let (i, o, e, feed) = stdio::plain(&p)?;
                keeper.stdin(i).stdout(o).stderr(e);
                *proc.stdin.lock().unwrap() = feed;
            }
            oci::create(oci::CreateOptions {
                root: &self.root,
                id: &req.id,
                bundle: &bundle,
                pid_file: None,
                console: Some(ConsoleTo::Caller),
                keeper,
                rootfs_chain: oci::rootfs_cache::Chain::of_mounts(
                    &req.rootfs
                        .iter()
                        .map(|m| (m.type_.clone(), m.source.clone(), m.options.clone()))
                        .collect::<Vec<_>>(),
                ),
                // One shim serves a whole pod from one process: its groups are not entered.
                host_group: false,
            })
        });
        let made = match made {
            Ok(m) => m,
            Err(e) => {
                proc.stdin.lock().unwrap().close();
                crate::rootfs::unmount(&bundle);
                return Err(e);
            }
        };
        let drained = match made.console {
            Some(master) => {
                let (feed, done) = self.engine_call(|| {
                    let resize = File::from(master.try_clone()?);
                    *proc.console.lock().unwrap() = Some(resize);
                    stdio::terminal(&p, master)
                })?;
                *proc.stdin.lock().unwrap() = feed;
                Some(done)
            }
            None => None,
        };
        let pid = made.keeper.pid as u32;
        *proc.pid.lock().unwrap() = pid;
        self.watch_init(req.id.clone(), made.keeper.pid, proc.clone(), drained);
        *g = Some(Init {
            id: req.id.clone(),
            bundle,
            paths: p.clone(),
            proc,
            execs: HashMap::new(),
        });
        drop(g);
        self.publish(
            topics::TASK_CREATE_EVENT_TOPIC,
            Box::new(TaskCreate {
                container_id: req.id.clone(),
                bundle: req.bundle.clone(),
                rootfs: req.rootfs.clone(),
                io: Some(TaskIO {
                    stdin: p.stdin,
                    stdout: p.stdout,
                    stderr: p.stderr,
                    terminal: p.terminal,
                    ..Default::default()
                })
                .into(),
                pid,
                ..Default::default()
            }),
        );
        Ok(CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
        if req.exec_id.is_empty() {
            let proc = self.proc(&req.id, "")?;
            let pid = proc.pid();
            self.engine_call(|| oci::start(&self.root, &req.id))?;
            proc.started
                .store(true, std::sync::atomic::Ordering::SeqCst);
            self.publish(
                topics::TASK_START_EVENT_TOPIC,
                Box::new(TaskStart {
                    container_id: req.id.clone(),
                    pid,
                    ..Default::default()
                }),
            );
            return Ok(StartResponse {
                pid,
                ..Default::default()
            });
        }
        let (request, p, proc) = {
            let g = self.init.lock().unwrap();
            let init = checked(&g, &req.id)?;
            match init.execs.get(&req.exec_id) {
                Some(e) if e.proc.pid() == 0 => {
                    (e.request.clone(), e.paths.clone(), e.proc.clone())
                }
                Some(_) => return Err(status(Code::FAILED_PRECONDITION, "exec already started")),
                None => {
                    return Err(status(
                        Code::NOT_FOUND,
                        format!("exec {} not found", req.exec_id),
                    ))
                }
            }
        };
        let (mut child, drained) = self.engine_call(|| {
            let mut keeper = self.helper();
            if !p.terminal {
                let (i, o, e, feed) = stdio::plain(&p)?;
                keeper.stdin(i).stdout(o).stderr(e);
                *proc.stdin.lock().unwrap() = feed;
            }
            let console = p.terminal.then_some(ConsoleTo::Caller);
            let (child, master) =
                oci::exec::start_process(&self.root, &req.id, &request, keeper, console)
                    .inspect_err(|_| proc.stdin.lock().unwrap().close())?;
            let drained = match master {
                Some(m) => {
                    *proc.console.lock().unwrap() = Some(File::from(m.try_clone()?));
                    let (feed, done) = stdio::terminal(&p, m)?;
                    *proc.stdin.lock().unwrap() = feed;
                    Some(done)
                }
                None => None,
            };
            Ok((child, drained))
        })?;
        let pid = child.id();
        *proc.pid.lock().unwrap() = pid;
        {
            let (publisher, namespace) = (self.publisher.clone(), self.namespace.clone());
            let (id, exec_id, proc) = (req.id.clone(), req.exec_id.clone(), proc.clone());
            std::thread::spawn(move || {
                use std::os::unix::process::ExitStatusExt;
                let code = match child.wait() {
                    Ok(st) => st
                        .code()
                        .map_or_else(|| 128 + st.signal().unwrap_or(0) as u32, |c| c as u32),
                    Err(_) => 255,
                };
                if let Some(d) = drained {
                    let _ = d.recv_timeout(Duration::from_secs(2));
                }
                let at = proc.set_exit(code);
                publish(
                    &publisher,
                    &namespace,
                    topics::TASK_EXIT_EVENT_TOPIC,
                    Box::new(TaskExit {
                        container_id: id,
                        id: exec_id,
                        pid,
                        exit_status: code,
                        exited_at: Some(at).into(),
                        ..Default::default()
                    }),
                );
            });
        }
        self.publish(
            topics::TASK_EXEC_STARTED_EVENT_TOPIC,
            Box::new(TaskExecStarted {
                container_id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                pid,
                ..Default::default()
            }),
        );
        Ok(StartResponse {
            pid,
            ..Default::default()
        })
    }

    fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        let g = self.init.lock().unwrap();
        let init = checked(&g, &req.id)?;
        let (proc, p) = if req.exec_id.is_empty() {
            (init.proc.clone(), init.paths.clone())
        } else {
            match init.execs.get(&req.exec_id) {
                Some(e) => (e.proc.clone(), e.paths.clone()),
                None => {
                    return Err(status(
                        Code::NOT_FOUND,
                        format!("exec {} not found", req.exec_id),
                    ))
                }
            }
        };
        let exit = proc.exit();
        let st = match &exit {
            Some(_) => Status::STOPPED,
            None if !req.exec_id.is_empty() => {
                if proc.pid() == 0 {
                    Status::CREATED
                } else {
                    Status::RUNNING
                }
            }
            None if !proc.started.load(std::sync::atomic::Ordering::SeqCst) => Status::CREATED,
            None => match record::load(&self.root, &req.id) {
                Ok(rec) => match oci::status(&self.root, &rec) {
                    record::Status::Creating | record::Status::Created => Status::CREATED,
                    record::Status::Running => Status::RUNNING,
                    record::Status::Paused => Status::PAUSED,
                    record::Status::Stopped => Status::STOPPED,
                },
                Err(_) => Status::UNKNOWN,
            },
        };
        let (exit_status, exited_at) = exit.map_or((0, None), |(c, t)| (c, Some(t)));
        Ok(StateResponse {
            id: req.id.clone(),
            bundle: init.bundle.to_string_lossy().into_owned(),
            pid: proc.pid(),
            status: st.into(),
            stdin: p.stdin,
            stdout: p.stdout,
            stderr: p.stderr,
            terminal: p.terminal,
            exit_status,
            exited_at: exited_at.into(),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        })
    }

    fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        let proc = self.proc(&req.id, &req.exec_id)?;
        let (exit_status, at) = proc.wait(None).expect("waited");
        Ok(WaitResponse {
            exit_status,
            exited_at: Some(at).into(),
            ..Default::default()
        })
    }

    fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        let proc = self.proc(&req.id, &req.exec_id)?;
        if proc.exit().is_some() {
            return Err(status(Code::NOT_FOUND, "process already finished"));
        }
        let signal = req.signal as i32;
        if req.exec_id.is_empty() {
            // `all`: every process of the container is in its one VM, which the signal
            // reaches through the workload (KILL ends the VM).
            self.engine_call(|| oci::kill(&self.root, &req.id, signal))?;
        } else {
            let pid = proc.pid();
            if pid == 0 {
                return Err(status(Code::FAILED_PRECONDITION, "exec not started"));
            }
            // The exec keeper forwards TERM, INT and HUP to the process; KILL ends the session.
            // SAFETY: kill(2) on our own unreaped child (its waiter has not recorded an exit).
            unsafe { libc::kill(pid as i32, signal) };
        }
        Ok(Empty::new())
    }

    fn delete(&self, _ctx: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        if !req.exec_id.is_empty() {
            let mut g = self.init.lock().unwrap();
            let init = g
                .as_mut()
                .filter(|i| i.id == req.id)
                .ok_or_else(|| status(Code::NOT_FOUND, "container not found"))?;
            let e = match init.execs.get(&req.exec_id) {
                Some(e) if e.proc.pid() != 0 && e.proc.exit().is_none() => {
                    return Err(status(Code::FAILED_PRECONDITION, "exec is still running"))
                }
                Some(_) => init.execs.remove(&req.exec_id).expect("present"),
                None => {
                    return Err(status(
                        Code::NOT_FOUND,
                        format!("exec {} not found", req.exec_id),
                    ))
                }
            };
            let (exit_status, at) = e.proc.exit().unwrap_or((0, Timestamp::now()));
            return Ok(DeleteResponse {
                pid: e.proc.pid(),
                exit_status,
                exited_at: Some(at).into(),
                ..Default::default()
            });
        }
        let proc = self.proc(&req.id, "")?;
        if proc.exit().is_none() {
            let rec = record::load(&self.root, &req.id).map_err(failed)?;
            if matches!(
                oci::status(&self.root, &rec),
                record::Status::Running | record::Status::Paused
            ) {
                return Err(status(
                    Code::FAILED_PRECONDITION,
                    format!("container {} is running", req.id),
                ));
            }
        }
        // A created, never started container: its keeper goes with the delete.
        self.engine_call(|| oci::delete(&self.root, &req.id, true))?;
        let (exit_status, at) = proc
            .wait(Some(Duration::from_secs(10)))
            .unwrap_or((128 + libc::SIGKILL as u32, Timestamp::now()));
        let bundle = {
            let mut g = self.init.lock().unwrap();
            let init = g.take().expect("checked");
            for e in init.execs.values() {
                e.proc.stdin.lock().unwrap().close();
            }
            init.proc.stdin.lock().unwrap().close();
            init.bundle
        };
        crate::rootfs::unmount(&bundle);
        let pid = proc.pid();
        self.publish(
            topics::TASK_DELETE_EVENT_TOPIC,
            Box::new(TaskDelete {
                container_id: req.id.clone(),
                pid,
                exit_status,
                exited_at: Some(at.clone()).into(),
                id: req.id.clone(),
                ..Default::default()
            }),
        );
        Ok(DeleteResponse {
            pid,
            exit_status,
            exited_at: Some(at).into(),
            ..Default::default()
        })
    }

    fn exec(&self, _ctx: &TtrpcContext, req: ExecProcessRequest) -> TtrpcResult<Empty> {
        let mut g = self.init.lock().unwrap();
        let init = g
            .as_mut()
            .filter(|i| i.id == req.id)
            .ok_or_else(|| status(Code::NOT_FOUND, "container not found"))?;
        if init.proc.exit().is_some() {
            return Err(status(
                Code::FAILED_PRECONDITION,
                "container is not running",
            ));
        }
        if init.execs.contains_key(&req.exec_id) {
            return Err(status(
                Code::ALREADY_EXISTS,
                format!("exec {} exists", req.exec_id),
            ));
        }
        let spec = req
            .spec
            .as_ref()
            .map(|a| a.value.as_slice())
            .unwrap_or_default();
        let request = if spec.len() as u64 > oci::exec::PROCESS_MAX {
            Err(anyhow::anyhow!(
                "its process spec is larger than {} bytes",
                oci::exec::PROCESS_MAX
            ))
        } else {
            oci::exec::parse_process(spec)
        };
        let request = request.map_err(|e| {
            let why = format!("exec {}: {e:#}", req.exec_id);
            status(
                Code::INVALID_ARGUMENT,
                hx_engine::sanitize::line(&why).to_string(),
            )
        })?;
        init.execs.insert(
            req.exec_id.clone(),
            Exec {
                request,
                paths: paths(&req.stdin, &req.stdout, &req.stderr, req.terminal),
                proc: Arc::new(Proc::default()),
            },
        );
        drop(g);
        self.publish(
            topics::TASK_EXEC_ADDED_EVENT_TOPIC,
            Box::new(TaskExecAdded {
                container_id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                ..Default::default()
            }),
        );
        Ok(Empty::new())
    }

    fn resize_pty(&self, _ctx: &TtrpcContext, req: ResizePtyRequest) -> TtrpcResult<Empty> {
        let proc = self.proc(&req.id, &req.exec_id)?;
        let console = proc.console.lock().unwrap();
        match console.as_ref() {
            Some(m) => self.engine_call(|| stdio::resize(m, req.width, req.height))?,
            None => {
                return Err(status(
                    Code::FAILED_PRECONDITION,
                    "the process has no terminal",
                ))
            }
        }
        Ok(Empty::new())
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: CloseIORequest) -> TtrpcResult<Empty> {
        let proc = self.proc(&req.id, &req.exec_id)?;
        if req.stdin {
            proc.stdin.lock().unwrap().close();
        }
        Ok(Empty::new())
    }

    fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> TtrpcResult<PidsResponse> {
        let execs: Vec<u32> = {
            let g = self.init.lock().unwrap();
            let init = checked(&g, &req.id)?;
            init.execs
                .values()
                .map(|e| e.proc.pid())
                .filter(|&p| p != 0)
                .collect()
        };
        let mut pids = self.engine_call(|| oci::pids(&self.root, &req.id))?;
        pids.extend(execs.iter().map(|&p| p as i32));
        Ok(PidsResponse {
            processes: pids
                .into_iter()
                .map(|pid| containerd_shim::protos::types::task::ProcessInfo {
                    pid: pid as u32,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> TtrpcResult<StatsResponse> {
        self.proc(&req.id, "")?;
        let answer = self.engine_call(|| oci::stats(&self.root, &req.id))?;
        let any = crate::metrics::to_any(&crate::metrics::from_guest(&answer))
            .map_err(|e| status(Code::INTERNAL, e.to_string()))?;
        Ok(StatsResponse {
            stats: containerd_shim::protos::protobuf::MessageField::some(any),
            ..Default::default()
        })
    }

    fn pause(&self, _ctx: &TtrpcContext, req: PauseRequest) -> TtrpcResult<Empty> {
        self.proc(&req.id, "")?;
        self.engine_call(|| oci::pause(&self.root, &req.id, true))?;
        self.publish(
            topics::TASK_PAUSED_EVENT_TOPIC,
            Box::new(TaskPaused {
                container_id: req.id.clone(),
                ..Default::default()
            }),
        );
        Ok(Empty::new())
    }

    fn resume(&self, _ctx: &TtrpcContext, req: ResumeRequest) -> TtrpcResult<Empty> {
        self.proc(&req.id, "")?;
        self.engine_call(|| oci::pause(&self.root, &req.id, false))?;
        self.publish(
            topics::TASK_RESUMED_EVENT_TOPIC,
            Box::new(TaskResumed {
                container_id: req.id.clone(),
                ..Default::default()
            }),
        );
        Ok(Empty::new())
    }

    /// containerd's Update (CRI UpdateContainerResources): the resources arrive as an Any
    /// holding OCI `linux.resources` JSON (typeurl's encoding of the Go struct).
    fn update(&self, _ctx: &TtrpcContext, req: UpdateTaskRequest) -> TtrpcResult<Empty> {
        self.proc(&req.id, "")?;
        let Some(any) = req.resources.as_ref() else {
            return Err(status(Code::INVALID_ARGUMENT, "update: no resources"));
        };
        let l = oci::parse_resources(&any.value)
            .map_err(|e| status(Code::INVALID_ARGUMENT, hx_engine::one_line(&e)))?;
        self.engine_call(|| oci::update(&self.root, &req.id, &l))?;
        Ok(Empty::new())
    }

    fn connect(&self, _ctx: &TtrpcContext, _req: ConnectRequest) -> TtrpcResult<ConnectResponse> {
        let task_pid = self
            .init
            .lock()
            .unwrap()
            .as_ref()
            .map_or(0, |i| i.proc.pid());
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            ..Default::default()
        })
    }

    fn shutdown(&self, _ctx: &TtrpcContext, req: ShutdownRequest) -> TtrpcResult<Empty> {
        if self.init.lock().unwrap().is_some() && !req.now {
            // containerd asks after every delete; the shim lives while its container does.
            return Ok(Empty::new());
        }
        self.exit.signal();
        Ok(Empty::new())
    }
}
