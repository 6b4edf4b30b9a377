//! What the supported DataVault images expect, service by service: the variables they read, the secrets,
//! the volumes, how to tell that they are healthy, and the defects of the images the stack works around.
//!
//! The stack supports the images built from JiscRDSS/datavault, branch `aws_fixes`, commit
//! [`SOURCE_COMMIT`] (the only revision that honours `BROKER_HOST`, reads the S3 settings from the
//! environment, and falls back to the task role when the AWS keys are empty), plus the public RabbitMQ
//! management image. Facts below come from that revision's `docker/scripts/set-defaults.sh`,
//! `docker/scripts/docker-entrypoint.sh`, `docker/config/datavault.properties` and Dockerfiles:
//!
//! - every value is pasted unescaped into a shell script and a properties file, so passwords are
//!   alphanumeric (the stack generates them so);
//! - broker and worker wait up to 90 s for `RABBITMQ_HOST:15672` and `MYSQL_HOST:3306` and exit otherwise;
//! - an AWS key variable that is *unset* becomes the literal `-`, used as a static credential: the broker
//!   must get both `AWS_ACCESS_KEY_ID` and `AWS_SECRET_KEY_ID` (sic) *empty*, so the worker's SDK uses the
//!   task role;
//! - the broker recreates the schema at every start (`hbm2ddl.auto = create-drop`): one broker at a time,
//!   never two during a deployment;
//! - the worker keeps the deposits' encryption keys in `./DatavaultKeyStore`: its working directory is put
//!   on the shared EFS folder, or a replaced container would lose every key;
//! - the images rewrite files of their own root file system at start, so it cannot be read-only (FSBP
//!   ECS.5 exception, in the docs).

use std::collections::BTreeMap;

use crate::aws::ecs::HealthCheck;

use super::super::service::Service;
use super::AccessPointKind;

/// The repository the supported images are built from.
pub const SOURCE_REPOSITORY: &str = "https://github.com/JiscRDSS/datavault";
/// The branch the supported images are built from.
pub const SOURCE_BRANCH: &str = "aws_fixes";
/// The commit the supported images are built from; also the default image tag.
pub const SOURCE_COMMIT: &str = "729ca0777a61ecda4bee75429b0a38ea15b118d8";
/// The RabbitMQ image: 3.13 with the management listener the others probe at start. (4.3 and later refuse
/// the transient, non-exclusive queues DataVault declares.)
pub const RABBITMQ_IMAGE: &str = "rabbitmq:3.13-management-alpine";
/// The user the images connect to RabbitMQ and the database as (both fixed in the images).
pub const APPLICATION_USER: &str = "datavault";
/// The shared working folder of broker and workers (an EFS access point).
pub const WORKING_FOLDER: &str = "/tmp/datavault";
/// Where deposits are read from and retrievals written to, on the shared folder.
pub const USER_DATA_FOLDER: &str = "/tmp/datavault/users";
/// Java heap as a share of the container's memory (the images' JVM would otherwise take a quarter).
const JAVA_OPTIONS: &str = "-XX:MaxRAMPercentage=75.0";
/// The worker's classpath, absolute, since its working directory moves to the shared folder.
const WORKER_CLASSPATH: &str = "/docker_datavault-home/lib/datavault-worker-1.0-SNAPSHOT-jar-with-dependencies-spring.jar:/docker_datavault-home/lib/*";

/// Where each part of a service's wiring comes from: what the stack knows about the other parts.
pub struct Endpoints {
    /// The broker's DNS name.
    pub broker_host: String,
    /// RabbitMQ's DNS name.
    pub rabbitmq_host: String,
    /// The database's address.
    pub database_host: String,
    /// `valueFrom` of the database password.
    pub database_secret: String,
    /// `valueFrom` of the RabbitMQ password.
    pub rabbitmq_secret: String,
    /// The archive bucket.
    pub archive_bucket: String,
    /// The bucket's region.
    pub region: String,
}

/// The environment, secrets, mounts and process settings a service's container gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wiring {
    /// Ports it listens on.
    pub ports: Vec<i32>,
    /// Plain variables.
    pub environment: BTreeMap<String, String>,
    /// Variables from secrets: name -> `valueFrom`.
    pub secrets: BTreeMap<String, String>,
    /// (access point, volume name, path in the container).
    pub mounts: Vec<(AccessPointKind, &'static str, &'static str)>,
    /// How ECS tells it is healthy.
    pub health_check: Option<HealthCheck>,
    /// The command, when the image's must change.
    pub command: Vec<String>,
    /// The working directory, when the image's must change.
    pub working_directory: Option<String>,
}

