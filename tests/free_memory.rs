//! `runtime::free_memory::release_to_os` gives back what a thread freed in the
//! middle of its malloc arena, which glibc alone keeps resident (a thread
//! arena shrinks only from its top). Its own test binary: one process, one
//! test, so no other test allocates while the resident size is read.

#![cfg(all(target_os = "linux", target_env = "gnu"))]

use trtllm_minitron::runtime::free_memory::release_to_os;

/// Resident bytes of this process (`/proc/self/statm`, second field, in pages).
fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .expect("statm's resident field");
    // SAFETY: sysconf only reads a configuration value.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * usize::try_from(page).expect("page size")
}

#[test]
fn memory_freed_in_a_thread_arena_goes_back_to_the_system() {
    const BLOCK: usize = 32 << 10;
    const BLOCKS: usize = 256;
    // In a thread of its own (its own arena, as the serving scheduler has):
    // 8 MiB of touched blocks, all freed but the last, which keeps the
    // arena's top in use so that glibc cannot shrink it.
    let live_top = std::thread::spawn(|| {
        let mut blocks: Vec<Vec<u8>> = (0..BLOCKS).map(|i| vec![i as u8 | 1; BLOCK]).collect();
        let top = blocks.pop();
        drop(blocks);
        top
    })
    .join()
    .expect("the allocating thread");
    let before = resident_bytes();
    release_to_os();
    let after = resident_bytes();
    let freed = BLOCK * (BLOCKS - 1);
    assert!(
        before.saturating_sub(after) >= freed / 2,
        "resident {before} -> {after} bytes after releasing {freed} freed bytes"
    );
    assert_eq!(live_top.map(|b| b[0]), Some((BLOCKS - 1) as u8 | 1));
}
