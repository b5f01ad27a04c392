//! The `dfa` binary: the command line in [`cli`]; the work is done by the `dfa` library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
