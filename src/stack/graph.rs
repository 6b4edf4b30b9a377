//! Runs work over a dependency graph of nodes: each node starts once every node it depends on has
//! finished, independent nodes run concurrently, and a concurrency cap bounds the load on AWS.
//!
//! On the first failure nothing new starts, work already running is allowed to finish, and the report says
//! what finished, what failed and what never started: exactly what a half-created stack needs to record its
//! partial state. Cancellation (Terraform's stop, or a timeout) also interrupts the work in flight. Walking the graph `Backward` runs dependents first (delete).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio_util::sync::CancellationToken;

/// Which way to walk the edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Dependencies first (create, update).
    Forward,
    /// Dependents first (delete).
    Backward,
}

/// What a run did.
#[derive(Debug)]
pub struct Report<N, T, E> {
    /// Nodes that finished, with their outputs, in completion order.
    pub done: Vec<(N, T)>,
    /// Nodes that failed.
    pub failed: Vec<(N, E)>,
    /// Nodes never started because of a failure or cancellation, or interrupted by cancellation.
    pub skipped: Vec<N>,
    /// Whether the run was cancelled.
    pub cancelled: bool,
}

impl<N, T, E> Report<N, T, E> {
    /// Whether every node finished.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty() && self.skipped.is_empty() && !self.cancelled
    }
}

/// Runs `work` for every node of `graph` (node -> the nodes it depends on). `work` receives the node and
/// the outputs of the nodes it waited for. A graph with a cycle or an unknown dependency is a programming
/// error and panics, so tests catch it.
pub async fn run<N, T, E, F, Fut>(
    graph: &BTreeMap<N, Vec<N>>,
    direction: Direction,
    concurrency: usize,
    cancel: &CancellationToken,
    work: F,
) -> Report<N, T, E>
where
    N: Ord + Clone,
    T: Clone,
    F: Fn(N, BTreeMap<N, T>) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    run_weighted(graph, direction, concurrency, cancel, |_| 0, work).await
}

/// [`run`], starting the ready node with the longest road ahead first when the concurrency cap leaves a
/// choice: a node's road is its own `weight` (how long its work typically takes) plus the longest road of
/// the nodes waiting for it. Long waits then begin at once and overlap everything else, instead of queueing
/// behind quick work that happens to come first. Ties go in node order.
pub async fn run_weighted<N, T, E, W, F, Fut>(
    graph: &BTreeMap<N, Vec<N>>,
    direction: Direction,
    concurrency: usize,
    cancel: &CancellationToken,
    weight: W,
    work: F,
) -> Report<N, T, E>
where
    N: Ord + Clone,
    T: Clone,
    W: Fn(&N) -> u64,
    F: Fn(N, BTreeMap<N, T>) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let waits_for = edges(graph, direction);
    assert_acyclic(&waits_for);
    let road = roads_ahead(&waits_for, &weight);
    let mut pending: BTreeSet<N> = waits_for.keys().cloned().collect();
    let mut outputs: BTreeMap<N, T> = BTreeMap::new();
    let mut report = Report { done: Vec::new(), failed: Vec::new(), skipped: Vec::new(), cancelled: false };
    let mut running = FuturesUnordered::new();
    let mut interrupted = Vec::new();
    loop {
        let stopping = !report.failed.is_empty() || cancel.is_cancelled();
        if !stopping {
            let mut ready: Vec<N> =
                pending.iter().filter(|n| waits_for[*n].iter().all(|d| outputs.contains_key(d))).cloned().collect();
            // Stable: equal roads keep node order.
            ready.sort_by_key(|n| std::cmp::Reverse(road[n]));
            ready.truncate(concurrency.max(1).saturating_sub(running.len()));
            for node in ready {
                pending.remove(&node);
                let inputs = waits_for[&node].iter().map(|d| (d.clone(), outputs[d].clone())).collect();
                let future = work(node.clone(), inputs);
                // Cancellation also interrupts work in flight (an AWS call or a long wait): every part's
                // work is idempotent, so the next run picks it up again.
                let cancel = cancel.clone();
                running.push(async move {
                    tokio::select! {
                        biased;
                        result = future => (node, Some(result)),
                        () = cancel.cancelled() => (node, None),
                    }
                });
            }
        }
        let next = tokio::select! {
            next = running.next() => next,
            () = cancel.cancelled(), if !stopping => continue,
        };
        match next {
            Some((node, Some(Ok(output)))) => {
                outputs.insert(node.clone(), output.clone());
                report.done.push((node, output));
            }
            Some((node, Some(Err(error)))) => report.failed.push((node, error)),
            Some((node, None)) => interrupted.push(node),
            None => break,
        }
    }
    report.cancelled = cancel.is_cancelled();
    report.skipped = pending.into_iter().chain(interrupted).collect();
    report
}

