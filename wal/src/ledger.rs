//! Durable consumer offsets: one committed offset per named consumer, plus
//! the ranges a consumer lost when the hard disk bound forced deletion.
//!
//! The ledger is small (one entry per pipe) and rewritten whole on every
//! commit through [`write_atomic`](crate::fsutil::write_atomic), so a crash
//! leaves either the previous or the new ledger. Its layout is in
//! [`format`](crate::format).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::{le_u32, le_u64, FORMAT_VERSION, LEDGER_FILE, LEDGER_MAGIC};

/// Longest consumer name: it must fit the ledger's u16 length field and stay
/// readable in tables.
pub const MAX_CONSUMER_NAME: usize = 255;

/// What the log knows about one consumer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumerState {
    /// The next offset the consumer will read: everything below it was
    /// handled (Kafka's committed-offset convention).
    pub committed: u64,
    /// Offset ranges `[from, to)` deleted by the hard disk bound before the
    /// consumer read them.
    pub lost: Vec<(u64, u64)>,
}

/// Most loss ranges kept per consumer: older ones merge into one.
pub const MAX_LOST_RANGES: usize = 64;

impl ConsumerState {
    /// The records lost, as the tables show them: `-`, or
    /// `N records [a,b) [c,d)`.
    pub fn lost_text(&self) -> String {
        let lost: u64 = self.lost.iter().map(|(a, b)| b - a).sum();
        if lost == 0 {
            return "-".to_string();
        }
        let ranges: Vec<String> = self
            .lost
            .iter()
            .map(|(a, b)| format!("[{a},{b})"))
            .collect();
        format!("{lost} records {}", ranges.join(" "))
    }

    /// Records that `[from, to)` was lost, merging it with the last range
    /// when they touch, and keeping at most [`MAX_LOST_RANGES`] ranges.
    pub fn record_loss(&mut self, from: u64, to: u64) {
        if from >= to {
            return;
        }
        match self.lost.last_mut() {
            Some(last) if last.1 >= from && last.0 <= to => {
                last.0 = last.0.min(from);
                last.1 = last.1.max(to);
            }
            _ => self.lost.push((from, to)),
        }
        if self.lost.len() > MAX_LOST_RANGES {
            let (a, _) = self.lost[0];
            let (_, b) = self.lost[1];
            self.lost.splice(0..2, [(a, b)]);
        }
    }

    /// Records lost in all.
    pub fn lost_records(&self) -> u64 {
        self.lost.iter().map(|(a, b)| b - a).sum()
    }
}

#[derive(Debug)]
pub(crate) struct Ledger {
    path: PathBuf,
    pub consumers: BTreeMap<String, ConsumerState>,
}

impl Ledger {
    pub(crate) fn load(dir: &Path) -> Result<Ledger> {
        let path = dir.join(LEDGER_FILE);
        let consumers = match std::fs::read(&path) {
            Ok(b) => decode(&b).map_err(|(position, reason)| Error::Corruption {
                path: path.clone(),
                offset: 0,
                position,
                reason: format!("consumer ledger: {reason}; restore it from a backup or delete it to forget all consumer offsets"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(Error::io(&path, "read", e)),
        };
        Ok(Ledger { path, consumers })
    }

    #[track_caller]
    pub(crate) fn save(&self) -> Result<()> {
        crate::fsutil::write_atomic(&self.path, &encode(&self.consumers), "consumer ledger")
    }

    /// The lowest committed offset, or `None` without consumers.
    pub(crate) fn min_committed(&self) -> Option<u64> {
        self.consumers.values().map(|c| c.committed).min()
    }
}

fn encode(consumers: &BTreeMap<String, ConsumerState>) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(LEDGER_MAGIC);
    b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    b.extend_from_slice(&(consumers.len() as u32).to_le_bytes());
    for (name, c) in consumers {
        b.extend_from_slice(&(name.len() as u16).to_le_bytes());
        b.extend_from_slice(name.as_bytes());
        b.extend_from_slice(&c.committed.to_le_bytes());
        b.extend_from_slice(&(c.lost.len() as u32).to_le_bytes());
        for (from, to) in &c.lost {
            b.extend_from_slice(&from.to_le_bytes());
            b.extend_from_slice(&to.to_le_bytes());
        }
    }
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

type DecodeError = (u64, String);

fn decode(b: &[u8]) -> std::result::Result<BTreeMap<String, ConsumerState>, DecodeError> {
    let short = |at: usize| {
        (
            at as u64,
            format!("ends at byte {} inside a field", b.len()),
        )
    };
    if b.len() < 20 {
        return Err(short(0));
    }
    if &b[..8] != LEDGER_MAGIC {
        return Err((0, "bad magic".into()));
    }
    let body = &b[..b.len() - 4];
    if crc32fast::hash(body) != le_u32(b, b.len() - 4) {
        return Err(((b.len() - 4) as u64, "crc mismatch".into()));
    }
    let v = le_u32(b, 8);
    if v != FORMAT_VERSION {
        return Err((8, format!("version {v}, this build reads {FORMAT_VERSION}")));
    }
    let count = le_u32(b, 12);
    let mut at = 16usize;
    let mut out = BTreeMap::new();
    let need = |at: usize, n: usize| {
        if at + n <= body.len() {
            Ok(())
        } else {
            Err(short(at))
        }
    };
    for _ in 0..count {
        need(at, 2)?;
        let n = u16::from_le_bytes([body[at], body[at + 1]]) as usize;
        at += 2;
        need(at, n + 12)?;
        let name = std::str::from_utf8(&body[at..at + n])
            .map_err(|_| (at as u64, "consumer name is not UTF-8".to_string()))?
            .to_string();
        at += n;
        let committed = le_u64(body, at);
        let lost_n = le_u32(body, at + 8) as usize;
        at += 12;
        need(at, lost_n.saturating_mul(16))?;
        let lost = (0..lost_n)
            .map(|i| (le_u64(body, at + i * 16), le_u64(body, at + i * 16 + 8)))
            .collect();
        at += lost_n * 16;
        out.insert(name, ConsumerState { committed, lost });
    }
    if at != body.len() {
        return Err((at as u64, "bytes left over after the last consumer".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let mut m = BTreeMap::new();
        m.insert(
            "p1".to_string(),
            ConsumerState {
                committed: 7,
                lost: vec![],
            },
        );
        m.insert(
            "pipe-two".to_string(),
            ConsumerState {
                committed: 90,
                lost: vec![(10, 20), (30, 40)],
            },
        );
        let b = encode(&m);
        assert_eq!(decode(&b).unwrap(), m);
        for i in 0..b.len() {
            let mut d = b.clone();
            d[i] ^= 0x10;
            assert!(decode(&d).is_err(), "flip at {i} not caught");
        }
        for cut in 0..b.len() {
            assert!(decode(&b[..cut]).is_err());
        }
    }
}
