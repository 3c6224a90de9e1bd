//! Data shaped like what IoT writers send: regular timestamps (one row a
//! second), slowly varying readings with noise at the sensor's resolution,
//! counters, on/off states. Deterministic (seeded), so two systems can be
//! given the same points.

use protocol::tablet::{Column, Tablet};

/// 2024-01-01T00:00:00Z in ms: where every series starts.
pub const EPOCH_MS: i64 = 1_704_067_200_000;
/// One row a second.
pub const PERIOD_MS: i64 = 1_000;

/// A temperature-like reading at row `row` of series `seed`: a daily
/// swing of ±3 around 21.5 plus noise, at 0.01 resolution.
fn reading(rng: &mut fastrand::Rng, seed: u64, row: i64) -> f64 {
    let day = 86_400.0;
    let phase = (seed % 97) as f64;
    let base = 21.5 + 3.0 * ((row as f64 + phase * 600.0) / day * std::f64::consts::TAU).sin();
    // Sum of three uniforms: roughly normal, σ ≈ 0.05.
    let noise = (rng.f64() + rng.f64() + rng.f64() - 1.5) * 0.1;
    ((base + noise) * 100.0).round() / 100.0
}

fn rng_for(seed: u64, row: i64) -> fastrand::Rng {
    fastrand::Rng::with_seed(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ row as u64)
}

/// Rows `from..from + rows` of one DOUBLE series: times and values.
pub fn series(seed: u64, from: i64, rows: usize) -> (Vec<i64>, Vec<f64>) {
    let mut rng = rng_for(seed, from);
    let times = (from..from + rows as i64)
        .map(|r| EPOCH_MS + r * PERIOD_MS)
        .collect();
    let values = (from..from + rows as i64)
        .map(|r| reading(&mut rng, seed, r))
        .collect();
    (times, values)
}

/// A tablet of one DOUBLE series `device.s0`: [`series`]`(seed, from, rows)`.
pub fn series_tablet(device: &str, seed: u64, from: i64, rows: usize) -> Tablet {
    let (times, values) = series(seed, from, rows);
    Tablet {
        device: device.into(),
        measurements: vec!["s0".into()],
        columns: vec![Column::Double(values)],
        nulls: vec![None],
        times,
        aligned: false,
    }
}

/// The same points as [`series_tablet`] as raw bytes: per row the time
/// (i64) and the value (f64), big-endian; 16 bytes a point.
pub fn series_bytes(seed: u64, from: i64, rows: usize) -> Vec<u8> {
    let (times, values) = series(seed, from, rows);
    let mut b = Vec::with_capacity(rows * 16);
    for (t, v) in times.iter().zip(&values) {
        b.extend_from_slice(&t.to_be_bytes());
        b.extend_from_slice(&v.to_bits().to_be_bytes());
    }
    b
}

/// A machine's tablet, rows `from..from + rows`: `temperature` (DOUBLE,
/// 0.01 resolution), `humidity` (DOUBLE, 0.1 resolution), `energy`
/// (INT64 counter in Wh, growing by 6 to 27 a second) and `running`
/// (BOOLEAN, switching a few times an hour). Four points a row.
pub fn machine_tablet(device: &str, seed: u64, from: i64, rows: usize) -> Tablet {
    let mut rng = rng_for(seed, from);
    let mut times = Vec::with_capacity(rows);
    let (mut temp, mut hum, mut energy, mut running) = (
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
    );
    // The counter and the state follow from the row number alone, so the
    // counter never goes back between tablets.
    let run = |r: i64| (r / 900 + seed as i64) % 3 != 0;
    for r in from..from + rows as i64 {
        times.push(EPOCH_MS + r * PERIOD_MS);
        temp.push(reading(&mut rng, seed, r));
        let h = 45.0 + 10.0 * (r as f64 / 7_200.0).sin() + (rng.f64() - 0.5) * 0.4;
        hum.push((h * 10.0).round() / 10.0);
        energy.push(1_000_000 + 20 * r + (r * 7 + seed as i64) % 21);
        running.push(run(r));
    }
    Tablet {
        device: device.into(),
        measurements: ["temperature", "humidity", "energy", "running"]
            .map(String::from)
            .to_vec(),
        columns: vec![
            Column::Double(temp),
            Column::Double(hum),
            Column::Int64(energy),
            Column::Boolean(running),
        ],
        nulls: vec![None; 4],
        times,
        aligned: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_points_either_way_and_any_split() {
        let t = series_tablet("root.a.d", 3, 100, 50);
        let b = series_bytes(3, 100, 50);
        assert_eq!(b.len(), 50 * 16);
        let Column::Double(v) = &t.columns[0] else {
            panic!()
        };
        assert_eq!(&b[8..16], v[0].to_bits().to_be_bytes());
        assert_eq!(t.times[1] - t.times[0], PERIOD_MS);
        // Values vary slowly: neighbours within noise.
        assert!(v.windows(2).all(|w| (w[0] - w[1]).abs() < 0.5), "{v:?}");
        let m = machine_tablet("root.m.d", 1, 0, 4000);
        let Column::Int64(e) = &m.columns[2] else {
            panic!()
        };
        assert!(e.windows(2).all(|w| w[1] >= w[0]));
        let Column::Boolean(r) = &m.columns[3] else {
            panic!()
        };
        assert!(r.contains(&true) && r.contains(&false));
    }
}