/// Each node's own weight plus the longest road of the nodes that wait for it.
fn roads_ahead<N: Ord + Clone>(waits_for: &BTreeMap<N, Vec<N>>, weight: &impl Fn(&N) -> u64) -> BTreeMap<N, u64> {
    let mut waited_on_by: BTreeMap<&N, Vec<&N>> = waits_for.keys().map(|n| (n, Vec::new())).collect();
    for (node, deps) in waits_for {
        for dep in deps {
            waited_on_by.get_mut(dep).expect("node present").push(node);
        }
    }
    fn road<'a, N: Ord>(
        node: &'a N,
        waited_on_by: &BTreeMap<&'a N, Vec<&'a N>>,
        weight: &impl Fn(&N) -> u64,
        known: &mut BTreeMap<&'a N, u64>,
    ) -> u64 {
        if let Some(&known) = known.get(node) {
            return known;
        }
        let after = waited_on_by[node].iter().map(|next| road(*next, waited_on_by, weight, known)).max().unwrap_or(0);
        let total = weight(node) + after;
        known.insert(node, total);
        total
    }
    let mut known = BTreeMap::new();
    for node in waits_for.keys() {
        road(node, &waited_on_by, weight, &mut known);
    }
    known.into_iter().map(|(n, w)| (n.clone(), w)).collect()
}

fn edges<N: Ord + Clone>(graph: &BTreeMap<N, Vec<N>>, direction: Direction) -> BTreeMap<N, Vec<N>> {
    let mut waits_for: BTreeMap<N, Vec<N>> = graph.keys().map(|n| (n.clone(), Vec::new())).collect();
    for (node, deps) in graph {
        for dep in deps {
            assert!(graph.contains_key(dep), "a part depends on a part missing from the graph");
            match direction {
                Direction::Forward => waits_for.get_mut(node).expect("node present").push(dep.clone()),
                Direction::Backward => waits_for.get_mut(dep).expect("node present").push(node.clone()),
            }
        }
    }
    waits_for
}

