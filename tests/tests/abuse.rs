//! Network abuse against a real server (issue 7 findings 5 and 6, DESIGN
//! invariant 11): while connections claim frames just under the 512 MiB cap
//! and never send them, others send one byte a second, idle sockets hold
//! the connection limit and others repeat the 1 MB amplification request,
//! a normal client's query is answered within a second every time, and the
//! server's resident memory stays under 128 MiB (the node's RSS target).
//!
//! The connection timeout is shortened to 3 s so the stalled sockets are
//! cut within the test.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::{config_file, NodeProc};
use node::client::Session;
use protocol::message::{read_reply, Proto};
use protocol::pipe;
use protocol::rpc::{TPipeTransferReq, TPipeTransferResp};

const CAP: usize = 24;
const RSS_BOUND_KIB: u64 = 128 * 1024;

#[derive(Clone, Copy, Debug)]
enum Attack {
    /// A frame length just under the cap, 4 bytes, then nothing.
    Oversized,
    /// A 1,000-byte frame sent one byte a second.
    Slowloris,
    /// A connection that sends nothing.
    Idle,
    /// The 1 MB pipeTransfer tablet of finding 5, over and over; `bool`:
    /// the variant with timestamps (applied) or without (refused).
    Amplify(bool),
}

fn put(b: &mut Vec<u8>, s: &[u8]) {
    b.extend_from_slice(&(s.len() as i32).to_be_bytes());
    b.extend_from_slice(s);
}

/// A type-3 body of about 1 MB claiming `rows` rows and `absent` value
/// columns sent absent (one byte each), with or without timestamps.
fn amplification_body(with_times: bool) -> Vec<u8> {
    let (rows, absent) = if with_times {
        (60_000usize, 400usize)
    } else {
        (1_000_000, 400)
    };
    let mut b = Vec::new();
    put(&mut b, b"root.amp.d");
    b.extend_from_slice(&(rows as i32).to_be_bytes());
    b.push(1);
    b.extend_from_slice(&(absent as i32).to_be_bytes());
    for c in 0..absent {
        b.push(1);
        put(&mut b, format!("m{c}").as_bytes());
        b.extend_from_slice(&[4, 2, 0, 0, 0, 0, 0]); // DOUBLE, no props
    }
    if with_times {
        b.push(1);
        for r in 0..rows {
            b.extend_from_slice(&(r as i64).to_be_bytes());
        }
    } else {
        b.push(0);
        // About 1 MB, as the finding's request was: zeros (no bitmaps, the
        // values section's columns all absent).
        b.resize(1_050_000, 0);
        return b;
    }
    b.push(0); // no bitmaps
    b.push(1);
    // The first column holds values; every other one is absent.
    b.push(1);
    for r in 0..rows {
        b.extend_from_slice(&(r as f64).to_bits().to_be_bytes());
    }
    b.extend(std::iter::repeat_n(0u8, absent - 1));
    b.push(0); // aligned
    b
}

fn transfer_frame(body: Vec<u8>) -> Vec<u8> {
    protocol::message::call(
        Proto::Binary,
        "pipeTransfer",
        1,
        pipe::ARG_FIELD_ID,
        &TPipeTransferReq {
            version: Some(pipe::VERSION),
            type_: Some(pipe::TRANSFER_TABLET_RAW),
            body: Some(body),
        },
    )
}

