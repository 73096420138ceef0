//! The `herald` binary. Serving lives in `herald_server::main` and
//! `herald doctor …` in `herald_doctor::main`; this file exists so that the
//! root package (whose tests run the real binary) owns it, and so that the
//! server never links the doctor's HTTP client.

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("doctor") {
        return herald_doctor::main(args);
    }
    herald_server::main()
}