fn assert_acyclic<N: Ord + Clone>(waits_for: &BTreeMap<N, Vec<N>>) {
    let mut finished: BTreeSet<N> = BTreeSet::new();
    while finished.len() < waits_for.len() {
        let progress: Vec<N> = waits_for
            .iter()
            .filter(|(n, deps)| !finished.contains(*n) && deps.iter().all(|d| finished.contains(d)))
            .map(|(n, _)| n.clone())
            .collect();
        assert!(!progress.is_empty(), "the part graph has a cycle");
        finished.extend(progress);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    fn diamond() -> BTreeMap<&'static str, Vec<&'static str>> {
        BTreeMap::from([
            ("network", vec![]),
            ("db", vec!["network"]),
            ("fs", vec!["network"]),
            ("service", vec!["db", "fs"]),
        ])
    }

    /// The order a complete walk of `graph` with one slot runs its nodes in.
    async fn one_at_a_time(
        graph: &BTreeMap<&'static str, Vec<&'static str>>,
        direction: Direction,
        weight: impl Fn(&&'static str) -> u64,
    ) -> Vec<&'static str> {
        let order = Mutex::new(Vec::new());
        let report: Report<_, (), ()> =
            run_weighted(graph, direction, 1, &CancellationToken::new(), weight, |node, _| {
                order.lock().unwrap().push(node);
                async { Ok(()) }
            })
            .await;
        assert!(report.is_complete());
        order.into_inner().unwrap()
    }

    #[tokio::test]
    async fn runs_dependencies_first_and_passes_their_outputs() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let report: Report<_, String, ()> =
            run(&diamond(), Direction::Forward, 4, &CancellationToken::new(), |node, inputs| {
                let order = order.clone();
                async move {
                    order.lock().unwrap().push(node);
                    Ok(format!("{node}<-{}", inputs.keys().cloned().collect::<Vec<_>>().join("+")))
                }
            })
            .await;
        assert!(report.is_complete());
        let order = order.lock().unwrap().clone();
        assert_eq!(order.first(), Some(&"network"));
        assert_eq!(order.last(), Some(&"service"));
        let service = report.done.iter().find(|(n, _)| *n == "service").unwrap();
        assert_eq!(service.1, "service<-db+fs");
    }

    #[tokio::test]
    async fn the_longest_road_starts_first_when_slots_are_scarce() {
        // Two independent chains: a quick "logs" alone, and "secret" -> "database" (a long wait). With one
        // slot, node order would start "logs" first; the weights make "secret" go first, then "database".
        let graph = BTreeMap::from([("database", vec!["secret"]), ("logs", vec![]), ("secret", vec![])]);
        let weight = |node: &&str| if *node == "database" { 450 } else { 1 };
        assert_eq!(one_at_a_time(&graph, Direction::Forward, weight).await, vec!["secret", "database", "logs"]);
        let roads = roads_ahead(&edges(&graph, Direction::Forward), &weight);
        assert_eq!((roads["secret"], roads["database"], roads["logs"]), (451, 450, 1));
    }

    #[tokio::test]
    async fn backward_runs_dependents_first() {
        let order = one_at_a_time(&diamond(), Direction::Backward, |_| 0).await;
        assert_eq!(order.first(), Some(&"service"));
        assert_eq!(order.last(), Some(&"network"));
    }

    #[tokio::test]
    async fn a_failure_starts_nothing_new_but_lets_running_work_finish() {
        let report: Report<_, (), &str> =
            run(&diamond(), Direction::Forward, 4, &CancellationToken::new(), |node, _| async move {
                match node {
                    "db" => Err("boom"),
                    "fs" => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok(())
                    }
                    _ => Ok(()),
                }
            })
            .await;
        assert_eq!(report.failed, vec![("db", "boom")]);
        assert!(report.done.iter().any(|(n, _)| *n == "fs"), "running work finishes");
        assert_eq!(report.skipped, vec!["service"]);
    }

    #[tokio::test]
    async fn cancellation_stops_before_the_next_node() {
        let cancel = CancellationToken::new();
        let report: Report<_, (), ()> = run(&diamond(), Direction::Forward, 1, &cancel, |node, _| {
            let cancel = cancel.clone();
            async move {
                if node == "network" {
                    cancel.cancel();
                }
                Ok(())
            }
        })
        .await;
        assert!(report.cancelled);
        assert_eq!(report.done.len(), 1);
        assert_eq!(report.skipped.len(), 3);
    }

    #[tokio::test]
    async fn the_concurrency_cap_holds() {
        let graph: BTreeMap<u32, Vec<u32>> = (0..10).map(|n| (n, vec![])).collect();
        let live = Arc::new(Mutex::new((0, 0)));
        let _: Report<_, (), ()> = run(&graph, Direction::Forward, 3, &CancellationToken::new(), |_, _| {
            let live = live.clone();
            async move {
                {
                    let mut l = live.lock().unwrap();
                    l.0 += 1;
                    l.1 = l.1.max(l.0);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                live.lock().unwrap().0 -= 1;
                Ok(())
            }
        })
        .await;
        assert_eq!(live.lock().unwrap().1, 3);
    }

    #[tokio::test]
    async fn cancellation_interrupts_work_in_flight() {
        let cancel = CancellationToken::new();
        let graph: BTreeMap<&str, Vec<&str>> = BTreeMap::from([("slow", vec![])]);
        let stopper = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            stopper.cancel();
        });
        let started = std::time::Instant::now();
        let report: Report<_, (), ()> = run(&graph, Direction::Forward, 1, &cancel, |_, _| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(())
        })
        .await;
        assert!(started.elapsed() < Duration::from_secs(5), "the slow work was not interrupted");
        assert!(report.cancelled);
        assert_eq!(report.skipped, vec!["slow"]);
    }

    #[test]
    #[should_panic(expected = "cycle")]
    fn cycles_are_caught() {
        assert_acyclic(&BTreeMap::from([("a", vec!["b"]), ("b", vec!["a"])]));
    }
}
