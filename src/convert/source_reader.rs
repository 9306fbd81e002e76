//! Reads byte ranges of one weight file for conversion. A range the page cache
//! already holds (all of its pages were cached when conversion started) is
//! copied from there; any other range is read straight from the disk with
//! `O_DIRECT` into the caller's buffer, so a cold source neither fills the page
//! cache nor costs a second copy through it. Where `O_DIRECT` is refused, reads
//! go through the cache and the pages they brought in are released afterwards.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::convert::page_cache::{self, Residency};

/// `O_DIRECT` offsets, lengths and buffer addresses are multiples of this
/// (the largest logical block size in common use).
const ALIGN: usize = 4096;

/// A reusable buffer; the bytes read are `bytes[start..start + len]`.
#[derive(Default)]
pub struct ReadBuf {
    bytes: Vec<u8>,
    start: usize,
    len: usize,
}

impl ReadBuf {
    pub fn with_capacity(n: usize) -> Self {
        ReadBuf {
            bytes: Vec::with_capacity(n + 2 * ALIGN),
            start: 0,
            len: 0,
        }
    }

    pub fn data(&self) -> &[u8] {
        &self.bytes[self.start..self.start + self.len]
    }
}

pub struct SourceReader<'a> {
    file: &'a File,
    /// The same file opened with `O_DIRECT`, where the filesystem allows it.
    direct: Option<File>,
    /// Taken before the first read: pages cached then were cached by someone else.
    residency: Residency,
    /// Bytes read from the disk with `O_DIRECT`, and through the page cache.
    pub bytes_direct: u64,
    pub bytes_buffered: u64,
}

impl<'a> SourceReader<'a> {
    /// `file` is open at `path` and mapped whole as `mapped`.
    pub fn new(path: &Path, file: &'a File, mapped: &[u8]) -> Self {
        page_cache::advise_sequential(file);
        SourceReader {
            file,
            direct: open_direct(path, file),
            residency: Residency::of_map(mapped),
            bytes_direct: 0,
            bytes_buffered: 0,
        }
    }

    /// Reads `range` into `buf`; returns the page ranges this read brought into
    /// the cache, to release (`page_cache::release`) once the bytes are used.
    pub fn read(&mut self, range: Range<u64>, buf: &mut ReadBuf) -> io::Result<Vec<Range<u64>>> {
        let uncached = self.residency.brought_in(range.clone());
        if !uncached.is_empty()
            && let Some(direct) = &self.direct
        {
            match read_direct(direct, range.clone(), buf) {
                Ok(()) => {
                    self.bytes_direct += range.end - range.start;
                    return Ok(Vec::new());
                }
                // The filesystem took O_DIRECT at open but not for reads: go through the cache.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => self.direct = None,
                Err(e) => return Err(e),
            }
        }
        read_buffered(self.file, range.clone(), buf)?;
        self.bytes_buffered += range.end - range.start;
        Ok(uncached)
    }
}

fn read_buffered(file: &File, range: Range<u64>, buf: &mut ReadBuf) -> io::Result<()> {
    let len = (range.end - range.start) as usize;
    buf.bytes.resize(len, 0);
    file.read_exact_at(&mut buf.bytes, range.start)?;
    buf.start = 0;
    buf.len = len;
    Ok(())
}

/// Reads the aligned span around `range` into an aligned part of `buf`.
fn read_direct(file: &File, range: Range<u64>, buf: &mut ReadBuf) -> io::Result<()> {
    let align = ALIGN as u64;
    let first = range.start / align * align;
    let span = (range.end.div_ceil(align) * align - first) as usize;
    buf.bytes.resize(span + ALIGN, 0);
    let pad = buf.bytes.as_ptr().align_offset(ALIGN);
    let area = &mut buf.bytes[pad..pad + span];
    let needed = (range.end - first) as usize;
    let mut got = 0;
    // The last block of the file may come back short; reads stop at end of file.
    while got < needed {
        match file.read_at(&mut area[got..], first + got as u64) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.start = pad + (range.start - first) as usize;
    buf.len = (range.end - range.start) as usize;
    Ok(())
}

#[cfg(target_os = "linux")]
fn open_direct(path: &Path, file: &File) -> Option<File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let direct = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .ok()?;
    // Only if the path still names the file that was mapped and checked.
    let (a, b) = (file.metadata().ok()?, direct.metadata().ok()?);
    (a.dev() == b.dev() && a.ino() == b.ino()).then_some(direct)
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_path: &Path, _file: &File) -> Option<File> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    /// A file of `n` pattern bytes, on disk and (where the filesystem lets go) out of the cache.
    fn cold_file(n: usize) -> (tempfile::TempDir, std::path::PathBuf, File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weights");
        std::fs::write(&path, pattern(n)).unwrap();
        let file = File::open(&path).unwrap();
        file.sync_all().unwrap();
        page_cache::release(&file, 0..n as u64);
        (dir, path, file)
    }

    fn map(file: &File) -> memmap2::Mmap {
        // SAFETY: the test owns the file and does not change it while mapped.
        unsafe { memmap2::Mmap::map(file) }.unwrap()
    }

    #[test]
    fn unaligned_ranges_read_the_same_bytes_by_either_path() {
        let n = (1 << 20) + 123;
        let (_dir, path, file) = cold_file(n);
        let expected = pattern(n);
        let mapped = map(&file);
        let mut reader = SourceReader::new(&path, &file, &[]);
        // Residency of the cold file, taken without touching its pages.
        reader.residency = Residency::of_map(&mapped);
        let cold = !reader.residency.brought_in(0..n as u64).is_empty();
        let mut buf = ReadBuf::with_capacity(64);
        let ranges = [
            0..10,
            4095..4097 + 8192,
            5000..n - 5,
            n - 77..n,
            0..n,
            123_457..654_321,
        ];
        for r in ranges.clone() {
            reader.read(r.start as u64..r.end as u64, &mut buf).unwrap();
            assert_eq!(buf.data(), &expected[r.clone()], "bytes {r:?}");
        }
        if cold && reader.direct.is_some() {
            assert!(
                reader.bytes_direct > n as u64,
                "a cold file is read with O_DIRECT"
            );
        }
        // The same ranges from a cached file go through the cache.
        std::fs::read(&path).unwrap();
        let mut warm = SourceReader::new(&path, &file, &mapped);
        for r in ranges.clone() {
            warm.read(r.start as u64..r.end as u64, &mut buf).unwrap();
            assert_eq!(buf.data(), &expected[r.clone()], "cached bytes {r:?}");
        }
        assert_eq!(warm.bytes_direct, 0);
    }

    #[test]
    fn a_range_past_the_end_is_an_error_by_either_path() {
        let n = 3 * ALIGN + 5;
        let (_dir, path, file) = cold_file(n);
        let mapped = map(&file);
        let mut buf = ReadBuf::default();
        for residency in [Residency::of_map(&mapped), Residency::of_map(&[])] {
            let mut reader = SourceReader::new(&path, &file, &[]);
            reader.residency = residency;
            let err = reader.read(ALIGN as u64..(n + 1) as u64, &mut buf).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        }
    }
}
