//! `bt`: parse, run, map the error to an exit code. Everything else lives in `bt-cli`.

fn main() -> std::process::ExitCode {
    bt_cli::main()
}
