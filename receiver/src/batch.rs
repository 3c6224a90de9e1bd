//! A type-6 body (`TRANSFER_TABLET_BATCH`) that holds tablets only — what
//! edgepipe's connector sends — read in place: each tablet a
//! [`TabletView`](protocol::tablet::TabletView) over the request's bytes,
//! checked whole before anything is applied (a batch that does not decode
//! applies nothing), with the same checks and messages as
//! [`protocol::pipe::read_batch`]. A body with binaries or InsertNodes is
//! left to the decoding path.

use protocol::tablet::TabletViews;

/// The tablets of a tablets-only batch body; `None` when the body holds
/// binaries or InsertNodes (or says it does).
pub(crate) fn read_tablets(body: &[u8]) -> Option<Result<TabletViews<'_>, String>> {
    let i32_at = |at: usize| -> Result<i32, String> {
        body.get(at..at.saturating_add(4))
            .map(|s| i32::from_be_bytes(s.try_into().expect("4")))
            .ok_or_else(|| format!("batch body ends at byte {} of {}", at, body.len()))
    };
    match (i32_at(0), i32_at(4)) {
        (Ok(0), Ok(0)) => {}
        // Binaries, InsertNodes, or a body the decoding path reports on.
        _ => return None,
    }
    Some((|| {
        let mut at = 8;
        let nt = protocol::pipe::batch_tablet_count(i32_at(at)?, body.len() - (at + 4))?;
        at += 4;
        let mut views = TabletViews::with_capacity(nt);
        for i in 0..nt {
            at += views
                .read_v12_prefix(&body[at..])
                .map_err(|e| format!("tablet {i} of the batch: {e}"))?;
        }
        if at != body.len() {
            return Err(format!(
                "{} bytes after the last tablet of the batch",
                body.len() - at
            ));
        }
        Ok(views)
    })())
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::pipe;
    use protocol::tablet::{Column, Tablet};

    fn tablets() -> Vec<Tablet> {
        vec![
            Tablet {
                device: "root.sg.d1".into(),
                measurements: vec!["a".into(), "t".into(), "b".into()],
                columns: vec![
                    Column::Double(vec![1.5, 2.5, -0.0]),
                    Column::Text(vec![b"x".to_vec(), Vec::new(), b"zz".to_vec()]),
                    Column::Boolean(vec![true, false, true]),
                ],
                nulls: vec![
                    None,
                    Some(vec![false, true, false]),
                    Some(vec![true, false, false]),
                ],
                times: vec![10, 20, 30],
                aligned: true,
            },
            Tablet {
                device: "root.sg.d2".into(),
                measurements: vec!["i".into()],
                columns: vec![Column::Int32(vec![7])],
                nulls: vec![None],
                times: vec![5],
                aligned: false,
            },
        ]
    }

    /// The views of a batch are the tablets `read_batch` decodes, with the
    /// same byte ranges; every cut and every count the body cannot hold is
    /// refused with `read_batch`'s message; other batches are left alone.
    #[test]
    fn tablets_only_batches_read_in_place_as_read_batch_decodes_them() {
        let bytes: Vec<Vec<u8>> = tablets().iter().map(Tablet::serialize_v12).collect();
        let body = pipe::batch_body(bytes.iter().map(|b| &b[..]));
        let views = read_tablets(&body).unwrap().unwrap();
        let decoded = pipe::read_batch(&body).unwrap();
        assert_eq!(views.len(), 2);
        for (v, (t, r)) in views.iter().zip(decoded.tablets) {
            assert_eq!(v.to_tablet(), t);
            assert_eq!(v.bytes(), &body[r]);
        }
        for cut in 0..body.len() {
            let cut = &body[..cut];
            match read_tablets(cut) {
                Some(r) => assert_eq!(
                    r.map(|v| v.len()),
                    pipe::read_batch(cut).map(|b| b.tablets.len()),
                    "cut {}",
                    cut.len()
                ),
                None => assert!(cut.len() < 8),
            }
        }
        let mut many = pipe::batch_head(0).to_vec();
        many[8..].copy_from_slice(&100i32.to_be_bytes());
        many.extend_from_slice(&bytes[0]);
        let e = read_tablets(&many).unwrap().err().unwrap();
        assert_eq!(Err(e), pipe::read_batch(&many).map(|_| ()));
        let mut with_binary = body.clone();
        with_binary[..4].copy_from_slice(&1i32.to_be_bytes());
        assert!(read_tablets(&with_binary).is_none());
    }
}
