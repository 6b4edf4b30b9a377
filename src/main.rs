//! The provider binary: serves the plugin to Terraform, or with `-debug` to a debugger.

use std::process::ExitCode;
use std::sync::Arc;

use terraform_provider_datavault::{REGISTRY_ADDRESS, framework, plugin, provider};

/// The stack of each of the runtime's threads (see `main`).
const WORKER_STACK: usize = 8 << 20;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-version" || a == "--version") {
        println!("terraform-provider-datavault {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let debug = args.iter().any(|a| a == "-debug" || a == "--debug");
    plugin::logging::init();
    plugin::tls::install_crypto_provider();
    // One runtime for the whole process: the gRPC server and every AWS call share it. Its threads get the
    // stack Linux gives a main thread (8 MiB) instead of tokio's 2 MiB: polling a refresh goes through the
    // stack's walk, a part's reads and the AWS SDK's nested request layers, and an unoptimised build was
    // measured needing between 2 and 2.5 MiB for it. Stack that is never touched costs only address space.
    let runtime = match tokio::runtime::Builder::new_multi_thread().thread_stack_size(WORKER_STACK).enable_all().build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let provider: Arc<dyn framework::Provider> = Arc::new(provider::DataVaultProvider::new());
    runtime.block_on(async move {
        if debug { plugin::serve_debug(provider, REGISTRY_ADDRESS).await } else { plugin::serve(provider).await }
    })
}
