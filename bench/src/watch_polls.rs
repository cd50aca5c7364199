//! watch-polls: what watching costs the upstream, counted at the sandbox's request journal.
//! 1. Sessions watched by 1, 10, 100 and 1,000 streams, all at once and measured over the same
//!    window, with a fixed poll interval: each session's polls per minute (extrapolated from
//!    the window) should not depend on how many watch it.
//! 2. Many sessions each watched once, far more than the budget can poll at their intervals:
//!    the total poll rate, sampled every second, must never exceed `--poll-budget`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::BoxError;
use crate::client::{self, JOURNAL_CAPACITY, JournalEntry, Sandbox};
use crate::procs::Env;
use crate::report::{Bound, Report, num};

pub struct Options {
    pub watcher_counts: Vec<usize>,
    pub interval: Duration,
    pub window: Duration,
    pub budget: f64,
    pub budget_sessions: usize,
    pub budget_window: Duration,
}

/// Shortest window the budget is checked over.
const MIN_BUDGET_WINDOW: Duration = Duration::from_secs(5);

pub async fn run(env: &Env, options: &Options) -> Result<Report, BoxError> {
    let mut report = Report::new("watch-polls");
    per_watcher_count(env, options, &mut report).await?;
    total_against_budget(env, options, &mut report).await?;
    Ok(report)
}

