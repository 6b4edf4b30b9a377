//! The provider binary: serves the plugin to Terraform, or with `-debug` to a debugger.

use std::process::ExitCode;
use std::sync::Arc;

use terraform_provider_datavault::{REGISTRY_ADDRESS, framework, plugin, provider};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-version" || a == "--version") {
        println!("terraform-provider-datavault {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let debug = args.iter().any(|a| a == "-debug" || a == "--debug");
    plugin::logging::init();
    plugin::tls::install_crypto_provider();
    // One runtime for the whole process: the gRPC server and every AWS call share it.
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
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
