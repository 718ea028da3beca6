//! The server under test: the `switchboard` binary started as `serve` in a
//! separate process, on a free loopback port, with a fresh database in its
//! own temporary directory. Measured from outside through `/proc`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};

use super::http::HttpConn;

/// How long a server may take to answer `/readyz`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A directory under the system temp dir, removed when dropped.
pub struct TempRoot {
    path: PathBuf,
    keep: bool,
}

impl TempRoot {
    /// With `keep`, the directory stays (and its path is printed).
    pub fn create(keep: bool) -> anyhow::Result<Self> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let path =
            std::env::temp_dir().join(format!("switchboard-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        if keep {
            eprintln!(
                "keeping the databases and server logs in {}",
                path.display()
            );
        }
        Ok(TempRoot { path, keep })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The server binary: `explicit`, or the `switchboard` that cargo built for
/// this bench with the same profile (`cargo bench` builds the package's
/// binaries with a bench and names them in `CARGO_BIN_EXE_*`).
pub fn server_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match explicit {
        Some(path) => path.to_owned(),
        None => PathBuf::from(env!("CARGO_BIN_EXE_switchboard")),
    };
    if !path.is_file() {
        bail!("{}: no such file", path.display());
    }
    Ok(path)
}

/// A free port: bind port 0, read it, let it go.
fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
    dir: PathBuf,
    /// Leave the database and log behind when stopped.
    pub keep_dir: bool,
}

impl ServerProcess {
    /// Starts `<server_bin> serve` in `root/<label>` and waits for `/readyz`.
    /// `log_filter` is the server's `RUST_LOG`. Its database is a fresh
    /// SQLite file there, or `database` (a PostgreSQL URL shared by several
    /// servers).
    pub async fn start(
        server_bin: &Path,
        root: &Path,
        label: &str,
        args: &crate::BenchArgs,
        database: Option<&str>,
    ) -> anyhow::Result<Self> {
        Self::start_with(server_bin, root, label, args, database, &[]).await
    }

