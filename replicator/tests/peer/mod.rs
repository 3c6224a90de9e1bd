//! A `pipeTransfer` receiver for the replicator's tests whose behaviour the
//! test controls, and which accounts for every byte and every record it
//! gets.
//!
//! Requests are decoded and answered by the real receiver code
//! ([`receiver::Receiver::transfer`]); the [`Mode`] decides what happens around it:
//! answer, refuse (the apply fails, the receiver answers an error status),
//! apply and lose the reply, read and never answer, stop reading, or hold
//! the replies until the test releases them, in the order it chooses. It
//! can also play an IoTDB 1.2.0 receiver, which answers a tablet batch
//! (type 6) with 1801, unknown type ([`Peer::refuse_batches`]).
//!
//! A record's id is the value of its tablet's `id` column if it has one,
//! else its first time. The peer keeps the last value applied for each
//! device, time and measurement `s` ([`Seen::state`]): what a receiver's
//! store would hold.
//!
//! "Nothing was sent after STOP returned" is checked byte-exactly, not by
//! timing: [`Peer::received`] counts, under each connection's lock, the
//! bytes read plus the bytes still queued in the kernel (`FIONREAD`), after
//! accepting every connection waiting in the backlog. On loopback a byte
//! the sender wrote is in one of those places by the time its write
//! returned, so a count taken after STOP returned covers everything sent
//! before; any later growth was sent after.
#![allow(dead_code)] // each test binary uses a part

use std::collections::{BTreeMap, BTreeSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protocol::message::{reply, Call};
use protocol::pipe;
use protocol::rpc::{TPipeTransferReq, TPipeTransferResp, TSStatus};
use protocol::tablet::{Column, Tablet};
use receiver::{Apply, ReceiverState};

/// What the peer does with the requests it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Applies and answers, as a healthy receiver.
    Answer,
    /// Answers handshakes; the apply of every transfer fails, so the
    /// receiver answers an error status (nothing held).
    Refuse,
    /// Applies (holds the records) and closes the connection instead of
    /// answering: the acknowledgement is lost. Handshakes too.
    LoseReply,
    /// Answers handshakes; reads transfers and never answers them.
    Silent,
    /// Reads everything and answers nothing, handshakes included.
    Mute,
    /// Accepts connections and reads nothing (the sender's writes block
    /// once the socket buffers fill).
    Deaf,
    /// Answers the next handshake, then turns `Deaf`.
    DeafAfterHandshake,
    /// Applies transfers and holds each reply until [`Peer::release`]
    /// names the request; handshakes are answered. (A held connection's
    /// lock is held too: [`Peer::received`] waits for the release.)
    Hold,
}

/// One transfer request as the peer read it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The connection it came on (numbered in accept order).
    pub conn: usize,
    /// When its last byte was read.
    pub at: Instant,
    /// The first time of each tablet in it, in order (the tests write one
    /// record per tablet and use its time as the record's id).
    pub ids: Vec<i64>,
    /// The devices of its tablets.
    pub devices: Vec<String>,
    /// The mode it met.
    pub mode: Mode,
    /// Its `pipeTransfer` type (3 a tablet, 6 a batch).
    pub kind: i16,
    /// The status code it was answered (or would have been).
    pub code: i32,
}

/// Everything the peer saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Every transfer request, in the order read.
    pub requests: Vec<Request>,
    /// How many times each record was applied.
    pub held: BTreeMap<i64, u32>,
    /// Records in requests that were answered with success.
    pub acked: BTreeSet<i64>,
    /// Records read below the floor (see [`Peer::set_floor`]).
    pub below_floor: Vec<(i64, i64)>,
    /// The last value of measurement `s` applied for each (device, time).
    pub state: BTreeMap<(String, i64), f64>,
}

/// The bytes the peer got: connections accepted, and bytes read plus
/// queued in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Connections accepted so far.
    pub conns: usize,
    /// Bytes read or waiting to be read on them.
    pub bytes: u64,
}

