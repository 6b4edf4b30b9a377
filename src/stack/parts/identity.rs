//! Identity parts: the IAM roles (each with only the permissions its holder needs) and the stack's two
//! passwords in Secrets Manager (RabbitMQ's, and the database's master password).

use std::collections::BTreeMap;

use crate::aws;
use crate::aws::iam::{self, RoleSpec};

use super::super::service::Service;
use super::{Part, PartContext, PartResult, PartState, Removal, wiring};

/// Days a deleted secret can still be restored; an apply within that window restores it.
const SECRET_RECOVERY_DAYS: i64 = 7;

/// The name of a secret of the stack: `<stack>/rabbitmq`, `<stack>/database`.
pub fn secret_name(stack: &str, part: Part) -> String {
    match part {
        Part::DatabaseSecret => format!("{stack}/database"),
        _ => format!("{stack}/rabbitmq"),
    }
}

fn secret_description(part: Part) -> &'static str {
    match part {
        Part::DatabaseSecret => {
            "DataVault database master password (letters and digits; set by the stack, injected as an ECS secret)"
        }
        _ => "DataVault RabbitMQ password (generated; injected into containers as an ECS secret)",
    }
}

fn is_secret(part: Part) -> bool {
    matches!(part, Part::RabbitmqSecret | Part::DatabaseSecret)
}

/// The name of a role (and of the instance profile, for the instance role).
pub fn role_name(stack: &str, part: Part) -> String {
    match part {
        Part::InstanceRole => format!("{stack}-instance"),
        Part::ExecutionRole => format!("{stack}-execution"),
        Part::TaskRole(s) => format!("{stack}-{}-task", s.name()),
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
            let secrets = [Part::DatabaseSecret, Part::RabbitmqSecret]
                .map(|secret| ctx.arn_of(secret).map(str::to_string))
                .into_iter()
                .collect::<PartResult<Vec<String>>>()?;
            (
                iam::ECS_TASKS_SERVICE,
                vec![iam::managed_policy_arn(partition, iam::ECS_TASK_EXECUTION_ROLE_POLICY)],
                BTreeMap::from([("read-secrets".to_string(), iam::read_secrets_policy(&secrets))]),
                "DataVault task execution: image pulls, logs and the two passwords",
            )
        }
        Part::TaskRole(s) => (
            iam::ECS_TASKS_SERVICE,
            vec![],
            task_policies(ctx, s)?,
            "DataVault service: ECS Exec and its own data only",
        ),
        _ => unreachable!("not a role: {part}"),
    };
    // Only the task roles get source conditions: AWS documents them for task roles, not for EC2's instance
    // roles nor the task execution role, and a condition the service does not satisfy would stop every
    // instance or task. Without a known account (STS unreachable) the plain trust policy is the one that works.
    let assume_role_policy = match (part, ctx.aws.account_id.as_deref()) {
        (Part::TaskRole(_), Some(account)) => iam::ecs_tasks_trust_policy(partition, &ctx.spec.region, account),
        _ => iam::assume_role_policy(service),
    };
    Ok(RoleSpec {
        name: role_name(&ctx.spec.name, part),
        assume_role_policy,
        managed_policy_arns: managed,
        inline_policies: inline,
        tags: ctx.tags(part),
        description: description.to_string(),
    })
}

/// What a service's task role allows: ECS Exec sessions (recorded in the stack's log group), mounting its
/// own folder of the file system, and, for workers, the archive bucket.
fn task_policies(ctx: &PartContext<'_>, service: Service) -> PartResult<BTreeMap<String, String>> {
    let mut policies = BTreeMap::from([("ecs-exec".to_string(), iam::ecs_exec_policy(ctx.arn_of(Part::LogGroup)?))]);
    let file_system = ctx.arn_of(Part::FileSystem)?;
    for kind in wiring::access_points(service) {
        let access_point = ctx.arn_of(Part::AccessPoint(kind))?;
        policies.insert(
            format!("file-system-{}", super::data::access_point_spec(&ctx.spec.name, kind).root_path.trim_matches('/')),
            iam::file_system_client_policy(file_system, access_point),
        );
    }
    if service.writes_archive() {
        let archive = iam::archive_bucket_access_policy(&ctx.spec.partition, &ctx.spec.archive_bucket);
        policies.insert("archive-bucket".to_string(), archive);
    }
    Ok(policies)
}

