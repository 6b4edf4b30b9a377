//! Service parts: the private DNS namespace and Cloud Map services the DataVault services find each other
//! by, the task definitions (images, wiring, secrets, volumes, logs, health checks) and the ECS services.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::aws;
use crate::aws::ecs::{
    ContainerSpec, EfsVolume, LoadBalancerTarget, LogSpec, MountPoint, ServiceSpec, TaskDefinitionSpec,
};

use super::super::model::{COMPONENTS, namespace_name};
use super::super::service::Service;
use super::network::WEB_PORT;
use super::wiring::{self, Endpoints, Wiring};
use super::{Group, Part, PartContext, PartError, PartResult, PartState, Removal};

/// The service parts: service discovery, the task definitions and the ECS services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServicesPart {
    /// [`Part::Namespace`].
    Namespace,
    /// [`Part::Discovery`].
    Discovery(Service),
    /// [`Part::TaskDefinition`].
    TaskDefinition(Service),
    /// [`Part::Service`].
    Service(Service),
}

impl From<ServicesPart> for Part {
    fn from(part: ServicesPart) -> Part {
        match part {
            ServicesPart::Namespace => Part::Namespace,
            ServicesPart::Discovery(s) => Part::Discovery(s),
            ServicesPart::TaskDefinition(s) => Part::TaskDefinition(s),
            ServicesPart::Service(s) => Part::Service(s),
        }
    }
}

/// How long a new role may take to become usable by ECS.
const IAM_PROPAGATION: Duration = Duration::from_secs(120);
/// Seconds ECS waits after asking a container to stop.
const STOP_TIMEOUT_SECONDS: i32 = 30;
/// How long ECS ignores load balancer health checks of a new web task: Tomcat deploys the app in about
/// the container health check's start period, and tasks failing the target group's checks before that
/// would be stopped and replaced forever.
const WEB_STARTUP_GRACE_SECONDS: i32 = 300;

/// The ECS task family of a service.
pub fn family(stack: &str, service: Service) -> String {
    format!("{stack}-{}", service.name())
}

/// The DNS name a service answers at.
pub fn dns_name(stack: &str, service: Service) -> String {
    format!("{}.{}", service.name(), namespace_name(stack))
}

fn repository_url(ctx: &PartContext<'_>, service: &str) -> PartResult<Option<String>> {
    match COMPONENTS.iter().position(|c| *c == service) {
        Some(i) => Ok(Some(
            ctx.part(Part::Repository(i))?
                .url
                .clone()
                .ok_or_else(|| PartError::Missing(format!("ecr_{service} has no URL")))?,
        )),
        None => Ok(None),
    }
}

/// Where to push the service's image when the stack's repository does not hold it yet; `None` when it is
/// there, or when the service runs an image from elsewhere (which the stack cannot check).
fn missing_image(ctx: &PartContext<'_>, service: Service) -> Option<String> {
    let name = service.name();
    if ctx.spec.service(name).image.is_some() {
        return None;
    }
    let i = COMPONENTS.iter().position(|c| *c == name)?;
    let repository = ctx.parts.get(&Part::Repository(i))?;
    (repository.facts.image_present == Some(false)).then(|| repository.facts.push_target.clone().unwrap_or_default())
}

fn task_definition_state(ctx: &PartContext<'_>, service: Service, mut state: PartState) -> PartState {
    if let Some(target) = missing_image(ctx, service) {
        state.facts.image_missing = Some(target);
    }
    state
}

/// Whether the service's image is not pushed yet: its tasks could only fail to pull it and trip the
/// deployment circuit breaker, so a new service starts none and a running one stays as it is.
fn awaiting_image(ctx: &PartContext<'_>, service: Service) -> PartResult<bool> {
    Ok(ctx.part(Part::TaskDefinition(service))?.facts.image_missing.is_some())
}

/// What the stack knows that the service's wiring needs. Web and RabbitMQ need nothing of the database,
/// so they do not wait for it.
fn endpoints(ctx: &PartContext<'_>, service: Service) -> PartResult<Endpoints> {
    let stack = &ctx.spec.name;
    let uses_database = matches!(service.name(), "broker" | "worker");
    let (database_host, database_secret) = if uses_database {
        let database = ctx.part(Part::Database)?;
        let host = database.url.clone().ok_or_else(|| PartError::Missing("database has no endpoint yet".into()))?;
        (host, database_secret_reference(ctx)?)
    } else {
        (String::new(), String::new())
    };
    Ok(Endpoints {
        broker_host: dns_name(stack, Service::Broker),
        rabbitmq_host: dns_name(stack, Service::Rabbitmq),
        database_host,
        database_secret,
        rabbitmq_secret: ctx.arn_of(Part::RabbitmqSecret)?.to_string(),
        archive_bucket: ctx.spec.archive_bucket.clone(),
        region: ctx.spec.region.clone(),
    })
}

