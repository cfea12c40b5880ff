#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    chatwarden::cli::main()
}
