//! A PostgreSQL primary and a hot standby of its own for one test, made
//! with Debian's PostgreSQL 15 binaries (`initdb`, `pg_basebackup -R`,
//! `pg_ctl promote`) in a temporary directory, on free ports of 127.0.0.1
//! with trust authentication. The machine's own server (5432) is never
//! touched. Every server is stopped by its PID (the postmaster leads a
//! process group of its own; the group is killed) when the cluster is
//! dropped, also when the test panics.
//!
//! `initdb` refuses to run as root: as root (here and in CI) the binaries run
//! as the `postgres` OS user through `runuser`, and the directory is handed
//! to that user.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Where Debian installs PostgreSQL's server binaries: the newest version
/// under /usr/lib/postgresql (15 on these machines).
pub static PG_BIN: std::sync::LazyLock<std::path::PathBuf> = std::sync::LazyLock::new(|| {
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    versions.sort_unstable();
    let version = versions.last().copied().unwrap_or(15);
    Path::new("/usr/lib/postgresql")
        .join(version.to_string())
        .join("bin")
});

/// The OS user the binaries run as when the tests run as root.
const PG_OS_USER: &str = "postgres";

/// The database the switchboard nodes use (created before the base backup).
pub const DATABASE: &str = "sb";

/// How the primary waits for the standby at commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replication {
    /// `synchronous_standby_names = '*'`: a commit returns once the standby
    /// has flushed it.
    Synchronous,
    /// No synchronous standby: a commit returns at once, the standby follows
    /// when it can.
    Asynchronous,
}

/// One PostgreSQL server of the cluster.
pub struct PgServer {
    pub name: &'static str,
    pub port: u16,
    pub data: PathBuf,
    /// The postmaster, leader of the server's process group; `None` before
    /// it starts.
    pid: Option<i32>,
}

impl PgServer {
    /// The postmaster's PID.
    pub fn pid(&self) -> i32 {
        self.pid.expect("the server was started")
    }
}

/// A primary and a hot standby streaming from it.
pub struct PgCluster {
    pub primary: PgServer,
    pub standby: PgServer,
    dir: TempDir,
}

impl PgCluster {
    /// Makes and starts a primary with database `sb`, takes a base backup of
    /// it, starts the standby on it, and waits until the standby streams
    /// (and, for `Synchronous`, is the primary's synchronous standby).
    pub async fn start(replication: Replication) -> PgCluster {
        tokio::task::spawn_blocking(move || PgCluster::start_blocking(replication))
            .await
            .expect("the cluster starts")
    }