/// Where the containers read the database password from: the stack's secret, which holds it as plain text.
fn database_secret_reference(ctx: &PartContext<'_>) -> PartResult<String> {
    Ok(ctx.arn_of(Part::DatabaseSecret)?.to_string())
}

/// The variable that makes a new task definition revision, and so a deployment, when the configuration
/// changes the database password: the broker reads it only when it starts.
const PASSWORD_VERSION_VARIABLE: &str = "DATAVAULT_DATABASE_PASSWORD_VERSION";

/// The same for the RabbitMQ password: RabbitMQ (whose companion container sets the new one), the broker
/// and the worker restart with it.
const RABBITMQ_PASSWORD_VERSION_VARIABLE: &str = "DATAVAULT_RABBITMQ_PASSWORD_VERSION";

fn wiring_of(ctx: &PartContext<'_>, service: Service) -> PartResult<Wiring> {
    let endpoints = endpoints(ctx, service)?;
    Ok(match service {
        Service::Web => wiring::web(&endpoints),
        Service::Broker => wiring::broker(&endpoints),
        Service::Worker => wiring::worker(&endpoints),
        Service::Rabbitmq => wiring::rabbitmq(&endpoints),
    })
}

/// The variables that restart a service when a password it reads changes.
fn password_versions(ctx: &PartContext<'_>, service: Service) -> Vec<(&'static str, i64)> {
    let database = ctx.spec.database.password_version.filter(|_| service == Service::Broker);
    let rabbitmq = ctx.spec.rabbitmq_password_version.filter(|_| service != Service::Web);
    [(PASSWORD_VERSION_VARIABLE, database), (RABBITMQ_PASSWORD_VERSION_VARIABLE, rabbitmq)]
        .into_iter()
        .filter_map(|(variable, version)| Some((variable, version?)))
        .collect()
}

/// The password version a service's task definition was made for: the database's for the broker,
/// RabbitMQ's for RabbitMQ.
fn password_version_in(service: Service, environment: &BTreeMap<String, String>) -> Option<i64> {
    let variable = match service {
        Service::Broker => PASSWORD_VERSION_VARIABLE,
        Service::Rabbitmq => RABBITMQ_PASSWORD_VERSION_VARIABLE,
        Service::Web | Service::Worker => return None,
    };
    environment.get(variable)?.parse().ok()
}

