//! How a thrift connector's requests go on the wire: compressed
//! (`connector.compressor`, IoTDB 1.3's type-300 request,
//! `protocol::pipe::compress`) and paced (`connector.rate-limit-bytes-per-second`).
//!
//! # Compression
//! Every request but the handshake is sent as IoTDB 1.3.3's
//! `PipeTransferCompressedReq` when `connector.compressor` names one or
//! more compressors (applied in the order given), as IoTDB's
//! `compressIfNeeded` does. The request's parts are gathered into one
//! buffer (a copy, at memory speed) and compressed off the async threads
//! when large (`spawn_blocking`). A receiver that does not know type 300
//! (IoTDB before 1.3, answering 1801) gets an error naming the key to
//! drop; nothing of that request was applied.
//!
//! # Rate limit
//! A token bucket per live connector, shared by all its connections (the
//! async connector's pool included) and target nodes, refilled at
//! `connector.rate-limit-bytes-per-second` and holding at most one second
//! of it (a burst, as IoTDB's Guava limiter stores). A frame (after
//! compression) is written in slices of about a twentieth of a second's
//! worth, each once the bucket holds it, so the rate on the wire is the
//! limit whatever the request's size. (IoTDB acquires a whole request
//! before writing it, so its writes and its waits add up: measured here
//! that way, a 500 kB/s limit over a 10 Mbit/s link gave 364 kB/s.) IoTDB
//! keeps a bucket per pipe and target node; with one target node (the
//! usual edge uplink) that is the same. The pacing time is added to the
//! call's timeout (`pipe_connector_timeout_ms`): it is not the receiver's.

use std::sync::Mutex;
use std::time::Duration;

use protocol::pipe::compress::{self, Compressor};
use tokio::io::AsyncWrite;
use tokio::time::Instant;

use super::thrift_sync::write_parts;

/// `connector.compressor` and `connector.rate-limit-bytes-per-second`,
/// validated (part of a thrift connector's spec).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WireSpec {
    /// The compressors, in the order applied; empty: requests go as they
    /// are.
    pub compressors: Vec<Compressor>,
    /// The most bytes per second written; `None`: unlimited (IoTDB's -1).
    pub rate_limit: Option<u64>,
}

/// A request gathered into more than this many bytes is compressed on a
/// blocking thread, not on the async thread that sends it (zstd takes
/// about a millisecond for this much).
const INLINE_COMPRESS: usize = 256 << 10;

/// The live settings of one connector: its compressors and its bucket.
#[derive(Debug, Default)]
pub(crate) struct Wire {
    compressors: Vec<Compressor>,
    limit: Option<Bucket>,
}

impl Wire {
    /// The wire of a connector with `spec`.
    pub(crate) fn new(spec: &WireSpec) -> Wire {
        Wire {
            compressors: spec.compressors.clone(),
            limit: spec.rate_limit.map(Bucket::new),
        }
    }

    /// The type-300 body carrying the request of `kind` whose body is
    /// `parts`, or `None` to send it as it is (no compressors, or a
    /// request `pipe::compress` sends uncompressed).
    pub(crate) async fn pack(&self, kind: i16, parts: &[&[u8]]) -> Option<Vec<u8>> {
        if self.compressors.is_empty() {
            return None;
        }
        let inner = compress::inner_request(kind, parts);
        if inner.len() <= INLINE_COMPRESS {
            return compress::compress_request(&self.compressors, &inner);
        }
        let chain = self.compressors.clone();
        tokio::task::spawn_blocking(move || compress::compress_request(&chain, &inner))
            .await
            .ok()
            .flatten()
    }

    /// Whether writes are paced (a rate limit is set).
    pub(crate) fn is_paced(&self) -> bool {
        self.limit.is_some()
    }

    /// How long `bytes` take at the rate limit (nothing without one).
    #[cfg(test)]
    fn pacing(&self, bytes: usize) -> Duration {
        self.limit
            .as_ref()
            .map_or(Duration::ZERO, |b| b.cost(bytes))
    }

    /// Waits until `bytes` may be written (at once without a rate limit).
    async fn pace(&self, bytes: usize) {
        if let Some(b) = &self.limit {
            if let Some(until) = b.take(bytes, Instant::now()) {
                tokio::time::sleep_until(until).await;
            }
        }
    }

    /// [`write_parts`] in slices of the bucket's [`Bucket::slice`] bytes,
    /// each written once the bucket holds it and within `timeout` of
    /// that. The waits for the bucket, which the connector's other
    /// requests share, are not bounded by `timeout`: they are the rate
    /// limit's, not the receiver's.
    ///
    /// # Errors
    /// The stream's write error; `TimedOut` for a slice not written within
    /// `timeout`.
    pub(crate) async fn write_paced<W: AsyncWrite + Unpin + ?Sized>(
        &self,
        w: &mut W,
        parts: &[&[u8]],
        timeout: Duration,
    ) -> std::io::Result<()> {
        let slice = self.limit.as_ref().map_or(usize::MAX, Bucket::slice);
        let mut group: Vec<&[u8]> = Vec::new();
        let mut n = 0;
        for part in parts {
            let mut p = *part;
            while !p.is_empty() {
                let take = (slice - n).min(p.len());
                group.push(&p[..take]);
                n += take;
                p = &p[take..];
                if n == slice {
                    self.pace(n).await;
                    write_within(w, &group, timeout).await?;
                    group.clear();
                    n = 0;
                }
            }
        }
        if n > 0 {
            self.pace(n).await;
            write_within(w, &group, timeout).await?;
        }
        Ok(())
    }
}

