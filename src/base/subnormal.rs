//! Flushing subnormal floats to zero, per thread.
//!
//! A float below `f32::MIN_POSITIVE` (≈ 1.2e-38) is *subnormal*. x86 cores handle an arithmetic
//! operation that reads or produces one in microcode, ~100× slower than a normal one. A deep net
//! can drift into that range (weights and signals of a 100-layer tanh net that does not learn decay
//! towards zero), and then a training epoch takes ten times as long (measured on 100x240 FA:
//! `docs/performance.md`). The MXCSR register of each thread has two bits against this:
//! FTZ (flush-to-zero: a subnormal result is written as 0) and DAZ (denormals-are-zero: a
//! subnormal operand is read as 0). With both set, no subnormal ever enters or leaves the SIMD
//! units; results change only where a value would have been subnormal.

/// FTZ (bit 15) and DAZ (bit 6) of MXCSR.
#[cfg(target_arch = "x86_64")]
const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);

/// Whether this machine can flush subnormals ([`set_flush`] does nothing elsewhere).
pub const SUPPORTED: bool = cfg!(target_arch = "x86_64");

/// Sets (or clears) flush-to-zero and denormals-are-zero for the calling thread. Affects every
/// SSE/AVX float operation of the thread from now on; other threads keep their own setting.
pub fn set_flush(on: bool) {
    #[cfg(target_arch = "x86_64")]
    {
        let csr = read_csr();
        write_csr(if on { csr | FTZ_DAZ } else { csr & !FTZ_DAZ });
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = on;
}

/// Whether the calling thread flushes subnormals.
pub fn flushing() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        read_csr() & FTZ_DAZ == FTZ_DAZ
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

#[cfg(target_arch = "x86_64")]
fn read_csr() -> u32 {
    let mut csr = 0u32;
    // SAFETY: `stmxcsr` stores the 32-bit MXCSR register to the given address, which is a live,
    // aligned u32 on this stack frame; it has no other effect.
    unsafe { std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags)) };
    csr
}

#[cfg(target_arch = "x86_64")]
fn write_csr(csr: u32) {
    // SAFETY: `ldmxcsr` loads MXCSR from a live u32; the only bits changed against the current
    // value are FTZ and DAZ, which select how subnormals are treated and cannot fault.
    unsafe { std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, preserves_flags, readonly)) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hint::black_box;

    #[test]
    fn flushing_turns_subnormal_results_and_operands_into_zero() {
        if !SUPPORTED {
            return;
        }
        std::thread::spawn(|| {
            let tiny = black_box(1e-30f32) * black_box(1e-10f32);
            assert!(tiny > 0.0 && !tiny.is_normal(), "subnormal by default: {tiny:e}");
            set_flush(true);
            assert!(flushing());
            // FTZ: a subnormal result is written as 0
            assert_eq!(black_box(1e-30f32) * black_box(1e-10f32), 0.0);
            // DAZ: a subnormal operand is read as 0
            assert_eq!(black_box(tiny) * black_box(1.0f32), 0.0);
            assert_eq!(black_box(tiny) + black_box(0.0f32), 0.0);
            // normal numbers are untouched
            assert_eq!(black_box(3.0f32) * black_box(0.5f32), 1.5);
            set_flush(false);
            assert!(!flushing());
            assert_eq!(black_box(1e-30f32) * black_box(1e-10f32), tiny);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_setting_belongs_to_one_thread() {
        if !SUPPORTED {
            return;
        }
        let (set, was_set) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || {
            was_set.recv().unwrap();
            flushing()
        });
        std::thread::spawn(move || {
            set_flush(true);
            set.send(()).unwrap();
            assert!(flushing());
        })
        .join()
        .unwrap();
        assert!(!other.join().unwrap(), "a thread that was running already keeps its own setting");
    }
}
