//! The `initagent` binary: PID 1 runs stage 1, anything else runs a subcommand.

/// Reuses flist block buffers instead of mapping fresh pages for each (see the module).
#[global_allocator]
static ALLOCATOR: initagent::sys::alloc::BlockReuse = initagent::sys::alloc::BlockReuse::new();

fn main() {
    let code = initagent::cli::main(std::env::args_os().collect());
    std::process::exit(code);
}