struct ConnState {
    read: u64,
    buf: Vec<u8>,
    /// Every read: when, and how many bytes.
    chunks: Vec<(Instant, usize)>,
    receiver: ReceiverState,
    closed: bool,
}

struct Conn {
    id: usize,
    stream: TcpStream,
    io: Mutex<ConnState>,
    /// Bytes read and not yet handled (behind the frame being handled),
    /// readable without the connection's lock.
    unhandled: std::sync::atomic::AtomicU64,
}

struct Inner {
    listener: TcpListener,
    /// Held while accepting, so a count sees every connection made.
    accept: Mutex<()>,
    conns: Mutex<Vec<Arc<Conn>>>,
    mode: Mutex<Mode>,
    floor: AtomicI64,
    seen: Mutex<Seen>,
    stop: AtomicBool,
    /// Answer tablet batches 1801, as IoTDB 1.2.0.
    no_batches: AtomicBool,
    /// In `Answer` mode, requests carrying this device are held as in
    /// `Hold`.
    hold_device: Mutex<Option<String>>,
    /// Held requests (by index in `Seen::requests`) released so far.
    released: Mutex<BTreeSet<usize>>,
    released_cv: std::sync::Condvar,
    /// The real receiving side (its file directory in `_dir`).
    receiver: receiver::Receiver,
    _dir: tempfile::TempDir,
}

/// A peer on a loopback port; stops its threads when dropped.
pub struct Peer {
    inner: Arc<Inner>,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
}

