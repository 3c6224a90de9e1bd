//! The store as the source of pipes' history
//! ([`replicator::history::HistorySource`]): when the change log no longer
//! holds a new pipe's whole history, the pipe reads it from a snapshot of
//! the store (`store/snapshot.rs`) and then tails the log from the
//! snapshot's offset. The replicator cannot call the store (arrows point
//! down), so the node hands it this.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use replicator::history::{Device, DeviceRead, HistorySource, Snapshot, SnapshotView};

use crate::store::snapshot::SnapshotId;
use crate::store::Store;

/// Pipes' history from the node's store.
#[derive(Debug, Clone)]
pub struct StoreHistory {
    store: Arc<Store>,
}

impl StoreHistory {
    /// History from `store`.
    pub fn new(store: Arc<Store>) -> StoreHistory {
        StoreHistory { store }
    }
}

impl HistorySource for StoreHistory {
    /// Flushes the store; the handle is the [`SnapshotId`] as JSON
    /// (`{"offset":X,"last_seq":S}`).
    fn snapshot(&self) -> Result<Snapshot, String> {
        let id = self.store.snapshot().map_err(|e| e.message)?;
        Ok(Snapshot {
            offset: id.offset,
            handle: serde_json::to_string(&id).expect("serialize a snapshot id"),
        })
    }

    fn open(&self, handle: &str) -> Result<Arc<dyn SnapshotView>, String> {
        let id: SnapshotId = serde_json::from_str(handle)
            .map_err(|e| format!("the store snapshot '{handle}' does not decode: {e}"))?;
        Ok(Arc::new(View {
            store: self.store.clone(),
            id,
        }))
    }
}

/// One snapshot of the store, opened.
struct View {
    store: Arc<Store>,
    id: SnapshotId,
}

impl View {
    fn paths(device: &Device) -> Vec<String> {
        device
            .series
            .iter()
            .map(|(m, _)| format!("{}.{m}", device.device))
            .collect()
    }
}

/// A series path's device and measurement: all nodes but the last, and the
/// last (a backquoted node may hold dots).
fn split(path: &str) -> (&str, &str) {
    let last = protocol::names::split_nodes(path)
        .ok()
        .and_then(|n| n.last().map(|m| m.len()))
        .unwrap_or_else(|| path.len() - path.rfind('.').map_or(0, |i| i + 1));
    let at = path.len() - last;
    (path[..at].trim_end_matches('.'), &path[at..])
}

impl SnapshotView for View {
    fn devices(&self, pattern: &str) -> Result<Vec<Device>, String> {
        let series = self
            .store
            .snapshot_series(self.id, |p| p.starts_with(pattern))
            .map_err(|e| e.message)?;
        let mut devices: BTreeMap<&str, Device> = BTreeMap::new();
        for (path, info) in &series {
            let (device, m) = split(path);
            let d = devices.entry(device).or_insert_with(|| Device {
                device: device.to_string(),
                aligned: info.aligned,
                series: Vec::new(),
            });
            d.series.push((m.to_string(), info.data_type));
        }
        Ok(devices.into_values().collect())
    }

    fn count(&self, device: &Device, from: i64, to: i64) -> u64 {
        self.store
            .snapshot_count(self.id, &Self::paths(device), from, to)
    }

    fn read(
        &self,
        device: &Device,
        from: i64,
        to: i64,
        max_bytes: usize,
    ) -> Result<DeviceRead, String> {
        let r = self
            .store
            .snapshot_read(self.id, &Self::paths(device), from, to, max_bytes)
            .map_err(|e| e.message)?;
        let points = r.series.iter().map(|p| p.times.len() as u64).sum();
        let tablets = replicator::history::tablets(
            device,
            r.series.into_iter().map(|p| (p.times, p.values)).collect(),
        )
        .iter()
        .map(|t| Bytes::from(t.serialize_v12()))
        .collect();
        Ok(DeviceRead {
            tablets,
            points,
            next: (!r.done).then(|| r.last + 1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_at_the_last_node() {
        assert_eq!(split("root.sg.d.s"), ("root.sg.d", "s"));
        assert_eq!(split("root.sg.d.`a.b`"), ("root.sg.d", "`a.b`"));
        assert_eq!(split("root.`x.y`.s"), ("root.`x.y`", "s"));
    }
}
