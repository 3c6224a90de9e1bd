//! Power loss: everything the log reported durable survives a cut at any
//! moment, where a cut keeps only what was synced.
//!
//! A kill -9 keeps the page cache, so it cannot tell a synced write from an
//! unsynced one (`crash.rs` tests process-crash recovery). Here the wal's
//! power-loss model records what the disk holds after every sync
//! (`wal::powerloss`, dormant outside tests); a scenario of appends, syncs, consumer commits,
//! retention (forced too), process crashes, clean restarts and power cuts
//! runs under each fsync policy, and then the directory as it was after
//! *each* recorded sync is recovered (under `absolute-consistency`, which
//! refuses any damage a correct log cannot show) and checked:
//!
//! - it opens;
//! - every record below the durable offset the log reported before that
//!   sync is there, byte for byte, and no record is wrong;
//! - every committed offset reported is kept, and a consumer is never
//!   behind the log start without the loss being recorded;
//! - every file the log replaced atomically (index files, recovery point,
//!   ledger) holds what the replace wrote, once the replace returned.
//!
//! `every_sync_matters` runs the same scenario once per sync site (a line
//! of the log's code that syncs) with that one sync left out of the model,
//! and requires a check to fail each time: no sync is missing from the
//! checks, and none is dead weight.
//!
//! `cargo test -p wal --test power_loss`

mod util;

use std::path::Path;
use std::time::Duration;

use util::payload;
use wal::powerloss::{self, History};
use wal::{Config, FsyncPolicy, Log, RecoveryMode};

const SEG: u64 = 4096;

/// `checkpoint`: how often the background thread runs. An hour keeps it
/// out of the way, so that every sync comes from the scenario's own calls
/// and a run is repeatable; a millisecond lets it race with them.
fn config(fsync: FsyncPolicy, mode: RecoveryMode, checkpoint: Duration) -> Config {
    Config {
        segment_bytes: SEG,
        fsync,
        index_interval_bytes: 256,
        recovery_mode: mode,
        checkpoint_interval: checkpoint,
        retention_bytes: Some(3 * SEG),
        max_disk_bytes: Some(8 * SEG),
        ..Config::default()
    }
}

