//! unary: GetSession through the facade against the same GET sent straight to the sandbox by
//! a plain HTTP client, at concurrency 1 and 64. Both paths run in every round, in alternating
//! order, against the same sandbox process and the same session.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;

use crate::BoxError;
use crate::client::{self, Client};
use crate::inside::{self, Inside};
use crate::load::{Caller, Path, Samples, drive};
use crate::procs::{CpuTime, Env, MachineTime, Proc, own_cpu};
use crate::report::{Report, median, num, percentile, sorted};

pub struct Options {
    pub measure: Duration,
    pub warmup: Duration,
    pub rounds: u32,
    pub grpc_connections: usize,
}

const CONCURRENCIES: [usize; 2] = [1, 64];

/// Everything measured for one path at one concurrency, summed over rounds.
#[derive(Default)]
struct Tally {
    requests: u64,
    errors: u64,
    seconds: f64,
    latencies_us: Vec<f64>,
    facade_cpu: CpuTime,
    sandbox_cpu: CpuTime,
    client_cpu: CpuTime,
    facade_switches: u64,
    sandbox_switches: u64,
    /// The whole machine's ticks over the window.
    machine: MachineTime,
    /// The facade's own latency sums for the window (GetSession only); None without /metrics.
    inside: Option<Inside>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.seconds += other.seconds;
        self.latencies_us.extend(other.latencies_us);
        self.facade_cpu += other.facade_cpu;
        self.sandbox_cpu += other.sandbox_cpu;
        self.client_cpu += other.client_cpu;
        self.facade_switches += other.facade_switches;
        self.sandbox_switches += other.sandbox_switches;
        self.machine.add(other.machine);
        self.inside = match (self.inside, other.inside) {
            (Some(mut mine), Some(theirs)) => {
                mine.add(theirs);
                Some(mine)
            }
            (mine, theirs) => mine.or(theirs),
        };
    }

    fn p50_p99(&self) -> (f64, f64) {
        let latencies = sorted(self.latencies_us.clone());
        (percentile(&latencies, 50.0), percentile(&latencies, 99.0))
    }

    fn mean_us(&self) -> f64 {
        self.latencies_us.iter().sum::<f64>() / self.latencies_us.len() as f64
    }

    fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    /// CPU seconds per request, in µs.
    fn per_request_us(&self, cpu_seconds: f64) -> f64 {
        cpu_seconds * 1e6 / self.requests as f64
    }

    /// "18.6 µs (user 12.3, sys 5.4)": a process's CPU per request, and where it went.
    fn cpu_shown(&self, cpu: CpuTime) -> String {
        format!(
            "{:.1} µs (user {:.1}, sys {:.1})",
            self.per_request_us(cpu.total()),
            self.per_request_us(cpu.user),
            self.per_request_us(cpu.system)
        )
    }

    fn per_request(&self, count: u64) -> f64 {
        count as f64 / self.requests as f64
    }

    /// CPU seconds of every process the path's requests ran through: load generator,
    /// sandbox, and the facade unless the path goes straight to the sandbox.
    fn path_cpu(&self, path: Path) -> f64 {
        let facade = match path {
            Path::Direct => 0.0,
            Path::Facade | Path::Health => self.facade_cpu.total(),
        };
        self.client_cpu.total() + self.sandbox_cpu.total() + facade
    }
}

struct Setup<'a> {
    env: &'a Env,
    options: &'a Options,
    facade: &'a Proc,
    sandbox: &'a Proc,
    http: reqwest::Client,
    url: Arc<str>,
    session: Arc<str>,
    /// Connections the callers at concurrency 64 share.
    spread: Vec<Channel>,
    /// The facade's Prometheus text.
    metrics_url: String,
}

