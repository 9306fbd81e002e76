//! What conversion asks of the kernel's page cache, so that a 16 GB conversion
//! streams past it instead of filling it.
//!
//! Reading the source and writing the output through the cache would leave twice
//! the model size there; once memory is full every new page costs a reclaim, and
//! conversion (like `cp`) slows to a fraction of the disk's speed. So: which
//! source pages were cached before conversion is recorded (those are read from
//! the cache, the rest straight from disk, see `source_reader`); source pages a
//! buffered read brought in are released once used; output pages are written
//! back as they are produced and then released.
//!
//! Everything here is advice: on other systems, or where a filesystem refuses a
//! call, it does nothing and conversion works as before.

use std::fs::File;
use std::ops::Range;

/// Which pages of a memory-mapped file are in the page cache right now.
pub struct Residency {
    page: u64,
    /// One entry per page of the file; `None` when it could not be asked.
    resident: Option<Vec<bool>>,
}

impl Residency {
    /// Asks the kernel about every page of `map` (a whole file mapped from offset 0).
    pub fn of_map(map: &[u8]) -> Self {
        Residency {
            page: page_size(),
            resident: sys::resident_pages(map),
        }
    }

    /// The page-aligned parts of `range` that were not resident: what reading
    /// `range` brings into the cache. Pages cut by the range ends are left out,
    /// as neighbouring reads may still need them.
    pub fn brought_in(&self, range: Range<u64>) -> Vec<Range<u64>> {
        let Some(resident) = &self.resident else {
            return Vec::new();
        };
        let first = range.start.div_ceil(self.page);
        let end = (range.end / self.page).min(resident.len() as u64);
        let mut runs: Vec<Range<u64>> = Vec::new();
        for p in first..end {
            if resident[p as usize] {
                continue;
            }
            let (start, stop) = (p * self.page, (p + 1) * self.page);
            match runs.last_mut() {
                Some(last) if last.end == start => last.end = stop,
                _ => runs.push(start..stop),
            }
        }
        runs
    }
}

pub fn page_size() -> u64 {
    sys::page_size()
}

/// The file will be read front to back: the kernel may read further ahead.
pub fn advise_sequential(file: &File) {
    sys::fadvise_sequential(file);
}

/// Drops clean cached pages of `range` (dirty ones are left alone by the kernel).
pub fn release(file: &File, range: Range<u64>) {
    sys::fadvise_dontneed(file, range);
}

/// Starts writing back the dirty pages of `range` without waiting.
pub fn start_writeback(file: &File, range: Range<u64>) -> std::io::Result<()> {
    sys::sync_range(file, range, false)
}

/// Waits until `range` is written back (starting what is not yet under way),
/// then drops its pages from the cache.
pub fn finish_writeback(file: &File, range: Range<u64>) -> std::io::Result<()> {
    sys::sync_range(file, range.clone(), true)?;
    sys::fadvise_dontneed(file, range);
    Ok(())
}

/// Reserves `len` bytes for a new file, so that a full disk is reported before
/// anything is written. `Ok(false)` when the filesystem cannot reserve space.
pub fn reserve(file: &File, len: u64) -> std::io::Result<bool> {
    sys::reserve(file, len)
}

#[cfg(target_os = "linux")]
mod sys {
    use std::fs::File;
    use std::io;
    use std::ops::Range;
    use std::os::fd::AsRawFd;

    pub fn page_size() -> u64 {
        // SAFETY: sysconf has no preconditions.
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if n > 0 { n as u64 } else { 4096 }
    }

    pub fn resident_pages(map: &[u8]) -> Option<Vec<bool>> {
        if map.is_empty() {
            return Some(Vec::new());
        }
        let pages = map.len().div_ceil(page_size() as usize);
        let mut vec = vec![0u8; pages];
        // SAFETY: `map` is a live mapping (memmap2 maps from a page-aligned
        // address) of `map.len()` bytes, and `vec` has one byte per page of it.
        let rc = unsafe { libc::mincore(map.as_ptr() as *mut libc::c_void, map.len(), vec.as_mut_ptr()) };
        (rc == 0).then(|| vec.iter().map(|b| b & 1 == 1).collect())
    }

