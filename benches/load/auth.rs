//! The `auth` scenario: what authentication costs the server per accepted
//! publish. Each run floods `POST /api/channels/bench/events` once per
//! credential mode, each time against a fresh server started with that
//! mode's credential source, and reports for every mode the server's CPU
//! time per accepted publish, the difference to the open server of the same
//! run, and the accepted publishes/s.
//!
//! The RSA key, the tokens file and every JWT are made once per invocation,
//! before the first run: signing (RSA above all) must not load the machine
//! while the server is measured. Before each flood the bench checks that the
//! server really refuses a publish without the credential, so a mode can
//! never measure an open server by mistake.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::http::HttpConn;
use crate::scenarios::{flood_publisher, Credential, PublisherReport, PUBLISH_PATH};
use crate::server::{wait_for_quiet, CpuMeter, ServerProcess, TempRoot};
use crate::stats::{figure, format_number, Figure, RunFigures, ScenarioReport};
use crate::{BenchArgs, QUIET_WAIT};

pub const NAME: &str = "auth";

/// Distinct RS256 JWTs of `jwt-rs256-fresh`, taken in turn. More than the
/// server remembers (10,000, `VERIFIED_CAPACITY` in src/auth/jwt.rs, which
/// it forgets all at once when full): by the time a JWT comes round again,
/// at least 10,000 others have been verified since, so none is still
/// remembered and every request pays a full signature check.
const FRESH_POOL: usize = 12_000;
/// The agent every credential names.
const AGENT: &str = "bench-agent";
/// The HS256 secret (`--jwt-secret` wants at least 32 bytes).
const HS256_SECRET: &str = "switchboard-bench-hs256-secret-of-48-bytes-long";
/// The token of the tokens file.
const TOKEN: &str = "switchboard-bench-token-0123456789abcdef";
/// How long the JWTs stay valid: longer than any invocation.
const JWT_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// What the server is started with and the publishers send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// No credential source: the baseline.
    Open,
    /// A tokens file with one token.
    Token,
    /// `--jwt-secret`, the same HS256 JWT on every request.
    JwtHs256,
    /// `--jwt-key`, the same RS256 JWT on every request.
    JwtRs256,
    /// `--jwt-key`, a different RS256 JWT on every request.
    JwtRs256Fresh,
}

/// One credential mode: its name and the figures it reports.
struct Mode {
    kind: Kind,
    name: &'static str,
    cpu_us: Figure,
    /// CPU per publish minus the open server's, in the same run.
    over_open_us: Option<Figure>,
    rate: Figure,
    errors: Figure,
}

/// The modes in the order each run measures them.
const MODES: [Mode; 5] = [
    Mode {
        kind: Kind::Open,
        name: "open",
        cpu_us: figure("open_cpu_us", "open: server CPU per publish (µs)", 1),
        over_open_us: None,
        rate: figure("open_rate", "open: accepted publishes/s", 0),
        errors: figure("open_errors", "open: publish errors", 0),
    },
    Mode {
        kind: Kind::Token,
        name: "token",
        cpu_us: figure("token_cpu_us", "token: server CPU per publish (µs)", 1),
        over_open_us: Some(figure("token_over_open_us", "token: CPU over open (µs)", 1)),
        rate: figure("token_rate", "token: accepted publishes/s", 0),
        errors: figure("token_errors", "token: publish errors", 0),
    },
    Mode {
        kind: Kind::JwtHs256,
        name: "jwt-hs256",
        cpu_us: figure("hs256_cpu_us", "jwt-hs256: server CPU per publish (µs)", 1),
        over_open_us: Some(figure(
            "hs256_over_open_us",
            "jwt-hs256: CPU over open (µs)",
            1,
        )),
        rate: figure("hs256_rate", "jwt-hs256: accepted publishes/s", 0),
        errors: figure("hs256_errors", "jwt-hs256: publish errors", 0),
    },
    Mode {
        kind: Kind::JwtRs256,
        name: "jwt-rs256",
        cpu_us: figure("rs256_cpu_us", "jwt-rs256: server CPU per publish (µs)", 1),
        over_open_us: Some(figure(
            "rs256_over_open_us",
            "jwt-rs256: CPU over open (µs)",
            1,
        )),
        rate: figure("rs256_rate", "jwt-rs256: accepted publishes/s", 0),
        errors: figure("rs256_errors", "jwt-rs256: publish errors", 0),
    },
    Mode {
        kind: Kind::JwtRs256Fresh,
        name: "jwt-rs256-fresh",
        cpu_us: figure(
            "rs256_fresh_cpu_us",
            "jwt-rs256-fresh: server CPU per publish (µs)",
            1,
        ),
        over_open_us: Some(figure(
            "rs256_fresh_over_open_us",
            "jwt-rs256-fresh: CPU over open (µs)",
            1,
        )),
        rate: figure(
            "rs256_fresh_rate",
            "jwt-rs256-fresh: accepted publishes/s",
            0,
        ),
        errors: figure("rs256_fresh_errors", "jwt-rs256-fresh: publish errors", 0),
    },
];