impl Peer {
    /// Listens on a free loopback port in `mode`.
    pub fn start(mode: Mode) -> Peer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind peer");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let dir = tempfile::tempdir().expect("temp dir");
        let inner = Arc::new(Inner {
            listener,
            accept: Mutex::new(()),
            conns: Mutex::new(Vec::new()),
            mode: Mutex::new(mode),
            floor: AtomicI64::new(i64::MIN),
            seen: Mutex::new(Seen::default()),
            stop: AtomicBool::new(false),
            no_batches: AtomicBool::new(false),
            hold_device: Mutex::new(None),
            released: Mutex::new(BTreeSet::new()),
            released_cv: std::sync::Condvar::new(),
            receiver: receiver::Receiver::open(receiver::ReceiverConfig {
                precision: "ms".into(),
                dir: dir.path().join("receiver"),
                ip_white_list: Default::default(),
                version: "1.1".into(),
                max_file_size: 1 << 30,
            })
            .expect("receiver"),
            _dir: dir,
        });
        let i = inner.clone();
        std::thread::spawn(move || {
            while !i.stop.load(Ordering::Relaxed) {
                if accept_pending(&i) == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        Peer { inner, port }
    }

    /// Changes what the peer does with the next requests.
    pub fn set_mode(&self, mode: Mode) {
        *self.inner.mode.lock().unwrap() = mode;
    }

    /// From now on, a request carrying a record below `floor` is recorded
    /// in [`Seen::below_floor`].
    pub fn set_floor(&self, floor: i64) {
        self.inner.floor.store(floor, Ordering::SeqCst);
    }

    /// From now on, answers tablet batches (type 6) with 1801 without
    /// applying them, as an IoTDB 1.2.0 receiver does.
    pub fn refuse_batches(&self) {
        self.inner.no_batches.store(true, Ordering::SeqCst);
    }

    /// Closes every connection from the receiving side (as a node closes
    /// connections idle longer than `dn_connection_timeout_ms`).
    pub fn close_connections(&self) {
        for c in self.inner.conns.lock().unwrap().iter() {
            let _ = c.stream.shutdown(Shutdown::Both);
        }
    }

    /// In `Answer` mode, holds (as `Hold` does) every request carrying a
    /// tablet of `device`.
    pub fn hold_device(&self, device: &str) {
        *self.inner.hold_device.lock().unwrap() = Some(device.into());
    }

    /// Holds no device any more (requests already held stay held until
    /// released or their connection closes).
    pub fn stop_holding(&self) {
        *self.inner.hold_device.lock().unwrap() = None;
    }

    /// Lets the held reply of request `k` (index in [`Seen::requests`]) go.
    pub fn release(&self, k: usize) {
        self.inner.released.lock().unwrap().insert(k);
        self.inner.released_cv.notify_all();
    }

    /// Forgets which records were acknowledged (a pipe re-created: the new
    /// one's committed offset owes nothing to the old one's).
    pub fn clear_acked(&self) {
        self.inner.seen.lock().unwrap().acked.clear();
    }

    /// What the peer saw so far.
    pub fn seen<R>(&self, f: impl FnOnce(&Seen) -> R) -> R {
        f(&self.inner.seen.lock().unwrap())
    }

    /// Connections and bytes received so far, exactly (see the module doc).
    pub fn received(&self) -> Received {
        let _a = self.inner.accept.lock().unwrap();
        while accept_one(&self.inner) {}
        let conns = self.inner.conns.lock().unwrap().clone();
        let mut bytes = 0;
        for c in &conns {
            let st = c.io.lock().unwrap();
            bytes += st.read + queued(&c.stream);
        }
        Received {
            conns: conns.len(),
            bytes,
        }
    }

    /// Bytes received and not handled yet, right now: those the kernel
    /// holds unread (`FIONREAD`) and those read behind the request being
    /// handled. Does not wait for held replies: a request written behind
    /// one whose reply is held shows here.
    pub fn queued_now(&self) -> u64 {
        let conns = self.inner.conns.lock().unwrap().clone();
        conns
            .iter()
            .map(|c| queued(&c.stream) + c.unhandled.load(Ordering::SeqCst))
            .sum()
    }

    /// Waits (up to `limit`) until every byte received was read and
    /// handled; false if it did not happen in time (a `Deaf` peer).
    pub fn wait_drained(&self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        loop {
            let drained = {
                let _a = self.inner.accept.lock().unwrap();
                while accept_one(&self.inner) {}
                let conns = self.inner.conns.lock().unwrap().clone();
                conns.iter().all(|c| {
                    let st = c.io.lock().unwrap();
                    st.closed || queued(&c.stream) == 0
                })
            };
            if drained {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// When the last byte was read, if any was.
    pub fn last_byte_at(&self) -> Option<Instant> {
        let conns = self.inner.conns.lock().unwrap().clone();
        conns
            .iter()
            .filter_map(|c| c.io.lock().unwrap().chunks.last().map(|c| c.0))
            .max()
    }

    /// Every read after `t`: connection, time after `t`, bytes.
    pub fn reads_after(&self, t: Instant) -> Vec<(usize, Duration, usize)> {
        let conns = self.inner.conns.lock().unwrap().clone();
        let mut out = Vec::new();
        for c in &conns {
            for &(at, n) in &c.io.lock().unwrap().chunks {
                if at > t {
                    out.push((c.id, at - t, n));
                }
            }
        }
        out
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Relaxed);
        self.inner.released_cv.notify_all();
    }
}

/// Bytes queued in the kernel for `s` (0 when it cannot say: a reset
/// socket holds nothing to read).
fn queued(s: &TcpStream) -> u64 {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which points
    // to a live local; the descriptor is owned by `s` for the call.
    let r = unsafe { libc::ioctl(s.as_raw_fd(), libc::FIONREAD, &mut n) };
    if r == 0 {
        n.max(0) as u64
    } else {
        0
    }
}

/// Accepts what waits in the backlog; returns how many.
fn accept_pending(i: &Arc<Inner>) -> usize {
    let _a = i.accept.lock().unwrap();
    let mut n = 0;
    while accept_one(i) {
        n += 1;
    }
    n
}

/// Accepts one connection if one waits (the caller holds `accept`).
fn accept_one(i: &Arc<Inner>) -> bool {
    let Ok((s, _)) = i.listener.accept() else {
        return false;
    };
    s.set_nonblocking(false).expect("blocking");
    s.set_read_timeout(Some(Duration::from_millis(2)))
        .expect("read timeout");
    let mut conns = i.conns.lock().unwrap();
    let c = Arc::new(Conn {
        id: conns.len(),
        stream: s,
        io: Mutex::new(ConnState {
            read: 0,
            buf: Vec::new(),
            chunks: Vec::new(),
            receiver: ReceiverState::default(),
            closed: false,
        }),
        unhandled: std::sync::atomic::AtomicU64::new(0),
    });
    conns.push(c.clone());
    let i = i.clone();
    std::thread::spawn(move || serve(&i, &c));
    true
}

/// Reads `c` until it closes, handling each whole frame as it arrives. The
/// connection's lock is held across a read and the handling of what it
/// completed, so [`Peer::received`] never sees bytes in neither place.
fn serve(i: &Inner, c: &Conn) {
    let mut tmp = vec![0u8; 256 << 10];
    loop {
        if i.stop.load(Ordering::Relaxed) {
            return;
        }
        if *i.mode.lock().unwrap() == Mode::Deaf {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        let mut st = c.io.lock().unwrap();
        if st.closed {
            return;
        }
        match (&c.stream).read(&mut tmp) {
            Ok(0) => {
                st.closed = true;
                return;
            }
            Ok(n) => {
                st.read += n as u64;
                st.chunks.push((Instant::now(), n));
                st.buf.extend_from_slice(&tmp[..n]);
                while let Some(frame) = take_frame(&mut st.buf) {
                    c.unhandled.store(st.buf.len() as u64, Ordering::SeqCst);
                    if !handle(i, c, &mut st, &frame) {
                        st.closed = true;
                        let _ = c.stream.shutdown(Shutdown::Both);
                        return;
                    }
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                st.closed = true;
                return;
            }
        }
        drop(st);
        std::thread::yield_now();
    }
}

fn take_frame(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let len = u32::from_be_bytes(buf.get(..4)?.try_into().expect("4")) as usize;
    if buf.len() < 4 + len {
        return None;
    }
    let frame = buf[4..4 + len].to_vec();
    buf.drain(..4 + len);
    Some(frame)
}

/// One applied tablet: device, id, and the (time, value) of its `s`
/// measurement.
type Applied = (String, i64, Vec<(i64, f64)>);

/// Collects the tablets of a request; fails the apply when refusing.
struct Collect {
    tablets: Mutex<Vec<Applied>>,
    refuse: bool,
}

impl Apply for Collect {
    fn apply(&self, tablets: Vec<(Tablet, &[u8])>) -> Result<Option<u64>, (i32, String)> {
        let mut v = self.tablets.lock().unwrap();
        for (t, _) in &tablets {
            let col = |name: &str| t.measurements.iter().position(|m| m == name);
            let id = match col("id").map(|c| &t.columns[c]) {
                Some(Column::Int64(v)) => v[0],
                _ => t.times[0],
            };
            let s = match col("s").map(|c| &t.columns[c]) {
                Some(Column::Double(v)) => t.times.iter().copied().zip(v.iter().copied()).collect(),
                _ => Vec::new(),
            };
            v.push((t.device.clone(), id, s));
        }
        if self.refuse {
            return Err((1107, "refused by the test peer".into()));
        }
        Ok(None)
    }
}

/// Handles one frame; false to close the connection (a lost reply).
fn handle(i: &Inner, c: &Conn, st: &mut ConnState, frame: &[u8]) -> bool {
    let mut mode = *i.mode.lock().unwrap();
    let mut call = Call::parse(frame).expect("a thrift call");
    assert_eq!(call.name, "pipeTransfer");
    let req: TPipeTransferReq = call.arg().expect("decodes").expect("an argument");
    let kind = req.type_.unwrap_or(-1);
    let handshake = kind == pipe::HANDSHAKE;
    let collect = Collect {
        tablets: Mutex::new(Vec::new()),
        refuse: mode == Mode::Refuse,
    };
    let resp = if kind == pipe::TRANSFER_TABLET_BATCH && i.no_batches.load(Ordering::SeqCst) {
        // IoTDB 1.2.0 has no such type: nothing applied.
        TPipeTransferResp {
            status: TSStatus {
                code: pipe::PIPE_TYPE_ERROR,
                message: Some(format!("Unknown PipeRequestType {kind}.")),
                sub_status: None,
                redirect_node: None,
                need_retry: None,
            },
            body: None,
        }
    } else {
        i.receiver.transfer(&mut st.receiver, req, &collect).0
    };
    assert!(
        resp.status.code != 1801 || kind == pipe::TRANSFER_TABLET_BATCH,
        "1801 for type {kind}"
    );
    let code = resp.status.code;
    let out = reply(call.proto, &call.name, call.seq, &resp);
    if mode == Mode::Answer {
        if let Some(d) = &*i.hold_device.lock().unwrap() {
            if collect.tablets.lock().unwrap().iter().any(|t| &t.0 == d) {
                mode = Mode::Hold;
            }
        }
    }
    let mut index = None;
    if !handshake {
        let tablets = collect.tablets.into_inner().unwrap();
        let ids: Vec<i64> = tablets.iter().map(|t| t.1).collect();
        let mut seen = i.seen.lock().unwrap();
        let floor = i.floor.load(Ordering::SeqCst);
        for &id in &ids {
            if id < floor {
                seen.below_floor.push((id, floor));
            }
        }
        if matches!(mode, Mode::Answer | Mode::LoseReply | Mode::Hold) && code == 200 {
            for &id in &ids {
                *seen.held.entry(id).or_default() += 1;
            }
            for (device, _, s) in &tablets {
                for &(t, v) in s {
                    seen.state.insert((device.clone(), t), v);
                }
            }
        }
        if mode == Mode::Answer && code == 200 {
            seen.acked.extend(ids.iter().copied());
        }
        index = Some(seen.requests.len());
        seen.requests.push(Request {
            conn: c.id,
            at: Instant::now(),
            devices: tablets.into_iter().map(|t| t.0).collect(),
            ids,
            mode,
            kind,
            code,
        });
    }
    match mode {
        Mode::Answer | Mode::Refuse => {
            // Acknowledged (above) before the sender can read the reply.
            (&c.stream).write_all(&out).is_ok()
        }
        Mode::Hold if !handshake => {
            let k = index.expect("a transfer");
            let mut released = i.released.lock().unwrap();
            while !released.contains(&k) && !i.stop.load(Ordering::Relaxed) {
                released = i
                    .released_cv
                    .wait_timeout(released, Duration::from_millis(50))
                    .unwrap()
                    .0;
            }
            drop(released);
            if code == 200 {
                let mut seen = i.seen.lock().unwrap();
                let ids = seen.requests[k].ids.clone();
                seen.acked.extend(ids);
            }
            (&c.stream).write_all(&out).is_ok()
        }
        Mode::LoseReply => false,
        Mode::Silent | Mode::Hold if handshake => (&c.stream).write_all(&out).is_ok(),
        Mode::DeafAfterHandshake if handshake => {
            *i.mode.lock().unwrap() = Mode::Deaf;
            (&c.stream).write_all(&out).is_ok()
        }
        Mode::Silent | Mode::Mute | Mode::Deaf | Mode::DeafAfterHandshake | Mode::Hold => true,
    }
}

/// Polls `cond` every 5 ms until it holds; panics naming `what` after
/// `limit`.
pub fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The runtime the pipe managers in these tests run on: 2 workers.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A change log in `dir/wal`, fsync off.
pub fn open_log(dir: &std::path::Path) -> std::sync::Arc<wal::Log> {
    std::sync::Arc::new(
        wal::Log::open(
            dir.join("wal"),
            wal::Config {
                fsync: wal::FsyncPolicy::Never,
                ..wal::Config::default()
            },
        )
        .unwrap(),
    )
}
