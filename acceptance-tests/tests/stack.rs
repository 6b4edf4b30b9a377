//! Acceptance tests for the `datavault_stack` resource: each drives the real provider binary through a
//! real Terraform CLI against the moto emulator (`make acceptance`). Without `TF_ACC` every test prints a
//! SKIPPED line and passes.
//!
//! One test binary on purpose: the tests share one tokio runtime, one provider mirror and the lock that
//! serialises them on the single emulator. Each test uses its own stack name so a leftover from one can
//! never be mistaken for another's.

#[path = "stack/support.rs"]
mod support;

#[path = "stack/archive.rs"]
mod archive;
#[path = "stack/drift.rs"]
mod drift;
#[path = "stack/encryption.rs"]
mod encryption;
#[path = "stack/full.rs"]
mod full;
#[path = "stack/harness.rs"]
mod harness;
#[path = "stack/images.rs"]
mod images;
#[path = "stack/import.rs"]
mod import;
#[path = "stack/lifecycle.rs"]
mod lifecycle;
#[path = "stack/load_balancer.rs"]
mod load_balancer;
#[path = "stack/passwords.rs"]
mod passwords;
#[path = "stack/validation.rs"]
mod validation;
