//! watch-memory: the facade's resident memory per idle WatchSession stream. Streams watch a
//! few sessions polled once a minute, so the upstream plays no part; the figure is the RSS
//! growth from opening the streams, divided by their number.

use std::time::{Duration, Instant};

use crate::BoxError;
use crate::client;
use crate::procs::Env;
use crate::report::{Bound, Report};

pub struct Options {
    pub streams: usize,
    pub sessions: usize,
    pub connections: usize,
}

const TARGET_BYTES_PER_STREAM: f64 = 4096.0;

pub async fn run(env: &Env, options: &Options) -> Result<Report, BoxError> {
    let sandbox = env.start_sandbox().await?;
    // Room for the one stream per session opened first as well as all the others.
    let max_streams = (options.streams + options.sessions).to_string();
    let mut facade = env
        .start_facade(
            sandbox.addr,
            &[
                "--poll-min-interval",
                "60s",
                "--poll-max-interval",
                "60s",
                "--max-watch-streams",
                &max_streams,
            ],
        )
        .await?;
    let announced = client::announced_max_concurrent_streams(facade.addr).await?;
    let per_connection_limit = announced.map_or(usize::MAX, |n| n as usize);
    // Enough connections that no stream waits for a slot.
    let connections = options
        .connections
        .max(options.streams.div_ceil(per_connection_limit));

    let api = client::Sandbox::new(sandbox.addr);
    let sessions = api.create_sessions(1, options.sessions).await?;
    let clients = client::clients(facade.addr, connections).await?;
    // One stream per session first, so pollers, session entries and the connections exist
    // in the baseline and the figure is the cost of one more stream.
    let first = client::open_watchers(&clients, &sessions, sessions.len()).await?;
    settle().await;
    let baseline_kib = facade.rss_kib()?;

    let opening = Instant::now();
    let streams = client::open_watchers(&clients, &sessions, options.streams).await?;
    let open_seconds = opening.elapsed().as_secs_f64();
    settle().await;
    let loaded_kib = facade.rss_kib()?;
    facade.check_alive()?;

    drop(streams);
    settle().await;
    let closed_kib = facade.rss_kib()?;
    drop(first);

    let per_stream = (loaded_kib as f64 - baseline_kib as f64) * 1024.0 / options.streams as f64;
    let mut report = Report::new("watch-memory");
    report.figure(
        "streams",
        options.streams,
        "idle streams",
        format!(
            "{} over {connections} connections, {} sessions, opened in {open_seconds:.2} s",
            options.streams,
            sessions.len()
        ),
    );
    report.detail("connections", connections);
    report.detail("sessions", sessions.len());
    report.detail("open_seconds", open_seconds);
    report.figure(
        "server_max_concurrent_streams",
        announced,
        "facade's HTTP/2 max concurrent streams",
        announced.map_or_else(
            || "none announced (unlimited)".to_owned(),
            |n| n.to_string(),
        ),
    );
    report.figure(
        "rss_baseline_kib",
        baseline_kib,
        "RSS before (connections + 1 stream/session)",
        format!("{baseline_kib} KiB"),
    );
    report.figure(
        "rss_loaded_kib",
        loaded_kib,
        "RSS with the streams open",
        format!("{loaded_kib} KiB"),
    );
    report.figure(
        "rss_after_close_kib",
        closed_kib,
        "RSS after closing them",
        format!("{closed_kib} KiB (allocator keeps freed memory)"),
    );
    report.figure(
        "rss_bytes_per_stream",
        per_stream,
        "RSS per stream",
        format!("{per_stream:.0} B"),
    );
    report.target(
        "rss_per_stream",
        per_stream,
        Bound::AtMost,
        TARGET_BYTES_PER_STREAM,
        "B",
    );
    report.note(
        "reference points, not measured here: tonic's default ~7-8 KiB per stream, grpc-java ~2.5 KiB",
    );
    Ok(report)
}

/// Lets deferred frees and the last writes land before RSS is read.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1000)).await;
}
