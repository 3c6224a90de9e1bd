//! The `edgepipe` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    edgepipe::main()
}