const OTHER_CPU: Figure = figure("other_cpu", "other CPU, the most of any mode (cores)", 2);

/// Every figure, grouped by kind so that the modes compare down a column.
pub fn figures() -> Vec<Figure> {
    let mut figures: Vec<Figure> = MODES.iter().map(|m| m.cpu_us).collect();
    figures.extend(MODES.iter().filter_map(|m| m.over_open_us));
    figures.extend(MODES.iter().map(|m| m.rate));
    figures.extend(MODES.iter().map(|m| m.errors));
    figures.push(OTHER_CPU);
    figures
}

pub fn about(args: &BenchArgs) -> String {
    format!(
        "{} sequential keep-alive publishers for {} s against a fresh server per credential mode: \
         open, token (tokens file), jwt-hs256 and jwt-rs256 (the same JWT every request), \
         jwt-rs256-fresh (a new JWT every request, from a pool of {})",
        args.flood_publishers,
        args.duration.as_secs_f64(),
        format_number(FRESH_POOL as f64, 0)
    )
}

/// The credential sources and the credentials, made once per invocation.
struct Credentials {
    tokens_file: PathBuf,
    rsa_public: PathBuf,
    hs256: Arc<str>,
    rs256: Arc<str>,
    rs256_pool: Arc<Vec<String>>,
}

impl Credentials {
    /// A tokens file and an RSA key pair (the `openssl` CLI) in `dir`, and
    /// the JWTs, signed on blocking threads.
    async fn make(dir: &Path) -> anyhow::Result<Credentials> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tokens_file = dir.join("tokens.toml");
        std::fs::write(
            &tokens_file,
            format!("[[tokens]]\ntoken = \"{TOKEN}\"\nagent_id = \"{AGENT}\"\nwrite = [\"*\"]\n"),
        )?;
        let rsa_private = dir.join("rsa.pem");
        let rsa_public = dir.join("rsa.pub.pem");
        openssl(&[
            "genpkey".as_ref(),
            "-algorithm".as_ref(),
            "RSA".as_ref(),
            "-pkeyopt".as_ref(),
            "rsa_keygen_bits:2048".as_ref(),
            "-out".as_ref(),
            rsa_private.as_os_str(),
        ])?;
        openssl(&[
            "pkey".as_ref(),
            "-in".as_ref(),
            rsa_private.as_os_str(),
            "-pubout".as_ref(),
            "-out".as_ref(),
            rsa_public.as_os_str(),
        ])?;
        let rsa = EncodingKey::from_rsa_pem(&std::fs::read(&rsa_private)?)
            .context("reading the RSA key openssl made")?;
        let hs256 = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(HS256_SECRET.as_bytes()),
            "same",
        )?;
        let rs256 = sign(Algorithm::RS256, &rsa, "same")?;
        let started = std::time::Instant::now();
        let rs256_pool = sign_pool(rsa, FRESH_POOL).await?;
        eprintln!(
            "{NAME}: signed {} RS256 JWTs in {:.1} s (before the runs)",
            format_number(FRESH_POOL as f64, 0),
            started.elapsed().as_secs_f64()
        );
        Ok(Credentials {
            tokens_file,
            rsa_public,
            hs256: hs256.into(),
            rs256: rs256.into(),
            rs256_pool: Arc::new(rs256_pool),
        })
    }

    /// The server's arguments for `mode`.
    fn server_args(&self, mode: &Mode) -> Vec<OsString> {
        let jwt_write = || ["--jwt-write".into(), "*".into()];
        match mode.kind {
            Kind::Open => Vec::new(),
            Kind::Token => vec!["--tokens".into(), self.tokens_file.clone().into()],
            Kind::JwtHs256 => {
                let mut args = vec!["--jwt-secret".into(), HS256_SECRET.into()];
                args.extend(jwt_write());
                args
            }
            Kind::JwtRs256 | Kind::JwtRs256Fresh => {
                let mut args = vec!["--jwt-key".into(), self.rsa_public.clone().into()];
                args.extend(jwt_write());
                args
            }
        }
    }

    /// What the publishers of `mode` send.
    fn credential(&self, mode: &Mode) -> Credential {
        match mode.kind {
            Kind::Open => Credential::None,
            Kind::Token => Credential::Bearer(TOKEN.into()),
            Kind::JwtHs256 => Credential::Bearer(self.hs256.clone()),
            Kind::JwtRs256 => Credential::Bearer(self.rs256.clone()),
            Kind::JwtRs256Fresh => Credential::Pool {
                tokens: self.rs256_pool.clone(),
                next: Arc::new(AtomicUsize::new(0)),
            },
        }
    }
}

