//! The `herald` binary. Everything it does lives in `herald_server::main`;
//! this file exists so that the root package (whose tests run the real
//! binary) owns it.

fn main() -> std::process::ExitCode {
    herald_server::main()
}
