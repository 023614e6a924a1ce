//! The `hvrlake` binary: see [`hvrlake::cli`].

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (v2's `mimalloc.h`): how long freed memory stays with the
/// process before it is given back, in milliseconds.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() {
    // The default of 10 ms gives a piece's buffers back to the kernel between one wave and the
    // next, which then faults and zeroes them in again: 1 s keeps them for reuse (a 1 GB
    // refresh: system time 0.60 -> 0.48 s, CPU 0.976, peak RSS +25 MiB; docs/benchmarks.md,
    // session 11). MIMALLOC_PURGE_DELAY still decides when it is set.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one of mimalloc's options, which it reads when it purges.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 1000) };
    }
    std::process::exit(hvrlake::cli::main());
}
