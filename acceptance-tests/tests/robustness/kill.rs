//! Terraform and the provider killed (SIGKILL, the whole process group) at the K-th AWS request of a
//! create: the K-th request reaches the emulator, its answer never reaches the provider, and nothing after
//! it is sent. The next apply, without faults, must converge on exactly one of each part, with empty plans
//! after it, and a destroy must leave nothing behind. Killed at the create's last write, the one that marks
//! the stack deployed, the next apply is refused as another state's stack would be, and an import, as the
//! refusal says, is the way back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use datavault_acceptance_tests::runner::announce;
use regex::Regex;
use serde_json::json;

use crate::proxy::Record;
use crate::support::{
    Ctx, OkOrPanic, QUICK_MODEL, Shape, Tf, expect_clean_apply, expected_shape, model, orphans, secs, setup,
    stack_config,
};

const NAME: &str = "rb-kill";
/// Kill points tested by default: the first request, the last, and evenly spaced ones between.
const DEFAULT_KILL_POINTS: u64 = 12;

/// The K at which to kill: every K from 1 to `total` with `DATAVAULT_KILL_EVERY_STEP=1`; otherwise
/// `DATAVAULT_KILL_POINTS` (default 12) points spread evenly from the first request to the last.
pub fn kill_points(total: u64) -> Vec<u64> {
    if std::env::var("DATAVAULT_KILL_EVERY_STEP").is_ok_and(|v| v == "1") {
        return (1..=total).collect();
    }
    let n = std::env::var("DATAVAULT_KILL_POINTS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(DEFAULT_KILL_POINTS)
        .clamp(1, total.max(1));
    spread(total, n)
}

fn spread(total: u64, n: u64) -> Vec<u64> {
    if total == 0 {
        return Vec::new();
    }
    if n <= 1 {
        return vec![1];
    }
    let mut points: Vec<u64> = (0..n).map(|i| 1 + (i * (total - 1) + (n - 1) / 2) / (n - 1)).collect();
    points.dedup();
    points
}

/// The requests around the creation of `bucket`, which S3 cannot tag as it creates it: the claim written
/// before (SSM PutParameter), CreateBucket (a PUT of the bare bucket path) and the tagging after it. A kill
/// between any two of them must converge without weakening the ownership check.
fn bucket_points(records: &[Record], bucket: &str) -> Vec<u64> {
    let is_create = |r: &&Record| {
        let (path, query) = r.path.split_once('?').unwrap_or((&r.path, ""));
        r.action == "s3"
            && r.method == "PUT"
            && path.trim_end_matches('/') == format!("/{bucket}")
            && (query.is_empty() || query.starts_with("x-id=CreateBucket"))
    };
    let create = records.iter().find(is_create);
    let Some(create) = create else { return Vec::new() };
    let claim = records.iter().filter(|r| r.action == "PutParameter" && r.n < create.n).map(|r| r.n).max();
    let tagging = records
        .iter()
        .find(|r| {
            r.n > create.n
                && r.method == "PUT"
                && r.path.starts_with(&format!("/{bucket}"))
                && r.path.contains("tagging")
        })
        .map(|r| r.n);
    claim.into_iter().chain([create.n]).chain(tagging).collect()
}

/// Whether the stack's cluster carries the provider's datavault:deployed tag.
async fn marked_deployed(emu: &datavault_acceptance_tests::Emulator, stack: &str) -> bool {
    let described =
        emu.ecs().describe_clusters().clusters(stack).include(aws_sdk_ecs::types::ClusterField::Tags).send().await;
    described
        .is_ok_and(|out| out.clusters().iter().any(|c| c.tags().iter().any(|t| t.key() == Some("datavault:deployed"))))
}

/// What happened at one kill point.
struct Outcome {
    /// The action of the K-th request, when the apply reached it.
    action: Option<String>,
    /// How long the killed apply ran.
    killed_after: Duration,
    /// AWS requests of the apply that followed.
    reapply_requests: u64,
    /// Whether the kill came after the stack was marked deployed, so the way back was the import the
    /// refusal names.
    imported: bool,
}

fn kill_point(
    ctx: &Ctx,
    tf: &Tf,
    k: u64,
    baseline: &BTreeMap<String, usize>,
    orphans_found: &mut usize,
) -> Result<Outcome, String> {
    ctx.reset();
    tf.forget_state();
    ctx.proxy.configure(json!({"freeze_after": k, "model": {"scale": QUICK_MODEL}}));
    let mut run = tf.spawn(&["apply", "-auto-approve", "-input=false", "-no-color"]);
    let deadline = Instant::now() + Duration::from_secs(600);
    let action = loop {
        let stats = ctx.proxy.stats();
        if stats.freeze_committed {
            break stats.freeze_action;
        }
        if run.exited() {
            break None;
        }
        if Instant::now() > deadline {
            return Err("the apply neither reached the kill point nor ended in 600s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let killed_after = run.elapsed();
    if action.is_some() {
        run.kill();
    }
    let first = run.finish(Duration::from_secs(60));
    // The last write of a create marks the stack deployed (its cluster's datavault:deployed tag). Killed
    // right there, the apply had finished its work but Terraform never recorded it: the next plan takes it
    // for another state's stack, refuses, and says to import it. That refusal, then the import, is the
    // expected way back at this one point.
    let marked = action.is_some() && ctx.block_on(marked_deployed(&ctx.emulator, NAME));
    // No faults any more; requests still held by the freeze are dropped. A new model: what AWS was doing
    // when the apply was killed has long finished by the time a user applies again.
    ctx.proxy.reset();
    ctx.proxy.configure(model(QUICK_MODEL));
    if action.is_none() && !first.success() {
        return Err(format!("the apply ended before request {k} and failed:\n{first}"));
    }

    if marked {
        let refused = Regex::new(r"(?s)Stack Already Deployed.*import").expect("regex");
        tf.apply().expect_failure(&refused).map_err(|e| format!("killed at the deployed mark: {e}"))?;
        tf.run(&["import", "-input=false", "-no-color", crate::support::ADDR, NAME])
            .ok()
            .map_err(|e| format!("the import after the refusal failed: {e}"))?;
    }
    let reapply = expect_clean_apply(tf.apply()).map_err(|e| format!("the apply after the kill failed: {e}"))?;
    let reapply_requests = ctx.proxy.stats().total;
    drop(reapply);
    tf.expect_empty_plans().map_err(|e| format!("after the apply that followed the kill: {e}"))?;
    let shape = ctx.block_on(Shape::of(&ctx.emulator, NAME))?;
    let problems = shape.problems(baseline);
    if !problems.is_empty() {
        return Err(format!(
            "after the apply that followed the kill, the stack is not one of each part:\n  {}",
            problems.join("\n  ")
        ));
    }
    tf.destroy().ok().map_err(|e| format!("destroy failed: {e}"))?;
    let left = ctx.block_on(orphans(&ctx.emulator, NAME))?;
    *orphans_found += left.len();
    if !left.is_empty() {
        return Err(format!("destroy left {} orphan(s):\n  {}", left.len(), left.join("\n  ")));
    }
    Ok(Outcome { action, killed_after, reapply_requests, imported: marked })
}

#[test]
fn killed_at_any_request_of_a_create_the_next_apply_converges_without_duplicates() {
    let Some(ctx) = setup("kill") else { return };
    let started = Instant::now();
    let tf = ctx.workdir("work", &stack_config(NAME, ""));
    ctx.proxy.configure(model(QUICK_MODEL));

    let t = Instant::now();
    let out = tf.apply();
    let out = expect_clean_apply(out).unwrap_or_else(|e| panic!("the undisturbed apply failed: {e}"));
    drop(out);
    let stats = ctx.proxy.stats();
    let k_total = stats.total;
    let around_buckets = bucket_points(&ctx.proxy.records(), &format!("{NAME}-archive"));
    let records = ctx.proxy.records();
    let seen: Vec<String> = records
        .iter()
        .filter(|r| r.action == "s3" || r.action == "PutParameter")
        .map(|r| format!("#{} {} {} {}", r.n, r.action, r.method, r.path))
        .collect();
    assert_eq!(
        around_buckets.len(),
        3,
        "the claim, CreateBucket and tagging of the archive were not all found in {seen:#?}"
    );
    let baseline = ctx.block_on(Shape::of(&ctx.emulator, NAME)).unwrap_or_else(|e| panic!("{e}"));
    announce(&format!(
        "robustness/kill: an undisturbed apply made K_total = {k_total} AWS requests in {}; the stack: {}",
        secs(t.elapsed()),
        baseline.summary()
    ));
    let problems = baseline.problems(&expected_shape());
    assert!(problems.is_empty(), "the undisturbed stack is not the expected shape:\n  {}", problems.join("\n  "));
    let baseline = baseline.counts();

    let mut points = kill_points(k_total);
    points.extend(&around_buckets);
    points.sort_unstable();
    points.dedup();
    let mut failures = Vec::new();
    let (mut killed, mut completed, mut orphans_found) = (0, 0, 0);
    for &k in &points {
        let t = Instant::now();
        match kill_point(&ctx, &tf, k, &baseline, &mut orphans_found) {
            Ok(outcome) => match &outcome.action {
                Some(action) => {
                    killed += 1;
                    let way_back = if outcome.imported { "refused as deployed; after the import, " } else { "" };
                    eprintln!(
                        "robustness/kill: K = {k}/{k_total} ({action}): killed after {}, {way_back}the next apply ({} requests) converged, plans empty, destroy clean ({} in all)",
                        secs(outcome.killed_after),
                        outcome.reapply_requests,
                        secs(t.elapsed())
                    );
                }
                None => {
                    completed += 1;
                    eprintln!(
                        "robustness/kill: K = {k}/{k_total}: the apply finished before request {k}; checked as an undisturbed run"
                    );
                }
            },
            Err(e) => {
                eprintln!("robustness/kill: K = {k}/{k_total}: FAILED: {e}");
                failures.push(format!("kill point K = {k}: {e}"));
                // The next point starts from a reset emulator whatever this one left.
            }
        }
    }
    announce(&format!(
        "robustness/kill: K_total = {k_total}; {} kill points tested ({killed} killed, {completed} not reached), {} failed, orphans found: {}; took {}",
        points.len(),
        failures.len(),
        orphans_found,
        secs(started.elapsed())
    ));
    assert!(
        failures.is_empty(),
        "{} of {} kill points failed:\n\n{}",
        failures.len(),
        points.len(),
        failures.join("\n\n")
    );
    ctx.finish();
}

#[cfg(test)]
mod tests {
    use super::spread;

    #[test]
    fn kill_points_include_the_first_and_last_request() {
        assert_eq!(spread(169, 12).first(), Some(&1));
        assert_eq!(spread(169, 12).last(), Some(&169));
        assert_eq!(spread(169, 12).len(), 12);
        assert_eq!(spread(5, 12), vec![1, 2, 3, 4, 5]);
        assert_eq!(spread(3, 1), vec![1]);
        assert!(spread(0, 12).is_empty());
    }
}