async fn per_watcher_count(
    env: &Env,
    options: &Options,
    report: &mut Report,
) -> Result<(), BoxError> {
    let interval = format!("{}ms", options.interval.as_millis());
    let sandbox = env.start_sandbox().await?;
    let mut facade = env
        .start_facade(
            sandbox.addr,
            &[
                "--poll-min-interval",
                &interval,
                "--poll-max-interval",
                &interval,
                // Far above what these few sessions need, so only the schedule shapes polling.
                "--poll-budget",
                "1000",
            ],
        )
        .await?;
    let api = Sandbox::new(sandbox.addr);
    let sessions = api.create_sessions(1, options.watcher_counts.len()).await?;
    let clients = client::clients(facade.addr, 4).await?;
    let mut streams = Vec::new();
    for (session, count) in sessions.iter().zip(&options.watcher_counts) {
        streams.push(client::open_watchers(&clients, std::slice::from_ref(session), *count).await?);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (start, before) = api.journal().await?;
    tokio::time::sleep(options.window).await;
    let (end, after) = api.journal().await?;
    facade.check_alive()?;
    if after.len() >= JOURNAL_CAPACITY {
        return Err("the sandbox's request journal overflowed; shorten --poll-window-secs".into());
    }
    drop(streams);
    let seconds = (end - start).as_secs_f64();

    let mut rates = Vec::new();
    let mut per_count = serde_json::Map::new();
    let mut shown = Vec::new();
    for (session, count) in sessions.iter().zip(&options.watcher_counts) {
        let path = Sandbox::session_path(session);
        let polls = polls_of(&after, Some(&path)) - polls_of(&before, Some(&path));
        let per_minute = polls as f64 * 60.0 / seconds;
        rates.push(per_minute);
        per_count.insert(
            count.to_string(),
            json!({"polls_in_window": polls, "per_minute": num(per_minute)}),
        );
        shown.push(format!("{count} watchers: {per_minute:.1}"));
    }
    let (min, max) = rates.iter().fold((f64::INFINITY, 0f64), |(lo, hi), r| {
        (lo.min(*r), hi.max(*r))
    });
    let spread = (max - min) / min;
    report.figure(
        "polls_per_session_per_minute",
        serde_json::Value::Object(per_count),
        "upstream GETs per session per minute",
        format!(
            "{} (poll interval fixed at {interval}, {seconds:.1} s window x 60/window; \
             schedule alone would give {:.1})",
            shown.join(", "),
            60.0 / options.interval.as_secs_f64()
        ),
    );
    report.detail("poll_interval_ms", options.interval.as_millis() as u64);
    report.detail("window_seconds", seconds);
    report.figure(
        "spread",
        num(spread),
        "spread (max-min)/min",
        format!("{:.1} %", spread * 100.0),
    );
    report.target(
        "polls_spread_across_watcher_counts",
        spread * 100.0,
        Bound::AtMost,
        5.0,
        "%",
    );
    Ok(())
}

async fn total_against_budget(
    env: &Env,
    options: &Options,
    report: &mut Report,
) -> Result<(), BoxError> {
    let budget = options.budget.to_string();
    let sandbox = env.start_sandbox().await?;
    let mut facade = env
        .start_facade(sandbox.addr, &["--poll-budget", &budget])
        .await?;
    let api = Sandbox::new(sandbox.addr);
    let creating = Instant::now();
    let sessions = api.create_sessions(1, options.budget_sessions).await?;
    eprintln!(
        "  created {} sessions in {:.1} s",
        sessions.len(),
        creating.elapsed().as_secs_f64()
    );
    let clients = client::clients(facade.addr, sessions.len().div_ceil(1000)).await?;

    // Streams wait for their snapshot as long as the budget makes them; we don't: the sessions
    // are watched (each has a poller) from the moment the call arrives.
    let stop = CancellationToken::new();
    let failed = Arc::new(AtomicUsize::new(0));
    for (i, session) in sessions.iter().enumerate() {
        let mut client = clients[i % clients.len()].clone();
        let request = client::watch_request(session);
        let (stop, failed) = (stop.clone(), failed.clone());
        tokio::spawn(async move {
            let watch = async {
                let mut stream = client.watch_session(request).await?.into_inner();
                while stream.message().await?.is_some() {}
                Ok::<_, tonic::Status>(())
            };
            tokio::select! {
                _ = stop.cancelled() => {}
                result = watch => if result.is_err() { failed.fetch_add(1, Ordering::Relaxed); },
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut samples: Vec<(Instant, usize)> = Vec::new();
    let window_end = Instant::now() + options.budget_window;
    let mut overflowed = false;
    loop {
        let (at, journal) = api.journal().await?;
        // Polls can only have been dropped from the journal if its oldest entry is one.
        if journal.len() >= JOURNAL_CAPACITY && journal.first().is_some_and(JournalEntry::is_poll) {
            overflowed = true;
            break;
        }
        samples.push((at, polls_of(&journal, None)));
        if at >= window_end {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let failed = failed.load(Ordering::Relaxed);
    stop.cancel();
    facade.check_alive()?;
    if overflowed || samples.len() < 2 {
        return Err("the sandbox's request journal overflowed while counting polls".into());
    }

    let (first, last) = (samples[0], samples[samples.len() - 1]);
    let total_seconds = (last.0 - first.0).as_secs_f64();
    let mean = (last.1 - first.1) as f64 / total_seconds;
    let min_window = MIN_BUDGET_WINDOW.min(options.budget_window / 2);
    let worst = worst_window_rate(&samples, min_window);
    // The budget admits T*rate + 1 polls in any window T; one more for where a poll lands
    // relative to the two journal reads.
    let allowed = options.budget + 2.0 / min_window.as_secs_f64();
    report.figure(
        "budget_sessions",
        sessions.len(),
        "sessions watched at once",
        format!(
            "{} (each by one stream; {failed} stream errors)",
            sessions.len(),
        ),
    );
    report.figure(
        "poll_budget",
        options.budget,
        "configured --poll-budget",
        format!("{} polls/s", options.budget),
    );
    report.figure(
        "mean_poll_rate",
        num(mean),
        "mean poll rate",
        format!("{mean:.2} polls/s over {total_seconds:.1} s"),
    );
    report.figure(
        "max_window_poll_rate",
        num(worst.0),
        &format!(
            "highest rate in any window >= {:.0} s",
            min_window.as_secs_f64()
        ),
        format!("{:.2} polls/s (window {:.1} s)", worst.0, worst.1),
    );
    if failed > 0 {
        report.note(format!(
            "{failed} of the watch calls failed, so fewer sessions than intended were watched"
        ));
    }
    report.detail("samples", samples.len());
    report.detail("stream_errors", failed);
    report.target("max_poll_rate", worst.0, Bound::AtMost, allowed, "polls/s");
    report.note(format!(
        "max_poll_rate limit = budget + 2/{:.0} s: the budget admits T*rate+1 polls in a window T, \
         plus one for journal-read timing",
        min_window.as_secs_f64()
    ));
    Ok(())
}

/// The highest rate between any two samples (instant, running count) at least `min_window`
/// apart, and that window's length in seconds.
pub fn worst_window_rate(samples: &[(Instant, usize)], min_window: Duration) -> (f64, f64) {
    let mut worst = (0.0f64, 0.0f64);
    for (i, (t0, n0)) in samples.iter().enumerate() {
        for (t1, n1) in &samples[i + 1..] {
            let seconds = (*t1 - *t0).as_secs_f64();
            if seconds >= min_window.as_secs_f64() {
                let rate = (n1 - n0) as f64 / seconds;
                if rate > worst.0 {
                    worst = (rate, seconds);
                }
            }
        }
    }
    worst
}

/// Polls (GETs without a query) in the journal, for one session path or all.
pub fn polls_of(journal: &[JournalEntry], path: Option<&str>) -> usize {
    journal
        .iter()
        .filter(|entry| entry.is_poll() && path.is_none_or(|p| entry.path == p))
        .count()
}
