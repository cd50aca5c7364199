//! startup: time from exec to health SERVING, and idle RSS. Baselines from the same run: the
//! same binary's `--version` (exec, loading, exit) and the sandbox's idle RSS.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::BoxError;
use crate::client;
use crate::procs::Env;
use crate::report::{Report, median, num};

pub async fn run(env: &Env, runs: u32) -> Result<Report, BoxError> {
    let sandbox = env.start_sandbox().await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sandbox_rss = sandbox.rss_kib()? as f64;

    let mut startup_ms = Vec::new();
    let mut idle_rss = Vec::new();
    let mut exec_ms = Vec::new();
    for _ in 0..runs {
        exec_ms.push(env.exec_baseline()?.as_secs_f64() * 1e3);
        let spawned = Instant::now();
        let mut facade = env.spawn_facade(sandbox.addr, &[])?;
        client::wait_serving(facade.addr, Duration::from_secs(10)).await?;
        startup_ms.push(spawned.elapsed().as_secs_f64() * 1e3);
        tokio::time::sleep(Duration::from_millis(300)).await;
        facade.check_alive()?;
        idle_rss.push(facade.rss_kib()? as f64);
    }

    let range = |values: &[f64]| {
        let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = values.iter().copied().fold(0.0, f64::max);
        (lo, hi)
    };
    let (start_lo, start_hi) = range(&startup_ms);
    let mut report = Report::new("startup");
    report.figure(
        "exec_to_serving_ms",
        json!({"median": num(median(&startup_ms)), "min": num(start_lo), "max": num(start_hi)}),
        "exec -> health SERVING",
        format!(
            "median {:.1} ms (min {start_lo:.1}, max {start_hi:.1}; {runs} runs; ~1 ms resolution)",
            median(&startup_ms)
        ),
    );
    report.figure(
        "exec_version_ms",
        num(median(&exec_ms)),
        "baseline: `verif8-grpc --version` exec to exit",
        format!("median {:.1} ms", median(&exec_ms)),
    );
    report.figure(
        "idle_rss_kib",
        num(median(&idle_rss)),
        "facade idle RSS",
        format!("median {:.0} KiB", median(&idle_rss)),
    );
    report.figure(
        "sandbox_idle_rss_kib",
        num(sandbox_rss),
        "baseline: sandbox process idle RSS",
        format!("{sandbox_rss:.0} KiB"),
    );
    report.note("the issue sets no target for startup; figures only");
    Ok(report)
}