pub async fn run(env: &Env, options: &Options) -> Result<Report, BoxError> {
    let sandbox = env.start_sandbox().await?;
    // The HTTP listener serves the facade's /metrics, read around each GetSession phase.
    let metrics_addr = crate::procs::free_port()?;
    let mut facade = env
        .start_facade(sandbox.addr, &["--http-listen", &metrics_addr.to_string()])
        .await?;
    let api = client::Sandbox::new(sandbox.addr);
    let session = api.create_session(1).await?;
    let setup = Setup {
        env,
        options,
        facade: &facade,
        sandbox: &sandbox,
        http: reqwest::Client::builder().tcp_nodelay(true).build()?,
        url: api.session_url(&session).into(),
        session: session.into(),
        spread: client::channels(facade.addr, options.grpc_connections).await?,
        metrics_url: format!("http://{metrics_addr}/metrics"),
    };

    let mut tallies: BTreeMap<(usize, Path), Tally> = BTreeMap::new();
    let mut added_by_round = Vec::new();
    for round in 0..options.rounds {
        for concurrency in CONCURRENCIES {
            let order = if round % 2 == 0 {
                [Path::Direct, Path::Facade, Path::Health]
            } else {
                [Path::Health, Path::Facade, Path::Direct]
            };
            let mut percentiles = BTreeMap::new();
            for path in order {
                let tally = measure(&setup, path, concurrency).await?;
                eprintln!(
                    "  round {round} c={concurrency} {}: {:.0} req/s",
                    path.name(),
                    tally.rps()
                );
                percentiles.insert(path, tally.p50_p99());
                tallies.entry((concurrency, path)).or_default().add(tally);
            }
            if concurrency == 1 {
                let (facade, direct) = (percentiles[&Path::Facade], percentiles[&Path::Direct]);
                added_by_round.push((facade.0 - direct.0, facade.1 - direct.1));
            }
        }
    }
    facade.check_alive()?;
    Ok(report(options, env.cpus(), &tallies, &added_by_round))
}

async fn measure(setup: &Setup<'_>, path: Path, concurrency: usize) -> Result<Tally, BoxError> {
    let start = Instant::now() + setup.options.warmup;
    let end = start + setup.options.measure;
    let workers: Vec<JoinHandle<Result<Samples, BoxError>>> = if concurrency == 1 {
        // One caller on its own single-threaded runtime and connection: no hand-offs between
        // the load generator's threads inflate the latency of either path.
        let (path, facade, url, session) = (
            path,
            setup.facade.addr,
            setup.url.clone(),
            setup.session.clone(),
        );
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let caller = Caller::connect(path, facade, url, session).await?;
                Ok(drive(caller, start, end).await)
            })
        });
        vec![tokio::task::spawn_blocking(move || {
            thread.join().map_err(|_| "load thread panicked")?
        })]
    } else {
        (0..concurrency)
            .map(|i| {
                let caller = match path {
                    Path::Direct => Caller::Direct {
                        http: setup.http.clone(),
                        url: setup.url.clone(),
                    },
                    Path::Facade => Caller::Facade {
                        client: Client::new(setup.spread[i % setup.spread.len()].clone()),
                        session: setup.session.clone(),
                    },
                    Path::Health => Caller::Health {
                        client: HealthClient::new(setup.spread[i % setup.spread.len()].clone()),
                    },
                };
                tokio::spawn(async move { Ok(drive(caller, start, end).await) })
            })
            .collect()
    };

    let env = setup.env;
    let inside = async || match path {
        Path::Facade => inside::read(&setup.http, &setup.metrics_url, "GetSession").await,
        _ => None,
    };
    tokio::time::sleep_until(start.into()).await;
    let inside_before = inside().await;
    let before = (
        setup.facade.cpu(env)?,
        setup.sandbox.cpu(env)?,
        own_cpu(env)?,
    );
    let switches_before = (setup.facade.switches()?, setup.sandbox.switches()?);
    let machine_before = MachineTime::read()?;
    tokio::time::sleep_until(end.into()).await;
    let machine = MachineTime::read()?.since(machine_before);
    let after = (
        setup.facade.cpu(env)?,
        setup.sandbox.cpu(env)?,
        own_cpu(env)?,
    );
    let switches_after = (setup.facade.switches()?, setup.sandbox.switches()?);
    let inside_after = inside().await;
    let mut tally = Tally {
        inside: inside_after
            .zip(inside_before)
            .map(|(after, before)| after.since(before)),
        seconds: (end - start).as_secs_f64(),
        facade_cpu: after.0 - before.0,
        sandbox_cpu: after.1 - before.1,
        client_cpu: after.2 - before.2,
        facade_switches: switches_after.0.saturating_sub(switches_before.0),
        sandbox_switches: switches_after.1.saturating_sub(switches_before.1),
        machine,
        ..Tally::default()
    };
    for worker in workers {
        let (latencies, errors) = worker.await??;
        tally.requests += latencies.len() as u64;
        tally.errors += errors;
        tally.latencies_us.extend(latencies);
    }
    if tally.requests == 0 {
        return Err(format!("no {} request succeeded at c={concurrency}", path.name()).into());
    }
    Ok(tally)
}