/// A temporary directory, in memory when the machine has /dev/shm: the
/// model decides what is durable, so the real syncs need not be slow.
fn scratch() -> tempfile::TempDir {
    match std::fs::metadata("/dev/shm") {
        Ok(m) if m.is_dir() => tempfile::tempdir_in("/dev/shm").unwrap(),
        _ => tempfile::tempdir().unwrap(),
    }
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the log had reported when `event` syncs were recorded.
#[derive(Debug, Clone, Copy)]
struct Claim {
    event: usize,
    durable: u64,
    committed: u64,
}

/// The claims in force after a cut at event `k`.
fn claim_at(claims: &[Claim], k: usize) -> Claim {
    claims
        .iter()
        .rev()
        .find(|c| c.event <= k)
        .copied()
        .unwrap_or(Claim {
            event: 0,
            durable: 0,
            committed: 0,
        })
}

/// Checks the directory after a cut at each event of `h`; returns the
/// first violation.
fn check_images(h: &History, claims: &[Claim], fsync: FsyncPolicy) -> Option<String> {
    let quiet = Duration::from_secs(3600);
    for img in h.images() {
        let c = claim_at(claims, img.event);
        let at = format!("cut after sync {} ({})", img.event, img.site);
        let broken = img.broken_replacements();
        if !broken.is_empty() {
            return Some(format!(
                "{at}: replaced atomically but not durable: {broken:?}"
            ));
        }
        let tmp = scratch();
        img.materialize(tmp.path());
        let log = match Log::open(
            tmp.path(),
            config(fsync, RecoveryMode::AbsoluteConsistency, quiet),
        ) {
            Ok(l) => l,
            Err(e) => return Some(format!("{at}: the log does not open: {e}")),
        };
        if log.end_offset() < c.durable {
            return Some(format!(
                "{at}: the log ends at {} but {} was reported durable",
                log.end_offset(),
                c.durable
            ));
        }
        let mut r = log.reader(log.log_start()).unwrap();
        let mut o = log.log_start();
        loop {
            match r.try_next() {
                Ok(Some(b)) => {
                    for rec in b.iter() {
                        if rec.offset != o || rec.payload != &payload(o)[..] {
                            return Some(format!("{at}: record {o} is wrong"));
                        }
                        o += 1;
                    }
                }
                Ok(None) => break,
                Err(e) => return Some(format!("{at}: reading at {o}: {e}")),
            }
        }
        if o != log.end_offset() {
            return Some(format!(
                "{at}: read up to {o}, the log ends at {}",
                log.end_offset()
            ));
        }
        let committed = log.committed("c1").unwrap_or(0);
        let want = c.committed.min(log.end_offset());
        if committed < want {
            return Some(format!(
                "{at}: consumer committed {committed}, {want} was committed before"
            ));
        }
        if committed < log.log_start() {
            return Some(format!(
                "{at}: consumer at {committed} is behind the log start {} with no loss recorded",
                log.log_start()
            ));
        }
        log.append(0, &payload(log.end_offset())).unwrap();
        log.abandon();
    }
    None
}

/// Runs the scenario in `dir` (watched); returns the first violation found.
fn scenario(
    dir: &Path,
    fsync: FsyncPolicy,
    checkpoint: Duration,
    seed: u64,
    skip: Option<&str>,
) -> Option<String> {
    let cfg = config(fsync, RecoveryMode::TolerateTailCorruption, checkpoint);
    powerloss::watch(dir);
    powerloss::skip(dir, skip);
    let mut rng = Rng(seed);
    let mut log = Log::open(dir, cfg.clone()).unwrap();
    log.register_consumer("c1", 0).unwrap();
    let mut claims: Vec<Claim> = Vec::new();
    let mut committed = 0;
    let claim = |log: &Log, claims: &mut Vec<Claim>, committed: u64| {
        claims.push(Claim {
            event: powerloss::events(dir),
            durable: log.durable_offset(),
            committed,
        });
    };
    for _ in 0..160 {
        match rng.below(100) {
            0..=69 => {
                let o = log.end_offset();
                let n = 1 + rng.below(4);
                let recs: Vec<Vec<u8>> = (o..o + n).map(payload).collect();
                let batch: Vec<(u8, &[u8])> = recs.iter().map(|p| (0, &p[..])).collect();
                assert_eq!(log.append_batch(&batch).unwrap(), o);
                claim(&log, &mut claims, committed);
            }
            70..=79 => {
                log.sync().unwrap();
                claim(&log, &mut claims, committed);
            }
            80..=86 => {
                let end = log.end_offset();
                committed = committed.max(log.log_start());
                committed += rng.below(end - committed + 1);
                log.commit("c1", committed).unwrap();
                committed = log.committed("c1").unwrap();
                claim(&log, &mut claims, committed);
            }
            87..=90 => {
                log.enforce_retention().unwrap();
                committed = log.committed("c1").unwrap();
                claim(&log, &mut claims, committed);
            }
            91..=93 => {
                // A process crash: the page cache survives.
                log.abandon();
                log = Log::open(dir, cfg.clone()).unwrap();
                claim(&log, &mut claims, committed);
            }
            94..=96 => {
                log.close().unwrap();
                drop(log);
                log = Log::open(dir, cfg.clone()).unwrap();
                claim(&log, &mut claims, committed);
            }
            _ => {
                // A power cut now: check every cut so far, then go on from
                // what the disk holds.
                log.abandon();
                let h = powerloss::history(dir);
                if let Some(v) = check_images(&h, &claims, fsync) {
                    return Some(v);
                }
                let last = h.images().last().unwrap();
                for e in std::fs::read_dir(dir).unwrap() {
                    std::fs::remove_file(e.unwrap().path()).unwrap();
                }
                last.materialize(dir);
                powerloss::watch(dir);
                powerloss::skip(dir, skip);
                claims.clear();
                log = Log::open(dir, cfg.clone()).unwrap();
                committed = log.committed("c1").unwrap();
                claim(&log, &mut claims, committed);
            }
        }
    }
    log.abandon();
    let h = powerloss::history(dir);
    check_images(&h, &claims, fsync)
}

const POLICIES: [FsyncPolicy; 3] = [
    FsyncPolicy::Always,
    FsyncPolicy::Interval(Duration::from_secs(3600)),
    FsyncPolicy::Never,
];

const SEED: u64 = 0x5eed_0fc0_ffee;

const QUIET: Duration = Duration::from_secs(3600);

/// Every fsync policy, with the background thread out of the way (a
/// repeatable run) and racing the scenario every millisecond (seeds vary).
#[test]
fn power_loss_keeps_everything_reported_durable() {
    for fsync in POLICIES {
        for (checkpoint, seed) in [
            (QUIET, SEED),
            (Duration::from_millis(1), SEED + 1),
            (Duration::from_millis(1), SEED + 2),
        ] {
            let dir = scratch();
            let v = scenario(dir.path(), fsync, checkpoint, seed, None);
            powerloss::unwatch(dir.path());
            assert!(
                v.is_none(),
                "{fsync:?}, background every {checkpoint:?}: {}",
                v.unwrap()
            );
        }
    }
}

/// Leaving out any one sync the scenarios make breaks a check under at
/// least one policy and seed (a sync only the `never` policy needs after
/// a crash is still needed).
#[test]
fn every_sync_matters() {
    let runs: Vec<(FsyncPolicy, u64)> = POLICIES
        .iter()
        .flat_map(|&p| [(p, SEED), (p, SEED + 2)])
        .collect();
    let mut sites = std::collections::BTreeSet::new();
    for &(fsync, seed) in &runs {
        let dir = scratch();
        assert!(scenario(dir.path(), fsync, QUIET, seed, None).is_none());
        sites.extend(powerloss::history(dir.path()).sites().iter().cloned());
        powerloss::unwatch(dir.path());
    }
    assert!(
        sites.len() > 10,
        "only {} sync sites were exercised",
        sites.len()
    );
    let mut unguarded = Vec::new();
    for site in &sites {
        let caught = runs.iter().find_map(|&(fsync, seed)| {
            let dir = scratch();
            let v = scenario(dir.path(), fsync, QUIET, seed, Some(site));
            powerloss::unwatch(dir.path());
            v.map(|v| format!("{fsync:?}, seed {seed:#x}: {v}"))
        });
        match caught {
            Some(v) => eprintln!("without {site}: {v}"),
            None => unguarded.push(site.clone()),
        }
    }
    assert!(
        unguarded.is_empty(),
        "leaving out these syncs broke no check:\n{}",
        unguarded.join("\n")
    );
}
