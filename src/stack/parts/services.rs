//! Service parts: the private DNS namespace and Cloud Map services the DataVault services find each other
//! by, the task definitions (images, wiring, secrets, volumes, logs, health checks) and the ECS services.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::aws;
use crate::aws::ecs::{
    ContainerSpec, EfsVolume, HealthCheck, LoadBalancerTarget, LogSpec, MountPoint, ServiceSpec, TaskDefinitionSpec,
};

use super::super::model::{COMPONENTS, namespace_name};
use super::super::schema::SERVICES;
use super::network::WEB_PORT;
use super::{AccessPointKind, Group, Part, PartContext, PartError, PartResult, PartState, Removal, is_discoverable};

/// How long a new role may take to become usable by ECS.
const IAM_PROPAGATION: Duration = Duration::from_secs(120);
/// The RabbitMQ user the services share.
const RABBITMQ_USER: &str = "datavault";
/// The database user and schema (see the data parts).
const DATABASE_USER: &str = "datavault";
/// How long ECS ignores load balancer health checks of a new web task: Tomcat deploys the app in about
/// the container health check's start period, and tasks failing the target group's checks before that
/// would be stopped and replaced forever.
const WEB_STARTUP_GRACE_SECONDS: i32 = 120;

/// The ECS task family of a service.
pub fn family(stack: &str, service: usize) -> String {
    format!("{stack}-{}", SERVICES[service])
}

/// The DNS name a service answers at.
pub fn dns_name(stack: &str, service: usize) -> String {
    format!("{}.{}", SERVICES[service], namespace_name(stack))
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

/// The environment, secrets and mounts a service's container gets, exactly as the images expect them.
struct Wiring {
    ports: Vec<i32>,
    environment: BTreeMap<String, String>,
    secrets: BTreeMap<String, String>,
    mounts: Vec<(AccessPointKind, &'static str, &'static str)>,
    health_check: Option<HealthCheck>,
}

fn tcp_health_check(port: i32) -> HealthCheck {
    // The images ship bash but not necessarily curl: a TCP connect proves Tomcat is accepting requests.
    HealthCheck {
        command: vec!["CMD-SHELL".into(), format!("bash -c ':> /dev/tcp/127.0.0.1/{port}' || exit 1")],
        interval: 30,
        timeout: 5,
        retries: 3,
        start_period: 120,
    }
}

fn wiring(ctx: &PartContext<'_>, service: usize) -> PartResult<Wiring> {
    let stack = &ctx.spec.name;
    let rabbitmq_host = dns_name(stack, super::service_index("rabbitmq"));
    let rabbitmq_secret = ctx.arn_of(Part::RabbitmqSecret)?.to_string();
    let backend = |ctx: &PartContext<'_>| -> PartResult<(BTreeMap<String, String>, BTreeMap<String, String>)> {
        let database = ctx.part(Part::Database)?;
        let endpoint = database.url.clone().ok_or_else(|| PartError::Missing("database has no endpoint yet".into()))?;
        let secret = database.values.get("secret_arn").cloned().ok_or_else(|| {
            PartError::Missing("the database password secret is unknown (is the password managed by RDS?)".into())
        })?;
        let env = BTreeMap::from([
            ("MYSQL_HOST".to_string(), endpoint),
            ("MYSQL_PORT".to_string(), "3306".to_string()),
            ("MYSQL_USER".to_string(), DATABASE_USER.to_string()),
            ("MYSQL_DATABASE".to_string(), DATABASE_USER.to_string()),
            ("RABBITMQ_HOST".to_string(), rabbitmq_host.clone()),
            ("RABBITMQ_PORT".to_string(), "5672".to_string()),
            ("RABBITMQ_USER".to_string(), RABBITMQ_USER.to_string()),
            ("AWS_S3_BUCKET".to_string(), ctx.spec.archive_bucket.clone()),
            ("AWS_REGION".to_string(), ctx.spec.region.clone()),
        ]);
        // RDS keeps the master credentials as JSON; ECS extracts the password key.
        let secrets = BTreeMap::from([
            ("MYSQL_PASSWORD".to_string(), format!("{secret}:password::")),
            ("RABBITMQ_PASSWORD".to_string(), rabbitmq_secret.clone()),
        ]);
        Ok((env, secrets))
    };
    Ok(match SERVICES[service] {
        "web" => Wiring {
            ports: vec![8080],
            environment: BTreeMap::from([
                ("BROKER_HOST".to_string(), dns_name(stack, super::service_index("broker"))),
                ("BROKER_PORT".to_string(), "8080".to_string()),
            ]),
            secrets: BTreeMap::new(),
            mounts: vec![],
            health_check: Some(tcp_health_check(8080)),
        },
        "broker" => {
            let (environment, secrets) = backend(ctx)?;
            Wiring {
                ports: vec![8080],
                environment,
                secrets,
                mounts: vec![(AccessPointKind::Working, "working", "/tmp/datavault")],
                health_check: Some(tcp_health_check(8080)),
            }
        }
        "worker" => {
            let (environment, secrets) = backend(ctx)?;
            Wiring {
                ports: vec![],
                environment,
                secrets,
                mounts: vec![(AccessPointKind::Working, "working", "/tmp/datavault")],
                health_check: None,
            }
        }
        "rabbitmq" => Wiring {
            ports: vec![5672, 15672],
            environment: BTreeMap::from([("RABBITMQ_DEFAULT_USER".to_string(), RABBITMQ_USER.to_string())]),
            secrets: BTreeMap::from([("RABBITMQ_DEFAULT_PASS".to_string(), rabbitmq_secret)]),
            mounts: vec![(AccessPointKind::Rabbitmq, "rabbitmq-data", "/var/lib/rabbitmq")],
            health_check: Some(HealthCheck {
                command: vec!["CMD-SHELL".into(), "rabbitmq-diagnostics -q ping".into()],
                interval: 30,
                timeout: 10,
                retries: 3,
                start_period: 60,
            }),
        },
        other => unreachable!("unknown service {other}"),
    })
}

