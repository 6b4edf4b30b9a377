//! Acceptance-test harness for terraform-provider-datavault, modelled on HashiCorp's
//! terraform-plugin-testing.
//!
//! A [`TestCase`] is a list of [`Step`]s that [`run`] drives through a real Terraform CLI, a real build of
//! the provider (installed from a per-process filesystem mirror) and a real AWS emulator (moto server).
//! Nothing is mocked: each step writes HCL, runs Terraform, and checks both Terraform's state and the
//! emulator itself through the AWS SDK.
//!
//! Semantics follow terraform-plugin-testing where it has an opinion:
//! - every test is gated on `TF_ACC`; without it the test prints a `SKIPPED` line and passes;
//! - a config step plans, applies, runs its checks, then demands an empty plan both without and with a
//!   refresh (so perpetual diffs and drift-on-read are caught);
//! - an import step imports into a fresh working directory and can verify the imported attributes against
//!   the state the previous config step applied;
//! - after the last step, and also after a failed one, the case destroys what it created and checks that
//!   the emulator is clean.
//!
//! Tests are serialised by a process-wide lock because they share one emulator, which each test resets
//! before its first step.

pub mod case;
pub mod checks;
pub mod emulator;
pub mod env;
pub mod hcl;
pub mod inventory;
pub mod mirror;
pub mod runner;
pub mod runtime;
pub mod state;
pub mod terraform;
pub mod verify;
pub mod workdir;

pub use case::{CheckError, CheckResult, Step, StepContext, TestCase};
pub use checks::{check_actions, expect_attr, expect_attr_eq, expect_attr_str};
pub use emulator::Emulator;
pub use inventory::{STACK_TAG, assert_emulator_clean, assert_emulator_empty, stack_items};
pub use runner::run;
pub use state::{attr, attr_str, change_actions, resource, resource_change};
pub use terraform::CommandOutput;
