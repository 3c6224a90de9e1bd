//! IoTDB 1.2's file transfer (`pipeTransfer` types 4 and 5), answered as
//! the Java receiver (`IoTDBThriftReceiverV1`) answers it.
//!
//! - **Handshake** (type 1) gives the connection a fresh, empty directory
//!   `<data_dir>/system/pipe/receiver/<id>`, deleting the one it had.
//! - **Piece** (type 4: name, offset, bytes): another file name than the one
//!   being written deletes that file and starts the new one empty. An offset
//!   other than the file's length is answered 1803
//!   PIPE_TRANSFER_FILE_OFFSET_RESET, with the file's length as the reply
//!   body, and nothing is written: the sender resumes from there. Otherwise
//!   the bytes are appended and the reply body is the new length. A piece
//!   before any handshake, one that would take the connection's files past
//!   `pipe_receiver_max_file_size`, and any write failure (a full disk) get
//!   1804 PIPE_TRANSFER_FILE_ERROR naming the reason, body -1; a failed
//!   write leaves the file at its length before the piece.
//! - **Seal** (type 5: name, length): the name must be the file being
//!   written and the length its length, else 1804. The file is then
//!   loaded by [`crate::load`] (checked whole first: nothing of a damaged
//!   file is applied) and the reply is the load's status.
//! - The file being written is deleted after every seal, whatever its
//!   outcome (as the Java receiver's `finally`): a sender whose seal failed
//!   sends the whole file again. The connection's directory is deleted when
//!   the connection closes, and the node empties the parent directory when
//!   it starts (files left by a crash).

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use protocol::pipe::{self, FilePiece};
use protocol::rpc::TPipeTransferResp;
use protocol::types::status;
use tracing::{debug, info, warn};

use crate::{file_error, resp, Apply, Receiver};

/// A file being received.
#[derive(Debug)]
struct Writing {
    name: String,
    path: PathBuf,
    file: File,
    /// Bytes in the file.
    len: u64,
}

/// One connection's 1.2 file transfer.
#[derive(Debug, Default)]
pub(crate) struct Pieces {
    /// The connection's directory, made at its handshake.
    dir: Option<PathBuf>,
    /// The file being written.
    open: Option<Writing>,
}

/// What a failed write says, with a hint when the disk is full.
pub(crate) fn io_reason(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::StorageFull {
        format!("{e}: the receiver's disk is full; free space there, then resend")
    } else {
        e.to_string()
    }
}

impl Pieces {
    /// A fresh directory for this connection (the last one deleted).
    pub(crate) fn handshake(&mut self, rx: &Receiver) -> std::io::Result<()> {
        self.close();
        self.dir = Some(rx.new_dir()?);
        Ok(())
    }

