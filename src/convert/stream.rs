//! Runs a [`CopyPlan`]: one reader thread reads the source tensors front to
//! back, in blocks of whole rows, into a few reusable buffers; worker threads
//! cut, cast and write each block to its places in the rank files. Writes are
//! positional, so blocks may finish in any order, and anonymous memory stays at
//! a few blocks whatever the model size.
//!
//! The page cache is kept from filling (see [`page_cache`]): source pages this
//! run brought in are released once their block is written, and output pages are
//! written back a window at a time and then released.

use std::collections::VecDeque;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use crate::DType;
use crate::cancel::Cancel;
use crate::convert::copy_plan::{CopyPlan, SourceRead};
use crate::convert::page_cache;
use crate::convert::rank_files::{RankLayout, RankSummary};
use crate::convert::source_reader::{ReadBuf, SourceReader};
use crate::dtype::cast::append_converted;
use crate::error::{Error, IoContext, Result};
use crate::hf::weights::WeightStore;
use crate::progress::Progress;

/// Sizes of the pipeline. The defaults were measured on a 2-core VM with a
/// virtio disk (Minitron-8B shape, scripts/bench-convert); tests use tiny ones
/// to exercise blocks that cut tensors and windows that fill.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// Threads that cut, cast and write (one more reads).
    pub workers: usize,
    /// Bytes of source rows per block (at least one row). Large enough that one
    /// direct read keeps several requests in flight at the disk (16 MiB ran
    /// 25% faster than 4 MiB from a cold cache); anonymous memory is about
    /// (queue + workers + 1) blocks.
    pub block_bytes: usize,
    /// Blocks read ahead of the workers.
    pub queue: usize,
    /// Output bytes written before their writeback starts; at most two more
    /// windows are under writeback before the oldest is waited for and released.
    pub write_window: u64,
}

impl Tuning {
    pub fn with_workers(workers: usize) -> Self {
        Tuning {
            workers: workers.max(1),
            block_bytes: 16 << 20,
            queue: 4,
            write_window: 32 << 20,
        }
    }
}

struct Output {
    path: PathBuf,
    file: File,
    /// Data bytes written so far (the header not counted).
    written: AtomicU64,
}

/// Source rows `rows` of `reads[read]`, and the page runs to release once written.
struct Block {
    read: usize,
    rows: Range<usize>,
    data: ReadBuf,
    release: Vec<Range<u64>>,
}

/// How the source was read: straight from the disk (`O_DIRECT`), or through
/// the page cache (ranges already cached, or where `O_DIRECT` is refused).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SourceReads {
    pub direct_bytes: u64,
    pub buffered_bytes: u64,
}

/// What to write where, shared by the reader and the workers.
pub struct Job<'a> {
    pub layouts: &'a [RankLayout],
    pub copy: &'a CopyPlan,
    pub store: &'a WeightStore,
    pub dtype: DType,
    pub tuning: Tuning,
}

/// The running job: its open outputs and shared state.
struct Run<'a> {
    job: &'a Job<'a>,
    outputs: Vec<Output>,
    write_behind: WriteBehind,
    progress: &'a dyn Progress,
    cancel: Cancel<'a>,
}

/// Creates every rank file of the job in `dir` and fills it.
pub fn write_rank_files(
    job: &Job<'_>,
    dir: &Path,
    progress: &dyn Progress,
    stop: &AtomicBool,
) -> Result<(Vec<RankSummary>, SourceReads)> {
    let outputs = job
        .layouts
        .iter()
        .map(|l| create(dir, l))
        .collect::<Result<Vec<_>>>()?;
    let run = Run {
        job,
        outputs,
        write_behind: WriteBehind::new(job.tuning.write_window),
        progress,
        cancel: Cancel::new(stop),
    };
    for z in &job.copy.zeros {
        write_zeros(&run.outputs[z.output], z.offset, z.len)?;
        progress.advance(z.len);
    }
    let reads = run.go()?;
    if run.cancel.by_user() {
        return Err(Error::Interrupted);
    }
    let (layouts, outputs) = (job.layouts, &run.outputs);
    run.write_behind.flush(outputs)?;
    let ranks = layouts
        .iter()
        .zip(outputs)
        .map(|(l, o)| {
            let data = l.len - l.header.len() as u64;
            let written = o.written.load(Ordering::Relaxed);
            if written != data {
                return Err(Error::InvalidOutput(format!(
                    "{}: wrote {written} data bytes, expected {data} (internal error)",
                    o.path.display()
                )));
            }
            Ok(RankSummary {
                rank: l.rank,
                file: l.file_name.clone(),
                bytes: l.len,
                tensors: l.tensors,
            })
        })
        .collect::<Result<_>>()?;
    Ok((ranks, reads))
}