/// The task definition a service should run.
pub fn task_definition_spec(ctx: &PartContext<'_>, service: usize) -> PartResult<TaskDefinitionSpec> {
    let name = SERVICES[service];
    let settings = ctx.spec.service(name);
    let wiring = wiring(ctx, service)?;
    let mut environment = wiring.environment;
    // User environment may add variables but never replace the wiring the services depend on.
    for (key, value) in &settings.environment {
        environment.entry(key.clone()).or_insert_with(|| value.clone());
    }
    let fs_id = ctx.id_of(Part::FileSystem)?.to_string();
    let mut volumes = Vec::new();
    let mut mount_points = Vec::new();
    for (kind, volume, path) in &wiring.mounts {
        volumes.push(EfsVolume {
            name: volume.to_string(),
            file_system_id: fs_id.clone(),
            access_point_id: ctx.id_of(Part::AccessPoint(*kind))?.to_string(),
        });
        mount_points.push(MountPoint {
            source_volume: volume.to_string(),
            container_path: path.to_string(),
            read_only: false,
        });
    }
    let container = ContainerSpec {
        name: name.to_string(),
        image: ctx.spec.image(name, repository_url(ctx, name)?.as_deref()),
        cpu: settings.cpu as i32,
        memory: settings.memory as i32,
        essential: true,
        port_mappings: wiring.ports,
        environment,
        secrets: wiring.secrets,
        mount_points,
        log: LogSpec {
            group: ctx.spec.log_group.clone(),
            region: ctx.spec.region.clone(),
            stream_prefix: name.to_string(),
        },
        health_check: wiring.health_check,
        // Tomcat and RabbitMQ write under their own directories, so a read-only root (ECS.5) would stop them.
        readonly_root_filesystem: false,
        depends_on: vec![],
    };
    let needs_archive = matches!(name, "broker" | "worker");
    Ok(TaskDefinitionSpec {
        family: family(&ctx.spec.name, service),
        task_role_arn: if needs_archive { Some(ctx.arn_of(Part::TaskRole)?.to_string()) } else { None },
        execution_role_arn: ctx.arn_of(Part::ExecutionRole)?.to_string(),
        cpu: settings.cpu as i32,
        memory: settings.memory as i32,
        containers: vec![container],
        volumes,
        tags: ctx.tags(Part::TaskDefinition(service)),
    })
}

