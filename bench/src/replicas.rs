//! replicas: three facades sharing one Redis, in front of one sandbox.
//! 1. Polls per session: sessions watched through one replica, then (fresh sandbox and Redis)
//!    the same number watched through each of three; one lease holder per session should
//!    make the two equal.
//! 2. The poll budget across replicas: far more sessions than `--poll-budget` can poll at
//!    their interval, watched through all three; the total rate, sampled every second at the
//!    sandbox, must never exceed the one budget.
//! 3. Cross-replica delivery: a CheckCode answered by one replica, timed to the VERIFIED
//!    message on a watcher of another (polls set a minute apart, so only the write-through
//!    can be that quick).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;

use crate::BoxError;
use verif8_grpc::pb::v1 as pb;

use crate::client::{self, Sandbox};
use crate::procs::{Env, Proc};
use crate::report::{Bound, Report, num, percentile, sorted};
use crate::watch_polls::{polls_of, worst_window_rate};

pub struct Options {
    pub sessions: usize,
    pub interval: Duration,
    pub window: Duration,
    pub budget: f64,
    pub budget_window: Duration,
    pub deliveries: usize,
}

const REPLICAS: usize = 3;

pub async fn run(env: &Env, options: &Options) -> Result<Report, BoxError> {
    let mut report = Report::new("replicas");
    polls_per_session(env, options, &mut report).await?;
    budget_across_replicas(env, options, &mut report).await?;
    delivery_latency(env, options, &mut report).await?;
    Ok(report)
}

/// `count` replicas on `sandbox` sharing `redis`, each with `extra` flags.
async fn replicas(
    env: &Env,
    sandbox: &Proc,
    redis: &Proc,
    count: usize,
    extra: &[&str],
) -> Result<Vec<Proc>, BoxError> {
    let url = format!("redis://{}/0", redis.addr);
    let mut started = Vec::new();
    for _ in 0..count {
        let mut args = vec!["--redis-url", url.as_str()];
        args.extend_from_slice(extra);
        started.push(env.start_facade(sandbox.addr, &args).await?);
    }
    Ok(started)
}

/// Polls per session per minute with the sessions watched through `count` replicas.
async fn measure_polls(env: &Env, options: &Options, count: usize) -> Result<f64, BoxError> {
    let interval = format!("{}ms", options.interval.as_millis());
    let sandbox = env.start_sandbox().await?;
    let redis = env.start_redis().await?;
    let extra = [
        "--poll-min-interval",
        &interval,
        "--poll-max-interval",
        &interval,
        "--poll-budget",
        "100000",
    ];
    let mut facades = replicas(env, &sandbox, &redis, count, &extra).await?;
    let api = Sandbox::new(sandbox.addr);
    let sessions = api.create_sessions(1, options.sessions).await?;
    let mut streams = Vec::new();
    for facade in &facades {
        let clients = client::clients(facade.addr, 2).await?;
        streams.push(client::open_watchers(&clients, &sessions, sessions.len()).await?);
    }
    tokio::time::sleep(options.interval).await;
    let (start, before) = api.journal().await?;
    tokio::time::sleep(options.window).await;
    let (end, after) = api.journal().await?;
    if after.len() >= client::JOURNAL_CAPACITY {
        return Err("the sandbox's request journal overflowed; lower --replica-sessions".into());
    }
    for facade in &mut facades {
        facade.check_alive()?;
    }
    let polls = polls_of(&after, None) - polls_of(&before, None);
    Ok(polls as f64 * 60.0 / (end - start).as_secs_f64() / sessions.len() as f64)
}

async fn polls_per_session(
    env: &Env,
    options: &Options,
    report: &mut Report,
) -> Result<(), BoxError> {
    let one = measure_polls(env, options, 1).await?;
    let three = measure_polls(env, options, REPLICAS).await?;
    let ratio = three / one;
    report.figure(
        "polls_per_session_per_minute",
        json!({"one_replica": num(one), "three_replicas": num(three)}),
        "upstream GETs per session per minute",
        format!(
            "one replica {one:.2}, three {three:.2} ({} sessions, each watched on every \
             replica; interval {} ms, window {:.0} s)",
            options.sessions,
            options.interval.as_millis(),
            options.window.as_secs_f64()
        ),
    );
    report.target(
        "three_replicas_vs_one_polls",
        (ratio - 1.0).abs() * 100.0,
        Bound::AtMost,
        5.0,
        "%",
    );
    Ok(())
}

