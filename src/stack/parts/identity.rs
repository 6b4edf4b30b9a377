//! Identity parts: the IAM roles (each with only the permissions its holder needs) and the generated
//! RabbitMQ password in Secrets Manager.

use std::collections::BTreeMap;

use crate::aws;
use crate::aws::iam::{self, RoleSpec};

use super::{Part, PartContext, PartResult, PartState, Removal};

/// Days a deleted secret can still be restored; an apply within that window restores it.
const SECRET_RECOVERY_DAYS: i64 = 7;

/// The generated RabbitMQ password's secret name.
pub fn rabbitmq_secret_name(stack: &str) -> String {
    format!("{stack}/rabbitmq")
}

/// The name of a role (and of the instance profile, for the instance role).
pub fn role_name(stack: &str, part: Part) -> String {
    match part {
        Part::InstanceRole => format!("{stack}-instance"),
        Part::ExecutionRole => format!("{stack}-execution"),
        Part::TaskRole => format!("{stack}-task"),
        _ => unreachable!("not a role: {part}"),
    }
}

/// What a role should be. The execution role's policy names the secrets, so it needs them first.
fn role_spec(part: Part, ctx: &PartContext<'_>) -> PartResult<RoleSpec> {
    let partition = &ctx.spec.partition;
    let (service, managed, inline, description) = match part {
        Part::InstanceRole => (
            iam::EC2_SERVICE,
            vec![iam::managed_policy_arn(partition, iam::ECS_INSTANCE_ROLE_POLICY)],
            BTreeMap::new(),
            "DataVault ECS container instances: the ECS agent's permissions only",
        ),
        Part::ExecutionRole => {
            let database_secret = ctx.part(Part::Database)?.values.get("secret_arn").cloned();
            let secrets: Vec<String> =
                database_secret.into_iter().chain([ctx.arn_of(Part::RabbitmqSecret)?.to_string()]).collect();
            (
                iam::ECS_TASKS_SERVICE,
                vec![iam::managed_policy_arn(partition, iam::ECS_TASK_EXECUTION_ROLE_POLICY)],
                BTreeMap::from([("read-secrets".to_string(), iam::read_secrets_policy(&secrets))]),
                "DataVault task execution: image pulls, logs and the two passwords",
            )
        }
        Part::TaskRole => (
            iam::ECS_TASKS_SERVICE,
            vec![],
            BTreeMap::from([(
                "archive-bucket".to_string(),
                iam::archive_bucket_access_policy(partition, &ctx.spec.archive_bucket),
            )]),
            "DataVault broker and workers: the archive bucket only",
        ),
        _ => unreachable!("not a role: {part}"),
    };
    Ok(RoleSpec {
        name: role_name(&ctx.spec.name, part),
        assume_role_policy: iam::assume_role_policy(service),
        managed_policy_arns: managed,
        inline_policies: inline,
        tags: ctx.tags(part),
        description: description.to_string(),
    })
}

/// Ensures a role (with the instance profile for the instance role) or the RabbitMQ secret.
pub async fn ensure(part: Part, ctx: &PartContext<'_>) -> PartResult<PartState> {
    let client = &ctx.aws.iam;
    if part == Part::RabbitmqSecret {
        let arn = aws::secretsmanager::ensure_generated_secret(
            &ctx.aws.secrets,
            &rabbitmq_secret_name(&ctx.spec.name),
            "DataVault RabbitMQ password (generated; injected into containers as an ECS secret)",
            &ctx.tags(part),
        )
        .await?;
        return Ok(PartState { arn: Some(arn), ..PartState::default() });
    }
    let role = iam::ensure_role(client, &role_spec(part, ctx)?).await?;
    let mut state = PartState { id: Some(role.name.clone()), arn: Some(role.arn), ..PartState::default() };
    if part == Part::InstanceRole {
        let profile = iam::ensure_instance_profile(client, &role.name, &role.name, &ctx.tags(part)).await?;
        state.values.insert("instance_profile_arn".into(), profile);
    }
    Ok(state)
}

/// Observes a role or the secret.
pub async fn observe(part: Part, ctx: &PartContext<'_>) -> PartResult<Option<PartState>> {
    if part == Part::RabbitmqSecret {
        let info =
            aws::secretsmanager::describe_secret(&ctx.aws.secrets, &rabbitmq_secret_name(&ctx.spec.name)).await?;
        return Ok(info.filter(|s| !s.scheduled_for_deletion).map(|s| PartState {
            arn: Some(s.arn),
            tags: Some(s.tags),
            ..PartState::default()
        }));
    }
    // Without the secrets it names, the execution role's expected policy is unknown: report it as it is.
    let spec = match role_spec(part, ctx) {
        Ok(spec) => spec,
        Err(_) => RoleSpec { inline_policies: BTreeMap::new(), ..role_spec_without_secrets(part, ctx) },
    };
    let Some(found) = iam::observe_role(&ctx.aws.iam, &spec).await? else { return Ok(None) };
    let mut state = PartState {
        id: Some(spec.name.clone()),
        arn: Some(found.arn),
        drift: found.drift,
        tags: Some(found.tags),
        ..PartState::default()
    };
    if part == Part::InstanceRole {
        match iam::instance_profile(&ctx.aws.iam, &spec.name).await? {
            Some(profile) => {
                state.values.insert("instance_profile_arn".into(), profile.arn);
                // The profile shares the role's name: one that is not the stack's makes the part not its own.
                let role_stack = state.tags.as_ref().and_then(|t| t.get(aws::STACK_TAG));
                if profile.tags.get(aws::STACK_TAG) != role_stack {
                    state.tags = Some(profile.tags);
                }
            }
            None => state.drift.push("instance profile is missing".into()),
        }
    }
    Ok(Some(state))
}

fn role_spec_without_secrets(part: Part, ctx: &PartContext<'_>) -> RoleSpec {
    RoleSpec {
        name: role_name(&ctx.spec.name, part),
        assume_role_policy: iam::assume_role_policy(iam::ECS_TASKS_SERVICE),
        managed_policy_arns: vec![iam::managed_policy_arn(&ctx.spec.partition, iam::ECS_TASK_EXECUTION_ROLE_POLICY)],
        inline_policies: BTreeMap::new(),
        tags: ctx.tags(part),
        description: String::new(),
    }
}

/// Removes a role (and its instance profile) or schedules the secret's deletion.
pub async fn remove(part: Part, ctx: &PartContext<'_>) -> PartResult<Removal> {
    if part == Part::RabbitmqSecret {
        let name = rabbitmq_secret_name(&ctx.spec.name);
        aws::secretsmanager::delete_secret(&ctx.aws.secrets, &name, SECRET_RECOVERY_DAYS).await?;
        return Ok(Removal::Removed);
    }
    let name = role_name(&ctx.spec.name, part);
    if part == Part::InstanceRole {
        iam::delete_instance_profile(&ctx.aws.iam, &name).await?;
    }
    iam::delete_role(&ctx.aws.iam, &name).await?;
    Ok(Removal::Removed)
}