    /// Deletes the file being written, if any.
    fn discard(&mut self) {
        if let Some(w) = self.open.take() {
            drop(w.file);
            if let Err(e) = std::fs::remove_file(&w.path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    warn!(file = %w.path.display(), cause = %e, "cannot delete a partial received file");
                }
            }
        }
    }

    /// Deletes the connection's files and directory.
    pub(crate) fn close(&mut self) {
        self.discard();
        if let Some(d) = self.dir.take() {
            if let Err(e) = std::fs::remove_dir_all(&d) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    warn!(dir = %d.display(), cause = %e, "cannot delete a connection's received files");
                }
            }
        }
    }

    /// A `TRANSFER_FILE_PIECE`.
    pub(crate) fn piece(&mut self, rx: &Receiver, p: FilePiece<'_>) -> TPipeTransferResp {
        let Some(dir) = self.dir.clone() else {
            return file_error(
                "no handshake on this connection: send a HANDSHAKE (type 1) before file pieces"
                    .into(),
            );
        };
        if self.open.as_ref().is_none_or(|w| w.name != p.file_name) {
            self.discard();
            let path = dir.join(&p.file_name);
            match File::create(&path) {
                Ok(file) => {
                    debug!(file = %path.display(), "receiving a file");
                    self.open = Some(Writing {
                        name: p.file_name.clone(),
                        path,
                        file,
                        len: 0,
                    });
                }
                Err(e) => {
                    return file_error(format!(
                        "{}: cannot create: {}",
                        path.display(),
                        io_reason(&e)
                    ))
                }
            }
        }
        let w = self.open.as_mut().expect("open");
        let offset = p.offset as u64;
        if offset != w.len {
            info!(file = %w.name, offset, length = w.len, "file piece at the wrong offset: the sender resumes from the length");
            return TPipeTransferResp {
                status: crate::st(
                    pipe::PIPE_TRANSFER_FILE_OFFSET_RESET,
                    Some(format!(
                        "Request sender to reset file reader's offset from {offset} to {}.",
                        w.len
                    )),
                ),
                body: Some(pipe::file_piece_reply_body(w.len as i64)),
            };
        }
        let max = rx.max_file_size();
        let after = w.len + p.bytes.len() as u64;
        if after > max {
            let name = w.name.clone();
            self.discard();
            return file_error(format!(
                "{name} would hold {after} bytes, more than the receiver's pipe_receiver_max_file_size ({max} bytes) allows; the partial file was deleted: raise pipe_receiver_max_file_size on the receiver and send the file again"
            ));
        }
        if let Err(e) = w.file.write_all(p.bytes) {
            let reason = format!(
                "{}: cannot write {} bytes at offset {offset}: {}",
                w.path.display(),
                p.bytes.len(),
                io_reason(&e)
            );
            // Keep the file as it was before the piece, so the sender can
            // resume at its length; if even that fails, start over.
            let undo = w.file.set_len(w.len).and_then(|()| {
                use std::io::Seek;
                w.file.seek(std::io::SeekFrom::Start(w.len)).map(|_| ())
            });
            if undo.is_err() {
                self.discard();
            }
            warn!(%reason, "file piece not written");
            return file_error(reason);
        }
        w.len = after;
        TPipeTransferResp {
            status: crate::st(status::SUCCESS, None),
            body: Some(pipe::file_piece_reply_body(after as i64)),
        }
    }

    /// A `TRANSFER_FILE_SEAL`: checks, loads, and deletes the file.
    pub(crate) fn seal(
        &mut self,
        name: &str,
        length: i64,
        apply: &dyn Apply,
    ) -> (TPipeTransferResp, Option<u64>) {
        let Some(w) = self.open.take() else {
            return (
                resp(
                    pipe::PIPE_TRANSFER_FILE_ERROR,
                    Some(format!("cannot seal {name}: no file is being received on this connection (send its pieces first, after a HANDSHAKE)")),
                ),
                None,
            );
        };
        let path = w.path.clone();
        let r = if w.name != name {
            (
                resp(
                    pipe::PIPE_TRANSFER_FILE_ERROR,
                    Some(format!(
                        "cannot seal {name}: the file being received is {}",
                        w.name
                    )),
                ),
                None,
            )
        } else if length < 0 || w.len != length as u64 {
            (
                resp(
                    pipe::PIPE_TRANSFER_FILE_ERROR,
                    Some(format!(
                        "cannot seal {name}: the receiver holds {} bytes of it, the seal says {length}",
                        w.len
                    )),
                ),
                None,
            )
        } else {
            drop(w.file);
            match crate::load::load(&path, name, apply) {
                Ok(l) => {
                    info!(
                        file = name,
                        points = l.points,
                        devices = l.devices,
                        "loaded a received TsFile"
                    );
                    (resp(status::SUCCESS, None), l.offset)
                }
                Err((code, message)) => (resp(code, Some(message)), None),
            }
        };
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(file = %path.display(), cause = %e, "cannot delete a sealed received file");
            }
        }
        r
    }
}

impl Drop for Pieces {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::{receiver, req, Sink};
    use crate::ReceiverState;
    use protocol::pipe;