/// Where a service receives load-balanced traffic: web, when the stack has a load balancer.
///
/// Adding or removing it later is an UpdateService with `loadBalancers`, which ECS supports for rolling
/// deployments (a new deployment registers the tasks in, or takes them out of, the target group). The
/// moto emulator accepts and records it but registers no targets, since it runs no tasks.
fn load_balancer_target(ctx: &PartContext<'_>, service: usize) -> PartResult<Option<LoadBalancerTarget>> {
    if ctx.spec.load_balancer.is_none() || service != super::service_index("web") {
        return Ok(None);
    }
    Ok(Some(LoadBalancerTarget {
        target_group_arn: ctx.arn_of(Part::TargetGroup)?.to_string(),
        container_name: SERVICES[service].to_string(),
        container_port: WEB_PORT,
    }))
}

fn service_spec(ctx: &PartContext<'_>, service: usize) -> PartResult<ServiceSpec> {
    let name = SERVICES[service];
    let load_balancer = load_balancer_target(ctx, service)?;
    // One RabbitMQ at a time: two brokers must never share its data directory.
    let (minimum_healthy_percent, maximum_percent) = if name == "rabbitmq" { (0, 100) } else { (100, 200) };
    Ok(ServiceSpec {
        cluster: ctx.spec.name.clone(),
        name: name.to_string(),
        task_definition_arn: ctx.arn_of(Part::TaskDefinition(service))?.to_string(),
        desired_count: ctx.spec.service(name).desired_count as i32,
        subnet_ids: ctx.subnet_ids()?,
        security_group_ids: vec![ctx.id_of(Part::SecurityGroup(Group::Services))?.to_string()],
        registry_arn: if is_discoverable(service) {
            Some(ctx.arn_of(Part::Discovery(service))?.to_string())
        } else {
            None
        },
        health_check_grace_seconds: load_balancer.as_ref().map(|_| WEB_STARTUP_GRACE_SECONDS),
        load_balancer,
        minimum_healthy_percent,
        maximum_percent,
        tags: ctx.tags(Part::Service(service)),
    })
}

/// Ensures a service part.
pub async fn ensure(part: Part, ctx: &PartContext<'_>) -> PartResult<PartState> {
    let (aws, spec) = (ctx.aws, ctx.spec);
    match part {
        Part::Namespace => {
            let vpc_id = ctx.id_of(Part::Network)?;
            let ns = aws::servicediscovery::ensure_private_namespace(
                &aws.servicediscovery,
                &namespace_name(&spec.name),
                vpc_id,
                &ctx.tags(part),
                spec.timeouts.create,
            )
            .await?;
            Ok(PartState { id: Some(ns.id), arn: Some(ns.arn), url: Some(ns.name), ..PartState::default() })
        }
        Part::Discovery(s) => {
            let ns_id = ctx.id_of(Part::Namespace)?;
            let found =
                aws::servicediscovery::ensure_service(&aws.servicediscovery, ns_id, SERVICES[s], &ctx.tags(part))
                    .await?;
            Ok(PartState {
                id: Some(found.id),
                arn: Some(found.arn),
                url: Some(dns_name(&spec.name, s)),
                ..PartState::default()
            })
        }
        Part::TaskDefinition(s) => {
            let td = aws::ecs::ensure_task_definition(&aws.ecs, &task_definition_spec(ctx, s)?).await?;
            Ok(PartState { arn: Some(td.arn), ..PartState::default() })
        }
        Part::Service(s) => {
            let svc = aws::ecs::ensure_service(&aws.ecs, &service_spec(ctx, s)?, IAM_PROPAGATION).await?;
            Ok(PartState { id: Some(svc.name), arn: Some(svc.arn), ..PartState::default() })
        }
        _ => unreachable!("not a service part: {part}"),
    }
}