    /// The same, with `extra` arguments after the bench's own (credential
    /// sources, for the `auth` scenario).
    pub async fn start_with(
        server_bin: &Path,
        root: &Path,
        label: &str,
        args: &crate::BenchArgs,
        database: Option<&str>,
        extra: &[std::ffi::OsString],
    ) -> anyhow::Result<Self> {
        let dir = root.join(label);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let port = free_port().context("finding a free port")?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let log = File::create(dir.join("server.log"))?;
        let mut command = Command::new(server_bin);
        command
            .arg("serve")
            .arg("--bind")
            .arg(addr.to_string())
            .arg("--database")
            .arg(match database {
                Some(url) => std::ffi::OsString::from(url),
                None => dir.join("bench.db").into_os_string(),
            })
            // The benchmark measures capacity, not the per-agent write
            // policy: every publisher here is the same (anonymous) agent.
            .arg("--rate-limit")
            .arg("0")
            .env("RUST_LOG", &args.server_log)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // Only when asked, so that binaries older than the setting still run.
        if args.sqlite_synchronous != "normal" {
            command
                .arg("--sqlite-synchronous")
                .arg(&args.sqlite_synchronous);
        }
        command.args(extra);
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            // If the bench dies without cleaning up, the server goes with it.
            // SAFETY: prctl is async-signal-safe and touches no Rust state.
            unsafe {
                command.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        // Settings from the environment (tokens, limits) would make runs
        // differ from machine to machine: the server gets only the defaults.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SWITCHBOARD_") {
                command.env_remove(name);
            }
        }
        let child = command.spawn().context("starting the server")?;
        let mut server = ServerProcess {
            child,
            addr,
            dir,
            keep_dir: false,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the server exited ({status}) before it was ready:\n{}",
                    self.log_tail()
                );
            }
            if let Ok(Ok(mut conn)) =
                tokio::time::timeout(Duration::from_secs(1), HttpConn::connect(self.addr)).await
            {
                if let Ok(Ok(response)) =
                    tokio::time::timeout(Duration::from_secs(2), conn.send("GET", "/readyz", None))
                        .await
                {
                    if response.is_success() {
                        return Ok(());
                    }
                }
            }
            if started.elapsed() > READY_TIMEOUT {
                bail!(
                    "the server was not ready after {READY_TIMEOUT:?}:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails when the server has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("the server exited ({status}):\n{}", self.log_tail());
        }
        Ok(())
    }

    /// Resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        rss_kib(self.pid())
    }

    /// CPU time (user + system) the server has used so far, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        process_cpu_seconds(self.pid())
    }

    /// CPU seconds per server thread, by thread name (threads of the same
    /// name summed).
    pub fn thread_cpu(&self) -> BTreeMap<String, f64> {
        let mut threads = BTreeMap::new();
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) else {
            return threads;
        };
        for task in tasks.flatten() {
            let path = task.path();
            let name = std::fs::read_to_string(path.join("comm"))
                .map(|n| n.trim().to_owned())
                .unwrap_or_default();
            if let Some(cpu) = cpu_seconds(&path.join("stat").to_string_lossy()) {
                *threads.entry(name).or_insert(0.0) += cpu;
            }
        }
        threads
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Lines the server logged (warnings and errors with the default filter).
    pub fn log_lines(&self) -> usize {
        std::fs::read_to_string(self.dir.join("server.log"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    /// Kills the server and deletes its directory.
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `VmRSS` of a process, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/PID/status")
}

/// utime + stime of `/proc/.../stat`, in seconds.
pub fn cpu_seconds(stat_path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    // The command name may hold spaces: the fields start after its `)`.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `rest` starts at field 3.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    Some((utime + stime) / ticks)
}

/// CPU time the whole machine has been busy (all cores, all processes and
/// the kernel), in seconds, from the first line of `/proc/stat`.
pub fn machine_busy_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(line) = stat.lines().next() else {
        return 0.0;
    };
    let fields: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is in user).
    let busy: f64 = fields
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    busy / if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// CPU use over a measurement, in cores: the server's, the bench's, and the
/// rest of the machine's (other processes and the kernel's own work).
pub struct CpuMeter {
    started: Instant,
    machine: f64,
    server: f64,
    bench: f64,
}

#[derive(Debug, Clone, Copy)]
pub struct CpuUse {
    pub server: f64,
    pub bench: f64,
    pub other: f64,
}

impl CpuMeter {
    /// Measures from now; "server" is the sum over `servers`.
    pub fn start(servers: &[ServerProcess]) -> Self {
        CpuMeter {
            started: Instant::now(),
            machine: machine_busy_seconds(),
            server: servers.iter().map(ServerProcess::cpu_seconds).sum(),
            bench: own_cpu_seconds(),
        }
    }

    pub fn read(&self, servers: &[ServerProcess]) -> CpuUse {
        let wall = self.started.elapsed().as_secs_f64().max(1e-6);
        let used: f64 = servers.iter().map(ServerProcess::cpu_seconds).sum();
        let server_cores = (used - self.server) / wall;
        let bench = (own_cpu_seconds() - self.bench) / wall;
        let machine = (machine_busy_seconds() - self.machine) / wall;
        CpuUse {
            server: server_cores,
            bench,
            other: (machine - server_cores - bench).max(0.0),
        }
    }
}

/// Waits (at most `limit`) until the machine has been nearly idle for a
/// second: the bench shares its cores with whatever else runs. Returns the
/// cores busy in the last half second.
pub async fn wait_for_quiet(limit: Duration) -> f64 {
    const WINDOW: Duration = Duration::from_millis(500);
    let deadline = Instant::now() + limit;
    let mut quiet_windows = 0;
    loop {
        let before = machine_busy_seconds();
        tokio::time::sleep(WINDOW).await;
        let busy = (machine_busy_seconds() - before) / WINDOW.as_secs_f64();
        quiet_windows = if busy <= 0.2 { quiet_windows + 1 } else { 0 };
        if quiet_windows >= 2 || Instant::now() >= deadline {
            return busy;
        }
    }
}

/// CPU time (user + system) process `pid` has used so far, in seconds (0
/// once it is gone).
pub fn process_cpu_seconds(pid: u32) -> f64 {
    cpu_seconds(&format!("/proc/{pid}/stat")).unwrap_or(0.0)
}

/// This process's CPU time, in seconds.
pub fn own_cpu_seconds() -> f64 {
    cpu_seconds("/proc/self/stat").unwrap_or(0.0)
}

/// Raises this process's open-file soft limit to at least `wanted` (up to
/// the hard limit); the server inherits it. Returns the soft limit now set.
pub fn raise_fd_limit(wanted: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        let current: u64 = limit.rlim_cur;
        if current >= wanted {
            return current;
        }
        let target = wanted.min(limit.rlim_max);
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: limit.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            target
        } else {
            current
        }
    }
}

/// The processes holding a socket that listens on TCP `port` (IPv4 or IPv6),
/// found through `/proc/net/tcp*` and `/proc/*/fd`: a server the bench did
/// not start, known only by its address. Empty when none can be seen.
pub fn listening_pids(port: u16) -> Vec<u32> {
    let links: Vec<String> = listening_inodes(port)
        .into_iter()
        .map(|inode| format!("socket:[{inode}]"))
        .collect();
    let mut pids = Vec::new();
    if links.is_empty() {
        return pids;
    }
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if holds_socket(pid, &links) {
            pids.push(pid);
        }
    }
    pids
}

/// The inodes of the sockets in state LISTEN (`0A`) on local `port`.
fn listening_inodes(port: u16) -> Vec<u64> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode …
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let local_port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if *state == "0A" && local_port == Some(port) {
                inodes.extend(inode.parse::<u64>().ok().filter(|i| *i != 0));
            }
        }
    }
    inodes
}

/// Whether one of process `pid`'s open files is one of `links`
/// (`socket:[inode]`).
fn holds_socket(pid: u32, links: &[String]) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .is_ok_and(|target| links.iter().any(|l| target.as_os_str() == l.as_str()))
    })
}
