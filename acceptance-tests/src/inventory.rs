//! Lists what the emulator holds (buckets, ECR repositories, log groups, with their tags) and decides
//! what a destroyed stack may leave behind.

use std::collections::BTreeMap;
use std::fmt;

use crate::case::{CheckError, CheckResult};
use crate::emulator::{Emulator, describe};

/// Tag the provider puts on every part of a stack, naming the stack.
pub const STACK_TAG: &str = "datavault:stack";

/// The kind of an AWS object the inventory lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// An S3 bucket.
    Bucket,
    /// An ECR repository.
    Repository,
    /// A CloudWatch Logs log group.
    LogGroup,
}

/// One object in the emulator, with its tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// What it is.
    pub kind: Kind,
    /// Bucket name, repository name or log group name.
    pub name: String,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Bucket => "S3 bucket",
            Kind::Repository => "ECR repository",
            Kind::LogGroup => "log group",
        };
        write!(f, "{kind} {} (tags {:?})", self.name, self.tags)
    }
}

impl Item {
    /// Whether this object belongs to `stack`, by its tag or, should tagging have failed, by the names
    /// the provider derives from the stack name.
    pub fn belongs_to(&self, stack: &str) -> bool {
        if self.tags.get(STACK_TAG).is_some_and(|s| s == stack) {
            return true;
        }
        match self.kind {
            Kind::Bucket => self.name == format!("{stack}-archive") || self.name == format!("{stack}-state"),
            Kind::Repository => self.name.starts_with(&format!("{stack}/")),
            Kind::LogGroup => self.name == format!("/datavault/{stack}"),
        }
    }
}

/// Everything of `stack` left in `items`, except the state bucket `retained_bucket`, which a destroy
/// keeps by design.
pub fn leftovers<'a>(items: &'a [Item], stack: &str, retained_bucket: &str) -> Vec<&'a Item> {
    items
        .iter()
        .filter(|i| i.belongs_to(stack))
        .filter(|i| !(i.kind == Kind::Bucket && i.name == retained_bucket))
        .collect()
}

/// Lists every bucket, repository and log group in the emulator with its tags.
pub async fn list(emulator: &Emulator) -> Result<Vec<Item>, CheckError> {
    let mut items = Vec::new();

    let mut token: Option<String> = None;
    loop {
        let out = emulator
            .s3()
            .list_buckets()
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| format!("ListBuckets: {}", describe(&e)))?;
        for bucket in out.buckets() {
            let Some(name) = bucket.name() else { continue };
            let tags = emulator.bucket_tags(name).await?;
            items.push(Item { kind: Kind::Bucket, name: name.to_string(), tags });
        }
        match out.continuation_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }

    let mut token: Option<String> = None;
    loop {
        let out = emulator
            .ecr()
            .describe_repositories()
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| format!("DescribeRepositories: {}", describe(&e)))?;
        for repo in out.repositories() {
            let (Some(name), Some(arn)) = (repo.repository_name(), repo.repository_arn()) else {
                continue;
            };
            let tags = emulator.repository_tags(arn).await?;
            items.push(Item { kind: Kind::Repository, name: name.to_string(), tags });
        }
        match out.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }

    let mut token: Option<String> = None;
    loop {
        let out = emulator
            .logs()
            .describe_log_groups()
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| format!("DescribeLogGroups: {}", describe(&e)))?;
        for group in out.log_groups() {
            let Some(name) = group.log_group_name() else {
                continue;
            };
            let tags = match group.log_group_arn().or(group.arn()) {
                Some(arn) => emulator.log_group_tags(arn).await?,
                None => BTreeMap::new(),
            };
            items.push(Item { kind: Kind::LogGroup, name: name.to_string(), tags });
        }
        match out.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }

    Ok(items)
}

/// Fails listing every part of `stack` still in the emulator, except its state bucket `<stack>-state`,
/// which destroy retains by design. The standard after-destroy check.
pub async fn assert_emulator_clean(emulator: &Emulator, stack: &str) -> CheckResult {
    assert_emulator_clean_except(emulator, stack, &format!("{stack}-state")).await
}

/// [`assert_emulator_clean`] for a stack whose state bucket has a custom name.
pub async fn assert_emulator_clean_except(emulator: &Emulator, stack: &str, state_bucket: &str) -> CheckResult {
    let items = list(emulator).await?;
    let left = leftovers(&items, stack, state_bucket);
    if left.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = left.iter().map(|i| format!("  {i}")).collect();
    Err(format!("stack {stack} left {} object(s) behind after destroy:\n{}", left.len(), lines.join("\n")).into())
}

/// Fails unless the emulator holds no bucket, repository or log group at all.
pub async fn assert_emulator_empty(emulator: &Emulator) -> CheckResult {
    let items = list(emulator).await?;
    if items.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = items.iter().map(|i| format!("  {i}")).collect();
    Err(format!("expected an empty emulator, found {} object(s):\n{}", items.len(), lines.join("\n")).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(kind: Kind, name: &str, stack_tag: Option<&str>) -> Item {
        let tags = stack_tag.map(|s| (STACK_TAG.to_string(), s.to_string())).into_iter().collect();
        Item { kind, name: name.to_string(), tags }
    }

    #[test]
    fn the_state_bucket_is_the_only_allowed_leftover() {
        let items = vec![
            item(Kind::Bucket, "acc-basic-state", Some("acc-basic")),
            item(Kind::Bucket, "acc-basic-archive", Some("acc-basic")),
            item(Kind::Repository, "acc-basic/web", Some("acc-basic")),
            item(Kind::LogGroup, "/datavault/acc-basic", Some("acc-basic")),
            item(Kind::Bucket, "unrelated", None),
            item(Kind::Bucket, "other-archive", Some("other")),
        ];
        let left: Vec<&str> =
            leftovers(&items, "acc-basic", "acc-basic-state").iter().map(|i| i.name.as_str()).collect();
        assert_eq!(left, ["acc-basic-archive", "acc-basic/web", "/datavault/acc-basic"]);
    }

    #[test]
    fn untagged_parts_are_recognised_by_name() {
        assert!(item(Kind::Bucket, "acc-x-archive", None).belongs_to("acc-x"));
        assert!(item(Kind::Repository, "acc-x/worker", None).belongs_to("acc-x"));
        assert!(item(Kind::LogGroup, "/datavault/acc-x", None).belongs_to("acc-x"));
        assert!(!item(Kind::LogGroup, "/datavault/acc-xy", None).belongs_to("acc-x"));
        assert!(!item(Kind::Repository, "acc-xy/web", None).belongs_to("acc-x"));
        // A custom-named bucket is still found through its tag.
        assert!(item(Kind::Bucket, "custom-name", Some("acc-x")).belongs_to("acc-x"));
    }

    #[test]
    fn a_custom_state_bucket_can_be_retained() {
        let items = vec![item(Kind::Bucket, "my-state", Some("acc-x")), item(Kind::Bucket, "acc-x-state", None)];
        let left: Vec<&str> = leftovers(&items, "acc-x", "my-state").iter().map(|i| i.name.as_str()).collect();
        assert_eq!(left, ["acc-x-state"]);
    }
}
