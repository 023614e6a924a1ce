//! The `hvrlake` binary: see [`hvrlake::cli`].

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    hvrlake::cli::tune_allocator(std::env::args().nth(1).as_deref());
    std::process::exit(hvrlake::cli::main());
}
