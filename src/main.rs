//! The `initagent` binary: PID 1 runs stage 1, anything else runs a subcommand.

fn main() {
    let code = initagent::cli::main(std::env::args_os().collect());
    std::process::exit(code);
}
