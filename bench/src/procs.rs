//! The processes under test: where the binary is, starting and stopping them, and what
//! `/proc` says about their CPU time and memory.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::BoxError;
use crate::client::{self, API_KEY, SUBACCOUNT};

/// What every scenario needs to start processes, and the context its figures were taken in.
pub struct Env {
    pub facade_bin: PathBuf,
    /// What runs `sandbox`: the facade binary unless `--sandbox-bin` (to measure an older
    /// facade against today's sandbox).
    pub sandbox_bin: Option<PathBuf>,
    pub log_dir: PathBuf,
    facade_log: Option<String>,
    facade_env: Vec<(String, String)>,
    /// With `--pin`: CPU 1 for the facade, CPU 0 for everything else.
    pin: bool,
    /// Clock ticks per second of /proc/PID/stat's utime and stime.
    pub clk_tck: f64,
    cpus: usize,
    load_at_start: String,
    rustc_at_start: usize,
    launches: AtomicU32,
}

impl Env {
    pub fn new(
        facade_bin: PathBuf,
        log_dir: Option<PathBuf>,
        facade_log: Option<String>,
        facade_env: &[String],
        pin: bool,
    ) -> Result<Self, BoxError> {
        let facade_env = facade_env
            .iter()
            .map(|pair| {
                pair.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .ok_or_else(|| format!("--facade-env wants KEY=VALUE, got {pair:?}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !facade_bin.is_file() {
            return Err(format!(
                "{} not found: build it with `cargo build --release --bins` or pass --facade-bin",
                facade_bin.display()
            )
            .into());
        }
        let log_dir = log_dir.unwrap_or_else(|| {
            std::env::temp_dir().join(format!("verif8-bench-{}", std::process::id()))
        });
        std::fs::create_dir_all(&log_dir)?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if pin {
            if cpus < 2 {
                return Err("--pin needs at least 2 CPUs".into());
            }
            pin_own_threads(LOAD_CPU)?;
        }
        // SAFETY: sysconf only reads a configuration value.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Ok(Env {
            facade_bin,
            sandbox_bin: None,
            log_dir,
            facade_log,
            facade_env,
            pin,
            clk_tck: if ticks > 0 { ticks as f64 } else { 100.0 },
            cpus,
            load_at_start: loadavg(),
            rustc_at_start: processes_named("rustc"),
            launches: AtomicU32::new(0),
        })
    }

    pub fn describe(&self) -> String {
        let mut text = format!(
            "facade binary {}; {} CPUs; load average {}; child logs in {}",
            self.facade_bin.display(),
            self.cpus,
            self.load_at_start,
            self.log_dir.display()
        );
        if self.rustc_at_start > 0 {
            text.push_str(&format!(
                "\nWARNING: {} rustc processes are running: figures will be noisier than usual",
                self.rustc_at_start
            ));
        }
        text
    }

    pub fn cpus(&self) -> usize {
        self.cpus
    }

    /// Machine context recorded in every JSON line.
    pub fn context(&self) -> Value {
        json!({
            "cpus": self.cpus,
            "clk_tck": self.clk_tck,
            "loadavg_at_start": self.load_at_start,
            "loadavg_now": loadavg(),
            "rustc_processes_at_start": self.rustc_at_start,
            "rustc_processes_now": processes_named("rustc"),
            "facade_binary": self.facade_bin.display().to_string(),
            "facade_log": self.facade_log,
            "pinned": self.pin,
            "facade_env": self.facade_env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        })
    }

    fn log_file(&self, name: &str) -> Result<File, BoxError> {
        let n = self.launches.fetch_add(1, Ordering::Relaxed);
        Ok(File::create(
            self.log_dir.join(format!("{n:02}-{name}.log")),
        )?)
    }

    fn command(&self, cpu: usize) -> Command {
        self.command_of(&self.facade_bin, cpu)
    }

    fn command_of(&self, bin: &std::path::Path, cpu: usize) -> Command {
        let mut command = Command::new(bin);
        if self.pin {
            // SAFETY: only an async-signal-safe syscall between fork and exec.
            unsafe {
                command.pre_exec(move || pin_thread(0, cpu));
            }
        }
        // The processes' configuration comes from our flags alone.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("VERIF8_") {
                command.env_remove(key);
            }
        }
        match &self.facade_log {
            Some(filter) => command.env("RUST_LOG", filter),
            None => command.env_remove("RUST_LOG"),
        };
        command.stdin(Stdio::null());
        command
    }

    /// `verif8-grpc sandbox` on a free loopback port, answering HTTP.
    pub async fn start_sandbox(&self) -> Result<Proc, BoxError> {
        self.start_sandbox_with(&[]).await
    }

    /// The sandbox with extra flags, e.g. `--latency 50ms`.
    pub async fn start_sandbox_with(&self, extra: &[&str]) -> Result<Proc, BoxError> {
        let addr = free_port()?;
        let log = self.log_file("sandbox")?;
        let bin = self.sandbox_bin.as_ref().unwrap_or(&self.facade_bin);
        let child = self
            .command_of(bin, LOAD_CPU)
            .args([
                "sandbox",
                "--listen",
                &addr.to_string(),
                "--api-key",
                API_KEY,
            ])
            .args(extra)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let proc = Proc::new("sandbox", child, addr);
        client::wait_http(addr, Duration::from_secs(10)).await?;
        Ok(proc)
    }

    /// A private `redis-server` on a free loopback port, keeping nothing on disk.
    pub async fn start_redis(&self) -> Result<Proc, BoxError> {
        let addr = free_port()?;
        let log = self.log_file("redis")?;
        let child = Command::new("redis-server")
            .args(["--port", &addr.port().to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("redis-server: {e} (scripts/setup-tools.sh installs it)"))?;
        let proc = Proc::new("redis", child, addr);
        let started = Instant::now();
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if started.elapsed() > Duration::from_secs(10) {
                return Err("redis-server did not come up".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(proc)
    }

    /// Spawns the facade in front of `sandbox` with `extra` flags; does not wait for it.
    pub fn spawn_facade(&self, sandbox: SocketAddr, extra: &[&str]) -> Result<Proc, BoxError> {
        let addr = free_port()?;
        let log = self.log_file("facade")?;
        let child = self
            .command(FACADE_CPU)
            .args(["--listen", &addr.to_string()])
            .args(["--upstream-url", &format!("http://{sandbox}")])
            .args(["--api-key", API_KEY, "--subaccount", SUBACCOUNT])
            .args(extra)
            .envs(self.facade_env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        Ok(Proc::new("facade", child, addr))
    }

    /// The facade, once its health service says SERVING.
    pub async fn start_facade(
        &self,
        sandbox: SocketAddr,
        extra: &[&str],
    ) -> Result<Proc, BoxError> {
        let proc = self.spawn_facade(sandbox, extra)?;
        client::wait_serving(proc.addr, Duration::from_secs(10)).await?;
        Ok(proc)
    }

    /// Wall time of `verif8-grpc --version`: exec, dynamic loading and exit, nothing served.
    pub fn exec_baseline(&self) -> Result<Duration, BoxError> {
        let started = Instant::now();
        let status = self
            .command(FACADE_CPU)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        let took = started.elapsed();
        if !status.success() {
            return Err(format!("{} --version failed: {status}", self.facade_bin.display()).into());
        }
        Ok(took)
    }
}

/// A child process under test; killed when dropped.
pub struct Proc {
    name: &'static str,
    child: Child,
    pub pid: u32,
    pub addr: SocketAddr,
}

impl Proc {
    fn new(name: &'static str, child: Child, addr: SocketAddr) -> Self {
        // PIDs on stderr, so a profiler can be attached (see BENCHMARKS.md).
        eprintln!("  {name} pid {} on {addr}", child.id());
        Proc {
            name,
            pid: child.id(),
            child,
            addr,
        }
    }

    /// User and system CPU time so far (/proc/PID/stat utime, stime).
    pub fn cpu(&self, env: &Env) -> Result<CpuTime, BoxError> {
        cpu_of(&format!("/proc/{}/stat", self.pid), env.clk_tck)
    }

    /// On-CPU time of the process's threads to the nanosecond (/proc/PID/task/*/schedstat), for
    /// windows too short for clock ticks; threads that already exited are not counted.
    pub fn oncpu(&self) -> Result<Duration, BoxError> {
        schedstat_sum(&format!("/proc/{}/task", self.pid), SCHEDSTAT_ONCPU_NS)
            .map(Duration::from_nanos)
    }

    /// Times the process's threads were switched onto a CPU (/proc/PID/task/*/schedstat):
    /// each is a wake-up or a preemption. Unlike CPU time, the count per request hardly moves
    /// when other work shares the machine, so it shows scheduling changes on a noisy host.
    pub fn switches(&self) -> Result<u64, BoxError> {
        schedstat_sum(&format!("/proc/{}/task", self.pid), SCHEDSTAT_TIMESLICES)
    }

    /// Resident set size (/proc/PID/status VmRSS), in KiB.
    pub fn rss_kib(&self) -> Result<u64, BoxError> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("no VmRSS for {} ({})", self.name, self.pid).into())
    }

    /// Fails if the process has exited (e.g. crashed under load).
    pub fn check_alive(&mut self) -> Result<(), BoxError> {
        match self.child.try_wait()? {
            Some(status) => Err(format!("{} exited: {status}", self.name).into()),
            None => Ok(()),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time of this benchmark process itself (the load generator).
pub fn own_cpu(env: &Env) -> Result<CpuTime, BoxError> {
    cpu_of("/proc/self/stat", env.clk_tck)
}

/// This process's on-CPU time to the nanosecond; see [`Proc::oncpu`].
pub fn own_oncpu() -> Result<Duration, BoxError> {
    schedstat_sum("/proc/self/task", SCHEDSTAT_ONCPU_NS).map(Duration::from_nanos)
}

/// Fields of /proc/PID/task/TID/schedstat: time on a CPU (ns), time waiting for one (ns),
/// timeslices run.
const SCHEDSTAT_ONCPU_NS: usize = 0;
const SCHEDSTAT_TIMESLICES: usize = 2;

/// One schedstat field summed over the threads alive now.
fn schedstat_sum(task_dir: &str, field: usize) -> Result<u64, BoxError> {
    let mut sum = 0u64;
    for task in std::fs::read_dir(task_dir)? {
        // A thread may exit between listing and reading.
        let Ok(text) = std::fs::read_to_string(task?.path().join("schedstat")) else {
            continue;
        };
        sum += text
            .split_whitespace()
            .nth(field)
            .ok_or("short schedstat")?
            .parse::<u64>()?;
    }
    Ok(sum)
}

/// CPU seconds spent in user space and in the kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuTime {
    pub user: f64,
    pub system: f64,
}

impl CpuTime {
    pub fn total(self) -> f64 {
        self.user + self.system
    }
}

impl std::ops::Sub for CpuTime {
    type Output = CpuTime;
    fn sub(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user - earlier.user,
            system: self.system - earlier.system,
        }
    }
}

impl std::ops::AddAssign for CpuTime {
    fn add_assign(&mut self, other: CpuTime) {
        self.user += other.user;
        self.system += other.system;
    }
}

fn cpu_of(stat_path: &str, clk_tck: f64) -> Result<CpuTime, BoxError> {
    let stat = std::fs::read_to_string(stat_path)?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or("malformed stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; `rest` starts at field 3.
    let utime: u64 = fields.get(11).ok_or("no utime")?.parse()?;
    let stime: u64 = fields.get(12).ok_or("no stime")?.parse()?;
    Ok(CpuTime {
        user: utime as f64 / clk_tck,
        system: stime as f64 / clk_tck,
    })
}

/// With `--pin`: the CPU of the facade, and the CPU of the sandbox and this load generator.
const FACADE_CPU: usize = 1;
const LOAD_CPU: usize = 0;

/// Restricts thread `tid` (0: the calling thread) to `cpu`; threads it creates inherit that.
fn pin_thread(tid: libc::pid_t, cpu: usize) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the pointer and size describe it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Pins every thread of this process (the runtime's workers exist already).
fn pin_own_threads(cpu: usize) -> Result<(), BoxError> {
    for task in std::fs::read_dir("/proc/self/task")? {
        let tid: libc::pid_t = task?.file_name().to_string_lossy().parse()?;
        pin_thread(tid, cpu)?;
    }
    Ok(())
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> Result<SocketAddr, BoxError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// The machine's CPU time so far, from the first line of `/proc/stat`, in
/// ticks: all of it, the part the hypervisor gave to other guests (steal),
/// and the part no CPU had work for.
#[derive(Clone, Copy, Default)]
pub struct MachineTime {
    total: u64,
    steal: u64,
    idle: u64,
}

impl MachineTime {
    pub fn read() -> Result<Self, BoxError> {
        let stat = std::fs::read_to_string("/proc/stat")?;
        let line = stat.lines().next().unwrap_or_default();
        // cpu user nice system idle iowait irq softirq steal (guest time is inside user)
        let ticks: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        if ticks.len() < 8 {
            return Err(format!("unexpected /proc/stat line: {line}").into());
        }
        Ok(MachineTime {
            total: ticks.iter().sum(),
            steal: ticks[7],
            idle: ticks[3] + ticks[4],
        })
    }

    /// The ticks from `earlier` to this reading.
    pub fn since(&self, earlier: MachineTime) -> MachineTime {
        MachineTime {
            total: self.total.saturating_sub(earlier.total),
            steal: self.steal.saturating_sub(earlier.steal),
            idle: self.idle.saturating_sub(earlier.idle),
        }
    }

    pub fn add(&mut self, other: MachineTime) {
        self.total += other.total;
        self.steal += other.steal;
        self.idle += other.idle;
    }

    /// How many CPUs, on average, had nothing to run.
    pub fn idle_cpus(&self, cpus: usize) -> f64 {
        self.idle as f64 / self.total.max(1) as f64 * cpus as f64
    }

    /// Percent of the machine's CPU time since `earlier` that was stolen.
    pub fn steal_percent_since(&self, earlier: MachineTime) -> f64 {
        let window = self.since(earlier);
        100.0 * window.steal as f64 / window.total.max(1) as f64
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Processes whose command name is `name` (e.g. other people's rustc), as a noise warning.
fn processes_named(name: &str) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|entry| {
            std::fs::read_to_string(entry.path().join("comm")).is_ok_and(|comm| comm.trim() == name)
        })
        .count()
}

/// `verif8-grpc` beside this binary. Run by cargo (`cargo run -p verif8-bench`), which builds
/// only this binary, it is rebuilt first so the facade measured is the current source.
pub fn locate_facade() -> Result<PathBuf, BoxError> {
    let here = std::env::current_exe()?;
    let facade = here.with_file_name("verif8-grpc");
    if let (Ok(cargo), Ok(manifest_dir)) =
        (std::env::var("CARGO"), std::env::var("CARGO_MANIFEST_DIR"))
    {
        rebuild(Path::new(&cargo), Path::new(&manifest_dir))?;
    }
    Ok(facade)
}

fn rebuild(cargo: &Path, manifest_dir: &Path) -> Result<(), BoxError> {
    let mut command = Command::new(cargo);
    command.current_dir(manifest_dir).args([
        "build",
        "--quiet",
        "-p",
        "verif8-grpc",
        "--bin",
        "verif8-grpc",
    ]);
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    eprintln!(
        "building verif8-grpc (cargo build -p verif8-grpc) so the current source is measured"
    );
    let status = command.status()?;
    if !status.success() {
        return Err(format!("building verif8-grpc failed: {status}").into());
    }
    Ok(())
}