fn openssl(args: &[&std::ffi::OsStr]) -> anyhow::Result<()> {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .context("running the openssl CLI (the auth scenario makes its RSA key with it)")?;
    if !output.status.success() {
        bail!(
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// A JWT for the bench's agent with `jti`, valid for [`JWT_LIFETIME`].
fn sign(alg: Algorithm, key: &EncodingKey, jti: &str) -> anyhow::Result<String> {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_add(JWT_LIFETIME)
        .as_secs();
    let claims = json!({"sub": AGENT, "exp": exp, "jti": jti});
    encode(&Header::new(alg), &claims, key).context("signing a JWT")
}

/// `count` RS256 JWTs with distinct `jti`s, signed on as many blocking
/// threads as there are cores.
async fn sign_pool(key: EncodingKey, count: usize) -> anyhow::Result<Vec<String>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let key = Arc::new(key);
    let mut tasks = Vec::new();
    for t in 0..threads {
        let key = key.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            (t..count)
                .step_by(threads)
                .map(|i| sign(Algorithm::RS256, &key, &format!("fresh-{i}")))
                .collect::<anyhow::Result<Vec<String>>>()
        }));
    }
    let mut pool = Vec::with_capacity(count);
    for task in tasks {
        pool.extend(task.await.context("a signing thread failed")??);
    }
    Ok(pool)
}

/// Every run of the scenario; a failed run is reported and kept as such.
pub async fn run(
    args: &BenchArgs,
    server_bin: &Path,
    root: &TempRoot,
) -> anyhow::Result<ScenarioReport> {
    let credentials = Credentials::make(&root.path().join("auth-credentials")).await?;
    let mut runs = Vec::new();
    for run in 1..=args.runs {
        eprintln!("{NAME}: run {run}/{} …", args.runs);
        let result = run_once(args, server_bin, root, run, &credentials).await;
        if let Err(err) = &result {
            eprintln!("{NAME}: run {run} failed: {err:#}");
        }
        runs.push(result.map_err(|e| format!("{e:#}")));
    }
    Ok(ScenarioReport {
        name: NAME,
        about: about(args),
        figures: figures(),
        runs,
    })
}

