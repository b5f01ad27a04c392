//! A compressed file that inflates far beyond what its header declares costs no more memory than
//! the header declares (a peak-tracking global allocator measures it). One test in this binary,
//! so that nothing else allocates while it measures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Peak;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = LIVE.fetch_add(bytes, Ordering::SeqCst) + bytes;
    PEAK.fetch_max(now, Ordering::SeqCst);
}

unsafe impl GlobalAlloc for Peak {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        grew(new_size);
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        p
    }
}

#[global_allocator]
static GLOBAL: Peak = Peak;

#[test]
fn a_gzip_bomb_is_refused_within_the_declared_size() {
    // MNIST's header (60000 × 28 × 28 = 47 MB declared) followed by 400 MB of zeros
    let declared = 60000 * 28 * 28;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&[0, 0, 8, 3, 0, 0, 0xea, 0x60, 0, 0, 0, 28, 0, 0, 0, 28]).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..400 {
        gz.write_all(&zeros).unwrap();
    }
    let bomb = gz.finish().unwrap();
    drop(zeros);
    assert!(bomb.len() < 4 << 20, "the bomb is small: {} bytes for 400 MiB", bomb.len());

    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let err = dfa::data::idx::parse_stored(&bomb, Path::new("bomb.gz"), Some(3)).unwrap_err().to_string();
    let peak = PEAK.load(Ordering::SeqCst) - base;
    assert!(err.contains("trailing data"), "{err}");
    // the buffer grows by doubling towards the declared size: at most twice it, plus slack
    assert!(peak < 2 * declared + (8 << 20), "peak {peak} bytes for {declared} declared");

    // the same through the generic bounded inflation (CIFAR files, downloads)
    PEAK.store(LIVE.load(Ordering::SeqCst), Ordering::SeqCst);
    let base = LIVE.load(Ordering::SeqCst);
    let err = dfa::data::idx::maybe_gunzip(bomb, Path::new("bomb.gz"), declared).unwrap_err().to_string();
    let peak = PEAK.load(Ordering::SeqCst) - base;
    assert!(err.contains("inflates to more than"), "{err}");
    assert!(peak < 2 * declared + (8 << 20), "peak {peak} bytes for a limit of {declared}");
}