/// The file at its final length (space reserved where the filesystem can), header written.
fn create(dir: &Path, layout: &RankLayout) -> Result<Output> {
    let path = dir.join(&layout.file_name);
    let file = File::create(&path).at(&path)?;
    let reserved = page_cache::reserve(&file, layout.len).map_err(|e| Error::Io {
        path: path.clone(),
        error: std::io::Error::new(
            e.kind(),
            format!("reserving {} bytes for the rank file: {e}", layout.len),
        ),
    })?;
    if !reserved {
        file.set_len(layout.len).at(&path)?;
    }
    file.write_all_at(&layout.header, 0).at(&path)?;
    Ok(Output {
        path,
        file,
        written: AtomicU64::new(0),
    })
}

fn write_zeros(out: &Output, offset: u64, len: u64) -> Result<()> {
    let zeros = vec![0u8; len.min(1 << 20) as usize];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(zeros.len() as u64);
        out.file
            .write_all_at(&zeros[..n as usize], offset + at)
            .at(&out.path)?;
        at += n;
    }
    out.written.fetch_add(len, Ordering::Relaxed);
    Ok(())
}

impl Run<'_> {
    fn go(&self) -> Result<SourceReads> {
        let workers = self.job.tuning.workers.max(1);
        let queue = self.job.tuning.queue.max(1);
        let (blocks_tx, blocks_rx) = sync_channel::<Block>(queue);
        // Shared by the workers only: once they have all stopped, the reader's send fails.
        let blocks_rx = Arc::new(Mutex::new(blocks_rx));
        let (spare_tx, spare_rx) = sync_channel::<ReadBuf>(queue + workers + 1);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    let blocks = Arc::clone(&blocks_rx);
                    let spare = spare_tx.clone();
                    scope.spawn(move || {
                        let result = self.write_blocks(&blocks, &spare);
                        if result.is_err() {
                            self.cancel.trip();
                        }
                        result
                    })
                })
                .collect();
            drop(blocks_rx);
            let mut stats = SourceReads::default();
            let read = self.read_blocks(blocks_tx, spare_rx, &mut stats);
            if read.is_err() {
                self.cancel.trip();
            }
            let mut results = vec![read];
            for h in handles {
                results.push(h.join().unwrap_or_else(|_| Err(panicked())));
            }
            // Report the root cause, not the threads that stopped because of it.
            let first = match results
                .iter()
                .position(|r| matches!(r, Err(e) if !matches!(e, Error::Interrupted)))
            {
                Some(i) => results.swap_remove(i),
                None => results.into_iter().find(Result::is_err).unwrap_or(Ok(())),
            };
            first.map(|()| stats)
        })
    }

    /// Reads every planned source row, file by file, front to back.
    fn read_blocks(
        &self,
        blocks: SyncSender<Block>,
        spare: Receiver<ReadBuf>,
        stats: &mut SourceReads,
    ) -> Result<()> {
        let store = self.job.store;
        let mut readers: Vec<Option<SourceReader>> = store.files.iter().map(|_| None).collect();
        let result = self.read_all(&mut readers, blocks, spare);
        for r in readers.iter().flatten() {
            stats.direct_bytes += r.bytes_direct;
            stats.buffered_bytes += r.bytes_buffered;
        }
        result
    }

    fn read_all<'s>(
        &'s self,
        readers: &mut [Option<SourceReader<'s>>],
        blocks: SyncSender<Block>,
        spare: Receiver<ReadBuf>,
    ) -> Result<()> {
        let block_bytes = self.job.tuning.block_bytes;
        for (i, read) in self.job.copy.reads.iter().enumerate() {
            let source = &self.job.store.files[read.file];
            let reader = readers[read.file]
                .get_or_insert_with(|| SourceReader::new(&source.path, source.file(), source.mapped()));
            let rows_per_block = (block_bytes / read.row_bytes().max(1)).max(1);
            let mut row = read.rows.start;
            while row < read.rows.end {
                if self.cancel.is_set() {
                    return Err(Error::Interrupted);
                }
                let rows = row..(row + rows_per_block).min(read.rows.end);
                let range = read.byte_range(&rows);
                let mut data = spare
                    .try_recv()
                    .unwrap_or_else(|_| ReadBuf::with_capacity(block_bytes));
                let release = reader
                    .read(range.clone(), &mut data)
                    .map_err(|e| read_error(&source.path, read, &range, e))?;
                row = rows.end;
                let block = Block {
                    read: i,
                    rows,
                    data,
                    release,
                };
                // A closed channel means every worker stopped; their error is reported.
                blocks.send(block).map_err(|_| Error::Interrupted)?;
            }
        }
        Ok(())
    }

    /// Cuts, casts and writes blocks until the reader is done.
    fn write_blocks(&self, blocks: &Mutex<Receiver<Block>>, spare: &SyncSender<ReadBuf>) -> Result<()> {
        let (copy, dtype) = (self.job.copy, self.job.dtype);
        let mut scratch = Vec::new();
        loop {
            let next = blocks.lock().map_err(|_| panicked())?.recv();
            let Ok(block) = next else {
                return Ok(()); // the reader is done (or stopped: it reports why)
            };
            if self.cancel.is_set() {
                return Err(Error::Interrupted);
            }
            let read = &copy.reads[block.read];
            for target in &read.targets {
                let rows = target.rows.start.max(block.rows.start)..target.rows.end.min(block.rows.end);
                if rows.is_empty() {
                    continue;
                }
                let row_bytes = read.row_bytes();
                let local =
                    (rows.start - block.rows.start) * row_bytes..(rows.end - block.rows.start) * row_bytes;
                let src = &block.data.data()[local];
                let bytes: &[u8] = if read.dtype == dtype && !target.add_one && target.cols == (0..read.width)
                {
                    src
                } else {
                    let es = read.dtype.size();
                    scratch.clear();
                    for row in src.chunks_exact(row_bytes) {
                        let cut = &row[target.cols.start * es..target.cols.end * es];
                        append_converted(cut, read.dtype, dtype, target.add_one, &mut scratch);
                    }
                    &scratch
                };
                let out_row = (target.cols.len() * dtype.size()) as u64;
                let offset = target.offset + (rows.start - target.rows.start) as u64 * out_row;
                let out = &self.outputs[target.output];
                out.file.write_all_at(bytes, offset).at(&out.path)?;
                out.written.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                self.progress.advance(bytes.len() as u64);
                self.write_behind
                    .wrote(&self.outputs, target.output, offset..offset + bytes.len() as u64)?;
            }
            let source = self.job.store.files[read.file].file();
            for range in block.release {
                page_cache::release(source, range);
            }
            // The reader may have finished; a dropped buffer is fine then.
            let _ = spare.try_send(block.data);
        }
    }
}

