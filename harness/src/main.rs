//! The `slimbench` binary.

fn main() -> std::process::ExitCode {
    slimbench::cli::main()
}
