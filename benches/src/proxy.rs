//! A thin link: a TCP proxy on loopback that passes each direction at
//! most a given number of bytes a second (a token bucket with an 8 KiB
//! burst), like an edge box's uplink.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest piece passed at once: the burst the link allows.
const CHUNK: usize = 8 << 10;

/// A running proxy; stopped (listener and connections closed) on drop.
pub struct Throttle {
    /// Where senders connect.
    pub port: u16,
    stop: Arc<AtomicBool>,
    /// Bytes passed towards the target.
    pub forwarded: Arc<AtomicU64>,
}

impl Throttle {
    /// Listens on a free loopback port and forwards every connection to
    /// `target`, each direction paced at `bytes_per_sec`.
    ///
    /// # Panics
    /// When it cannot bind.
    pub fn start(target: String, bytes_per_sec: u64) -> Throttle {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        l.set_nonblocking(true).expect("nonblocking");
        let port = l.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let forwarded = Arc::new(AtomicU64::new(0));
        let (st, fw) = (stop.clone(), forwarded.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        let Ok(server) = TcpStream::connect(&target) else {
                            continue;
                        };
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        let (c2, s2) = (
                            client.try_clone().expect("clone"),
                            server.try_clone().expect("clone"),
                        );
                        let (st1, st2, fw1) = (st.clone(), st.clone(), fw.clone());
                        std::thread::spawn(move || pump(client, server, bytes_per_sec, &st1, &fw1));
                        let none = Arc::new(AtomicU64::new(0));
                        std::thread::spawn(move || pump(s2, c2, bytes_per_sec, &st2, &none));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Throttle {
            port,
            stop,
            forwarded,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Throttle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Copies `from` to `to`, each piece sent no earlier than the link is free
/// again after the one before.
fn pump(mut from: TcpStream, mut to: TcpStream, rate: u64, stop: &AtomicBool, count: &AtomicU64) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = vec![0u8; CHUNK];
    let mut free_at = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => break,
        };
        let now = Instant::now();
        if free_at > now {
            std::thread::sleep(free_at - now);
        }
        free_at = free_at.max(now) + Duration::from_secs_f64(n as f64 / rate as f64);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        count.fetch_add(n as u64, Ordering::Relaxed);
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paces_to_the_rate() {
        let sink = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = sink.local_addr().unwrap().to_string();
        let reader = std::thread::spawn(move || {
            let (mut s, _) = sink.accept().unwrap();
            let mut all = Vec::new();
            s.read_to_end(&mut all).unwrap();
            all.len()
        });
        // 1 MB/s; 300 kB should take about 0.3 s, not less.
        let p = Throttle::start(target, 1_000_000);
        let mut c = TcpStream::connect(p.addr()).unwrap();
        let t = Instant::now();
        c.write_all(&vec![7u8; 300_000]).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        assert_eq!(reader.join().unwrap(), 300_000);
        let secs = t.elapsed().as_secs_f64();
        assert!((0.28..10.0).contains(&secs), "{secs} s");
    }
}