fn panicked() -> Error {
    Error::InvalidOutput("a conversion thread panicked".into())
}

fn read_error(path: &Path, read: &SourceRead, range: &Range<u64>, e: std::io::Error) -> Error {
    let problem = if e.kind() == std::io::ErrorKind::UnexpectedEof {
        format!("bytes {range:?} are past the end of the file (was it changed during the conversion?)")
    } else {
        format!("reading bytes {range:?}: {e}")
    };
    Error::Tensor {
        path: path.to_path_buf(),
        tensor: read.name.clone(),
        problem,
    }
}

/// Output ranges written but not yet known to be on disk, oldest first.
struct WriteBehind {
    window: u64,
    state: Mutex<WriteBehindState>,
}

#[derive(Default)]
struct WriteBehindState {
    /// Written, writeback not started.
    pending: Vec<(usize, Range<u64>)>,
    pending_bytes: u64,
    /// Writeback started, not yet waited for.
    flushing: VecDeque<(usize, Range<u64>)>,
    flushing_bytes: u64,
}

impl WriteBehind {
    fn new(window: u64) -> Self {
        WriteBehind {
            window: window.max(1),
            state: Mutex::new(WriteBehindState::default()),
        }
    }

    fn wrote(&self, outputs: &[Output], output: usize, range: Range<u64>) -> Result<()> {
        let (start, finish) = {
            let mut s = self.state.lock().map_err(|_| panicked())?;
            s.pending_bytes += range.end - range.start;
            match s.pending.last_mut() {
                Some((o, last)) if *o == output && last.end == range.start => last.end = range.end,
                _ => s.pending.push((output, range)),
            }
            if s.pending_bytes < self.window {
                return Ok(());
            }
            let start = std::mem::take(&mut s.pending);
            s.flushing_bytes += std::mem::take(&mut s.pending_bytes);
            s.flushing.extend(start.iter().cloned());
            let mut finish = Vec::new();
            while s.flushing_bytes > 2 * self.window {
                let Some((o, r)) = s.flushing.pop_front() else {
                    break;
                };
                s.flushing_bytes -= r.end - r.start;
                finish.push((o, r));
            }
            (start, finish)
        };
        for (o, r) in start {
            page_cache::start_writeback(&outputs[o].file, r).at(&outputs[o].path)?;
        }
        for (o, r) in finish {
            page_cache::finish_writeback(&outputs[o].file, r).at(&outputs[o].path)?;
        }
        Ok(())
    }

