//! Append throughput: 100 B and 1 KiB records, single and batched, under
//! each fsync policy. Each iteration appends one batch; throughput counts
//! payload bytes. Retention keeps the log under 256 MiB so long runs do not
//! fill the disk.

use std::fmt;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use wal::{Config, FsyncPolicy, Log};

struct Params {
    size: usize,
    per_batch: usize,
    fsync: FsyncPolicy,
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let policy = match self.fsync {
            FsyncPolicy::Always => "always",
            FsyncPolicy::Interval(_) => "interval",
            FsyncPolicy::Never => "never",
        };
        write!(f, "{}B×{}/{policy}", self.size, self.per_batch)
    }
}

pub fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("append");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for fsync in [
        FsyncPolicy::Never,
        FsyncPolicy::default(),
        FsyncPolicy::Always,
    ] {
        for (size, per_batch) in [(100, 1), (100, 512), (1024, 1), (1024, 64)] {
            let p = Params {
                size,
                per_batch,
                fsync,
            };
            g.throughput(Throughput::Bytes((size * per_batch) as u64));
            g.sample_size(if fsync == FsyncPolicy::Always { 10 } else { 50 });
            g.bench_with_input(BenchmarkId::from_parameter(&p), &p, |b, p| {
                let dir = tempfile::Builder::new()
                    .prefix("bench-append")
                    .tempdir_in(".")
                    .unwrap();
                let log = Log::open(
                    dir.path(),
                    Config {
                        fsync: p.fsync,
                        retention_bytes: Some(256 << 20),
                        ..Config::default()
                    },
                )
                .unwrap();
                let payload = vec![0xa5u8; p.size];
                let batch: Vec<(u8, &[u8])> = (0..p.per_batch).map(|_| (1, &payload[..])).collect();
                b.iter(|| log.append_batch(&batch).unwrap());
            });
        }
    }
    g.finish();
}