/// The access points a service mounts.
pub fn access_points(service: Service) -> Vec<AccessPointKind> {
    match service {
        Service::Broker | Service::Worker => vec![AccessPointKind::Working],
        Service::Rabbitmq => vec![AccessPointKind::Rabbitmq],
        Service::Web => vec![],
    }
}

fn env(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
    entries.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A shell health check; times in seconds. `start` covers Tomcat deploying the application (the broker
/// also recreates the schema), during which failures do not count.
fn shell_check(command: &str, start: i32) -> HealthCheck {
    HealthCheck {
        command: vec!["CMD-SHELL".into(), command.into()],
        interval: 30,
        timeout: 10,
        retries: 3,
        start_period: start,
    }
}

/// Web: Tomcat with the web app; it calls the broker over HTTP and nothing else.
pub fn web(endpoints: &Endpoints) -> Wiring {
    Wiring {
        ports: Service::Web.ports().to_vec(),
        environment: env(&[("BROKER_HOST", &endpoints.broker_host), ("JAVA_TOOL_OPTIONS", JAVA_OPTIONS)]),
        secrets: BTreeMap::new(),
        mounts: vec![],
        // The login page answers without a session; busybox wget is in the image, curl is not.
        health_check: Some(shell_check(
            "wget -q -O /dev/null http://localhost:8080/datavault-webapp/auth/login || exit 1",
            300,
        )),
        command: vec![],
        working_directory: None,
    }
}

/// The variables broker and worker share: the queue, the database address (the worker only probes it),
/// the shared folders, and empty AWS keys so the worker's SDK falls back to the task role.
fn backend(endpoints: &Endpoints) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let environment = env(&[
        ("MYSQL_HOST", &endpoints.database_host),
        ("RABBITMQ_HOST", &endpoints.rabbitmq_host),
        ("USER_DATA_DIR", USER_DATA_FOLDER),
        ("AWS_S3_BUCKET", &endpoints.archive_bucket),
        ("AWS_REGION", &endpoints.region),
        ("AWS_ACCESS_KEY_ID", ""),
        ("AWS_SECRET_KEY_ID", ""),
        ("JAVA_TOOL_OPTIONS", JAVA_OPTIONS),
    ]);
    let secrets = BTreeMap::from([
        ("MYSQL_PASSWORD".to_string(), endpoints.database_secret.clone()),
        ("RABBITMQ_PASSWORD".to_string(), endpoints.rabbitmq_secret.clone()),
    ]);
    (environment, secrets)
}

/// Broker: Tomcat with the broker API, the one user of the database.
pub fn broker(endpoints: &Endpoints) -> Wiring {
    let (environment, secrets) = backend(endpoints);
    Wiring {
        ports: Service::Broker.ports().to_vec(),
        environment,
        secrets,
        mounts: vec![(AccessPointKind::Working, "working", WORKING_FOLDER)],
        // The API index page needs no login; curl is in the broker image.
        health_check: Some(shell_check(
            "curl -fsS -o /dev/null http://localhost:8080/datavault-broker/ || exit 1",
            300,
        )),
        command: vec![],
        working_directory: None,
    }
}

/// Worker: a plain JVM taking jobs from the queue and writing to the archive bucket.
pub fn worker(endpoints: &Endpoints) -> Wiring {
    let (environment, secrets) = backend(endpoints);
    let command = ["java", "-cp", WORKER_CLASSPATH, "org.datavaultplatform.worker.WorkerInstance"];
    Wiring {
        ports: Service::Worker.ports().to_vec(),
        environment,
        secrets,
        mounts: vec![(AccessPointKind::Working, "working", WORKING_FOLDER)],
        health_check: Some(shell_check("pgrep -f WorkerInstance > /dev/null || exit 1", 120)),
        command: command.iter().map(|s| s.to_string()).collect(),
        // The key store the worker writes to its working directory must outlive the container.
        working_directory: Some(WORKING_FOLDER.to_string()),
    }
}

/// RabbitMQ: the queue, with its data on EFS under a node name that does not change with the task.
pub fn rabbitmq(endpoints: &Endpoints) -> Wiring {
    Wiring {
        ports: Service::Rabbitmq.ports().to_vec(),
        environment: env(&[("RABBITMQ_DEFAULT_USER", APPLICATION_USER), ("RABBITMQ_NODENAME", "rabbit@localhost")]),
        secrets: BTreeMap::from([("RABBITMQ_DEFAULT_PASS".to_string(), endpoints.rabbitmq_secret.clone())]),
        mounts: vec![(AccessPointKind::Rabbitmq, "rabbitmq-data", "/var/lib/rabbitmq")],
        health_check: Some(shell_check("rabbitmq-diagnostics -q ping", 60)),
        command: vec![],
        working_directory: None,
    }
}

/// The container of the RabbitMQ task that gives RabbitMQ the secret's password (see
/// [`rabbitmq_password_setter`]).
pub const RABBITMQ_PASSWORD_CONTAINER: &str = "rabbitmq-password";

/// Sets the RabbitMQ user's password to the secret's, retrying while the node finishes starting. The
/// password is an argument rather than standard input so that no line ending can become part of it; it is
/// only as visible as the variable it comes from, inside this container's own process namespace.
const SET_RABBITMQ_PASSWORD: &str = r#"for attempt in 1 2 3 4 5 6; do rabbitmqctl --node "$RABBITMQ_NODENAME" change_password "$RABBITMQ_DEFAULT_USER" "$RABBITMQ_DEFAULT_PASS" && exit 0; sleep 10; done; exit 1"#;

/// RabbitMQ reads `RABBITMQ_DEFAULT_PASS` only when it creates its data directory, which lives on EFS and
/// outlives every task, so a new password in the secret would never reach it. This short-lived companion
/// of the RabbitMQ container (same image, started once RabbitMQ is healthy) sets the user's password to the
/// secret's at every start of the task, reaching the node over the task's loopback with the Erlang cookie
/// of the data directory, which it mounts read-only. The secret is therefore always the password.
pub fn rabbitmq_password_setter(endpoints: &Endpoints) -> Wiring {
    let rabbitmq = rabbitmq(endpoints);
    Wiring {
        ports: vec![],
        environment: rabbitmq.environment,
        secrets: rabbitmq.secrets,
        mounts: rabbitmq.mounts,
        health_check: None,
        command: vec!["sh".into(), "-c".into(), SET_RABBITMQ_PASSWORD.into()],
        working_directory: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints() -> Endpoints {
        Endpoints {
            broker_host: "broker.vault.datavault.internal".into(),
            rabbitmq_host: "rabbitmq.vault.datavault.internal".into(),
            database_host: "vault.abc.eu-west-2.rds.amazonaws.com".into(),
            database_secret: "arn:db".into(),
            rabbitmq_secret: "arn:mq".into(),
            archive_bucket: "vault-archive".into(),
            region: "eu-west-2".into(),
        }
    }

    #[test]
    fn the_aws_keys_are_empty_so_the_worker_uses_its_task_role() {
        for wiring in [broker(&endpoints()), worker(&endpoints())] {
            assert_eq!(wiring.environment.get("AWS_ACCESS_KEY_ID").map(String::as_str), Some(""));
            assert_eq!(wiring.environment.get("AWS_SECRET_KEY_ID").map(String::as_str), Some(""));
            assert!(!wiring.environment.keys().any(|k| k.contains("PASSWORD")), "passwords are secrets");
        }
    }

    #[test]
    fn web_reaches_the_broker_by_its_name_and_nothing_else() {
        let web = web(&endpoints());
        assert_eq!(web.environment["BROKER_HOST"], "broker.vault.datavault.internal");
        assert!(web.secrets.is_empty() && web.mounts.is_empty());
    }

    #[test]
    fn the_worker_keeps_its_key_store_on_the_shared_folder() {
        let worker = worker(&endpoints());
        assert_eq!(worker.working_directory.as_deref(), Some(WORKING_FOLDER));
        assert!(worker.command.iter().any(|c| c.starts_with("/docker_datavault-home/lib/")), "{:?}", worker.command);
        assert!(worker.mounts.iter().any(|(_, _, path)| *path == WORKING_FOLDER));
    }

    #[test]
    fn the_password_setter_reaches_the_rabbitmq_node_with_its_data_and_the_secret() {
        let setter = rabbitmq_password_setter(&endpoints());
        let server = rabbitmq(&endpoints());
        assert_eq!(setter.secrets, server.secrets, "the same secret as the server's first start");
        assert_eq!(setter.mounts, server.mounts, "the Erlang cookie lives in the data directory");
        assert_eq!(setter.environment["RABBITMQ_NODENAME"], "rabbit@localhost");
        let script = setter.command.last().expect("a script");
        assert!(script.contains("change_password \"$RABBITMQ_DEFAULT_USER\" \"$RABBITMQ_DEFAULT_PASS\""), "{script}");
        assert!(script.ends_with("exit 1"), "a password never set must show as a failed container");
        assert!(setter.ports.is_empty() && setter.health_check.is_none());
    }
}
