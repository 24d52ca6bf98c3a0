//! `bt`: parse, run, map the error to an exit code. Everything else lives in `bt-cli`.

/// mimalloc keeps the training step's large temporary tensors instead of returning them to the
/// OS after each use (see `docs/neuron.md`, Speed).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    #[allow(unsafe_code)]
    // SAFETY: the first statement of `main`: no other thread exists yet.
    unsafe {
        bt_cli::configure_candle_threads();
    }
    bt_cli::main()
}