    fn off(v: u64) -> libc::off_t {
        libc::off_t::try_from(v).unwrap_or(libc::off_t::MAX)
    }

    pub fn fadvise_sequential(file: &File) {
        // SAFETY: plain syscall on an open descriptor; failure only means no advice.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL) };
    }

    pub fn fadvise_dontneed(file: &File, range: Range<u64>) {
        if range.is_empty() {
            return;
        }
        // SAFETY: as above.
        unsafe {
            libc::posix_fadvise(
                file.as_raw_fd(),
                off(range.start),
                off(range.end - range.start),
                libc::POSIX_FADV_DONTNEED,
            )
        };
    }

    pub fn sync_range(file: &File, range: Range<u64>, wait: bool) -> io::Result<()> {
        if range.is_empty() {
            return Ok(());
        }
        let flags = if wait {
            libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER
        } else {
            libc::SYNC_FILE_RANGE_WRITE
        };
        // SAFETY: plain syscall on an open descriptor.
        let rc = unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                off(range.start),
                off(range.end - range.start),
                flags,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        // Filesystems and files without writeback (pipes, some FUSE) refuse it: nothing to do then.
        match err.raw_os_error() {
            Some(libc::EINVAL | libc::ESPIPE | libc::ENOSYS | libc::EOPNOTSUPP) => Ok(()),
            _ => Err(err),
        }
    }

    pub fn reserve(file: &File, len: u64) -> io::Result<bool> {
        if len == 0 {
            return Ok(true);
        }
        // SAFETY: plain syscall on an open descriptor.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, off(len)) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL) => Ok(false),
            _ => Err(err),
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    use std::fs::File;
    use std::io;
    use std::ops::Range;

    pub fn page_size() -> u64 {
        4096
    }
    pub fn resident_pages(_map: &[u8]) -> Option<Vec<bool>> {
        None
    }
    pub fn fadvise_sequential(_file: &File) {}
    pub fn fadvise_dontneed(_file: &File, _range: Range<u64>) {}
    pub fn sync_range(_file: &File, _range: Range<u64>, _wait: bool) -> io::Result<()> {
        Ok(())
    }
    pub fn reserve(_file: &File, _len: u64) -> io::Result<bool> {
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn residency(pages: &[bool]) -> Residency {
        Residency {
            page: 4096,
            resident: Some(pages.to_vec()),
        }
    }

    #[test]
    fn only_whole_pages_that_were_not_cached_are_released() {
        let r = residency(&[false, false, true, false, false, false]);
        // Whole file: the cached page 2 splits the runs.
        assert_eq!(r.brought_in(0..6 * 4096), vec![0..2 * 4096, 3 * 4096..6 * 4096]);
        // Partial first and last pages stay (a neighbour may still read them).
        assert_eq!(
            r.brought_in(100..5 * 4096 + 7),
            vec![4096..2 * 4096, 3 * 4096..5 * 4096]
        );
        // Inside one page: nothing.
        assert!(r.brought_in(10..20).is_empty());
        // Unknown residency: never release.
        let unknown = Residency {
            page: 4096,
            resident: None,
        };
        assert!(unknown.brought_in(0..6 * 4096).is_empty());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn pages_just_read_are_resident() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let page = page_size() as usize;
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&vec![7u8; 8 * page])
            .unwrap();
        let file = File::open(&path).unwrap();
        file.sync_all().unwrap();
        // SAFETY: the test owns the file and does not change it while mapped.
        let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
        let sum: u64 = map.iter().map(|&b| u64::from(b)).sum();
        assert_eq!(sum, 7 * 8 * page as u64);
        let all = Residency::of_map(&map);
        assert_eq!(all.resident.as_ref().map(Vec::len), Some(8), "one entry per page");
        assert!(
            all.brought_in(0..(8 * page) as u64).is_empty(),
            "every page was just read"
        );
    }
}