/// One run: every mode in turn, each on a fresh server after the machine
/// has calmed down.
async fn run_once(
    args: &BenchArgs,
    server_bin: &Path,
    root: &TempRoot,
    run: u32,
    credentials: &Credentials,
) -> anyhow::Result<RunFigures> {
    let mut figures = RunFigures::new();
    let mut open_cpu_us = None;
    let mut most_other = 0.0f64;
    for mode in &MODES {
        let busy = wait_for_quiet(QUIET_WAIT).await;
        if busy > 0.2 {
            eprintln!("  the machine is busy ({busy:.2} cores used by others); measuring anyway");
        }
        let label = format!("{NAME}-{run}-{}", mode.name);
        let mut server = ServerProcess::start_with(
            server_bin,
            root.path(),
            &label,
            args,
            None,
            &credentials.server_args(mode),
        )
        .await?;
        server.keep_dir = args.keep_dir;
        let result = flood(&mut server, credentials.credential(mode), args).await;
        let logged = server.log_lines();
        if logged > 0 {
            eprintln!("  the server logged {logged} warning/error line(s)");
        }
        server.stop();
        let measured = result.with_context(|| mode.name)?;
        eprintln!(
            "  {}: {:.0} publishes/s, {:.1} µs of server CPU each ({:.2} cores), bench {:.2}, other {:.2}",
            mode.name,
            measured.rate(),
            measured.cpu_us(),
            measured.server_cores,
            measured.bench_cores,
            measured.other_cores
        );
        let cpu_us = measured.cpu_us();
        figures.insert(mode.cpu_us.key, cpu_us);
        match (mode.over_open_us, open_cpu_us) {
            (Some(over), Some(open)) => {
                figures.insert(over.key, cpu_us - open);
            }
            (None, _) => open_cpu_us = Some(cpu_us),
            (Some(_), None) => {}
        }
        figures.insert(mode.rate.key, measured.rate());
        figures.insert(mode.errors.key, measured.published.errors as f64);
        most_other = most_other.max(measured.other_cores);
    }
    figures.insert(OTHER_CPU.key, most_other);
    Ok(figures)
}

/// What one mode's flood measured.
struct ModeRun {
    published: PublisherReport,
    publish_secs: f64,
    /// Server CPU seconds over the flood.
    server_cpu: f64,
    server_cores: f64,
    bench_cores: f64,
    other_cores: f64,
}

impl ModeRun {
    fn accepted(&self) -> f64 {
        self.published.ok.len() as f64
    }

    fn rate(&self) -> f64 {
        self.accepted() / self.publish_secs
    }

    fn cpu_us(&self) -> f64 {
        self.server_cpu * 1e6 / self.accepted()
    }
}

/// Checks that the server refuses a publish without `credential` (unless it
/// is open), then floods it with `args.flood_publishers` sequential
/// publishers for `args.duration`.
async fn flood(
    server: &mut ServerProcess,
    credential: Credential,
    args: &BenchArgs,
) -> anyhow::Result<ModeRun> {
    let addr = server.addr;
    if !matches!(credential, Credential::None) {
        let mut conn = HttpConn::connect(addr).await?;
        let body = br#"{"type":"tick","data":{}}"#;
        let answer = conn.send("POST", PUBLISH_PATH, Some(body)).await?;
        ensure!(
            answer.status == 401,
            "a publish without credentials was answered {}, not 401: the server is not checking them",
            answer.status
        );
    }
    let seqs = Arc::new(AtomicU64::new(0));
    let servers = std::slice::from_ref(&*server);
    let cpu = CpuMeter::start(servers);
    let cpu_before = server.cpu_seconds();
    let started = Instant::now();
    let until = started + args.duration;
    let mut tasks = JoinSet::new();
    for _ in 0..args.flood_publishers {
        tasks.spawn(flood_publisher(
            addr,
            seqs.clone(),
            until,
            credential.clone(),
        ));
    }
    let mut published = PublisherReport::default();
    while let Some(done) = tasks.join_next().await {
        published.merge(done.context("a publisher task failed")?);
    }
    let publish_secs = started.elapsed().as_secs_f64();
    let server_cpu = server.cpu_seconds() - cpu_before;
    let cores = cpu.read(std::slice::from_ref(&*server));
    server.check_alive()?;
    if let Some(err) = &published.first_error {
        eprintln!("  {} publish(es) failed; first: {err}", published.errors);
    }
    ensure!(
        published.ok.len() > 0,
        "no publish was accepted (first error: {})",
        published.first_error.as_deref().unwrap_or("none")
    );
    Ok(ModeRun {
        published,
        publish_secs,
        server_cpu,
        server_cores: cores.server,
        bench_cores: cores.bench,
        other_cores: cores.other,
    })
}
