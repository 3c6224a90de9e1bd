//! What the kernel tells about the machine and a process: CPU steal, load,
//! a process's CPU time and memory (`/proc`). Every figure a bench prints
//! comes with the steal and the load of its run: the machine is a shared
//! 2-core VM, and other people's work shows up in the figures.

use std::time::Duration;

/// CPU time the hypervisor gave to other tenants (`steal` in `/proc/stat`),
/// in ms summed over the CPUs; `None` where `/proc/stat` is unreadable.
pub fn cpu_steal_ms() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: u64 = stat
        .lines()
        .next()?
        .split_whitespace()
        .nth(8)?
        .parse()
        .ok()?;
    Some(ticks * 10) // USER_HZ is 100 on Linux
}

/// The 1-minute load average.
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The machine's state over a run: CPU steal and the load average at the
/// start and the end. [`Run::finish`] formats it for a table row.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    steal: Option<u64>,
    load: f64,
    start: std::time::Instant,
}

impl Run {
    /// Starts watching.
    pub fn start() -> Run {
        Run {
            steal: cpu_steal_ms(),
            load: loadavg(),
            start: std::time::Instant::now(),
        }
    }

    /// Time since [`Run::start`].
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// `steal N ms, load A→B` for the run so far.
    pub fn finish(&self) -> String {
        let steal = cpu_steal_ms()
            .zip(self.steal)
            .map_or("unknown".into(), |(b, a)| format!("{} ms", b - a));
        format!("steal {steal}, load {:.1}→{:.1}", self.load, loadavg())
    }
}

/// User + system CPU time of process `pid` so far, in seconds (fields 14
/// and 15 of `/proc/PID/stat`); 0 once the process is gone.
pub fn cpu_secs(pid: u32) -> f64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name (field 2) may hold spaces: count after its ')'.
    let Some(rest) = s.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`, `RssAnon`,
/// `RssFile`, `RssShmem`), in KiB; 0 when absent.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    kib_field(
        &std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default(),
        field,
    )
}

/// A `kB` field of `/proc/PID/smaps_rollup` (`Rss`, `Pss`,
/// `Shared_Clean`, `Private_Dirty`, `Anonymous`, ...), in KiB.
pub fn smaps_kib(pid: u32, field: &str) -> u64 {
    kib_field(
        &std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default(),
        field,
    )
}

fn kib_field(text: &str, field: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Resident memory of one process at one moment, in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`: what `top` shows as RES.
    pub rss: u64,
    /// `VmHWM`: the peak of `VmRSS` since the process started.
    pub hwm: u64,
    /// `RssAnon`: heap, stacks, anonymous mappings.
    pub anon: u64,
    /// `RssFile`: file pages mapped into the process (the mapped log,
    /// mapped chunk files, the binary).
    pub file: u64,
}

impl Memory {
    /// Reads `pid`'s memory now.
    pub fn of(pid: u32) -> Memory {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        Memory {
            rss: kib_field(&s, "VmRSS"),
            hwm: kib_field(&s, "VmHWM"),
            anon: kib_field(&s, "RssAnon"),
            file: kib_field(&s, "RssFile"),
        }
    }

    /// The larger of each field.
    pub fn max(self, o: Memory) -> Memory {
        Memory {
            rss: self.rss.max(o.rss),
            hwm: self.hwm.max(o.hwm),
            anon: self.anon.max(o.anon),
            file: self.file.max(o.file),
        }
    }

    /// `RSS a MiB (file b, anon c), HWM d MiB`.
    pub fn describe(&self) -> String {
        format!(
            "RSS {:.0} MiB (file {:.0}, anon {:.1}), HWM {:.0} MiB",
            mib(self.rss),
            mib(self.file),
            mib(self.anon),
            mib(self.hwm)
        )
    }
}

/// KiB to MiB.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local addr")
        .port()
}

/// Polls `done` every `every` until it holds or `limit` passed; false on
/// the timeout.
pub fn wait_until(limit: Duration, every: Duration, mut done: impl FnMut() -> bool) -> bool {
    let t = std::time::Instant::now();
    while t.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(every);
    }
    done()
}

/// A size from an environment variable (`20000000`, `20M`, `500k`), or
/// `default`.
pub fn env_count(name: &str, default: u64) -> u64 {
    let Ok(v) = std::env::var(name) else {
        return default;
    };
    let v = v.trim().replace('_', "");
    let (num, mul) = match v.chars().last() {
        Some('M' | 'm') => (&v[..v.len() - 1], 1_000_000),
        Some('k' | 'K') => (&v[..v.len() - 1], 1_000),
        _ => (&v[..], 1),
    };
    num.parse::<f64>()
        .map(|n| (n * mul as f64) as u64)
        .unwrap_or_else(|_| panic!("{name}={v}: not a number"))
}

/// Touches `EDGEPIPE_BENCH_WARM_MIB` MiB (default none) of page cache in
/// `dir` and gives it back: writes a scratch file and deletes it.
///
/// Why: on this VM the host takes back guest memory that has been free for
/// a while (free page reporting), and the first write to such a page costs
/// about 2.4 ns per byte in the guest, charged to whoever writes it — 320 MB
/// of fresh page cache cost 0.78 s, the same write into recently freed
/// pages 0.04 s. Which process gets the fresh pages depends on what ran
/// just before, so a catch-up's CPU figure depends on the order of the
/// runs. Called just before each timed catch-up (NATS and edgepipe alike),
/// it hands both the same kind of memory. Returns the MiB touched.
pub fn warm_page_cache(dir: &std::path::Path) -> u64 {
    use std::io::Write;
    let mib = env_count("EDGEPIPE_BENCH_WARM_MIB", 0);
    if mib == 0 {
        return 0;
    }
    let path = dir.join("warm.scratch");
    let chunk = vec![0x5au8; 1 << 20];
    let mut f = std::fs::File::create(&path).expect("scratch file");
    for _ in 0..mib {
        f.write_all(&chunk).expect("scratch write");
    }
    drop(f);
    std::fs::remove_file(&path).expect("remove scratch file");
    mib
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_figures() {
        let me = std::process::id();
        let m = Memory::of(me);
        assert!(m.rss > 0 && m.hwm >= m.rss && m.anon > 0, "{m:?}");
        assert!(smaps_kib(me, "Rss") > 0);
        // CPU time is counted in 10 ms ticks: spin until one shows.
        let t = std::time::Instant::now();
        while cpu_secs(me) == 0.0 && t.elapsed() < Duration::from_secs(10) {
            std::hint::black_box(t.elapsed());
        }
        assert!(cpu_secs(me) > 0.0);
        assert!(cpu_steal_ms().is_some());
    }

    #[test]
    fn counts_from_env() {
        assert_eq!(env_count("EDGEPIPE_BENCH_SURELY_UNSET", 7), 7);
        std::env::set_var("EDGEPIPE_BENCH_TEST_COUNT", "2.5M");
        assert_eq!(env_count("EDGEPIPE_BENCH_TEST_COUNT", 0), 2_500_000);
        std::env::set_var("EDGEPIPE_BENCH_TEST_COUNT", "500k");
        assert_eq!(env_count("EDGEPIPE_BENCH_TEST_COUNT", 0), 500_000);
    }
}