/// The variables of `environment` the configuration added (`services.<name>.environment`): those that are
/// neither the service's wiring nor a password version, since the configuration may add variables but never
/// replace those.
fn user_environment(environment: &BTreeMap<String, String>, wiring: &Wiring) -> BTreeMap<String, String> {
    let stacks_own = |key: &str| {
        wiring.environment.contains_key(key)
            || [PASSWORD_VERSION_VARIABLE, RABBITMQ_PASSWORD_VERSION_VARIABLE].contains(&key)
    };
    environment.iter().filter(|(key, _)| !stacks_own(key)).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The task definition a service should run.
pub fn task_definition_spec(ctx: &PartContext<'_>, service: Service) -> PartResult<TaskDefinitionSpec> {
    let name = service.name();
    let settings = ctx.spec.service(name);
    let mut wiring = wiring_of(ctx, service)?;
    for (variable, version) in password_versions(ctx, service) {
        wiring.environment.insert(variable.to_string(), version.to_string());
    }
    // User environment may add variables but never replace the wiring the services depend on.
    for (key, value) in &settings.environment {
        wiring.environment.entry(key.clone()).or_insert_with(|| value.clone());
    }
    let fs_id = ctx.id_of(Part::FileSystem)?.to_string();
    let volumes = wiring
        .mounts
        .iter()
        .map(|(kind, volume, _)| {
            Ok(EfsVolume {
                name: volume.to_string(),
                file_system_id: fs_id.clone(),
                access_point_id: ctx.id_of(Part::AccessPoint(*kind))?.to_string(),
            })
        })
        .collect::<PartResult<Vec<_>>>()?;
    let image = ctx.spec.image(name, repository_url(ctx, name)?.as_deref());
    let mut server = container(ctx, name, &image, wiring);
    server.cpu = settings.cpu as i32;
    server.memory = Some(settings.memory as i32);
    server.essential = true;
    let mut containers = vec![server];
    if service == Service::Rabbitmq {
        containers.push(rabbitmq_password_setter(ctx, &image)?);
    }
    Ok(TaskDefinitionSpec {
        family: family(&ctx.spec.name, service),
        task_role_arn: Some(ctx.arn_of(Part::TaskRole(service))?.to_string()),
        execution_role_arn: ctx.arn_of(Part::ExecutionRole)?.to_string(),
        cpu: settings.cpu as i32,
        memory: settings.memory as i32,
        containers,
        volumes,
        tags: ctx.tags(Part::TaskDefinition(service)),
    })
}

/// A container running `image` with `wiring`: not essential, with no resources of its own, until the
/// caller says otherwise.
fn container(ctx: &PartContext<'_>, name: &str, image: &str, wiring: Wiring) -> ContainerSpec {
    let mount_points = wiring
        .mounts
        .iter()
        .map(|(_, volume, path)| MountPoint {
            source_volume: volume.to_string(),
            container_path: path.to_string(),
            read_only: false,
        })
        .collect();
    ContainerSpec {
        name: name.to_string(),
        image: image.to_string(),
        cpu: 0,
        memory: None,
        essential: false,
        port_mappings: wiring.ports,
        environment: wiring.environment,
        secrets: wiring.secrets,
        mount_points,
        log: LogSpec {
            group: ctx.spec.log_group.clone(),
            region: ctx.spec.region.clone(),
            stream_prefix: name.to_string(),
        },
        health_check: wiring.health_check,
        // The images rewrite their own files at start (see the wiring module): an FSBP ECS.5 exception.
        readonly_root_filesystem: false,
        depends_on: vec![],
        command: wiring.command,
        working_directory: wiring.working_directory,
        // ECS Exec sessions leave processes behind that only an init reaps.
        init_process: true,
        // The images' shell entrypoint never passes SIGTERM on: waiting longer only delays the stop.
        stop_timeout: Some(STOP_TIMEOUT_SECONDS),
    }
}

/// The RabbitMQ task's companion that makes the secret's password RabbitMQ's (see
/// [`wiring::rabbitmq_password_setter`]). It starts once RabbitMQ is healthy, shares the task's memory,
/// reads the data directory only, and its exit leaves RabbitMQ running. Its root file system stays
/// writable like RabbitMQ's: the Erlang runtime of `rabbitmqctl` is not known to run without it.
fn rabbitmq_password_setter(ctx: &PartContext<'_>, image: &str) -> PartResult<ContainerSpec> {
    let mut wiring = wiring::rabbitmq_password_setter(&endpoints(ctx, Service::Rabbitmq)?);
    if let Some(version) = ctx.spec.rabbitmq_password_version {
        wiring.environment.insert(RABBITMQ_PASSWORD_VERSION_VARIABLE.to_string(), version.to_string());
    }
    let mut setter = container(ctx, wiring::RABBITMQ_PASSWORD_CONTAINER, image, wiring);
    setter.depends_on = vec![Service::Rabbitmq.name().to_string()];
    for mount in &mut setter.mount_points {
        mount.read_only = true;
    }
    Ok(setter)
}

/// Where a service receives load-balanced traffic: web, when the stack has a load balancer.
///
/// Adding or removing it later is an UpdateService with `loadBalancers`, which ECS supports for rolling
/// deployments (a new deployment registers the tasks in, or takes them out of, the target group). The
/// moto emulator accepts and records it but registers no targets, since it runs no tasks.
fn load_balancer_target(ctx: &PartContext<'_>, service: Service) -> PartResult<Option<LoadBalancerTarget>> {
    if ctx.spec.load_balancer.is_none() || service != Service::Web {
        return Ok(None);
    }
    Ok(Some(LoadBalancerTarget {
        target_group_arn: ctx.arn_of(Part::TargetGroup)?.to_string(),
        container_name: service.name().to_string(),
        container_port: WEB_PORT,
    }))
}

fn service_spec(ctx: &PartContext<'_>, service: Service) -> PartResult<ServiceSpec> {
    let name = service.name();
    let load_balancer = load_balancer_target(ctx, service)?;
    // Web rolls: the new task starts before the old one stops. The others must never run twice at once:
    // two RabbitMQs would share one data directory, a second broker would recreate the schema under the
    // first, two workers would race on the key store.
    let (minimum_healthy_percent, maximum_percent) = if name == "web" { (100, 200) } else { (0, 100) };
    Ok(ServiceSpec {
        cluster: ctx.spec.name.clone(),
        name: name.to_string(),
        task_definition_arn: ctx.arn_of(Part::TaskDefinition(service))?.to_string(),
        desired_count: ctx.spec.service(name).desired_count as i32,
        awaiting_image: awaiting_image(ctx, service)?,
        subnet_ids: ctx.subnet_ids()?,
        security_group_ids: vec![ctx.id_of(Part::SecurityGroup(Group::Services))?.to_string()],
        registry_arn: if service.is_discoverable() {
            Some(ctx.arn_of(Part::Discovery(service))?.to_string())
        } else {
            None
        },
        health_check_grace_seconds: load_balancer.as_ref().map(|_| WEB_STARTUP_GRACE_SECONDS),
        load_balancer,
        minimum_healthy_percent,
        maximum_percent,
        enable_execute_command: true,
        tags: ctx.tags(Part::Service(service)),
    })
}

/// Ensures a service part.
pub async fn ensure(part: ServicesPart, ctx: &PartContext<'_>) -> PartResult<PartState> {
    let (aws, spec) = (ctx.aws, ctx.spec);
    match part {
        ServicesPart::Namespace => {
            let vpc_id = ctx.id_of(Part::Network)?;
            let ns = aws::servicediscovery::ensure_private_namespace(
                &aws.servicediscovery,
                &namespace_name(&spec.name),
                vpc_id,
                &ctx.tags(part.into()),
                spec.timeouts.create,
            )
            .await?;
            Ok(PartState { id: Some(ns.id), arn: Some(ns.arn), url: Some(ns.name), ..PartState::default() })
        }
        ServicesPart::Discovery(s) => {
            let ns_id = ctx.id_of(Part::Namespace)?;
            let found =
                aws::servicediscovery::ensure_service(&aws.servicediscovery, ns_id, s.name(), &ctx.tags(part.into()))
                    .await?;
            Ok(PartState {
                id: Some(found.id),
                arn: Some(found.arn),
                url: Some(dns_name(&spec.name, s)),
                ..PartState::default()
            })
        }
        ServicesPart::TaskDefinition(s) => {
            let td = aws::ecs::ensure_task_definition(&aws.ecs, &task_definition_spec(ctx, s)?).await?;
            Ok(task_definition_state(ctx, s, PartState { arn: Some(td.arn), ..PartState::default() }))
        }
        ServicesPart::Service(s) => {
            let svc = aws::ecs::ensure_service(&aws.ecs, &service_spec(ctx, s)?, IAM_PROPAGATION).await?;
            Ok(PartState { id: Some(svc.name), arn: Some(svc.arn), ..PartState::default() })
        }
    }
}

/// The namespace under the stack's name, through the survey's shared read when there is one.
async fn namespace(ctx: &PartContext<'_>) -> PartResult<Option<aws::servicediscovery::Namespace>> {
    match ctx.reads {
        Some(reads) => reads.namespace(ctx).await,
        None => {
            Ok(aws::servicediscovery::describe_namespace(&ctx.aws.servicediscovery, &namespace_name(&ctx.spec.name))
                .await?)
        }
    }
}

/// Observes a service part.
pub async fn observe(part: ServicesPart, ctx: &PartContext<'_>) -> PartResult<Option<PartState>> {
    let (aws, spec) = (ctx.aws, ctx.spec);
    match part {
        ServicesPart::Namespace => {
            let client = &aws.servicediscovery;
            let Some(ns) = namespace(ctx).await? else { return Ok(None) };
            let tags = aws::servicediscovery::tags(client, &ns.arn).await?;
            Ok(Some(PartState {
                id: Some(ns.id),
                arn: Some(ns.arn),
                url: Some(ns.name),
                tags: Some(tags),
                ..PartState::default()
            }))
        }
        ServicesPart::Discovery(s) => {
            // The namespace's services are listed while its tags are read; what is found counts only once the
            // namespace has proven to be the stack's own.
            let Some(ns_id) = namespace(ctx).await?.map(|ns| ns.id) else { return Ok(None) };
            let client = &aws.servicediscovery;
            let found = match ctx.reads {
                Some(reads) => reads.discovery_service(ctx, &ns_id, s).await?,
                None => {
                    let listed = aws::servicediscovery::service_summaries(client, &ns_id).await?;
                    aws::servicediscovery::observe_service(client, &listed, &ns_id, s.name()).await?
                }
            };
            let Some((found, tags)) = found else { return Ok(None) };
            if !ctx.is_own(Part::Namespace, &ns_id).await {
                return Ok(None);
            }
            Ok(Some(PartState {
                id: Some(found.id),
                arn: Some(found.arn),
                url: Some(dns_name(&spec.name, s)),
                tags: Some(tags),
                ..PartState::default()
            }))
        }
        ServicesPart::TaskDefinition(s) => {
            let Some(td) = aws::ecs::describe_task_definition(&aws.ecs, &family(&spec.name, s)).await? else {
                return Ok(None);
            };
            let dependencies = ctx.dependencies(Part::TaskDefinition(s)).await;
            let ctx = &ctx.with(&dependencies);
            let drift = task_definition_spec(ctx, s).map(|expected| td.drift(&expected)).unwrap_or_default();
            let mut state = PartState { arn: Some(td.arn), drift, tags: Some(td.tags), ..PartState::default() };
            state.facts.image = td.image;
            state.facts.cpu = td.cpu;
            state.facts.memory = td.memory;
            state.facts.password_version = password_version_in(s, &td.environment);
            state.facts.environment = wiring_of(ctx, s).ok().map(|wiring| user_environment(&td.environment, &wiring));
            Ok(Some(task_definition_state(ctx, s, state)))
        }
        ServicesPart::Service(s) => {
            let found = match ctx.reads {
                Some(reads) => Some(reads.service(ctx, s).await?),
                None => None,
            };
            let dependencies = ctx.dependencies(Part::Service(s)).await;
            let ctx = &ctx.with(&dependencies);
            let expected = service_spec(ctx, s).ok();
            let observed = match found {
                Some(found) => aws::ecs::service_observation(found, expected.as_ref()),
                None => aws::ecs::describe_service(&aws.ecs, &spec.name, s.name(), expected.as_ref()).await?,
            };
            Ok(observed.map(|svc| {
                let mut state = PartState {
                    id: Some(s.name().to_string()),
                    arn: Some(svc.arn),
                    drift: svc.drift,
                    tags: Some(svc.tags),
                    ..PartState::default()
                };
                state.facts.desired_count = Some(svc.desired_count.into());
                state
            }))
        }
    }
}

/// Removes a service part: services are drained and deleted before their task definitions, discovery
/// names and namespace.
pub async fn remove(part: ServicesPart, ctx: &PartContext<'_>) -> PartResult<Removal> {
    let (aws, spec) = (ctx.aws, ctx.spec);
    let timeout = spec.timeouts.delete;
    let observed_id = ctx.parts.get(&Part::from(part)).and_then(|s| s.id.clone());
    match part {
        ServicesPart::Namespace => {
            if let Some(id) = observed_id {
                aws::servicediscovery::delete_namespace(&aws.servicediscovery, &id, timeout).await?;
            }
        }
        ServicesPart::Discovery(_) => {
            if let Some(id) = observed_id {
                aws::servicediscovery::delete_service(&aws.servicediscovery, &id, timeout).await?;
            }
        }
        ServicesPart::TaskDefinition(s) => {
            aws::ecs::deregister_task_definitions(&aws.ecs, &family(&spec.name, s)).await?
        }
        ServicesPart::Service(s) => aws::ecs::delete_service(&aws.ecs, &spec.name, s.name(), timeout).await?,
    }
    Ok(Removal::Removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_users_environment_is_what_the_wiring_and_password_versions_do_not_explain() {
        let endpoints = Endpoints {
            broker_host: "broker.vault.datavault.internal".into(),
            rabbitmq_host: "rabbitmq.vault.datavault.internal".into(),
            database_host: "vault.db".into(),
            database_secret: "arn:secret:db".into(),
            rabbitmq_secret: "arn:secret:mq".into(),
            archive_bucket: "vault-archive".into(),
            region: "eu-west-2".into(),
        };
        let wiring = wiring::broker(&endpoints);
        let mut found = wiring.environment.clone();
        found.insert(PASSWORD_VERSION_VARIABLE.to_string(), "3".to_string());
        found.insert("DATAVAULT_THEME".to_string(), "campus".to_string());
        assert_eq!(
            user_environment(&found, &wiring),
            BTreeMap::from([("DATAVAULT_THEME".to_string(), "campus".to_string())])
        );
        assert!(user_environment(&wiring.environment, &wiring).is_empty());
    }
}