/// The resource policy of the stack's secrets: no other account, and none of the roles its instances and
/// containers run as, may read them (see [`aws::secretsmanager::secret_policy`]). `None` when the account is
/// unknown (STS unreachable): a policy for the wrong account would shut out everyone.
fn secret_policy(ctx: &PartContext<'_>) -> Option<String> {
    let account = ctx.aws.account_id.as_deref()?;
    let workloads = std::iter::once(Part::InstanceRole).chain(Service::ALL.map(Part::TaskRole));
    let roles: Vec<String> = workloads
        .map(|part| format!("arn:{}:iam::{account}:role/{}", ctx.spec.partition, role_name(&ctx.spec.name, part)))
        .collect();
    Some(aws::secretsmanager::secret_policy(account, &roles))
}

/// Ensures a role (with the instance profile for the instance role) or a secret with its resource policy.
pub async fn ensure(part: Part, ctx: &PartContext<'_>) -> PartResult<PartState> {
    let client = &ctx.aws.iam;
    if is_secret(part) {
        let arn = aws::secretsmanager::ensure_generated_secret(
            &ctx.aws.secrets,
            &secret_name(&ctx.spec.name, part),
            secret_description(part),
            &ctx.tags(part),
            secret_policy(ctx).as_deref(),
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
    if is_secret(part) {
        // A secret scheduled for deletion counts as absent (a destroyed stack is not found again through
        // it; the next create restores it), unless another stack's tags claim it: then it is a look-alike
        // the plan must name, since restoring it would take it over.
        let info = aws::secretsmanager::describe_secret(&ctx.aws.secrets, &secret_name(&ctx.spec.name, part)).await?;
        let claimed_elsewhere = |s: &aws::secretsmanager::SecretInfo| {
            s.tags.get(aws::STACK_TAG).is_some_and(|stack| *stack != ctx.spec.name)
        };
        let Some(info) = info.filter(|s| !s.scheduled_for_deletion || claimed_elsewhere(s)) else { return Ok(None) };
        let drift = match secret_policy(ctx) {
            Some(expected) if !info.scheduled_for_deletion => {
                let name = secret_name(&ctx.spec.name, part);
                match aws::secretsmanager::resource_policy(&ctx.aws.secrets, &name).await? {
                    None => vec!["the secret has no resource policy".to_string()],
                    Some(found) if !iam::same_policy(&found, &expected) => {
                        vec!["the secret's resource policy differs from the stack's".to_string()]
                    }
                    Some(_) => vec![],
                }
            }
            _ => vec![],
        };
        return Ok(Some(PartState { arn: Some(info.arn), tags: Some(info.tags), drift, ..PartState::default() }));
    }
    // Without the parts its policies name (secrets, file system, log group), the role's expected shape is
    // unknown: it is found, but not judged; the parts that are missing are reported themselves.
    let expected = role_spec(part, ctx).ok();
    let spec = expected.clone().unwrap_or_else(|| RoleSpec {
        name: role_name(&ctx.spec.name, part),
        assume_role_policy: String::new(),
        managed_policy_arns: vec![],
        inline_policies: BTreeMap::new(),
        tags: ctx.tags(part),
        description: String::new(),
    });
    let Some(found) = iam::observe_role(&ctx.aws.iam, &spec).await? else {
        return observe_orphan_profile(part, ctx, &spec.name).await;
    };
    let mut state = PartState {
        id: Some(spec.name.clone()),
        arn: Some(found.arn),
        drift: if expected.is_some() { found.drift } else { Vec::new() },
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

/// Without its role, the instance role part is what an instance profile of its name says: nothing when
/// there is none or it is the stack's own (the next apply recreates the role), a look-alike for the plan to
/// name when it is someone else's.
async fn observe_orphan_profile(part: Part, ctx: &PartContext<'_>, name: &str) -> PartResult<Option<PartState>> {
    if part != Part::InstanceRole {
        return Ok(None);
    }
    let Some(profile) = iam::instance_profile(&ctx.aws.iam, name).await? else { return Ok(None) };
    if profile.tags.get(aws::STACK_TAG) == Some(&ctx.spec.name) {
        return Ok(None);
    }
    Ok(Some(PartState { arn: Some(profile.arn), tags: Some(profile.tags), ..PartState::default() }))
}

/// Removes a role (and its instance profile) or schedules the secret's deletion.
pub async fn remove(part: Part, ctx: &PartContext<'_>) -> PartResult<Removal> {
    if is_secret(part) {
        let name = secret_name(&ctx.spec.name, part);
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
