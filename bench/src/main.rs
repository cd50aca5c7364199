//! `verif8-bench`: starts the real processes it measures (the facade, and `verif8-grpc sandbox`
//! as its upstream) on loopback, drives them, and prints a table and, last, one JSON line per
//! scenario. Every target is a ratio to, or a bound checked against, figures measured in the
//! same run: the machine is shared and noisy, so absolute times are context, not targets.
//!
//! `cargo run --release --bin verif8-bench -- all` (add `--smoke` for a quick CI pass).

// A crate root resolves `mod` beside itself, so the folder is named explicitly.
mod client;
mod fanout;
mod far;
mod inside;
mod load;
mod procs;
mod replicas;
mod report;
mod startup;
mod unary;
mod watch_memory;
mod watch_polls;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};

use procs::{Env, MachineTime};
use report::Report;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// GetSession through the facade vs the same GET sent straight to a sandbox 50 ms away, at
    /// 256 and 1,024 calls in flight, over 16 client connections and over one.
    Far,
    /// GetSession through the facade vs the same GET sent straight to the sandbox (loopback,
    /// no added latency: the retired CPU-ratio and c=1 figures).
    Unary,
    /// RSS per idle WatchSession stream.
    WatchMemory,
    /// Upstream polls per session per minute against the number of watchers, and the total
    /// poll rate against the budget.
    WatchPolls,
    /// Delivery latency of one status change to many watchers of one session.
    FanOut,
    /// Time from exec to health SERVING, and idle RSS.
    Startup,
    /// Three replicas sharing a private redis-server: polls per session against one replica,
    /// the total poll rate against the shared budget, and cross-replica delivery latency.
    Replicas,
    /// Every scenario, in the order above.
    All,
}

#[derive(Debug, Parser)]
#[command(
    name = "verif8-bench",
    about = "Benchmarks the verif8-grpc facade against baselines measured in the same run"
)]
struct Cli {
    /// Scenarios to run.
    #[arg(value_enum, required = true)]
    scenarios: Vec<Scenario>,

    /// Each scenario for about a second at tiny sizes (for CI); figures are not meaningful.
    #[arg(long)]
    smoke: bool,

    /// The verif8-grpc binary. Default: beside this one, rebuilt first when run by cargo.
    #[arg(long)]
    facade_bin: Option<PathBuf>,

    /// The binary whose `sandbox` subcommand is the upstream. Default: the facade binary.
    /// With an older --facade-bin, today's sandbox (e.g. for `--latency`).
    #[arg(long)]
    sandbox_bin: Option<PathBuf>,

    /// Directory for the child processes' logs. Default: a fresh one under the temp dir.
    #[arg(long)]
    log_dir: Option<PathBuf>,

    /// RUST_LOG for the facade. Default: unset, i.e. its default level (info, one line per RPC),
    /// as deployed.
    #[arg(long)]
    facade_log: Option<String>,

    /// Extra environment for the facade, e.g. VERIF8_WORKER_THREADS=1 (for experiments).
    #[arg(long, value_name = "KEY=VALUE")]
    facade_env: Vec<String>,

    /// Pin the facade to CPU 1 and the sandbox and this load generator to CPU 0, so the facade
    /// does not compete with its own load (a diagnostic; the headline figures run unpinned).
    #[arg(long)]
    pin: bool,

    /// far: the sandbox's added latency before every /api/ answer (ms).
    #[arg(long, default_value_t = 50)]
    far_latency_ms: u64,

    /// far: measured seconds per phase.
    #[arg(long, default_value_t = 10.0)]
    far_secs: f64,

    /// unary: measured seconds per phase (one path at one concurrency in one round).
    #[arg(long, default_value_t = 5.0)]
    unary_secs: f64,

    /// unary: rounds; paths alternate order every round so drift hits both alike.
    #[arg(long, default_value_t = 3)]
    unary_rounds: u32,

    /// unary: gRPC connections the facade client spreads its calls over at concurrency 64.
    #[arg(long, default_value_t = 1)]
    grpc_connections: usize,

    /// watch-memory: idle streams.
    #[arg(long, default_value_t = 100_000)]
    streams: usize,

    /// watch-memory: HTTP/2 connections the streams are spread over.
    #[arg(long, default_value_t = 10)]
    connections: usize,

    /// watch-polls: the facade's fixed poll interval for the watcher-count comparison (ms).
    #[arg(long, default_value_t = 200)]
    poll_interval_ms: u64,

    /// watch-polls: measured window of the watcher-count comparison (s).
    #[arg(long, default_value_t = 30.0)]
    poll_window_secs: f64,

    /// watch-polls: --poll-budget given to the facade watching many sessions.
    #[arg(long, default_value_t = 50.0)]
    poll_budget: f64,

    /// watch-polls: sessions watched at once for the budget check.
    #[arg(long, default_value_t = 10_000)]
    budget_sessions: usize,

    /// fan-out: watchers of the one session.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,

    /// fan-out: rounds (a fresh session each).
    #[arg(long, default_value_t = 5)]
    fanout_rounds: u32,

    /// fan-out: a command run as `CMD on PID` before each round's CheckCode and `CMD off PID`
    /// after its last delivery (PID: the facade's), e.g. `callgrind_control -i` to count the
    /// deliveries' instructions alone.
    #[arg(long, value_name = "CMD")]
    around_deliveries: Option<String>,