    fn start_blocking(replication: Replication) -> PgCluster {
        for tool in ["initdb", "pg_ctl", "pg_basebackup", "psql"] {
            let path = PG_BIN.as_path().join(tool);
            assert!(
                path.exists(),
                "the failover tests need Debian's PostgreSQL server binaries, and {} is missing: \
                 install them (`apt-get install postgresql`), or leave out \
                 --include-ignored / --ignored",
                path.display()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("sb-failover-")
            .tempdir()
            .expect("a temp dir");
        hand_to_postgres(dir.path());
        let mut cluster = PgCluster {
            primary: PgServer {
                name: "primary",
                port: free_port(),
                data: dir.path().join("primary"),
                pid: None,
            },
            standby: PgServer {
                name: "standby",
                port: free_port(),
                data: dir.path().join("standby"),
                pid: None,
            },
            dir,
        };
        while cluster.standby.port == cluster.primary.port {
            cluster.standby.port = free_port();
        }

        // The primary.
        let primary = &cluster.primary;
        run_as_postgres(
            "initdb",
            &[
                "-D",
                path_str(&primary.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let sockets = path_str(cluster.dir.path()).to_owned();
        append(
            &primary.data.join("postgresql.conf"),
            &format!(
                "\n# sb-failover\n\
                 listen_addresses = '127.0.0.1'\n\
                 port = {port}\n\
                 unix_socket_directories = '{sockets}'\n\
                 wal_level = replica\n\
                 hot_standby = on\n\
                 max_wal_senders = 4\n\
                 max_replication_slots = 4\n\
                 max_connections = 60\n\
                 shared_buffers = 32MB\n\
                 fsync = off\n\
                 log_min_messages = warning\n",
                port = primary.port
            ),
        );
        // Trust on 127.0.0.1, for connections and for replication (initdb's
        // -A trust already says so; written out to be sure of it).
        append(
            &primary.data.join("pg_hba.conf"),
            "host all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n",
        );
        cluster.start_server(true);
        psql(
            cluster.primary.port,
            "postgres",
            &format!("CREATE DATABASE {DATABASE}"),
        );

        // The standby: a base backup with the recovery settings (-R), on its
        // own port, naming itself to the primary, and never waiting for a
        // synchronous standby of its own once promoted.
        run_as_postgres(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &cluster.primary.port.to_string(),
                "-U",
                "postgres",
                "-D",
                path_str(&cluster.standby.data),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ],
        );
        append(
            &cluster.standby.data.join("postgresql.auto.conf"),
            &format!(
                "port = {}\n\
                 primary_conninfo = 'host=127.0.0.1 port={} user=postgres application_name=standby'\n\
                 synchronous_standby_names = ''\n",
                cluster.standby.port, cluster.primary.port
            ),
        );
        cluster.start_server(false);
        cluster.wait_for_replication(replication);
        eprintln!(
            "pg_cluster: primary on 127.0.0.1:{} (pid {}), {:?} standby on 127.0.0.1:{} (pid {}), in {}",
            cluster.primary.port,
            cluster.primary.pid(),
            replication,
            cluster.standby.port,
            cluster.standby.pid(),
            cluster.dir.path().display()
        );
        cluster
    }

    fn start_server(&mut self, primary: bool) {
        let server = if primary {
            &mut self.primary
        } else {
            &mut self.standby
        };
        let log = self.dir.path().join(format!("{}.log", server.name));
        run_as_postgres(
            "pg_ctl",
            &[
                "-D",
                path_str(&server.data),
                "-l",
                path_str(&log),
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        let pidfile = std::fs::read_to_string(server.data.join("postmaster.pid"))
            .expect("postmaster.pid after pg_ctl start");
        let pid: i32 = pidfile
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("postmaster.pid starts with the PID");
        server.pid = Some(pid);
    }

    fn wait_for_replication(&self, replication: Replication) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let state = psql(
                self.primary.port,
                "postgres",
                "SELECT state FROM pg_stat_replication WHERE application_name = 'standby'",
            );
            if state == "streaming" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the standby does not stream (state {state:?}); see {}",
                self.dir.path().display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        if replication == Replication::Synchronous {
            psql(
                self.primary.port,
                "postgres",
                "ALTER SYSTEM SET synchronous_standby_names = '*'",
            );
            psql(self.primary.port, "postgres", "SELECT pg_reload_conf()");
            loop {
                let state = psql(
                    self.primary.port,
                    "postgres",
                    "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby'",
                );
                if state == "sync" {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the standby does not become synchronous ({state:?})"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// The URL the switchboard nodes use: both servers, the one that takes
    /// writes chosen by libpq.
    pub fn multi_host_url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/{DATABASE}?target_session_attrs=read-write",
            self.primary.port, self.standby.port
        )
    }

    /// SIGKILL to the primary's postmaster alone, as a crash of the server
    /// would (its backends notice and exit).
    pub fn kill_primary(&self) {
        signal(self.primary.pid(), libc::SIGKILL);
    }

    /// `pg_ctl promote` on the standby; returns when it takes writes.
    pub async fn promote_standby(&self) {
        let data = self.standby.data.clone();
        tokio::task::spawn_blocking(move || {
            run_as_postgres(
                "pg_ctl",
                &["-D", path_str(&data), "-w", "-t", "30", "promote"],
            )
        })
        .await
        .expect("pg_ctl promote");
    }

    /// The PID of the standby's WAL receiver.
    pub fn wal_receiver_pid(&self) -> i32 {
        let pid = psql(
            self.standby.port,
            "postgres",
            "SELECT pid FROM pg_stat_wal_receiver",
        );
        pid.parse()
            .unwrap_or_else(|_| panic!("the standby has a WAL receiver: {pid:?}"))
    }

    /// The timeline the standby writes on (2 once promoted).
    pub fn standby_timeline(&self) -> u32 {
        let wal_file = psql(
            self.standby.port,
            "postgres",
            "SELECT pg_walfile_name(pg_current_wal_lsn())",
        );
        u32::from_str_radix(&wal_file[..8], 16)
            .unwrap_or_else(|_| panic!("a WAL file name starts with its timeline: {wal_file:?}"))
    }

    /// The last lines of a server's log, for a failure message.
    pub fn log_tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // Each postmaster leads a process group: kill the group, so that
        // backends orphaned by a killed postmaster go too. A stopped (SIGSTOP)
        // process dies of SIGKILL as well.
        let pids: Vec<i32> = [&self.primary, &self.standby]
            .iter()
            .filter_map(|s| s.pid)
            .collect();
        for &pid in &pids {
            // SAFETY: kill(2) with a negative PID signals that process group.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while pids.iter().any(|&pid| group_alive(pid)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // The TempDir is removed after this.
    }
}

/// Sends `signal` to one process.
pub fn signal(pid: i32, signal: libc::c_int) {
    // SAFETY: kill(2) on a PID this test started (a server or its child).
    let result = unsafe { libc::kill(pid, signal) };
    assert_eq!(
        result,
        0,
        "kill({pid}, {signal}): {}",
        std::io::Error::last_os_error()
    );
}

/// Whether a live (not zombie) process is in process group `pgid`.
fn group_alive(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // pid (comm) state ppid pgrp …; comm may hold spaces: split after ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string()
    })
}

/// A port nothing listens on now (the kernel's choice; never 5432).
fn free_port() -> u16 {
    loop {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let port = listener.local_addr().expect("its address").port();
        if port != 5432 {
            return port;
        }
    }
}

fn running_as_root() -> bool {
    // SAFETY: geteuid(2) cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// As root, gives `dir` to the `postgres` user (mode 700, as PostgreSQL
/// wants its data directories).
fn hand_to_postgres(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).expect("chmod 700");
    if !running_as_root() {
        return;
    }
    let user = std::ffi::CString::new(PG_OS_USER).unwrap();
    // SAFETY: getpwnam(3) with a NUL-terminated name; the record is read at
    // once, before any other call that could overwrite it.
    let (uid, gid) = unsafe {
        let record = libc::getpwnam(user.as_ptr());
        assert!(
            !record.is_null(),
            "running as root, the failover tests run PostgreSQL as the OS user \
             {PG_OS_USER:?} (initdb refuses root), and there is no such user: \
             install Debian's postgresql-15, which creates it"
        );
        ((*record).pw_uid, (*record).pw_gid)
    };
    std::os::unix::fs::chown(dir, Some(uid), Some(gid)).expect("chown to postgres");
}

/// Runs a PostgreSQL binary (as `postgres` when root) and fails the test with
/// its output if it fails.
fn run_as_postgres(tool: &str, args: &[&str]) -> String {
    let program = PG_BIN.as_path().join(tool);
    let mut command = if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", PG_OS_USER, "--"]).arg(&program);
        command
    } else {
        Command::new(&program)
    };
    // A directory the postgres user may enter (not the test's own cwd).
    command.args(args).current_dir("/");
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{} cannot run: {e}", program.display()));
    assert!(
        output.status.success(),
        "{tool} {args:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// One SQL statement through `psql` on 127.0.0.1:`port`; its unaligned,
/// tuples-only output, trimmed.
pub fn psql(port: u16, database: &str, sql: &str) -> String {
    let output = Command::new(PG_BIN.as_path().join("psql"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args([
            "-d",
            database,
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .expect("psql runs");
    assert!(
        output.status.success(),
        "psql on port {port}: {sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    file.write_all(text.as_bytes()).expect("append");
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}
