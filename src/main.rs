fn main() -> std::process::ExitCode {
    landfall::cli::main()
}