/// Observes a service part.
pub async fn observe(part: Part, ctx: &PartContext<'_>) -> PartResult<Option<PartState>> {
    let (aws, spec) = (ctx.aws, ctx.spec);
    match part {
        Part::Namespace => {
            let client = &aws.servicediscovery;
            let Some(ns) = aws::servicediscovery::describe_namespace(client, &namespace_name(&spec.name)).await? else {
                return Ok(None);
            };
            let tags = aws::servicediscovery::tags(client, &ns.arn).await?;
            Ok(Some(PartState {
                id: Some(ns.id),
                arn: Some(ns.arn),
                url: Some(ns.name),
                tags: Some(tags),
                ..PartState::default()
            }))
        }
        Part::Discovery(s) => {
            let Ok(ns_id) = ctx.id_of(Part::Namespace) else { return Ok(None) };
            let client = &aws.servicediscovery;
            let Some(found) = aws::servicediscovery::describe_service(client, ns_id, SERVICES[s]).await? else {
                return Ok(None);
            };
            let tags = aws::servicediscovery::tags(client, &found.arn).await?;
            Ok(Some(PartState {
                id: Some(found.id),
                arn: Some(found.arn),
                url: Some(dns_name(&spec.name, s)),
                tags: Some(tags),
                ..PartState::default()
            }))
        }
        Part::TaskDefinition(s) => {
            let expected = task_definition_spec(ctx, s).ok();
            Ok(aws::ecs::describe_task_definition(&aws.ecs, &family(&spec.name, s), expected.as_ref()).await?.map(
                |td| {
                    let mut state =
                        PartState { arn: Some(td.arn), drift: td.drift, tags: Some(td.tags), ..PartState::default() };
                    let facts = [
                        ("image", td.image),
                        ("cpu", td.cpu.map(|c| c.to_string())),
                        ("memory", td.memory.map(|m| m.to_string())),
                    ];
                    state.values.extend(facts.into_iter().filter_map(|(k, v)| v.map(|v| (k.to_string(), v))));
                    state
                },
            ))
        }
        Part::Service(s) => {
            let expected = service_spec(ctx, s).ok();
            Ok(aws::ecs::describe_service(&aws.ecs, &spec.name, SERVICES[s], expected.as_ref()).await?.map(|svc| {
                let mut state = PartState {
                    id: Some(SERVICES[s].to_string()),
                    arn: Some(svc.arn),
                    drift: svc.drift,
                    tags: Some(svc.tags),
                    ..PartState::default()
                };
                state.values.insert("desired_count".into(), svc.desired_count.to_string());
                state
            }))
        }
        _ => unreachable!("not a service part: {part}"),
    }
}

/// Removes a service part: services are drained and deleted before their task definitions, discovery
/// names and namespace.
pub async fn remove(part: Part, ctx: &PartContext<'_>) -> PartResult<Removal> {
    let (aws, spec) = (ctx.aws, ctx.spec);
    let timeout = spec.timeouts.delete;
    let observed_id = ctx.parts.get(&part).and_then(|s| s.id.clone());
    match part {
        Part::Namespace => {
            if let Some(id) = observed_id {
                aws::servicediscovery::delete_namespace(&aws.servicediscovery, &id, timeout).await?;
            }
        }
        Part::Discovery(_) => {
            if let Some(id) = observed_id {
                aws::servicediscovery::delete_service(&aws.servicediscovery, &id, timeout).await?;
            }
        }
        Part::TaskDefinition(s) => aws::ecs::deregister_task_definitions(&aws.ecs, &family(&spec.name, s)).await?,
        Part::Service(s) => aws::ecs::delete_service(&aws.ecs, &spec.name, SERVICES[s], timeout).await?,
        _ => unreachable!("not a service part: {part}"),
    }
    Ok(Removal::Removed)
}