    /// Starts writeback of what is left, without waiting.
    fn flush(&self, outputs: &[Output]) -> Result<()> {
        let pending = match self.state.lock() {
            Ok(mut s) => std::mem::take(&mut s.pending),
            Err(_) => return Ok(()),
        };
        for (o, r) in pending {
            page_cache::start_writeback(&outputs[o].file, r).at(&outputs[o].path)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::copy_plan::{SourceTable, plan_copies};
    use crate::convert::open_source;
    use crate::hf::source::ModelSource;
    use crate::progress::Silent;
    use crate::trtllm::mapping::Parallelism;
    use crate::trtllm::plan::plan_ranks;

    fn convert_with(model: &str, dtype: DType, tp: usize, tuning: Tuning, dir: &Path) -> Vec<Vec<u8>> {
        let source = ModelSource {
            dir: Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/models")
                .join(model),
            hub_id: None,
            revision: None,
        };
        let checked = open_source(&source).unwrap();
        let par = Parallelism { tp, pp: 1 };
        par.validate(&checked.config).unwrap();
        let plans = plan_ranks(&checked.config, par);
        let layouts: Vec<RankLayout> = plans.iter().map(|p| RankLayout::new(p, dtype)).collect();
        let copy = plan_copies(&plans, &layouts, &SourceTable::of(&checked.store), dtype).unwrap();
        let job = Job {
            layouts: &layouts,
            copy: &copy,
            store: &checked.store,
            dtype,
            tuning,
        };
        let (ranks, _) = write_rank_files(&job, dir, &Silent, &AtomicBool::new(false)).unwrap();
        assert_eq!(ranks.len(), tp);
        ranks
            .iter()
            .map(|r| std::fs::read(dir.join(&r.file)).unwrap())
            .collect()
    }

    /// Blocks of one row, many workers, a one-slot queue and a write-back after
    /// every write give the same bytes as the defaults (which the integration
    /// tests hold to the torch-made fixtures).
    #[test]
    fn block_size_workers_and_windows_do_not_change_a_byte() {
        for (model, dtype, tp) in [
            ("gqa-headdim-bf16", DType::BF16, 2),
            ("bin-f32", DType::F16, 5),
            ("mqa-tied-f16", DType::F32, 2),
        ] {
            let tmp = tempfile::tempdir().unwrap();
            let reference = convert_with(model, dtype, tp, Tuning::with_workers(1), tmp.path());
            let tunings = [
                Tuning {
                    workers: 3,
                    block_bytes: 1,
                    queue: 1,
                    write_window: 1,
                },
                Tuning {
                    workers: 2,
                    block_bytes: 1000,
                    queue: 2,
                    write_window: 4096,
                },
            ];
            for (i, tuning) in tunings.into_iter().enumerate() {
                let dir = tmp.path().join(format!("t{i}"));
                std::fs::create_dir(&dir).unwrap();
                let got = convert_with(model, dtype, tp, tuning, &dir);
                for (r, (a, b)) in got.iter().zip(&reference).enumerate() {
                    assert!(a == b, "{model} {dtype:?} tp{tp}, tuning {i}: rank{r} differs");
                }
            }
        }
    }
}
