//! far: GetSession through the facade against the same GET sent straight to a sandbox that
//! answers every /api/ request after `--far-latency-ms` (a real 8x8 region's distance), at 256
//! and 1,024 calls in flight. The facade path runs over 16 client connections and over one (a
//! mesh sidecar often multiplexes everything on one). What users feel: throughput and latency
//! as ratios to the direct client measured in the same run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::BoxError;
use crate::client::{self, Client};
use crate::load::{Caller, Samples, drive};
use crate::procs::{Env, Proc};
use crate::report::{Bound, Report, num, percentile, sorted};

pub struct Options {
    pub latency_ms: u64,
    pub measure: Duration,
    pub warmup: Duration,
    pub in_flight: Vec<usize>,
}

struct Phase {
    requests: usize,
    errors: u64,
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    facade_cpu_us_per_rpc: f64,
}

pub async fn run(env: &Env, options: &Options) -> Result<Report, BoxError> {
    let latency = format!("{}ms", options.latency_ms);
    let sandbox = env.start_sandbox_with(&["--latency", &latency]).await?;
    let mut facade = env.start_facade(sandbox.addr, &[]).await?;
    let api = client::Sandbox::new(sandbox.addr);
    let session: Arc<str> = api.create_session(1).await?.into();
    let url: Arc<str> = api.session_url(&session).into();
    let sixteen = client::channels(facade.addr, 16).await?;
    let one = client::channels(facade.addr, 1).await?;

    let mut report = Report::new("far");
    report.detail("upstream_latency_ms", options.latency_ms);
    for &in_flight in &options.in_flight {
        let facade_over = |channels: &[Channel]| {
            let channels = channels.to_vec();
            let session = session.clone();
            move |i: usize| Caller::Facade {
                client: Client::new(channels[i % channels.len()].clone()),
                session: session.clone(),
            }
        };
        let over16 = phase(env, &facade, options, in_flight, facade_over(&sixteen)).await?;
        let over1 = phase(env, &facade, options, in_flight, facade_over(&one)).await?;
        // A client of its own per phase, dropped after it, so its connections don't linger.
        let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
        let direct = phase(env, &facade, options, in_flight, |_| Caller::Direct {
            http: http.clone(),
            url: url.clone(),
        })
        .await?;
        drop(http);
        eprintln!(
            "  far n={in_flight}: direct {:.0}/s, facade x16 {:.0}/s, facade x1 {:.0}/s",
            direct.rps, over16.rps, over1.rps
        );
        for (name, p) in [
            ("direct", &direct),
            ("facade16", &over16),
            ("facade1", &over1),
        ] {
            report.figure(
                &format!("n{in_flight}_{name}"),
                serde_json::json!({
                    "requests": p.requests, "errors": p.errors, "rps": num(p.rps),
                    "p50_us": num(p.p50_us), "p99_us": num(p.p99_us),
                    "facade_cpu_us_per_rpc": num(p.facade_cpu_us_per_rpc),
                }),
                &format!("{in_flight} in flight, {name}"),
                format!(
                    "{:>7.0} req/s  p50 {:>6.1} ms  p99 {:>6.1} ms  facade CPU {:>5.1} µs/RPC{}",
                    p.rps,
                    p.p50_us / 1e3,
                    p.p99_us / 1e3,
                    p.facade_cpu_us_per_rpc,
                    if p.errors > 0 {
                        format!("  {} errors", p.errors)
                    } else {
                        String::new()
                    }
                ),
            );
        }
        report.target(
            format!("{in_flight} in flight: facade/direct throughput"),
            over16.rps / direct.rps,
            Bound::AtLeast,
            0.95,
            "x",
        );
        report.target(
            format!("{in_flight} in flight: added p50"),
            (over16.p50_us - direct.p50_us) / 1e3,
            Bound::AtMost,
            1.0,
            "ms",
        );
        report.target(
            format!("{in_flight} in flight: added p99"),
            (over16.p99_us - direct.p99_us) / 1e3,
            Bound::AtMost,
            5.0,
            "ms",
        );
        report.target(
            format!("{in_flight} in flight: one connection / sixteen"),
            over1.rps / over16.rps,
            Bound::AtLeast,
            0.95,
            "x",
        );
    }
    let upstream = connections_to(&facade, sandbox.addr.port())?;
    report.figure(
        "facade_upstream_connections",
        upstream,
        "facade's connections to the upstream at the end",
        upstream.to_string(),
    );
    facade.check_alive()?;
    Ok(report)
}

/// `in_flight` callers made by `caller` for warmup + measure; the facade's CPU over the window.
async fn phase(
    env: &Env,
    facade: &Proc,
    options: &Options,
    in_flight: usize,
    caller: impl Fn(usize) -> Caller,
) -> Result<Phase, BoxError> {
    let start = Instant::now() + options.warmup;
    let end = start + options.measure;
    let workers: Vec<JoinHandle<Samples>> = (0..in_flight)
        .map(|i| tokio::spawn(drive(caller(i), start, end)))
        .collect();
    tokio::time::sleep_until(start.into()).await;
    let cpu_before = facade.cpu(env)?;
    tokio::time::sleep_until(end.into()).await;
    let cpu_after = facade.cpu(env)?;
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for worker in workers {
        let (samples, failed) = worker.await?;
        latencies.extend(samples);
        errors += failed;
    }
    let latencies = sorted(latencies);
    let requests = latencies.len();
    Ok(Phase {
        requests,
        errors,
        rps: requests as f64 / options.measure.as_secs_f64(),
        p50_us: percentile(&latencies, 50.0),
        p99_us: percentile(&latencies, 99.0),
        facade_cpu_us_per_rpc: (cpu_after - cpu_before).total() * 1e6 / requests.max(1) as f64,
    })
}

/// Established TCP connections of `proc` to `port` on this host (/proc/net/tcp{,6}, matched to
/// the process's socket inodes).
fn connections_to(proc: &Proc, port: u16) -> Result<usize, BoxError> {
    let mut inodes = std::collections::HashSet::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{}/net/{table}", proc.pid))?;
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(remote), Some(state), Some(inode)) =
                (fields.get(2), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let remote_port = remote
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if *state == "01" && remote_port == Some(port) {
                inodes.insert(format!("socket:[{inode}]"));
            }
        }
    }
    let mut count = 0;
    for fd in std::fs::read_dir(format!("/proc/{}/fd", proc.pid))? {
        let target = std::fs::read_link(fd?.path()).unwrap_or_default();
        if inodes.contains(target.to_string_lossy().as_ref()) {
            count += 1;
        }
    }
    Ok(count)
}
