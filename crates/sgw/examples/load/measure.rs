//! Measurement primitives: sequential round trips with percentiles, and
//! work against a server with the CPU time that server spent on it.

use std::time::{Duration, Instant};

use crate::Error;

/// User + system CPU time of a process, all its threads (`/proc/PID/stat`,
/// in USER_HZ = 100 ticks per second).
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which may contain spaces; utime and
    // stime are fields 14 and 15, i.e. the 12th and 13th after it.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    Duration::from_millis((ticks(11).unwrap_or(0) + ticks(12).unwrap_or(0)) * 10)
}

/// Work done against one server, and the server's CPU time for it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Load {
    calls: u64,
    elapsed: Duration,
    server_cpu: Duration,
}

impl Load {
    /// Runs `work` (which returns the calls it completed) and charges it
    /// the CPU time process `pid` used meanwhile.
    pub async fn measure(
        pid: u32,
        work: impl Future<Output = Result<u64, Error>>,
    ) -> Result<Self, Error> {
        let (cpu, started) = (cpu_time(pid), Instant::now());
        let calls = work.await?;
        Ok(Self {
            calls,
            elapsed: started.elapsed(),
            server_cpu: cpu_time(pid).saturating_sub(cpu),
        })
    }

    pub fn add(&mut self, other: Load) {
        self.calls += other.calls;
        self.elapsed += other.elapsed;
        self.server_cpu += other.server_cpu;
    }

    pub fn rate(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    /// Server CPU per call, in µs.
    pub fn cpu_per_call(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.calls.max(1) as f64
    }
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// Round trips of one kind of call, made one at a time on one connection.
pub struct Latency<F> {
    call: F,
    samples: Vec<Duration>,
}

impl<F> Latency<F> {
    /// Makes `warmup` untimed calls first.
    pub async fn new<E>(warmup: usize, mut call: F) -> Result<Self, Error>
    where
        F: AsyncFnMut() -> Result<(), E>,
        Error: From<E>,
    {
        for _ in 0..warmup {
            call().await?;
        }
        Ok(Self {
            call,
            samples: Vec::new(),
        })
    }

    pub async fn sample<E>(&mut self, calls: usize) -> Result<(), Error>
    where
        F: AsyncFnMut() -> Result<(), E>,
        Error: From<E>,
    {
        for _ in 0..calls {
            let started = Instant::now();
            (self.call)().await?;
            self.samples.push(started.elapsed());
        }
        Ok(())
    }

    /// p50, p90, p99.
    pub fn percentiles(mut self) -> [Duration; 3] {
        self.samples.sort();
        [0.5, 0.9, 0.99].map(|p| percentile(&self.samples, p))
    }
}
