//! Identity parts: the IAM roles (each with only the permissions its holder needs) and the stack's two
//! passwords in Secrets Manager (RabbitMQ's, and the database's master password).

use std::collections::BTreeMap;

use crate::aws;
use crate::aws::iam::{self, RoleSpec};

use super::super::service::Service;
use super::{Part, PartContext, PartResult, PartState, PasswordChange, Removal, wiring};

/// Days a deleted secret can still be restored; an apply within that window restores it.
const SECRET_RECOVERY_DAYS: i64 = 7;

/// The identity parts: the stack's IAM roles and its two secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityPart {
    /// [`Part::InstanceRole`].
    InstanceRole,
    /// [`Part::ExecutionRole`].
    ExecutionRole,
    /// [`Part::TaskRole`].
    TaskRole(Service),
    /// [`Part::RabbitmqSecret`].
    RabbitmqSecret,
    /// [`Part::DatabaseSecret`].
    DatabaseSecret,
}

impl From<IdentityPart> for Part {
    fn from(part: IdentityPart) -> Part {
        match part {
            IdentityPart::InstanceRole => Part::InstanceRole,
            IdentityPart::ExecutionRole => Part::ExecutionRole,
            IdentityPart::TaskRole(s) => Part::TaskRole(s),
            IdentityPart::RabbitmqSecret => Part::RabbitmqSecret,
            IdentityPart::DatabaseSecret => Part::DatabaseSecret,
        }
    }
}

/// A role of the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The container instances' role, carried by an instance profile of the same name.
    Instance,
    /// The tasks' execution role.
    Execution,
    /// A service's task role.
    Task(Service),
}

impl From<Role> for Part {
    fn from(role: Role) -> Part {
        match role {
            Role::Instance => Part::InstanceRole,
            Role::Execution => Part::ExecutionRole,
            Role::Task(s) => Part::TaskRole(s),
        }
    }
}

/// A secret of the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secret {
    /// RabbitMQ's generated password.
    Rabbitmq,
    /// The database's master password.
    Database,
}

impl From<Secret> for Part {
    fn from(secret: Secret) -> Part {
        match secret {
            Secret::Rabbitmq => Part::RabbitmqSecret,
            Secret::Database => Part::DatabaseSecret,
        }
    }
}

/// Roles and secrets live in different services and share nothing but the family, so each operation
/// splits on this first.
enum Identity {
    Role(Role),
    Secret(Secret),
}

impl IdentityPart {
    fn identity(self) -> Identity {
        match self {
            IdentityPart::InstanceRole => Identity::Role(Role::Instance),
            IdentityPart::ExecutionRole => Identity::Role(Role::Execution),
            IdentityPart::TaskRole(s) => Identity::Role(Role::Task(s)),
            IdentityPart::RabbitmqSecret => Identity::Secret(Secret::Rabbitmq),
            IdentityPart::DatabaseSecret => Identity::Secret(Secret::Database),
        }
    }
}

/// The name of a secret of the stack: `<stack>/rabbitmq`, `<stack>/database`.
pub fn secret_name(stack: &str, secret: Secret) -> String {
    match secret {
        Secret::Database => format!("{stack}/database"),
        Secret::Rabbitmq => format!("{stack}/rabbitmq"),
    }
}

fn secret_description(secret: Secret) -> &'static str {
    match secret {
        Secret::Database => {
            "DataVault database master password (letters and digits; set by the stack, injected as an ECS secret)"
        }
        Secret::Rabbitmq => "DataVault RabbitMQ password (generated; injected into containers as an ECS secret)",
    }
}

/// The name of a role (and of the instance profile, for the instance role).
pub fn role_name(stack: &str, role: Role) -> String {
    match role {
        Role::Instance => format!("{stack}-instance"),
        Role::Execution => format!("{stack}-execution"),
        Role::Task(s) => format!("{stack}-{}-task", s.name()),
    }
}