    fn sample(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/../protocol/tests/data/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn dirs(root: &std::path::Path) -> Vec<std::path::PathBuf> {
        std::fs::read_dir(root.join("receiver"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    #[test]
    fn pieces_resume_after_an_offset_reset_and_the_seal_loads_once() {
        let tmp = tempfile::tempdir().unwrap();
        let rx = receiver(tmp.path());
        let sink = Sink::default();
        let mut st = ReceiverState::default();
        let file = sample("v3_nonaligned_lz4.tsfile");
        let name = "1-1-0-0.tsfile";
        // Before a handshake: refused by name.
        let (r, _) = rx.transfer(
            &mut st,
            req(4, pipe::file_piece_body(name, 0, &file[..10])),
            &sink,
        );
        assert_eq!(r.status.code, 1804);
        assert!(r.status.message.unwrap().contains("no handshake"));
        let (r, _) = rx.transfer(&mut st, req(1, pipe::handshake_body("ms")), &sink);
        assert_eq!(r.status.code, 200);
        assert_eq!(dirs(tmp.path()).len(), 1);
        let piece = |st: &mut ReceiverState, at: usize, to: usize| {
            rx.transfer(
                st,
                req(4, pipe::file_piece_body(name, at as i64, &file[at..to])),
                &sink,
            )
            .0
        };
        let r = piece(&mut st, 0, 100);
        assert_eq!(
            (r.status.code, r.body),
            (200, Some(pipe::file_piece_reply_body(100)))
        );
        // A gap or an overlap: 1803 with where to resume.
        for wrong in [50, 150] {
            let r = piece(&mut st, wrong, wrong + 10);
            assert_eq!(r.status.code, 1803);
            assert_eq!(r.body, Some(pipe::file_piece_reply_body(100)));
            assert_eq!(
                r.status.message.unwrap(),
                format!("Request sender to reset file reader's offset from {wrong} to 100.")
            );
        }
        let r = piece(&mut st, 100, file.len());
        assert_eq!(r.status.code, 200);
        // A seal with the wrong length or name is refused; the file is gone.
        let (r, _) = rx.transfer(&mut st, req(5, pipe::file_seal_body(name, 5)), &sink);
        assert_eq!(r.status.code, 1804);
        assert!(r.status.message.unwrap().contains(&format!(
            "holds {} bytes of it, the seal says 5",
            file.len()
        )));
        assert!(sink.tablets().is_empty());
        let (r, _) = rx.transfer(
            &mut st,
            req(5, pipe::file_seal_body(name, file.len() as i64)),
            &sink,
        );
        assert_eq!(r.status.code, 1804, "nothing left to seal");
        // Sent again whole: loaded once.
        assert_eq!(piece(&mut st, 0, file.len()).status.code, 200);
        let (r, off) = rx.transfer(
            &mut st,
            req(5, pipe::file_seal_body(name, file.len() as i64)),
            &sink,
        );
        assert_eq!(r.status.code, 200, "{:?}", r.status.message);
        assert!(off.is_some());
        let points: usize = sink.tablets().iter().map(|t| t.points()).sum();
        assert_eq!(points, 10 * 6 - 6, "10 rows of 6 series, 6 nulls");
        let d = &dirs(tmp.path())[0];
        assert_eq!(
            std::fs::read_dir(d).unwrap().count(),
            0,
            "the sealed file was deleted"
        );
        // Closing the connection deletes its directory.
        drop(st);
        assert!(dirs(tmp.path()).is_empty());
    }

    #[test]
    fn another_name_starts_over_and_a_new_handshake_a_new_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let rx = receiver(tmp.path());
        let sink = Sink::default();
        let mut st = ReceiverState::default();
        rx.transfer(&mut st, req(1, pipe::handshake_body("ms")), &sink);
        let first = dirs(tmp.path());
        let r = rx
            .transfer(
                &mut st,
                req(4, pipe::file_piece_body("a.tsfile", 0, b"abc")),
                &sink,
            )
            .0;
        assert_eq!(r.status.code, 200);
        let r = rx
            .transfer(
                &mut st,
                req(4, pipe::file_piece_body("b.tsfile", 3, b"def")),
                &sink,
            )
            .0;
        assert_eq!(
            (r.status.code, r.body),
            (1803, Some(pipe::file_piece_reply_body(0)))
        );
        assert!(
            !first[0].join("a.tsfile").exists(),
            "a.tsfile was dropped for b.tsfile"
        );
        rx.transfer(&mut st, req(1, pipe::handshake_body("ms")), &sink);
        let second = dirs(tmp.path());
        assert_eq!(second.len(), 1);
        assert_ne!(first, second);
    }

    #[test]
    fn damaged_and_oversized_files_are_refused_with_nothing_applied() {
        let tmp = tempfile::tempdir().unwrap();
        let rx = receiver(tmp.path());
        let sink = Sink::default();
        let mut st = ReceiverState::default();
        rx.transfer(&mut st, req(1, pipe::handshake_body("ms")), &sink);
        let mut file = sample("v3_multipage_deg3_uncompressed.tsfile");
        // The first chunk group's marker.
        file[7] ^= 0xff;
        let send = |st: &mut ReceiverState, name: &str, b: &[u8]| {
            assert_eq!(
                rx.transfer(st, req(4, pipe::file_piece_body(name, 0, b)), &sink)
                    .0
                    .status
                    .code,
                200
            );
            rx.transfer(
                st,
                req(5, pipe::file_seal_body(name, b.len() as i64)),
                &sink,
            )
            .0
        };
        let r = send(&mut st, "damaged.tsfile", &file);
        assert_eq!(r.status.code, 1100);
        let m = r.status.message.unwrap();
        assert!(
            m.contains("damaged.tsfile") && m.contains("nothing of it was applied"),
            "{m}"
        );
        // Truncated: no tail.
        let whole = sample("v3_aligned_snappy.tsfile");
        let r = send(&mut st, "cut.tsfile", &whole[..whole.len() - 20]);
        assert_eq!(r.status.code, 1100);
        assert!(r.status.message.unwrap().contains("cut.tsfile"));
        assert!(sink.tablets().is_empty());
        // Past pipe_receiver_max_file_size (1 MiB here).
        let big = vec![0u8; 700 << 10];
        let r = rx
            .transfer(
                &mut st,
                req(4, pipe::file_piece_body("big", 0, &big)),
                &sink,
            )
            .0;
        assert_eq!(r.status.code, 200);
        let r = rx
            .transfer(
                &mut st,
                req(4, pipe::file_piece_body("big", big.len() as i64, &big)),
                &sink,
            )
            .0;
        assert_eq!(r.status.code, 1804);
        assert!(r
            .status
            .message
            .unwrap()
            .contains("pipe_receiver_max_file_size (1048576 bytes)"));
        let d = &dirs(tmp.path())[0];
        assert_eq!(
            std::fs::read_dir(d).unwrap().count(),
            0,
            "the partial file was deleted"
        );
    }

    #[test]
    fn a_full_disk_is_a_clear_status_and_the_file_keeps_its_length() {
        // /dev/full fails every write with ENOSPC: the file being written is
        // made a link to it.
        let tmp = tempfile::tempdir().unwrap();
        let rx = receiver(tmp.path());
        let sink = Sink::default();
        let mut st = ReceiverState::default();
        rx.transfer(&mut st, req(1, pipe::handshake_body("ms")), &sink);
        let d = dirs(tmp.path()).remove(0);
        std::os::unix::fs::symlink("/dev/full", d.join("full.tsfile")).unwrap();
        let r = rx
            .transfer(
                &mut st,
                req(4, pipe::file_piece_body("full.tsfile", 0, b"abc")),
                &sink,
            )
            .0;
        assert_eq!(r.status.code, 1804);
        assert_eq!(r.body, Some(pipe::file_piece_reply_body(-1)));
        let m = r.status.message.unwrap();
        assert!(m.contains("disk is full"), "{m}");
        // The connection goes on: the next piece still starts at 0.
        let r = rx
            .transfer(
                &mut st,
                req(4, pipe::file_piece_body("full.tsfile", 5, b"abc")),
                &sink,
            )
            .0;
        assert_eq!(
            (r.status.code, r.body),
            (1803, Some(pipe::file_piece_reply_body(0)))
        );
    }
}