/// [`write_parts`] within `timeout` (`TimedOut` if not).
async fn write_within<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    parts: &[&[u8]],
    timeout: Duration,
) -> std::io::Result<()> {
    tokio::time::timeout(timeout, write_parts(w, parts))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// A token bucket as a theoretical arrival time (GCRA): the bucket is
/// full when `tat` ≤ now, and each request pushes `tat` on by its bytes'
/// worth of time.
#[derive(Debug)]
struct Bucket {
    /// Bytes per second.
    rate: u64,
    /// How far `tat` may run ahead of now before a request waits: the
    /// bucket's size in time (one second).
    burst: Duration,
    tat: Mutex<Option<Instant>>,
}

impl Bucket {
    fn new(bytes_per_second: u64) -> Bucket {
        Bucket {
            rate: bytes_per_second.max(1),
            burst: Duration::from_secs(1),
            tat: Mutex::new(None),
        }
    }

    /// How long `bytes` take at the rate.
    fn cost(&self, bytes: usize) -> Duration {
        let nanos = bytes as u128 * 1_000_000_000 / u128::from(self.rate);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// The bytes written at once: a twentieth of a second's worth, at
    /// least 1 KiB, at most 256 KiB.
    fn slice(&self) -> usize {
        usize::try_from(self.rate / 20)
            .unwrap_or(usize::MAX)
            .clamp(1 << 10, 256 << 10)
    }

    /// Takes `bytes` at `now`; returns when they may be written, if later
    /// than now.
    fn take(&self, bytes: usize, now: Instant) -> Option<Instant> {
        let cost = self.cost(bytes);
        let mut tat = self.tat.lock().expect("bucket");
        let start = tat.map_or(now, |t| t.max(now));
        let next = start + cost;
        *tat = Some(next);
        let at = next.checked_sub(self.burst)?;
        (at > now).then_some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_holds_a_second_and_refills_at_the_rate() {
        let b = Bucket::new(1000);
        let t0 = Instant::now();
        // A full bucket: a second's worth goes at once.
        assert_eq!(b.take(600, t0), None);
        assert_eq!(b.take(400, t0), None);
        // Then each byte waits for its share of time.
        assert_eq!(b.take(500, t0), Some(t0 + Duration::from_millis(500)));
        // Idle for long: full again, never fuller.
        let t1 = t0 + Duration::from_secs(60);
        assert_eq!(b.take(1000, t1), None);
        assert_eq!(b.take(1, t1), Some(t1 + Duration::from_millis(1)));
        // A request larger than the bucket waits until it is full, and
        // leaves it in debt.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!(b.take(5000, t2), Some(t2 + Duration::from_secs(4)));
        assert_eq!(
            b.take(1000, t2 + Duration::from_secs(4)),
            Some(t2 + Duration::from_secs(5))
        );
        // Over any long stretch: the rate, within the one-second burst.
        let b = Bucket::new(10_000);
        let t0 = Instant::now();
        let mut now = t0;
        let mut sent = 0u64;
        while now < t0 + Duration::from_secs(10) {
            if let Some(at) = b.take(1234, now) {
                now = at;
            }
            sent += 1234;
        }
        let secs = (now - t0).as_secs_f64();
        assert!(
            sent as f64 <= 10_000.0 * (secs + 1.0) + 1234.0,
            "{sent} in {secs}"
        );
        assert!(sent as f64 >= 10_000.0 * secs, "{sent} in {secs}");
    }

    #[tokio::test]
    async fn a_paced_write_is_the_frame_in_slices_at_the_rate() {
        let wire = Wire::new(&WireSpec {
            compressors: Vec::new(),
            rate_limit: Some(100_000),
        });
        assert!(wire.is_paced());
        assert_eq!(wire.pacing(50_000), Duration::from_millis(500));
        let parts: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 7_000]).collect();
        let refs: Vec<&[u8]> = parts.iter().map(|p| &p[..]).collect();
        let mut out = Vec::new();
        let t0 = std::time::Instant::now();
        wire.write_paced(&mut out, &refs, Duration::from_secs(5))
            .await
            .unwrap();
        // 280 kB at 100 kB/s, the first second's worth at once: 1.8 s.
        let took = t0.elapsed();
        assert_eq!(out, parts.concat());
        assert!(took >= Duration::from_millis(1700), "{took:?}");
        assert!(took < Duration::from_secs(4), "{took:?}");
        assert!(!Wire::default().is_paced());
        assert_eq!(Wire::default().pacing(1 << 30), Duration::ZERO);
    }

    #[tokio::test]
    async fn requests_are_packed_as_iotdb_does_and_only_with_compressors() {
        let body = b"tablet bytes ".repeat(100);
        let none = Wire::new(&WireSpec::default());
        assert_eq!(none.pack(3, &[&body]).await, None);
        let zstd = Wire::new(&WireSpec {
            compressors: vec![Compressor::Zstd(3)],
            rate_limit: None,
        });
        let z = zstd.pack(3, &[&body[..10], &body[10..]]).await.unwrap();
        let inner = compress::decompress(&z).unwrap();
        assert_eq!((inner.type_, inner.body()), (3, &body[..]));
        // A large request is compressed on a blocking thread: the same bytes.
        let big = b"0123456789abcdef".repeat(40_000);
        let z = zstd.pack(6, &[&big]).await.unwrap();
        assert_eq!(compress::decompress(&z).unwrap().body(), &big[..]);
    }
}
