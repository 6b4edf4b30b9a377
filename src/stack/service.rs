//! The four DataVault services as a type: their names, and what each needs from the stack, so code that
//! handles "a service" says which one in words the compiler checks rather than by position or by string.

use std::fmt;

/// One of the four DataVault services. The order is the order of [`Service::ALL`] (and of the schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    /// The web application users see.
    Web,
    /// The broker: the REST API web calls, and the owner of the database's schema.
    Broker,
    /// The workers, which copy deposits into the archive.
    Worker,
    /// RabbitMQ, the queue between broker and workers.
    Rabbitmq,
}

impl Service {
    /// Every service, in schema order.
    pub const ALL: [Service; 4] = [Service::Web, Service::Broker, Service::Worker, Service::Rabbitmq];

    /// Its name: in the configuration (`services.<name>`), in AWS names, and as its DNS name.
    pub const fn name(self) -> &'static str {
        match self {
            Service::Web => "web",
            Service::Broker => "broker",
            Service::Worker => "worker",
            Service::Rabbitmq => "rabbitmq",
        }
    }

    /// The service of that name, if there is one.
    pub fn from_name(name: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The ports its container listens on: Tomcat's for web and broker, AMQP and the management API for
    /// RabbitMQ (the broker and workers wait for the latter before they start); workers listen on none.
    pub const fn ports(self) -> &'static [i32] {
        match self {
            Service::Web | Service::Broker => &[8080],
            Service::Worker => &[],
            Service::Rabbitmq => &[5672, 15672],
        }
    }

    /// Whether other services connect to it, and so it has a DNS name (workers only connect out).
    pub fn is_discoverable(self) -> bool {
        self != Service::Worker
    }

    /// Whether it is given the database's address and password (broker and workers only).
    pub fn needs_database(self) -> bool {
        matches!(self, Service::Broker | Service::Worker)
    }

    /// Whether it writes to the archive bucket (workers only): its role may, and the bucket and the S3
    /// endpoint must outlive it.
    pub fn writes_archive(self) -> bool {
        self == Service::Worker
    }

    /// Whether users reach it, through the load balancer when the stack has one (web only).
    pub fn faces_users(self) -> bool {
        self == Service::Web
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_go_both_ways_in_schema_order() {
        assert_eq!(Service::ALL.map(Service::name), super::super::schema::SERVICES);
        for service in Service::ALL {
            assert_eq!(Service::from_name(service.name()), Some(service));
        }
        assert_eq!(Service::from_name("mailer"), None);
        assert!(Service::ALL.windows(2).all(|w| w[0] < w[1]), "order follows the schema");
    }

    #[test]
    fn each_service_says_what_it_needs() {
        let discoverable: Vec<_> = Service::ALL.into_iter().filter(|s| s.is_discoverable()).collect();
        assert_eq!(discoverable, [Service::Web, Service::Broker, Service::Rabbitmq]);
        let database: Vec<_> = Service::ALL.into_iter().filter(|s| s.needs_database()).collect();
        assert_eq!(database, [Service::Broker, Service::Worker]);
        let archive: Vec<_> = Service::ALL.into_iter().filter(|s| s.writes_archive()).collect();
        assert_eq!(archive, [Service::Worker]);
        let users: Vec<_> = Service::ALL.into_iter().filter(|s| s.faces_users()).collect();
        assert_eq!(users, [Service::Web]);
    }
}