/// What a role should be. The execution role's policy names the secrets, so it needs them first.
fn role_spec(role: Role, ctx: &PartContext<'_>) -> PartResult<RoleSpec> {
    let partition = &ctx.spec.partition;
    let (service, managed, inline, description) = match role {
        Role::Instance => (
            iam::EC2_SERVICE,
            vec![iam::managed_policy_arn(partition, iam::ECS_INSTANCE_ROLE_POLICY)],
            BTreeMap::new(),
            "DataVault ECS container instances: the ECS agent's permissions only",
        ),
        Role::Execution => {
            let secrets = [Part::DatabaseSecret, Part::RabbitmqSecret]
                .map(|secret| ctx.arn_of(secret).map(str::to_string))
                .into_iter()
                .collect::<PartResult<Vec<String>>>()?;
            let mut policies = BTreeMap::from([("read-secrets".to_string(), iam::read_secrets_policy(&secrets))]);
            if let Some(key) = &ctx.spec.kms_key_arn {
                let through = format!("secretsmanager.{}.amazonaws.com", ctx.spec.region);
                policies.insert("secrets-key".into(), iam::kms_via_service_policy(key, &["kms:Decrypt"], &through));
            }
            (
                iam::ECS_TASKS_SERVICE,
                vec![iam::managed_policy_arn(partition, iam::ECS_TASK_EXECUTION_ROLE_POLICY)],
                policies,
                "DataVault task execution: image pulls, logs and the two passwords",
            )
        }
        Role::Task(s) => (
            iam::ECS_TASKS_SERVICE,
            vec![],
            task_policies(ctx, s)?,
            "DataVault service: ECS Exec and its own data only",
        ),
    };
    // Only the task roles get source conditions: AWS documents them for task roles, not for EC2's instance
    // roles nor the task execution role, and a condition the service does not satisfy would stop every
    // instance or task. Without a known account (STS unreachable) the plain trust policy is the one that works.
    let assume_role_policy = match (role, ctx.aws.account_id.as_deref()) {
        (Role::Task(_), Some(account)) => iam::ecs_tasks_trust_policy(partition, &ctx.spec.region, account),
        _ => iam::assume_role_policy(service),
    };
    Ok(RoleSpec {
        name: role_name(&ctx.spec.name, role),
        assume_role_policy,
        managed_policy_arns: managed,
        inline_policies: inline,
        tags: ctx.tags(role.into()),
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
        if let Some(key) = &ctx.spec.kms_key_arn {
            let (actions, through) =
                (["kms:Decrypt", "kms:GenerateDataKey"], format!("s3.{}.amazonaws.com", ctx.spec.region));
            policies.insert("archive-key".to_string(), iam::kms_via_service_policy(key, &actions, &through));
        }
    }
    Ok(policies)
}

/// The resource policy of the stack's secrets: no other account, and none of the roles its instances and
/// containers run as, may read them (see [`aws::secretsmanager::secret_policy`]). `None` when the account is
/// unknown (STS unreachable): a policy for the wrong account would shut out everyone.
fn secret_policy(ctx: &PartContext<'_>) -> Option<String> {
    let account = ctx.aws.account_id.as_deref()?;
    let workloads = std::iter::once(Role::Instance).chain(Service::ALL.map(Role::Task));
    let roles: Vec<String> = workloads
        .map(|role| format!("arn:{}:iam::{account}:role/{}", ctx.spec.partition, role_name(&ctx.spec.name, role)))
        .collect();
    Some(aws::secretsmanager::secret_policy(account, &roles))
}

/// Ensures a role (with the instance profile for the instance role) or a secret with its resource policy.
pub async fn ensure(part: IdentityPart, ctx: &PartContext<'_>) -> PartResult<PartState> {
    match part.identity() {
        Identity::Secret(secret) => ensure_secret(secret, ctx).await,
        Identity::Role(role) => ensure_role(role, ctx).await,
    }
}

async fn ensure_secret(secret: Secret, ctx: &PartContext<'_>) -> PartResult<PartState> {
    let arn = aws::secretsmanager::ensure_generated_secret(
        &ctx.aws.secrets,
        &secret_name(&ctx.spec.name, secret),
        secret_description(secret),
        ctx.spec.kms_key_arn.as_deref(),
        &ctx.tags(secret.into()),
        secret_policy(ctx).as_deref(),
    )
    .await?;
    if secret == Secret::Rabbitmq && ctx.passwords.rabbitmq == PasswordChange::Generate {
        // A new version of the secret; the services that read it restart with new task definitions, and
        // RabbitMQ's companion container makes it RabbitMQ's own.
        let password = aws::secretsmanager::random_password(&ctx.aws.secrets).await?;
        aws::secretsmanager::put_secret_value(&ctx.aws.secrets, &arn, &password).await?;
    }
    Ok(PartState { arn: Some(arn), ..PartState::default() })
}

async fn ensure_role(role: Role, ctx: &PartContext<'_>) -> PartResult<PartState> {
    let client = &ctx.aws.iam;
    let found = iam::ensure_role(client, &role_spec(role, ctx)?).await?;
    let mut state = PartState { id: Some(found.name.clone()), arn: Some(found.arn), ..PartState::default() };
    if role == Role::Instance {
        let profile = iam::ensure_instance_profile(client, &found.name, &found.name, &ctx.tags(role.into())).await?;
        state.facts.instance_profile_arn = Some(profile);
    }
    Ok(state)
}

/// Observes a role or the secret.
pub async fn observe(part: IdentityPart, ctx: &PartContext<'_>) -> PartResult<Option<PartState>> {
    match part.identity() {
        Identity::Secret(secret) => observe_secret(secret, ctx).await,
        Identity::Role(role) => observe_role(role, ctx).await,
    }
}

async fn observe_secret(secret: Secret, ctx: &PartContext<'_>) -> PartResult<Option<PartState>> {
    // A secret scheduled for deletion counts as absent (a destroyed stack is not found again through it;
    // the next create restores it), unless another stack's tags claim it: then it is a look-alike the plan
    // must name, since restoring it would take it over.
    let info = aws::secretsmanager::describe_secret(&ctx.aws.secrets, &secret_name(&ctx.spec.name, secret)).await?;
    let claimed_elsewhere =
        |s: &aws::secretsmanager::SecretInfo| s.tags.get(aws::STACK_TAG).is_some_and(|stack| *stack != ctx.spec.name);
    let Some(info) = info.filter(|s| !s.scheduled_for_deletion || claimed_elsewhere(s)) else { return Ok(None) };
    let drift = match secret_policy(ctx) {
        Some(expected) if !info.scheduled_for_deletion && ctx.judges_drift() => {
            let name = secret_name(&ctx.spec.name, secret);
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
    let key_drift = ctx.spec.kms_key_arn.as_deref().filter(|key| !aws::kms::same_key(info.kms_key.as_deref(), key));
    let drift =
        drift.into_iter().chain(key_drift.map(|key| format!("the secret is not encrypted with {key}"))).collect();
    Ok(Some(PartState { arn: Some(info.arn), tags: Some(info.tags), drift, ..PartState::default() }))
}

async fn observe_role(role: Role, ctx: &PartContext<'_>) -> PartResult<Option<PartState>> {
    let name = role_name(&ctx.spec.name, role);
    let iam_client = &ctx.aws.iam;
    let profile = async {
        match role {
            Role::Instance => Ok(Some(iam::instance_profile(iam_client, &name).await?)),
            _ => Ok(None),
        }
    };
    let (found, profile) = tokio::try_join!(find_role(ctx, &name), profile)?;
    let Some((arn, tags, found)) = found else { return Ok(orphan_profile(ctx, profile.flatten())) };
    // Without the parts its policies name (secrets, file system, log group), the role's expected shape is
    // unknown: it is found, but not judged; the parts that are missing are reported themselves.
    let drift = match found {
        Some(found) => {
            let dependencies = ctx.dependencies(role.into()).await;
            role_spec(role, &ctx.with(&dependencies)).map(|spec| found.drift(&spec)).unwrap_or_default()
        }
        None => Vec::new(),
    };
    let mut state = PartState { id: Some(name), arn: Some(arn), drift, tags: Some(tags), ..PartState::default() };
    match profile {
        Some(Some(profile)) => {
            state.facts.instance_profile_arn = Some(profile.arn);
            // The profile shares the role's name: one that is not the stack's makes the part not its own.
            let role_stack = state.tags.as_ref().and_then(|t| t.get(aws::STACK_TAG));
            if profile.tags.get(aws::STACK_TAG) != role_stack {
                state.tags = Some(profile.tags);
            }
        }
        Some(None) => state.drift.push("instance profile is missing".into()),
        None => {}
    }
    Ok(Some(state))
}

/// The role's ARN and tags, with what drift needs (its policies) when the observation judges drift;
/// `None` when there is no such role.
async fn find_role(
    ctx: &PartContext<'_>,
    name: &str,
) -> PartResult<Option<(String, BTreeMap<String, String>, Option<iam::RoleObservation>)>> {
    if ctx.judges_drift() {
        let found = iam::observe_role(&ctx.aws.iam, name).await?;
        Ok(found.map(|found| (found.arn.clone(), found.tags.clone(), Some(found))))
    } else {
        Ok(iam::find_role(&ctx.aws.iam, name).await?.map(|(arn, tags)| (arn, tags, None)))
    }
}

/// Without its role, the instance role part is what an instance profile of its name says: nothing when
/// there is none or it is the stack's own (the next apply recreates the role), a look-alike for the plan to
/// name when it is someone else's.
fn orphan_profile(ctx: &PartContext<'_>, profile: Option<iam::InstanceProfile>) -> Option<PartState> {
    let profile = profile.filter(|p| p.tags.get(aws::STACK_TAG) != Some(&ctx.spec.name))?;
    Some(PartState { arn: Some(profile.arn), tags: Some(profile.tags), ..PartState::default() })
}

/// Removes a role (and its instance profile) or schedules the secret's deletion.
pub async fn remove(part: IdentityPart, ctx: &PartContext<'_>) -> PartResult<Removal> {
    match part.identity() {
        Identity::Secret(secret) => {
            let name = secret_name(&ctx.spec.name, secret);
            aws::secretsmanager::delete_secret(&ctx.aws.secrets, &name, SECRET_RECOVERY_DAYS).await?;
        }
        Identity::Role(role) => {
            let name = role_name(&ctx.spec.name, role);
            if role == Role::Instance {
                iam::delete_instance_profile(&ctx.aws.iam, &name).await?;
            }
            iam::delete_role(&ctx.aws.iam, &name).await?;
        }
    }
    Ok(Removal::Removed)
}
