//! Fills a node with N points (10 DOUBLE columns, 8 clients): a profiling aid.
use node::client::Session;
use protocol::tablet::{Column, Tablet};
fn main() {
    let mut a = std::env::args().skip(1);
    let addr = a.next().unwrap();
    let points: u64 = a.next().map_or(10_000_000, |s| s.parse().unwrap());
    let per = (points / 10 / 8) as i64;
    let hs: Vec<_> = (0..8)
        .map(|c| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut s = Session::open(&addr, "root", "root").unwrap();
                for from in (0..per).step_by(5000) {
                    let n = 5000.min(per - from);
                    let t = Tablet {
                        device: format!("root.bf.d{c}"),
                        measurements: (0..10).map(|i| format!("s{i}")).collect(),
                        columns: (0..10)
                            .map(|k| {
                                Column::Double((from..from + n).map(|i| (i + k) as f64).collect())
                            })
                            .collect(),
                        nulls: vec![None; 10],
                        times: (from..from + n).collect(),
                        aligned: false,
                    };
                    s.insert_tablet(&t).unwrap();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
}
