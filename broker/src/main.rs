//! The layercrypt key broker. Not built yet (issue 3): this binary only says so.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    #[allow(clippy::print_stderr)]
    {
        eprintln!("layercrypt-broker: not built yet (see issue 3)");
    }
    std::process::ExitCode::from(2)
}
