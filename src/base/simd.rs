//! Run-time selection of AVX2+FMA code for the element-wise kernels.
//!
//! The crate is compiled for baseline x86-64 (SSE2) so that one binary runs everywhere. The
//! element-wise loops (bias + activation, `⊙ f'`, RMSprop) are written once as plain Rust;
//! [`multiversion!`] compiles each again with AVX-512 and with AVX2+FMA enabled and picks the
//! widest copy the CPU supports at run time. Both copies compute the same bits: Rust never fuses a
//! multiply and an add on its own, and the explicit `mul_add`s are exact FMAs on either path
//! (hardware instruction or libm's exact software `fmaf`).

/// Defines `fn $name(args)` that runs an AVX-512 or AVX2+FMA build of `$body` where the CPU
/// supports it.
#[macro_export]
#[doc(hidden)]
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports the features `avx512` was compiled with.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports the features `avx2` was compiled with.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
