//! The layercrypt containerd stream processor. Not built yet (issue 4): this binary only says so.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    #[allow(clippy::print_stderr)]
    {
        eprintln!("layercrypt-decoder: not built yet (see issue 4)");
    }
    std::process::ExitCode::from(2)
}
