//! Flushes: freezing the memtables, writing a chunk file (in the
//! background or at once), swapping it in, checkpointing and committing the
//! store's log offset.

use std::path::Path as FsPath;
use std::sync::{Arc, Mutex, RwLock};

use protocol::tablet::Column;
use tracing::info;

use super::checkpoint::{encode_checkpoint, write_atomic, Checkpoint};
use super::{internal, Frozen, Inner, SResult, Store, STORE_CONSUMER};
use crate::chunkfile::{self, ChunkFile};

/// One flush: the frozen memtables and the log offset they cover.
pub(super) struct FlushJob {
    seq: u64,
    applied: u64,
    series: Vec<(String, Arc<Frozen>)>,
}

/// Whether a background flush runs, and the error of the last one.
#[derive(Debug, Default)]
pub(super) struct FlushState {
    running: bool,
    pub(super) error: Option<String>,
    /// The flush thread, while it writes its chunk file in the idle
    /// scheduling class: a writer that finds the memtables filling up
    /// behind it raises it to nice 10 (and clears this).
    idle_tid: Option<i32>,
}

impl Store {
    /// Freezes the memtables (holding `points`) and writes them in a
    /// background thread, so writers do not wait for the chunk file. If a
    /// flush already runs: at one and a half times the threshold it is
    /// raised out of the idle class, so that it keeps up under load; at
    /// twice the threshold the writer waits for it, which bounds memory.
    pub(super) fn flush_in_background(&self, points: usize) -> SResult<()> {
        let threshold = self.config.flush_points;
        let (lock, cv) = &*self.flush_state;
        let mut st = lock.lock().expect("flush lock");
        if st.running {
            if points >= threshold + threshold / 2 {
                if let Some(tid) = st.idle_tid.take() {
                    // Under the lock: the thread clears `idle_tid` under it
                    // before it leaves the idle class, so it still runs.
                    wal::background_priority_of(tid);
                }
            }
            if points < 2 * threshold {
                return Ok(());
            }
            st = cv.wait_while(st, |s| s.running).expect("flush lock");
        }
        let job = self.freeze();
        st.running = true;
        drop(st);
        let (dir, log, inner, state) = (
            self.dir.clone(),
            self.log.clone(),
            self.inner.clone(),
            self.flush_state.clone(),
        );
        std::thread::Builder::new()
            .name("store-flush".into())
            .spawn(move || {
                wal::background_priority();
                let r = run_flush(&dir, &log, &inner, job, Some(&state));
                let (lock, cv) = &*state;
                let mut st = lock.lock().expect("flush lock");
                st.running = false;
                if let Err(e) = r {
                    tracing::error!(cause = %e, "background flush failed; writes are refused until a restart");
                    st.error = Some(e.to_string());
                }
                cv.notify_all();
            })
            .map_err(|e| internal(format!("cannot start the flush thread: {e}")))?;
        Ok(())
    }

    /// Moves every non-empty memtable into a frozen one for the next flush.
    /// Called with the write lock held, so the log end is what they cover.
    fn freeze(&self) -> FlushJob {
        let applied = self.log.end_offset();
        let mut inner = self.inner.write().expect("store lock");
        let seq = inner.next_seq;
        let mut series = Vec::new();
        for (path, s) in inner.series.iter_mut() {
            if s.mem.times.is_empty() {
                continue;
            }
            s.mem.normalize();
            let n = s.mem.times.len();
            let t = s.info.data_type;
            let f = Arc::new(Frozen {
                seq,
                times: std::mem::replace(&mut s.mem.times, Vec::with_capacity(n)),
                values: std::mem::replace(&mut s.mem.values, Column::with_capacity(t, n)),
            });
            s.frozen = Some(f.clone());
            series.push((path.clone(), f));
        }
        if !series.is_empty() {
            inner.next_seq += 1;
        }
        inner.mem_points = 0;
        FlushJob {
            seq,
            applied,
            series,
        }
    }

    /// Writes every memtable to a new chunk file and checkpoints, after any
    /// background flush.
    ///
    /// # Errors
    /// I/O errors.
    pub fn flush(&self) -> SResult<()> {
        let _w = self.write_lock.lock().expect("write lock");
        let (lock, cv) = &*self.flush_state;
        let st = lock.lock().expect("flush lock");
        let st = cv.wait_while(st, |s| s.running).expect("flush lock");
        if let Some(e) = &st.error {
            return Err(internal(format!(
                "a background flush failed ({e}); restart the node"
            )));
        }
        drop(st);
        let job = self.freeze();
        run_flush(&self.dir, &self.log, &self.inner, job, None)
    }
}

/// Writes a flush job's chunk file, swaps it in for the frozen memtables,
/// checkpoints and commits the store's log offset. `background`: the
/// flush state, when the calling thread is the background flush thread,
/// whose priority this lowers while it writes the chunk file.
fn run_flush(
    dir: &FsPath,
    log: &wal::Log,
    inner_lock: &RwLock<Inner>,
    job: FlushJob,
    background: Option<&(Mutex<FlushState>, std::sync::Condvar)>,
) -> SResult<()> {
    let FlushJob {
        seq,
        applied,
        series,
    } = job;
    if !series.is_empty() {
        let data: Vec<(&str, &[i64], &Column)> = series
            .iter()
            .map(|(p, f)| (p.as_str(), &f.times[..], &f.values))
            .collect();
        // Encoding and writing the chunk file holds no lock: in the
        // background it runs only when nothing else wants the CPU, unless
        // writers find the memtables filling up behind it (see
        // `flush_in_background`).
        if let Some((lock, _)) = background {
            let mut st = lock.lock().expect("flush lock");
            wal::idle_priority();
            st.idle_tid = Some(wal::thread_id());
        }
        let written = chunkfile::write(dir, seq, &data);
        if let Some((lock, _)) = background {
            let mut st = lock.lock().expect("flush lock");
            st.idle_tid = None;
            wal::background_priority();
        }
        let path = written.map_err(internal)?;
        let file = ChunkFile::open(&path, seq).map_err(internal)?;
        let mut inner = inner_lock.write().expect("store lock");
        for (i, c) in file.chunks.iter().enumerate() {
            if let Some(s) = inner.series.get_mut(&c.path) {
                // A series dropped and re-created meanwhile holds no frozen
                // memtable of this flush; the drop's tombstone hides the rest.
                if s.frozen.as_ref().is_some_and(|f| f.seq == seq) {
                    s.chunks.push((file.clone(), i));
                    s.frozen = None;
                }
            }
        }
        inner.files.push(file);
    }
    let ck = {
        let inner = inner_lock.read().expect("store lock");
        Checkpoint {
            applied_offset: applied,
            next_seq: inner.next_seq,
            files: inner.files.iter().map(|f| f.seq).collect(),
            databases: inner.databases.iter().cloned().collect(),
            series: inner
                .series
                .iter()
                .map(|(p, s)| (p.clone(), s.info.clone()))
                .collect(),
            tombstones: inner.tombstones.clone(),
        }
    };
    write_atomic(&dir.join("checkpoint"), &encode_checkpoint(&ck)).map_err(internal)?;
    log.commit(STORE_CONSUMER, applied).map_err(internal)?;
    if series.is_empty() {
        info!(applied_offset = applied, "checkpointed (memtables empty)");
    } else {
        info!(
            seq,
            series = series.len(),
            applied_offset = applied,
            "flushed memtables"
        );
    }
    Ok(())
}
