//! Writes one `rank{r}.safetensors`, tensor by tensor, without materialising any
//! tensor: the header is computed from the plan, then a producer (this thread)
//! cuts and casts rows into bounded chunks while a writer thread writes them, so
//! casting and I/O overlap and memory stays at a few chunks.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use crate::DType;
use crate::cancel::Cancel;
use crate::dtype::cast::append_converted;
use crate::error::{Error, IoContext, Result};
use crate::hf::weights::{TensorView, WeightStore};
use crate::progress::Progress;
use crate::safetensors_file::build_header;
use crate::trtllm::plan::RankPlan;

/// Bytes per chunk handed to the writer.
const CHUNK: usize = 8 << 20;
/// Chunks queued between producer and writer; bounds memory per rank.
const QUEUE: usize = 4;

enum Chunk<'a> {
    /// Bytes that need no change, straight from the memory-mapped source.
    Mapped(&'a [u8]),
    /// Cast or gathered bytes, in a buffer that goes back for reuse.
    Owned(Vec<u8>),
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RankSummary {
    pub rank: usize,
    pub file: String,
    pub bytes: u64,
    pub tensors: usize,
}

/// Writes `plan` as `dir/rank{r}.safetensors` in `dtype`. Stops with
/// `Error::Interrupted` soon after `stop` is set.
pub fn write_rank(
    plan: &RankPlan,
    store: &WeightStore,
    dtype: DType,
    dir: &Path,
    progress: &dyn Progress,
    stop: &Cancel<'_>,
) -> Result<RankSummary> {
    let path = dir.join(plan.file_name());
    let entries: Vec<(String, DType, Vec<usize>)> = plan
        .tensors
        .iter()
        .map(|t| (t.name.clone(), dtype, t.shape.clone()))
        .collect();
    let mut metadata = BTreeMap::new();
    metadata.insert("format".to_string(), "pt".to_string());
    let header = build_header(&entries, &metadata);
    let data_bytes: u64 = plan
        .tensors
        .iter()
        .map(|t| (t.elements() * dtype.size()) as u64)
        .sum();
    let file = File::create(&path).at(&path)?;

    let (chunks_tx, chunks_rx) = sync_channel::<Chunk>(QUEUE);
    let (spare_tx, spare_rx) = sync_channel::<Vec<u8>>(QUEUE + 2);
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| write_chunks(file, &path, &header, chunks_rx, spare_tx, progress, stop));
        let produced = produce(plan, store, dtype, chunks_tx, spare_rx, stop);
        // The writer's error (disk full, ...) explains a producer that saw a closed channel.
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(Error::InvalidOutput("writer thread panicked".into())));
        match (produced, written) {
            (Err(Error::Interrupted), Err(e)) | (Ok(()), Err(e)) => Err(e),
            (Err(e), _) => Err(e),
            (Ok(()), Ok(n)) if n != header.len() as u64 + data_bytes => Err(Error::InvalidOutput(format!(
                "{}: wrote {n} bytes, expected {} (internal error)",
                path.display(),
                header.len() as u64 + data_bytes
            ))),
            (Ok(()), Ok(n)) => Ok(RankSummary {
                rank: plan.rank,
                file: plan.file_name(),
                bytes: n,
                tensors: plan.tensors.len(),
            }),
        }
    })
}

fn write_chunks(
    file: File,
    path: &PathBuf,
    header: &[u8],
    chunks: Receiver<Chunk<'_>>,
    spare: SyncSender<Vec<u8>>,
    progress: &dyn Progress,
    stop: &Cancel<'_>,
) -> Result<u64> {
    let mut out = BufWriter::with_capacity(1 << 20, file);
    out.write_all(header).at(path)?;
    let mut written = header.len() as u64;
    for chunk in chunks {
        if stop.is_set() {
            return Err(Error::Interrupted);
        }
        let bytes = match &chunk {
            Chunk::Mapped(b) => *b,
            Chunk::Owned(v) => v.as_slice(),
        };
        out.write_all(bytes).at(path)?;
        written += bytes.len() as u64;
        progress.advance(bytes.len() as u64);
        if let Chunk::Owned(v) = chunk {
            // The producer may have finished; a dropped buffer is fine then.
            let _ = spare.try_send(v);
        }
    }
    out.flush().at(path)?;
    Ok(written)
}

/// Cuts every tensor of the plan into chunks, in file order.
fn produce<'a>(
    plan: &RankPlan,
    store: &'a WeightStore,
    dtype: DType,
    chunks: SyncSender<Chunk<'a>>,
    spare: Receiver<Vec<u8>>,
    stop: &Cancel<'_>,
) -> Result<()> {
    let send = |chunk: Chunk<'a>| -> Result<()> {
        if stop.is_set() {
            return Err(Error::Interrupted);
        }
        // A closed channel means the writer failed; its error is reported instead.
        chunks.send(chunk).map_err(|_| Error::Interrupted)
    };
    let buffer = || spare.try_recv().unwrap_or_else(|_| Vec::with_capacity(CHUNK));
    for tensor in &plan.tensors {
        for piece in &tensor.pieces {
            let Some(name) = &piece.source else {
                // Zero rows (vocab padding).
                let mut left = piece.elements() * dtype.size();
                while left > 0 {
                    let n = left.min(CHUNK);
                    let mut buf = buffer();
                    buf.clear();
                    buf.resize(n, 0);
                    send(Chunk::Owned(buf))?;
                    left -= n;
                }
                continue;
            };
            let view = store.get(name).ok_or_else(|| Error::Weights {
                dir: store.dir.clone(),
                problem: format!("tensor `{name}` is missing"),
            })?;
            let width = view.shape.last().copied().unwrap_or(1);
            let es = view.dtype.size();
            if view.dtype == dtype && !piece.add_one && piece.cols == (0..width) {
                // Whole rows, no cast: one contiguous byte range, sent as is.
                let bytes = view_slice(&view, piece.rows.start * width * es..piece.rows.end * width * es)?;
                for part in bytes.chunks(CHUNK) {
                    send(Chunk::Mapped(part))?;
                }
                continue;
            }
            let row_bytes = piece.cols.len() * dtype.size();
            let rows_per_chunk = (CHUNK / row_bytes.max(1)).max(1);
            let mut row = piece.rows.start;
            while row < piece.rows.end {
                let end = (row + rows_per_chunk).min(piece.rows.end);
                let mut buf = buffer();
                buf.clear();
                for r in row..end {
                    let start = (r * width + piece.cols.start) * es;
                    let src = view_slice(&view, start..start + piece.cols.len() * es)?;
                    append_converted(src, view.dtype, dtype, piece.add_one, &mut buf);
                }
                send(Chunk::Owned(buf))?;
                row = end;
            }
        }
    }
    Ok(())
}

/// A byte range of a tensor, checked (shapes were validated, but never index blindly).
fn view_slice<'a>(view: &TensorView<'a>, range: std::ops::Range<usize>) -> Result<&'a [u8]> {
    view.data.get(range.clone()).ok_or_else(|| Error::Tensor {
        path: view.path.to_path_buf(),
        tensor: view.name.to_string(),
        problem: format!("bytes {range:?} are outside its {} bytes", view.data.len()),
    })
}
