//! Robustness tests for `datavault_stack`: the real provider under a real Terraform, talking to the moto
//! emulator through a fault-injecting proxy (`acceptance-tests/fault_proxy.py`).
//!
//! - `kill`: Terraform and the provider SIGKILLed at the K-th AWS request of a create, for a spread of K
//!   (every K with `DATAVAULT_KILL_EVERY_STEP=1`); the next apply must converge without duplicates.
//! - `partial`: one part fails for good; the stack is tainted, replaced cleanly, or destroyed cleanly.
//! - `faults`: apply, plan and destroy under a mix of throttling, 5xx, connection resets and latency.
//! - `drift`: changes made through the SDK behind Terraform's back are planned and repaired.
//! - `locking`: two applies on one S3 backend with native locking; one wins, one is locked out.
//! - `network`: the load balancer in public subnets of its own, the S3 gateway endpoint for the tasks.
//! - `ownership`: look-alikes of the stack's resources (untagged, or another stack's) are never changed or
//!   deleted by plan, apply, import, destroy or the removal of an unwanted part, and every refusal names them.
//! - `story`: the first deployment with `wait_for_steady_state = true` through the AWS behaviour model
//!   (`aws_model.py`): empty repositories, images pushed, a tag never pushed, an image that cannot be pulled.
//! - `refusals`: a forbidden destroy or replacement deletes nothing; bad inputs are refused at plan with their
//!   attribute and no AWS write.
//!
//! Gated on `TF_ACC` like every acceptance test; run through `make acceptance` (or
//! `scripts/with-emulator.sh`), which starts moto and sets `DATAVAULT_EMULATOR_URL`. Every figure the
//! tests measure (requests, kill points, faults injected, orphans) is printed on stderr.

#[path = "robustness/proxy.rs"]
mod proxy;
#[path = "robustness/support.rs"]
mod support;

#[path = "robustness/drift.rs"]
mod drift;
#[path = "robustness/faults.rs"]
mod faults;
#[path = "robustness/kill.rs"]
mod kill;
#[path = "robustness/locking.rs"]
mod locking;
#[path = "robustness/network.rs"]
mod network;
#[path = "robustness/ownership.rs"]
mod ownership;
#[path = "robustness/partial.rs"]
mod partial;
#[path = "robustness/refusals.rs"]
mod refusals;
#[path = "robustness/story.rs"]
mod story;
