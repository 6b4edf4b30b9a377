//! Apply, plan and destroy through a proxy that fails a share of the AWS requests: throttling in each
//! protocol's own shape, HTTP 500 and 503, connection resets, and added latency. The provider's retries
//! (the SDK's standard mode, with the provider's default of 10 retries) must absorb them all, and the
//! destroy must leave nothing behind.

use std::time::Instant;

use datavault_acceptance_tests::runner::announce;
use serde_json::json;

use crate::support::{QUICK_MODEL, Shape, expect_clean_apply, expected_shape, orphans, secs, setup, stack_config};

const NAME: &str = "rb-faults";
/// The seed of the proxy's random choices unless `DATAVAULT_FAULT_SEED` says otherwise, so a CI failure
/// can be replayed.
const DEFAULT_SEED: u64 = 20_261_125;

/// Fault rates to survive: `DATAVAULT_FAULT_RATES` (comma-separated, 0..1), 10% by default.
fn rates() -> Vec<f64> {
    std::env::var("DATAVAULT_FAULT_RATES")
        .ok()
        .map(|v| v.split(',').filter_map(|r| r.trim().parse::<f64>().ok()).collect::<Vec<_>>())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| vec![0.1])
}

/// Fault kinds drawn from: `DATAVAULT_FAULT_KINDS` (comma-separated), by default every kind but
/// `reset_after` (an answer lost after the emulator carried the request out; see fault_proxy.py).
fn kinds() -> Vec<String> {
    std::env::var("DATAVAULT_FAULT_KINDS")
        .ok()
        .map(|v| v.split(',').map(|k| k.trim().to_string()).filter(|k| !k.is_empty()).collect::<Vec<_>>())
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| ["throttle", "500", "503", "reset", "latency"].map(String::from).to_vec())
}

fn seed() -> u64 {
    std::env::var("DATAVAULT_FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_SEED)
}

#[test]
fn apply_plan_and_destroy_survive_throttling_server_errors_resets_and_latency() {
    let Some(ctx) = setup("faults") else { return };
    let tf = ctx.workdir("work", &stack_config(NAME, ""));
    let seed = seed();
    let mut survived = Vec::new();
    for rate in rates() {
        ctx.reset();
        tf.forget_state();
        ctx.proxy.configure(json!({
            "fault_rate": rate,
            "kinds": kinds(),
            "fault_latency_ms": [100, 1000],
            "seed": seed,
            "model": {"scale": QUICK_MODEL},
        }));
        let percent = rate * 100.0;

        let t = Instant::now();
        let apply = tf.apply();
        let stats = ctx.proxy.stats();
        announce(&format!(
            "robustness/faults: {percent}% faults ({}), seed {seed}: apply made {} requests in {}, {} faulted ({})",
            kinds().join(" "),
            stats.total,
            secs(t.elapsed()),
            stats.faulted,
            stats.faults()
        ));
        expect_clean_apply(apply).unwrap_or_else(|e| panic!("the apply under {percent}% faults failed: {e}"));

        ctx.proxy.clear();
        let t = Instant::now();
        tf.expect_empty_plans().unwrap_or_else(|e| panic!("under {percent}% faults: {e}"));
        let stats = ctx.proxy.stats();
        announce(&format!(
            "robustness/faults: {percent}% faults: both plans empty, {} requests in {}, {} faulted ({})",
            stats.total,
            secs(t.elapsed()),
            stats.faulted,
            stats.faults()
        ));
        let shape = ctx.block_on(Shape::of(&ctx.emulator, NAME)).unwrap_or_else(|e| panic!("{e}"));
        let problems = shape.problems(&expected_shape());
        assert!(problems.is_empty(), "after the apply under {percent}% faults:\n  {}", problems.join("\n  "));

        ctx.proxy.clear();
        let t = Instant::now();
        let destroy = tf.destroy();
        let stats = ctx.proxy.stats();
        announce(&format!(
            "robustness/faults: {percent}% faults: destroy made {} requests in {}, {} faulted ({})",
            stats.total,
            secs(t.elapsed()),
            stats.faulted,
            stats.faults()
        ));
        assert!(destroy.success(), "the destroy under {percent}% faults failed:\n{destroy}");
        ctx.proxy.reset();
        let left = ctx.block_on(orphans(&ctx.emulator, NAME)).unwrap_or_else(|e| panic!("{e}"));
        announce(&format!("robustness/faults: {percent}% faults: orphans found: {}", left.len()));
        assert!(left.is_empty(), "destroy under {percent}% faults left orphans:\n  {}", left.join("\n  "));
        survived.push(format!("{percent}%"));
    }
    announce(&format!("robustness/faults: fault rates survived: {}", survived.join(", ")));
    ctx.finish();
}
