//! fan-out: one status change delivered to many watchers of one session. A CheckCode with the
//! right code goes through the facade; each watcher's latency is the time from sending that RPC
//! to receiving the VERIFIED message. The CheckCode round trip itself is the baseline.

use std::time::{Duration, Instant};

use serde_json::json;

use verif8_grpc::pb::v1 as pb;

use crate::BoxError;
use crate::client::{self, SUBACCOUNT, Sandbox};
use crate::procs::{Env, own_oncpu};
use crate::report::{Bound, Report, num, percentile, sorted};

pub struct Options {
    pub watchers: usize,
    pub rounds: u32,
    /// Run as `CMD on PID` / `CMD off PID` around each round's deliveries.
    pub around_deliveries: Option<String>,
}

/// Streams per connection, well under any HTTP/2 stream limit.
const STREAMS_PER_CONNECTION: usize = 250;

fn around_deliveries(options: &Options, switch: &str, pid: u32) -> Result<(), BoxError> {
    let Some(command) = &options.around_deliveries else {
        return Ok(());
    };
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{command} {switch} {pid}"))
        .stdout(std::process::Stdio::null())
        .status()?;
    if !status.success() {
        return Err(format!("`{command} {switch} {pid}` failed: {status}").into());
    }
    Ok(())
}

pub async fn run(env: &Env, options: &Options) -> Result<Report, BoxError> {
    let sandbox = env.start_sandbox().await?;
    let mut facade = env.start_facade(sandbox.addr, &[]).await?;
    let api = Sandbox::new(sandbox.addr);
    let connections = options.watchers.div_ceil(STREAMS_PER_CONNECTION);
    let clients = client::clients(facade.addr, connections).await?;
    let mut checker = client::clients(facade.addr, 1).await?.remove(0);

    let mut latencies_ms = Vec::new();
    let mut check_ms = Vec::new();
    let mut round_p99 = Vec::new();
    // On-CPU time from the CheckCode to the last delivery, summed over rounds.
    let (mut facade_cpu, mut client_cpu) = (Duration::ZERO, Duration::ZERO);
    for round in 0..options.rounds {
        let session = api.create_session(u64::from(round) + 1).await?;
        let code = api.code_of(&session).await?;
        let streams =
            client::open_watchers(&clients, std::slice::from_ref(&session), options.watchers)
                .await?;
        let waiting: Vec<_> = streams
            .into_iter()
            .map(|mut stream| {
                tokio::spawn(async move {
                    while let Some(message) = stream.message().await? {
                        let verified = message
                            .session
                            .is_some_and(|s| s.status == pb::SessionStatus::Verified as i32);
                        if verified {
                            return Ok(Instant::now());
                        }
                    }
                    Err::<_, BoxError>("stream ended without VERIFIED".into())
                })
            })
            .collect();
        // Every watcher task is parked on its stream before the change happens.
        tokio::time::sleep(Duration::from_millis(300)).await;

        around_deliveries(options, "on", facade.pid)?;
        let cpu_before = (facade.oncpu()?, own_oncpu()?);
        let sent = Instant::now();
        let checked = checker
            .check_code(pb::CheckCodeRequest {
                subaccount_id: SUBACCOUNT.to_owned(),
                session_id: session.clone(),
                code,
            })
            .await?
            .into_inner();
        check_ms.push(sent.elapsed().as_secs_f64() * 1e3);
        if checked.session.map(|s| s.status) != Some(pb::SessionStatus::Verified as i32) {
            return Err("CheckCode with the delivered code did not verify the session".into());
        }
        let mut round_ms = Vec::with_capacity(waiting.len());
        for task in waiting {
            let received = tokio::time::timeout(Duration::from_secs(10), task).await???;
            round_ms.push((received - sent).as_secs_f64() * 1e3);
        }
        let cpu_after = (facade.oncpu()?, own_oncpu()?);
        around_deliveries(options, "off", facade.pid)?;
        facade_cpu += cpu_after.0 - cpu_before.0;
        client_cpu += cpu_after.1 - cpu_before.1;
        let round_sorted = sorted(round_ms.clone());
        round_p99.push(percentile(&round_sorted, 99.0));
        eprintln!(
            "  round {round}: p50 {:.2} ms, p99 {:.2} ms",
            percentile(&round_sorted, 50.0),
            percentile(&round_sorted, 99.0)
        );
        latencies_ms.extend(round_ms);
    }
    facade.check_alive()?;

    let all = sorted(latencies_ms);
    let checks = sorted(check_ms);
    let (first, p50, p99, max) = (
        all.first().copied().unwrap_or_default(),
        percentile(&all, 50.0),
        percentile(&all, 99.0),
        percentile(&all, 100.0),
    );
    let mut report = Report::new("fan-out");
    report.figure(
        "watchers",
        options.watchers,
        "watchers of one session",
        format!(
            "{} over {connections} connections, {} rounds ({} deliveries)",
            options.watchers,
            options.rounds,
            all.len()
        ),
    );
    report.figure(
        "delivery_ms",
        json!({"first": num(first), "p50": num(p50), "p99": num(p99), "max": num(max)}),
        "delivery latency (CheckCode sent -> VERIFIED received)",
        format!("first {first:.2} ms, p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms"),
    );
    report.figure(
        "round_p99_ms",
        round_p99.iter().map(|v| num(*v)).collect::<Vec<_>>(),
        "p99 of each round",
        round_p99
            .iter()
            .map(|v| format!("{v:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
            + " ms",
    );
    report.figure(
        "check_code_rpc_ms_p50",
        num(percentile(&checks, 50.0)),
        "baseline: CheckCode RPC round trip",
        format!("p50 {:.2} ms", percentile(&checks, 50.0)),
    );
    let per_delivery = |cpu: Duration| cpu.as_secs_f64() * 1e6 / all.len() as f64;
    report.figure(
        "cpu_us_per_delivery",
        json!({"facade": num(per_delivery(facade_cpu)), "client": num(per_delivery(client_cpu))}),
        "on-CPU time per delivery (CheckCode to last)",
        format!(
            "facade {:.1} µs, load generator {:.1} µs",
            per_delivery(facade_cpu),
            per_delivery(client_cpu)
        ),
    );
    // The facade and the load generator share the CPUs: a round cannot end before their CPU
    // time in it, spread over every CPU, has passed.
    let floor_ms = (facade_cpu + client_cpu).as_secs_f64() * 1e3
        / f64::from(options.rounds)
        / env.cpus() as f64;
    report.figure(
        "cpu_floor_ms",
        num(floor_ms),
        "floor of a round (facade + load generator CPU / CPUs)",
        format!("{floor_ms:.2} ms per round, with every CPU busy"),
    );
    report.target("delivery_p99", p99, Bound::AtMost, 10.0, "ms");
    Ok(report)
}