/// `added_by_round`: facade minus direct latency at c=1 (p50, p99), each
/// round's paths against each other, so a stall in one phase moves one
/// round's figure, not the target (its median over rounds).
fn report(
    options: &Options,
    cpus: usize,
    tallies: &BTreeMap<(usize, Path), Tally>,
    added_by_round: &[(f64, f64)],
) -> Report {
    let mut report = Report::new("unary");
    report.detail("rounds", options.rounds);
    report.detail("measured_seconds_per_phase", options.measure.as_secs_f64());
    report.detail("warmup_seconds_per_phase", options.warmup.as_secs_f64());
    report.detail("grpc_connections_at_c64", options.grpc_connections);
    for ((concurrency, path), tally) in tallies {
        let (p50_us, p99_us) = tally.p50_p99();
        let key = format!("{}_c{concurrency}", path.key());
        let mut shown = format!(
            "{:>8.0} req/s  p50 {:>6.0} µs  p99 {:>6.0} µs  CPU/req: sandbox {}",
            tally.rps(),
            p50_us,
            p99_us,
            tally.cpu_shown(tally.sandbox_cpu),
        );
        let mut figure = json!({
            "requests": tally.requests,
            "errors": tally.errors,
            "rps": num(tally.rps()),
            "p50_us": num(p50_us),
            "p99_us": num(p99_us),
            "sandbox_cpu_us_per_req": num(tally.per_request_us(tally.sandbox_cpu.total())),
            "sandbox_user_cpu_us_per_req": num(tally.per_request_us(tally.sandbox_cpu.user)),
            "client_cpu_us_per_req": num(tally.per_request_us(tally.client_cpu.total())),
            "sandbox_switches_per_req": num(tally.per_request(tally.sandbox_switches)),
        });
        figure["mean_us"] = num(tally.mean_us());
        if *path != Path::Direct {
            shown.push_str(&format!(", facade {}", tally.cpu_shown(tally.facade_cpu)));
            figure["facade_cpu_us_per_rpc"] = num(tally.per_request_us(tally.facade_cpu.total()));
            figure["facade_user_cpu_us_per_rpc"] = num(tally.per_request_us(tally.facade_cpu.user));
            figure["facade_switches_per_rpc"] = num(tally.per_request(tally.facade_switches));
        }
        shown.push_str(&format!(
            ", client {:.1} µs; switches/req: sandbox {:.2}",
            tally.per_request_us(tally.client_cpu.total()),
            tally.per_request(tally.sandbox_switches)
        ));
        if *path != Path::Direct {
            shown.push_str(&format!(
                ", facade {:.2}",
                tally.per_request(tally.facade_switches)
            ));
        }
        if tally.errors > 0 {
            shown.push_str(&format!("  ({} errors)", tally.errors));
        }
        report.figure(
            &key,
            figure,
            &format!("{} c={concurrency}", path.name()),
            shown,
        );
        if let Some(inside) = &tally.inside {
            report.figure(
                &format!("{key}_inside"),
                json!({
                    "client_mean_us": num(tally.mean_us()),
                    "rpc_mean_us": num(inside.rpc_mean_us()),
                    "upstream_call_mean_us": num(inside.upstream_mean_us()),
                }),
                "  where the time goes (means)",
                format!(
                    "{:.0} µs at the client; {:.0} µs inside the facade's RPC, of which {:.0} µs its 8x8 call (facade's /metrics)",
                    tally.mean_us(),
                    inside.rpc_mean_us(),
                    inside.upstream_mean_us()
                ),
            );
        }
    }

    let get = |c: usize, path: Path| &tallies[&(c, path)];
    let throughput_ratio = get(64, Path::Facade).rps() / get(64, Path::Direct).rps();
    retired(
        &mut report,
        "facade_throughput_ratio_c64",
        throughput_ratio,
        "x direct",
    );
    bounds(
        &mut report,
        cpus,
        get(64, Path::Facade),
        get(64, Path::Direct),
        get(1, Path::Health),
        get(1, Path::Facade),
    );
    report.figure(
        "added_latency_c1_by_round",
        json!(
            added_by_round
                .iter()
                .map(|(p50, p99)| json!({"p50_us": num(*p50), "p99_us": num(*p99)}))
                .collect::<Vec<_>>()
        ),
        "added latency c=1 by round",
        added_by_round
            .iter()
            .map(|(p50, p99)| format!("p50 {p50:+.0} / p99 {p99:+.0} µs"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let p50s: Vec<f64> = added_by_round.iter().map(|added| added.0).collect();
    let p99s: Vec<f64> = added_by_round.iter().map(|added| added.1).collect();
    retired(
        &mut report,
        "added_p50_latency_c1",
        median(&p50s),
        "µs (median of rounds)",
    );
    retired(
        &mut report,
        "added_p99_latency_c1",
        median(&p99s),
        "µs (median of rounds)",
    );
    for (concurrency, name) in [(64, "facade_cpu_ratio_c64"), (1, "facade_cpu_ratio_c1")] {
        let facade = get(concurrency, Path::Facade);
        retired(
            &mut report,
            name,
            facade.facade_cpu.total() / facade.sandbox_cpu.total(),
            "x sandbox CPU/req",
        );
    }
    report.note(
        "CPU from /proc/PID/stat utime+stime (user and sys also shown apart); the sandbox's CPU \
         per request is taken while it serves the facade's GETs (same requests, same window); \
         switches = times a thread was put on a CPU (/proc/PID/task/*/schedstat)",
    );
    report
}

/// A figure that was a target until the tenth session, kept for comparison with the history
/// (docs/benchmark-history.md); the targets now stand in the `far` scenario.
fn retired(report: &mut Report, name: &str, value: f64, unit: &str) {
    report.figure(
        name,
        num(value),
        name,
        format!("{value:.3} {unit} (retired target)"),
    );
}

/// What bounds two of the targets on this machine, from this run's own figures. At c=64 the
/// load generator, the facade and the sandbox share the CPUs, so the throughput ratio can only
/// reach the ratio of CPU per request summed over the processes each path runs through (times
/// the ratio of CPUs each path kept busy). At c=1 the gRPC hop alone, measured by Health/Check,
/// takes its share of the 1.5x CPU limit before the 8x8 exchange is paid for.
fn bounds(
    report: &mut Report,
    cpus: usize,
    facade64: &Tally,
    direct64: &Tally,
    health1: &Tally,
    facade1: &Tally,
) {
    let facade_path_us = facade64.per_request_us(facade64.path_cpu(Path::Facade));
    let direct_path_us = direct64.per_request_us(direct64.path_cpu(Path::Direct));
    let busy = |tally: &Tally, path| tally.path_cpu(path) / tally.seconds;
    let (facade_busy, direct_busy) = (busy(facade64, Path::Facade), busy(direct64, Path::Direct));
    let (facade_idle, direct_idle) = (
        facade64.machine.idle_cpus(cpus),
        direct64.machine.idle_cpus(cpus),
    );
    report.figure(
        "c64_cpu_of_all_processes",
        json!({
            "facade_path_us_per_req": num(facade_path_us),
            "direct_path_us_per_req": num(direct_path_us),
            "facade_path_busy_cpus": num(facade_busy),
            "direct_path_busy_cpus": num(direct_busy),
            "facade_path_idle_cpus": num(facade_idle),
            "direct_path_idle_cpus": num(direct_idle),
            "throughput_ratio_at_equal_busy": num(direct_path_us / facade_path_us),
        }),
        "c=64 CPU per request, all processes",
        format!(
            "facade path {facade_path_us:.1} µs ({facade_busy:.2} CPUs busy, {facade_idle:.2} idle), \
             direct {direct_path_us:.1} µs ({direct_busy:.2} busy, {direct_idle:.2} idle): \
             the throughput ratio can reach {:.2} with the CPUs equally busy",
            direct_path_us / facade_path_us
        ),
    );
    let hop_us = health1.per_request_us(health1.facade_cpu.total());
    let sandbox_us = facade1.per_request_us(facade1.sandbox_cpu.total());
    let rest_us = facade1.per_request_us(facade1.facade_cpu.total()) - hop_us;
    report.figure(
        "c1_grpc_hop",
        json!({
            "health_check_facade_cpu_us": num(hop_us),
            "hop_over_sandbox_request": num(hop_us / sandbox_us),
            "rest_of_get_session_cpu_us": num(rest_us),
            "rest_over_sandbox_request": num(rest_us / sandbox_us),
        }),
        "c=1 CPU: gRPC hop and the rest",
        format!(
            "Health/Check {hop_us:.1} µs = {:.2}x the sandbox's request; GetSession's 8x8 exchange \
             and handler {rest_us:.1} µs more = {:.2}x",
            hop_us / sandbox_us,
            rest_us / sandbox_us
        ),
    );
}