async fn budget_across_replicas(
    env: &Env,
    options: &Options,
    report: &mut Report,
) -> Result<(), BoxError> {
    let sandbox = env.start_sandbox().await?;
    let redis = env.start_redis().await?;
    let budget = options.budget.to_string();
    let extra = [
        "--poll-min-interval",
        "1s",
        "--poll-max-interval",
        "1s",
        "--poll-budget",
        &budget,
    ];
    let mut facades = replicas(env, &sandbox, &redis, REPLICAS, &extra).await?;
    let api = Sandbox::new(sandbox.addr);
    let sessions = api.create_sessions(1, options.sessions).await?;
    // Watch calls wait for their snapshot as long as the budget makes them: open them in the
    // background, each session through every replica.
    let mut watching = Vec::new();
    for facade in &facades {
        let clients = client::clients(facade.addr, 2).await?;
        for (i, session) in sessions.iter().enumerate() {
            let mut client = clients[i % clients.len()].clone();
            let request = client::watch_request(session);
            watching.push(tokio::spawn(async move {
                if let Ok(answer) = client.watch_session(request).await {
                    let mut stream = answer.into_inner();
                    while let Ok(Some(_)) = stream.message().await {}
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut samples = Vec::new();
    let window_end = Instant::now() + options.budget_window;
    loop {
        let (at, journal) = api.journal().await?;
        samples.push((at, polls_of(&journal, None)));
        if at >= window_end {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for task in &watching {
        task.abort();
    }
    for facade in &mut facades {
        facade.check_alive()?;
    }
    let min_window = Duration::from_secs(5).min(options.budget_window / 2);
    let (worst, seconds) = worst_window_rate(&samples, min_window);
    let (first, last) = (samples[0], samples[samples.len() - 1]);
    let mean = (last.1 - first.1) as f64 / (last.0 - first.0).as_secs_f64();
    report.figure(
        "cluster_poll_rate",
        json!({"mean": num(mean), "max_window": num(worst)}),
        "total poll rate of three replicas",
        format!(
            "mean {mean:.2}/s, highest {worst:.2}/s (window {seconds:.1} s) under \
             --poll-budget {} shared; {} sessions wanting 1 poll/s each",
            options.budget, options.sessions
        ),
    );
    // As in watch-polls: T*rate + 1 polls fit in a window T, plus one for journal timing.
    let allowed = options.budget + 2.0 / min_window.as_secs_f64();
    report.target(
        "cluster_max_poll_rate",
        worst,
        Bound::AtMost,
        allowed,
        "polls/s",
    );
    Ok(())
}

async fn delivery_latency(
    env: &Env,
    options: &Options,
    report: &mut Report,
) -> Result<(), BoxError> {
    let sandbox = env.start_sandbox().await?;
    let redis = env.start_redis().await?;
    let extra = ["--poll-min-interval", "60s", "--poll-max-interval", "60s"];
    let mut facades = replicas(env, &sandbox, &redis, 2, &extra).await?;
    let api = Sandbox::new(sandbox.addr);
    let sessions = api.create_sessions(1, options.deliveries).await?;
    let watcher = client::clients(facades[0].addr, 1).await?;
    let mut checker = client::clients(facades[1].addr, 1).await?.remove(0);
    let mut latencies = Vec::new();
    for session in &sessions {
        let mut stream = client::open_watchers(&watcher, std::slice::from_ref(session), 1)
            .await?
            .remove(0);
        let code = api.code_of(session).await?;
        checker
            .check_code(pb::CheckCodeRequest {
                session_id: session.clone(),
                code,
                ..Default::default()
            })
            .await?;
        let answered = Instant::now();
        let message = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .map_err(|_| "no message on the other replica within 5 s")?
            .ok_or("stream ended")??;
        latencies.push(answered.elapsed().as_secs_f64() * 1000.0);
        if message.session.map(|s| s.status) != Some(pb::SessionStatus::Verified as i32) {
            return Err("the message on the other replica is not VERIFIED".into());
        }
    }
    for facade in &mut facades {
        facade.check_alive()?;
    }
    let latencies = sorted(latencies);
    let (p50, p99) = (percentile(&latencies, 50.0), percentile(&latencies, 99.0));
    report.figure(
        "cross_replica_delivery_ms",
        json!({"p50": num(p50), "p99": num(p99)}),
        "CheckCode on one replica -> message on another",
        format!(
            "p50 {p50:.2} ms, p99 {p99:.2} ms over {} sessions",
            latencies.len()
        ),
    );
    report.target(
        "cross_replica_delivery_p99",
        p99,
        Bound::AtMost,
        100.0,
        "ms",
    );
    Ok(())
}