/// Blocks until the server closes `s` or `stop` is set.
fn hold(mut s: TcpStream, stop: &AtomicBool) {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut b = [0u8; 64];
    while !stop.load(Ordering::Relaxed) {
        match s.read(&mut b) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

fn attacker(addr: String, kind: Attack, stop: Arc<AtomicBool>, answered: Arc<AtomicUsize>) {
    let frame = match kind {
        Attack::Amplify(t) => transfer_frame(amplification_body(t)),
        _ => Vec::new(),
    };
    while !stop.load(Ordering::Relaxed) {
        // Reconnect as soon as the server cuts the last attempt (a short
        // pause keeps the test's own threads from hogging the CPU).
        std::thread::sleep(Duration::from_millis(20));
        let Ok(mut s) = TcpStream::connect(&addr) else {
            continue;
        };
        match kind {
            Attack::Oversized => {
                let _ = s.write_all(&((512u32 << 20) - 1).to_be_bytes());
                let _ = s.write_all(&[0x80, 1, 0, 1]);
                hold(s, &stop);
            }
            Attack::Slowloris => {
                let _ = s.write_all(&1000u32.to_be_bytes());
                while !stop.load(Ordering::Relaxed) && s.write_all(&[0x80]).is_ok() {
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            Attack::Idle => hold(s, &stop),
            Attack::Amplify(with_times) => {
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    if s.write_all(&frame).is_err() {
                        break;
                    }
                    let mut len = [0u8; 4];
                    if s.read_exact(&mut len).is_err() {
                        break;
                    }
                    let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
                    if s.read_exact(&mut buf).is_err() {
                        break;
                    }
                    let r: TPipeTransferResp = read_reply(&buf).expect("a pipeTransfer reply");
                    if with_times {
                        assert_eq!(r.status.code, 200, "{:?}", r.status);
                    } else {
                        assert_eq!(r.status.code, 1107, "{:?}", r.status);
                        assert!(
                            r.status
                                .message
                                .as_deref()
                                .unwrap_or("")
                                .contains("1000000 rows but no timestamps"),
                            "{:?}",
                            r.status
                        );
                    }
                    answered.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}

#[test]
fn a_normal_client_is_served_while_the_port_is_abused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    let cfg = config_file(
        &dir,
        &[
            &format!("rpc_max_concurrent_client_num={CAP}"),
            "dn_connection_timeout_ms=3000",
        ],
    );
    let node = NodeProc::start(&dir, &[&cfg[0], &cfg[1]]);
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut kinds = vec![
        Attack::Amplify(true),
        Attack::Amplify(false),
        Attack::Oversized,
        Attack::Oversized,
        Attack::Oversized,
        Attack::Oversized,
        Attack::Slowloris,
        Attack::Slowloris,
        Attack::Slowloris,
        Attack::Slowloris,
    ];
    // Idle sockets fill the rest of the connection limit.
    kinds.resize(CAP, Attack::Idle);
    let threads: Vec<_> = kinds
        .into_iter()
        .map(|k| {
            let (addr, stop, answered) = (node.addr(), stop.clone(), answered.clone());
            std::thread::spawn(move || attacker(addr, k, stop, answered))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));

    // For 8 s (more than two connection timeouts), a normal client logs in
    // and queries every half second.
    let mut worst = Duration::ZERO;
    let mut peak_rss = 0;
    let end = Instant::now() + Duration::from_secs(8);
    let mut queries = 0;
    while Instant::now() < end {
        let t = Instant::now();
        let mut s = Session::open(&node.addr(), "root", "root").expect("a normal client logs in");
        s.execute("show databases").expect("and is answered");
        s.close().unwrap();
        let took = t.elapsed();
        eprintln!("query {queries}: {took:?}");
        if took > Duration::from_millis(500) {
            let log = node.log_text();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("{}", lines[lines.len().saturating_sub(40)..].join("\n"));
        }
        worst = worst.max(took);
        assert!(
            took < Duration::from_secs(1),
            "query {queries} took {took:?} while the port was abused"
        );
        queries += 1;
        peak_rss = peak_rss.max(node.status_kib("VmRSS"));
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("attacker thread");
    }
    let hwm = node.status_kib("VmHWM");
    eprintln!(
        "{queries} queries, slowest {worst:?}; server VmRSS peak sampled {peak_rss} KiB, VmHWM {hwm} KiB; {} amplification requests answered",
        answered.load(Ordering::Relaxed)
    );
    assert!(
        hwm > 0 && hwm < RSS_BOUND_KIB,
        "the server's resident memory peaked at {hwm} KiB (bound {RSS_BOUND_KIB} KiB)"
    );
    assert!(
        answered.load(Ordering::Relaxed) >= 2,
        "the amplification requests were answered"
    );
    let log = node.log_text();
    for what in [
        "frame arriving too slowly",
        "before login (dn_connection_timeout_ms)",
        "displaced at the connection limit",
    ] {
        assert!(log.contains(what), "no {what:?} in the log:\n{log}");
    }
    // The node still serves and stops cleanly.
    let s = Session::open(&node.addr(), "root", "root").unwrap();
    s.close().unwrap();
    node.stop();
}