    /// replicas: sessions, each watched through every replica.
    #[arg(long, default_value_t = 1000)]
    replica_sessions: usize,

    /// startup: runs.
    #[arg(long, default_value_t = 7)]
    startup_runs: u32,
}

impl Cli {
    fn scenarios(&self) -> Vec<Scenario> {
        if self.scenarios.contains(&Scenario::All) {
            return vec![
                Scenario::Far,
                Scenario::Unary,
                Scenario::WatchMemory,
                Scenario::WatchPolls,
                Scenario::FanOut,
                Scenario::Startup,
                Scenario::Replicas,
            ];
        }
        let mut chosen = self.scenarios.clone();
        chosen.dedup();
        chosen
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let cli = Cli::parse();
    let facade_bin = match &cli.facade_bin {
        Some(path) => path.clone(),
        None => procs::locate_facade()?,
    };
    let mut env = Env::new(
        facade_bin,
        cli.log_dir.clone(),
        cli.facade_log.clone(),
        &cli.facade_env,
        cli.pin,
    )?;
    env.sandbox_bin = cli.sandbox_bin.clone();
    eprintln!("{}", env.describe());
    let started = Instant::now();
    let mut reports: Vec<Report> = Vec::new();
    for scenario in cli.scenarios() {
        eprintln!("== {scenario:?}");
        let before = MachineTime::read()?;
        let mut report = run(scenario, &cli, &env).await?;
        let steal = MachineTime::read()?.steal_percent_since(before);
        // A busy host takes CPU time from this VM (steal): the likeliest cause
        // of a run whose figures stand out from the others.
        report.figure(
            "host_steal_percent",
            report::num(steal),
            "CPU time taken by the host (steal)",
            format!("{steal:.1} % of the machine's, during this scenario"),
        );
        reports.push(report);
    }
    println!();
    for report in &reports {
        report.print_table();
    }
    println!(
        "total {:.1} s; child logs in {}",
        started.elapsed().as_secs_f64(),
        env.log_dir.display()
    );
    for report in &reports {
        println!("{}", report.json_line(cli.smoke, &env));
    }
    Ok(())
}

async fn run(scenario: Scenario, cli: &Cli, env: &Env) -> Result<Report, BoxError> {
    let smoke = cli.smoke;
    match scenario {
        Scenario::Far => {
            let options = far::Options {
                latency_ms: cli.far_latency_ms,
                measure: secs(if smoke { 0.3 } else { cli.far_secs }),
                warmup: secs(if smoke { 0.1 } else { 1.0 }),
                in_flight: if smoke { vec![16] } else { vec![256, 1024] },
            };
            far::run(env, &options).await
        }
        Scenario::Unary => {
            let options = unary::Options {
                measure: secs(if smoke { 0.3 } else { cli.unary_secs }),
                warmup: secs(if smoke { 0.1 } else { 0.5 }),
                rounds: if smoke { 1 } else { cli.unary_rounds.max(1) },
                grpc_connections: cli.grpc_connections.max(1),
            };
            unary::run(env, &options).await
        }
        Scenario::WatchMemory => {
            let options = watch_memory::Options {
                streams: if smoke { 200 } else { cli.streams.max(1) },
                sessions: if smoke { 2 } else { 10 },
                connections: if smoke { 2 } else { cli.connections.max(1) },
            };
            watch_memory::run(env, &options).await
        }
        Scenario::WatchPolls => {
            let options = watch_polls::Options {
                watcher_counts: if smoke {
                    vec![1, 2, 5, 10]
                } else {
                    vec![1, 10, 100, 1000]
                },
                interval: Duration::from_millis(if smoke { 50 } else { cli.poll_interval_ms }),
                window: secs(if smoke { 1.0 } else { cli.poll_window_secs }),
                budget: if smoke { 20.0 } else { cli.poll_budget },
                budget_sessions: if smoke { 100 } else { cli.budget_sessions },
                budget_window: secs(if smoke { 2.0 } else { 30.0 }),
            };
            watch_polls::run(env, &options).await
        }
        Scenario::FanOut => {
            let options = fanout::Options {
                watchers: if smoke { 50 } else { cli.watchers.max(1) },
                rounds: if smoke { 1 } else { cli.fanout_rounds.max(1) },
                around_deliveries: cli.around_deliveries.clone(),
            };
            fanout::run(env, &options).await
        }
        Scenario::Startup => {
            startup::run(env, if smoke { 2 } else { cli.startup_runs.max(1) }).await
        }
        Scenario::Replicas => {
            let options = replicas::Options {
                sessions: if smoke {
                    20
                } else {
                    cli.replica_sessions.max(1)
                },
                interval: Duration::from_secs(if smoke { 1 } else { 5 }),
                window: secs(if smoke { 2.0 } else { 15.0 }),
                budget: if smoke { 10.0 } else { 50.0 },
                budget_window: secs(if smoke { 3.0 } else { 30.0 }),
                deliveries: if smoke { 10 } else { 200 },
            };
            replicas::run(env, &options).await
        }
        Scenario::All => unreachable!("expanded by Cli::scenarios"),
    }
}

fn secs(value: f64) -> Duration {
    Duration::from_secs_f64(value.max(0.01))
}
