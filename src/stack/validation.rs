//! Static checks of a `datavault_stack` configuration: everything that can be refused from the
//! configuration alone, at validate time, with the attribute's path. Checks that need AWS run at plan time
//! in [`super::checks`].

use crate::aws::logs::ALLOWED_RETENTION_DAYS;
use crate::framework::{AttributePath, Diagnostics, Value};

use super::schema::{MAX_NAME_LENGTH, SERVICES};

/// Why a stack name is invalid, if it is.
pub fn name_problem(name: &str) -> Option<String> {
    let len = name.chars().count();
    if !(3..=MAX_NAME_LENGTH).contains(&len) {
        return Some(format!("must be 3 to {MAX_NAME_LENGTH} characters long, not {len}"));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Some("must start with a lowercase letter".into());
    }
    if name.ends_with('-') {
        return Some("must not end with a hyphen".into());
    }
    if name.contains("--") {
        return Some("must not contain two hyphens in a row".into());
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')) {
        return Some(format!("may contain only lowercase letters, digits and hyphens, not {bad:?}"));
    }
    reserved_name_problem(name)
}

/// Names AWS reserves in one of the services the stack's name is used in.
fn reserved_name_problem(name: &str) -> Option<String> {
    if name == "default" {
        // RDS refuses a DB subnet group named "default", and the account's default ECS cluster has it.
        return Some("is reserved: RDS does not allow a DB subnet group named \"default\"".into());
    }
    if name.starts_with("sg-") {
        return Some("must not start with \"sg-\": EC2 refuses security group names that do".into());
    }
    if name.starts_with("internal-") {
        return Some(
            "must not start with \"internal-\": Elastic Load Balancing refuses load balancer names that do".into(),
        );
    }
    bucket_name_problem(&super::model::default_archive_bucket(name)).map(|problem| {
        format!("gives the archive bucket name {:?}, which {problem}", super::model::default_archive_bucket(name))
    })
}

/// Why a bucket name is invalid, if it is (the S3 naming rules that matter in practice).
pub fn bucket_name_problem(name: &str) -> Option<String> {
    let len = name.len();
    if !(3..=63).contains(&len) {
        return Some(format!("must be 3 to 63 characters long, not {len}"));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        || !name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        return Some("must start and end with a lowercase letter or digit".into());
    }
    if name.chars().any(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')) {
        return Some("may contain only lowercase letters, digits, hyphens and dots".into());
    }
    if name.contains("..") {
        return Some("must not contain two dots in a row".into());
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Some("must not be formatted as an IP address".into());
    }
    if let Some(prefix) = RESERVED_BUCKET_PREFIXES.iter().find(|p| name.starts_with(*p)) {
        return Some(format!("must not start with {prefix:?}, which S3 reserves"));
    }
    if let Some(suffix) = RESERVED_BUCKET_SUFFIXES.iter().find(|s| name.ends_with(*s)) {
        return Some(format!("must not end with {suffix:?}, which S3 reserves"));
    }
    None
}

/// Bucket name prefixes S3 reserves (general purpose buckets).
const RESERVED_BUCKET_PREFIXES: [&str; 3] = ["xn--", "sthree-", "amzn-s3-demo-"];
/// Bucket name suffixes S3 reserves for access points, directory and table buckets and the like.
const RESERVED_BUCKET_SUFFIXES: [&str; 6] = ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3", "-an"];

/// Longest timeout accepted: a day is far beyond any wait the stack has, and keeps deadlines in range.
pub const MAX_TIMEOUT_HOURS: u64 = 24;
/// Most instances the Auto Scaling group may be asked for (the stack runs four services).
pub const MAX_INSTANCES: f64 = 1000.0;
/// Most tasks one service may run (the ECS "tasks per service" quota).
pub const MAX_TASKS_PER_SERVICE: f64 = 5000.0;
/// Most tags AWS allows on one resource; the stack adds two of its own.
pub const MAX_TAGS: usize = 50 - 2;

/// Checks the known parts of a configuration.
pub fn validate(config: &Value) -> Diagnostics {
    let mut diags = Diagnostics::new();
    validate_names(config, &mut diags);
    validate_retention(config.get("log_retention_days"), &mut diags);
    validate_image_tag(config.get("image_tag"), &mut diags);
    validate_network(config, &mut diags);
    validate_cluster(config.get("cluster"), &mut diags);
    validate_database(config.get("database"), &mut diags);
    validate_password_version(
        config.get("rabbitmq_password_version"),
        AttributePath::root("rabbitmq_password_version"),
        &mut diags,
    );
    validate_services(config.get("services"), &mut diags);
    validate_load_balancer(config.get("load_balancer"), &mut diags);
    validate_kms_key(config.get("kms_key_arn"), &mut diags);
    validate_timeouts(config.get("timeouts"), &mut diags);
    validate_tags(config.get("tags"), &mut diags);
    diags
}

/// The stack's name and the bucket names, alone and together.
fn validate_names(config: &Value, diags: &mut Diagnostics) {
    let name = config.get("name").as_str();
    if let Some(name) = name
        && let Some(problem) = name_problem(name)
    {
        diags.attribute_error(
            AttributePath::root("name"),
            "Invalid Stack Name",
            format!("The stack name {name:?} {problem}. It names S3 buckets, ECR repositories and other AWS resources, so it is restricted to what all of them accept."),
        );
    }
    for attribute in ["archive_bucket_name", "state_bucket_name"] {
        if let Some(bucket) = config.get(attribute).as_str()
            && let Some(problem) = bucket_name_problem(bucket)
        {
            diags.attribute_error(
                AttributePath::root(attribute),
                "Invalid Bucket Name",
                format!("The bucket name {bucket:?} {problem}."),
            );
        }
    }
    // The names the buckets will have, configured or derived from the stack's name.
    let bucket = |attribute: &str, default: fn(&str) -> String| match config.get(attribute) {
        Value::String(bucket) => Some(bucket.clone()),
        Value::Null => name.map(default),
        _ => None,
    };
    let archive = bucket("archive_bucket_name", super::model::default_archive_bucket);
    let state = bucket("state_bucket_name", super::model::default_state_bucket);
    // The stack's third bucket, for the archive's access logs, is always named from the stack.
    let logs = name.map(super::model::access_log_bucket_name);
    for (attribute, configured) in [("archive_bucket_name", &archive), ("state_bucket_name", &state)] {
        if configured.is_some() && *configured == logs && !config.get(attribute).is_null() {
            diags.attribute_error(
                AttributePath::root(attribute),
                "Bucket Name Taken By The Stack",
                format!(
                    "{attribute} {:?} is the name of the stack's access log bucket; choose another name.",
                    configured.as_deref().unwrap_or_default()
                ),
            );
        }
    }
    if let (Some(archive), Some(state)) = (archive, state)
        && archive == state
    {
        let attribute =
            if config.get("state_bucket_name").is_null() { "archive_bucket_name" } else { "state_bucket_name" };
        diags.attribute_error(
            AttributePath::root(attribute),
            "Same Bucket For Archive And State",
            format!(
                "The archive bucket and the state bucket would both be {archive:?}; they must be different buckets."
            ),
        );
    }
}

fn validate_retention(retention: &Value, diags: &mut Diagnostics) {
    if let Some(days) = retention.as_f64()
        && (days.fract() != 0.0 || !ALLOWED_RETENTION_DAYS.contains(&(days as i64)))
    {
        diags.attribute_error(
            AttributePath::root("log_retention_days"),
            "Invalid Log Retention",
            format!(
                "CloudWatch Logs cannot keep logs for {days} days. Use one of: {}.",
                ALLOWED_RETENTION_DAYS.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            ),
        );
    }
}

/// ECR's tag rules, and a warning for a tag meant to move: the stack's repositories keep tags immutable.
fn validate_image_tag(tag: &Value, diags: &mut Diagnostics) {
    let Some(tag) = tag.as_str() else { return };
    let valid = (1..=128).contains(&tag.len())
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !valid {
        diags.attribute_error(
            AttributePath::root("image_tag"),
            "Invalid Image Tag",
            format!("{tag:?} is not an image tag: up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'."),
        );
    } else if tag == "latest" {
        diags.push(
            crate::framework::Diagnostic::warning(
                "Moving Tag On Immutable Repositories",
                "The stack's repositories keep tags immutable, so \"latest\" can be pushed only once, and a later \
                 build could never replace it. Tag each build (with its commit, as the default 729ca07 does) and \
                 set image_tag to it: a new tag then rolls the services.",
            )
            .at(AttributePath::root("image_tag")),
        );
    }
}

/// What can be told about `vpc_id` and `subnet_ids` without asking AWS; the rest is checked at plan.
fn validate_network(config: &Value, diags: &mut Diagnostics) {
    if let Some(vpc) = config.get("vpc_id").as_str()
        && !is_aws_id(vpc, "vpc-")
    {
        diags.attribute_error(
            AttributePath::root("vpc_id"),
            "Invalid VPC Id",
            format!("{vpc:?} is not a VPC id such as \"vpc-0123456789abcdef0\"."),
        );
    }
    validate_subnet_list(config.get("subnet_ids"), AttributePath::root("subnet_ids"), diags);
}

/// A list of subnets: ids of the right form, none twice, at least two (two availability zones).
fn validate_subnet_list(list: &Value, path: AttributePath, diags: &mut Diagnostics) {
    let Some(subnets) = list.as_list() else { return };
    let mut seen = std::collections::BTreeSet::new();
    for (i, subnet) in subnets.iter().enumerate() {
        let Some(id) = subnet.as_str() else { continue };
        let problem = if !is_aws_id(id, "subnet-") {
            format!("{id:?} is not a subnet id such as \"subnet-0123456789abcdef0\".")
        } else if !seen.insert(id) {
            format!("{id} is listed twice.")
        } else {
            continue;
        };
        diags.attribute_error(path.index(i as i64), "Invalid Subnet", problem);
    }
    if subnets.len() == 1 {
        diags.attribute_error(
            path,
            "Too Few Subnets",
            "The database and the load balancer need subnets in at least two availability zones: list at least two \
             subnets, or leave subnet_ids out to use the VPC's default subnets.",
        );
    }
}

/// Whether `id` looks like an AWS id with this prefix: the prefix, then 8 or 17 hexadecimal digits.
fn is_aws_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|hex| {
        matches!(hex.len(), 8 | 17) && hex.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    })
}

fn validate_timeouts(timeouts: &Value, diags: &mut Diagnostics) {
    for operation in ["create", "update", "delete"] {
        let Some(text) = timeouts.get(operation).as_str() else { continue };
        let problem = match super::model::parse_duration(text) {
            None => format!("{text:?} is not a duration such as \"60m\", \"1h30m\" or \"90s\"."),
            Some(d) if d.as_secs() > MAX_TIMEOUT_HOURS * 3600 => format!(
                "{text:?} is longer than {MAX_TIMEOUT_HOURS}h, more than any wait of the stack needs; use at most \"{MAX_TIMEOUT_HOURS}h\"."
            ),
            Some(_) => continue,
        };
        diags.attribute_error(AttributePath::root("timeouts").attribute(operation), "Invalid Timeout", problem);
    }
}

fn validate_tags(tags: &Value, diags: &mut Diagnostics) {
    let Some(tags) = tags.as_map() else { return };
    for (key, value) in tags {
        let path = AttributePath::root("tags").key(key);
        let problem = if crate::aws::is_reserved_tag_key(key) {
            format!(
                "The tag key {key:?} is reserved: keys starting with \"datavault:\" are set by the provider and \"aws:\" by AWS."
            )
        } else if key.is_empty() || key.chars().count() > 128 {
            format!("The tag key {key:?} must be 1 to 128 characters long.")
        } else if value.as_str().is_some_and(|v| v.chars().count() > 256) {
            format!("The value of tag {key:?} is longer than the 256 characters AWS allows.")
        } else {
            continue;
        };
        diags.attribute_error(path, "Invalid Tag", problem);
    }
    if tags.len() > MAX_TAGS {
        diags.attribute_error(
            AttributePath::root("tags"),
            "Too Many Tags",
            format!("AWS allows 50 tags per resource and the stack sets 2 of its own, so tags may hold at most {MAX_TAGS} (together with the provider's default_tags), not {}.", tags.len()),
        );
    }
}

fn validate_cluster(cluster: &Value, diags: &mut Diagnostics) {
    let path = AttributePath::root("cluster");
    let size = |name: &str| cluster.get(name).as_f64();
    for name in ["min_size", "max_size", "desired_capacity"] {
        if let Some(n) = size(name)
            && !(n >= 0.0 && n.fract() == 0.0 && n <= MAX_INSTANCES)
        {
            diags.attribute_error(
                path.attribute(name),
                "Invalid Group Size",
                format!("{name} must be a whole number of instances from 0 to {MAX_INSTANCES}, not {n}."),
            );
        }
    }
    let (min, max, desired) = (size("min_size"), size("max_size"), size("desired_capacity"));
    if let (Some(min), Some(max)) = (min, max)
        && min > max
    {
        diags.attribute_error(
            path.attribute("min_size"),
            "Invalid Group Size",
            format!("min_size ({min}) is larger than max_size ({max})."),
        );
    }
    if let Some(desired) = desired
        && (min.is_some_and(|m| desired < m) || max.is_some_and(|m| desired > m))
    {
        diags.attribute_error(
            path.attribute("desired_capacity"),
            "Invalid Group Size",
            format!("desired_capacity ({desired}) must lie between min_size and max_size."),
        );
    }
    if let Some(ami) = cluster.get("ami_id").as_str()
        && !is_aws_id(ami, "ami-")
    {
        diags.attribute_error(
            path.attribute("ami_id"),
            "Invalid AMI Id",
            format!("{ami:?} is not an AMI id such as \"ami-0123456789abcdef0\"."),
        );
    }
    if let Some(instance_type) = cluster.get("instance_type").as_str()
        && !is_instance_type(instance_type)
    {
        diags.attribute_error(
            path.attribute("instance_type"),
            "Invalid Instance Type",
            format!("{instance_type:?} is not an EC2 instance type such as \"t3.medium\"."),
        );
    }
    if let Some(blocks) = cluster.get("admin_cidr_blocks").as_list() {
        let blocks: Vec<&str> = blocks.iter().filter_map(Value::as_str).collect();
        let list = path.attribute("admin_cidr_blocks");
        for (i, text) in blocks.iter().enumerate() {
            let problem = cidr_problem(text).or_else(|| {
                text.ends_with("/0").then(|| {
                    format!("{text:?} would open SSH to the whole internet. Use the address ranges of your administrators (FSBP EC2.13).")
                })
            });
            if let Some(problem) = problem {
                diags.attribute_error(list.index(i as i64), "Invalid Admin CIDR Block", problem);
            }
        }
        if !blocks.iter().any(|b| b.ends_with("/0")) && covers_everything(&blocks) {
            diags.attribute_error(
                list,
                "Invalid Admin CIDR Block",
                "Together these blocks cover every address, which opens SSH to the whole internet. Use the address \
                 ranges of your administrators (FSBP EC2.13).",
            );
        }
    }
}

/// Whether `text` names an instance type: a family, a dot, a size (`t3.medium`, `m7i-flex.large`).
fn is_instance_type(text: &str) -> bool {
    text.split_once('.').is_some_and(|(family, size)| {
        let ok = |part: &str| {
            !part.is_empty() && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        ok(family) && ok(size) && family.starts_with(|c: char| c.is_ascii_lowercase())
    })
}

/// Why `text` is not a CIDR block AWS stores as written, if it is not. EC2 accepts a block with host bits
/// set (`10.0.0.1/8`) but keeps `10.0.0.0/8`, which would then differ from the configuration forever.
pub fn cidr_problem(text: &str) -> Option<String> {
    let Some((network, bits)) = parse_cidr(text) else {
        return Some(format!("{text:?} is not a CIDR block such as \"192.0.2.0/24\" or \"2001:db8::/32\"."));
    };
    let canonical = match network {
        std::net::IpAddr::V4(address) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            format!("{}/{bits}", std::net::Ipv4Addr::from(u32::from(address) & mask))
        }
        std::net::IpAddr::V6(address) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            format!("{}/{bits}", std::net::Ipv6Addr::from(u128::from(address) & mask))
        }
    };
    (canonical != text).then(|| format!("{text:?} has host bits set; the network is {canonical:?}, write that."))
}

fn parse_cidr(text: &str) -> Option<(std::net::IpAddr, u8)> {
    let (address, bits) = text.split_once('/')?;
    let bits: u8 = bits.parse().ok()?;
    let address: std::net::IpAddr = address.parse().ok()?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((address, bits))
}

/// Whether the blocks together cover every IPv4 or every IPv6 address (`0.0.0.0/1` and `128.0.0.0/1`).
pub fn covers_everything(blocks: &[&str]) -> bool {
    let ranges = |v4: bool| -> Vec<(u128, u128)> {
        blocks
            .iter()
            .filter_map(|b| parse_cidr(b))
            .filter(|(address, _)| address.is_ipv4() == v4)
            .map(|(address, bits)| {
                let (value, width) = match address {
                    std::net::IpAddr::V4(a) => (u128::from(u32::from(a)), 32u32),
                    std::net::IpAddr::V6(a) => (u128::from(a), 128u32),
                };
                let span = width - u32::from(bits);
                let size = if span >= 128 { u128::MAX } else { (1u128 << span) - 1 };
                let start = value & !size;
                (start, start.saturating_add(size))
            })
            .collect()
    };
    [(true, u128::from(u32::MAX)), (false, u128::MAX)].into_iter().any(|(v4, last)| {
        let mut ranges = ranges(v4);
        ranges.sort_unstable();
        let mut next = 0u128; // the first address not yet covered
        for (start, end) in ranges {
            if start > next {
                return false;
            }
            if end >= last {
                return true;
            }
            next = next.max(end + 1);
        }
        false
    })
}

fn validate_database(database: &Value, diags: &mut Diagnostics) {
    let path = AttributePath::root("database");
    if let Some(days) = database.get("backup_retention_days").as_f64()
        && !((1.0..=35.0).contains(&days) && days.fract() == 0.0)
    {
        diags.attribute_error(
            path.attribute("backup_retention_days"),
            "Invalid Backup Retention",
            format!("RDS keeps automated backups for 1 to 35 days; {days} is outside that (0 would turn backups off, FSBP RDS.11)."),
        );
    }
    if let Some(gib) = database.get("allocated_storage").as_f64()
        && !((20.0..=65536.0).contains(&gib) && gib.fract() == 0.0)
    {
        diags.attribute_error(
            path.attribute("allocated_storage"),
            "Invalid Storage Size",
            format!("Database storage must be a whole number of GiB from 20 to 65536, not {gib}."),
        );
    }
    validate_engine(database, diags);
    if let Some(password) = database.get("password_wo").as_str()
        && (!(8..=41).contains(&password.len()) || !password.chars().all(|c| c.is_ascii_alphanumeric()))
    {
        // The value itself never goes into a message.
        diags.attribute_error(
            path.attribute("password_wo"),
            "Invalid Password",
            "password_wo must be 8 to 41 letters and digits: the DataVault images paste it unescaped into a shell \
             script and a properties file, and MariaDB allows 41 characters.",
        );
    }
    validate_password_version(database.get("password_wo_version"), path.attribute("password_wo_version"), diags);
    if let Some(class) = database.get("instance_class").as_str()
        && !class.strip_prefix("db.").is_some_and(is_instance_type)
    {
        diags.attribute_error(
            path.attribute("instance_class"),
            "Invalid Instance Class",
            format!("{class:?} is not an RDS instance class such as \"db.t3.micro\"."),
        );
    }
}

/// The engine and version: ones the supported images work with and RDS supports without extra fees.
/// A password version is a whole number that survives the trip through JSON and `i64`.
fn validate_password_version(version: &Value, path: AttributePath, diags: &mut Diagnostics) {
    if let Some(version) = version.as_f64()
        && !(version >= 0.0 && version.fract() == 0.0 && version <= 9_007_199_254_740_991.0)
    {
        let name = path.to_string();
        diags.attribute_error(
            path,
            "Invalid Password Version",
            format!("{name} must be a whole number of 0 or more, not {version}."),
        );
    }
}

fn validate_engine(database: &Value, diags: &mut Diagnostics) {
    let path = AttributePath::root("database");
    let engine = database.get("engine");
    if let Some(name) = engine.as_str()
        && !matches!(name, "mariadb" | "mysql")
    {
        diags.attribute_error(
            path.attribute("engine"),
            "Invalid Engine",
            format!("{name:?} is not an engine the stack supports: use \"mariadb\" (the default) or \"mysql\"."),
        );
        return;
    }
    let Some(version) = database.get("engine_version").as_str() else { return };
    let engine =
        if engine.is_null() { super::schema::database_defaults::ENGINE } else { engine.as_str().unwrap_or("") };
    if engine.is_empty() {
        return;
    }
    if let Some(problem) = engine_version_problem(engine, version) {
        diags.attribute_error(path.attribute("engine_version"), "Engine Version Not Supported", problem);
    } else if engine == "mysql" {
        diags.push(
            crate::framework::Diagnostic::warning(
                "MySQL 5.7 Costs Extended Support Fees",
                "RDS standard support for MySQL 5.7 ended in 2024: RDS runs it only under RDS Extended Support, \
                 billed per vCPU-hour, until 2027. MariaDB (the default) works with the DataVault images without \
                 those fees.",
            )
            .at(path.attribute("engine_version")),
        );
    }
}

/// Why an engine version cannot serve the supported DataVault images, if it cannot.
pub fn engine_version_problem(engine: &str, version: &str) -> Option<String> {
    let numbers: Vec<u32> = version.split('.').map_while(|p| p.parse().ok()).collect();
    if numbers.len() < 2 || version.split('.').count() > 3 || numbers.len() != version.split('.').count() {
        return Some(format!("{version:?} is not a version such as \"10.11\" or \"10.11.9\"."));
    }
    let (major, minor) = (numbers[0], numbers[1]);
    match engine {
        "mysql" if major >= 8 => Some(format!(
            "MySQL {version} does not work with the supported DataVault images: MySQL 8 reserves the word GROUPS, \
             the name of one of DataVault's tables, and their MySQL driver (Connector/J 5.1.35) knows neither its \
             default collation nor its default authentication. Use engine = \"mariadb\" (the default)."
        )),
        "mysql" if (major, minor) < (5, 7) => Some(format!("RDS no longer offers MySQL {version}.")),
        "mariadb" if (major, minor) < (10, 11) => Some(format!(
            "RDS ended standard support for MariaDB {version}, and RDS has no extended support for MariaDB. Use \
             \"10.11\" (the default) or \"11.4\"."
        )),
        "mariadb" if (major, minor) >= (11, 8) => Some(format!(
            "MariaDB {version} on RDS requires TLS for every connection, which the supported images' MySQL \
             driver does not use. Use \"10.11\" (the default) or \"11.4\"."
        )),
        _ => None,
    }
}

/// Why a certificate ARN cannot be one a load balancer listener accepts, if it cannot: an ACM certificate
/// (`arn:<partition>:acm:<region>:<account>:certificate/<id>`) or an IAM server certificate
/// (`arn:<partition>:iam::<account>:server-certificate/<name>`).
pub fn certificate_arn_problem(arn: &str) -> Option<String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let account_ok = |a: &str| a.len() == 12 && a.chars().all(|c| c.is_ascii_digit());
    let ok = match parts[..] {
        ["arn", partition, "acm", region, account, resource] => {
            !partition.is_empty()
                && !region.is_empty()
                && account_ok(account)
                && resource.strip_prefix("certificate/").is_some_and(|id| !id.is_empty())
        }
        ["arn", partition, "iam", "", account, resource] => {
            !partition.is_empty()
                && account_ok(account)
                && resource.strip_prefix("server-certificate/").is_some_and(|name| !name.is_empty())
        }
        _ => false,
    };
    (!ok).then(|| {
        format!(
            "{arn:?} is not a certificate ARN such as \"arn:aws:acm:eu-west-2:123456789012:certificate/<id>\" (ACM) or \
             \"arn:aws:iam::123456789012:server-certificate/<name>\""
        )
    })
}

/// Why `arn` cannot be the ARN of a KMS key, if it cannot: `arn:<partition>:kms:<region>:<account>:key/<id>`.
/// Aliases are refused: an alias can be pointed at another key later, while the database, the file system
/// and the repositories keep the key they were created with.
pub fn kms_key_arn_problem(arn: &str) -> Option<String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = match parts[..] {
        ["arn", partition, "kms", region, account, resource] => {
            !partition.is_empty()
                && !region.is_empty()
                && account.len() == 12
                && account.chars().all(|c| c.is_ascii_digit())
                && resource.strip_prefix("key/").is_some_and(|id| !id.is_empty() && !id.contains('/'))
        }
        _ => false,
    };
    (!ok).then(|| {
        let alias = if arn.contains(":alias/") || arn.starts_with("alias/") {
            " An alias can later point at another key, while the database, the file system and the repositories \
             keep the key they were created with; give the ARN of the key itself (aws kms describe-key --key-id \
             <alias> shows it)."
        } else {
            ""
        };
        format!("{arn:?} is not a KMS key ARN such as \"arn:aws:kms:eu-west-2:123456789012:key/<key id>\".{alias}")
    })
}

fn validate_kms_key(key: &Value, diags: &mut Diagnostics) {
    if let Some(arn) = key.as_str()
        && let Some(problem) = kms_key_arn_problem(arn)
    {
        diags.attribute_error(AttributePath::root("kms_key_arn"), "Invalid KMS Key ARN", problem);
    }
}

fn validate_load_balancer(load_balancer: &Value, diags: &mut Diagnostics) {
    let path = AttributePath::root("load_balancer");
    if let Some(arn) = load_balancer.get("certificate_arn").as_str()
        && let Some(problem) = certificate_arn_problem(arn)
    {
        diags.attribute_error(
            path.attribute("certificate_arn"),
            "Invalid Certificate ARN",
            format!(
                "{problem}. The HTTPS listener needs the ARN of a certificate in ACM (or IAM) of the stack's region."
            ),
        );
    }
    validate_subnet_list(load_balancer.get("subnet_ids"), path.attribute("subnet_ids"), diags);
    let Some(blocks) = load_balancer.get("allowed_cidr_blocks").as_list() else { return };
    if blocks.is_empty() {
        diags.attribute_error(
            path.attribute("allowed_cidr_blocks"),
            "No One Allowed In",
            "An empty allowed_cidr_blocks lets nobody reach the load balancer. List the address ranges allowed in, \
             or remove load_balancer to keep the web app private.",
        );
    }
    for (i, block) in blocks.iter().enumerate() {
        let Some(text) = block.as_str() else { continue };
        let problem = if let Some(problem) = cidr_problem(text) {
            problem
        } else if text.contains(':') {
            format!("{text:?} is an IPv6 block, but the load balancer has IPv4 addresses only. Use IPv4 blocks.")
        } else {
            continue;
        };
        diags.attribute_error(
            path.attribute("allowed_cidr_blocks").index(i as i64),
            "Invalid Allowed CIDR Block",
            problem,
        );
    }
}

/// Names of variables the stack wires itself; user environment must not shadow them.
const WIRED_ENVIRONMENT: &[&str] = &[
    "MYSQL_HOST",
    "MYSQL_PORT",
    "MYSQL_USER",
    "MYSQL_DATABASE",
    "MYSQL_PASSWORD",
    "RABBITMQ_HOST",
    "RABBITMQ_PORT",
    "RABBITMQ_USER",
    "RABBITMQ_PASSWORD",
    "RABBITMQ_DEFAULT_USER",
    "RABBITMQ_DEFAULT_PASS",
    "AWS_S3_BUCKET",
    "AWS_REGION",
    "BROKER_HOST",
    "BROKER_PORT",
    "USER_DATA_DIR",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "JAVA_TOOL_OPTIONS",
    "RABBITMQ_NODENAME",
    "DATAVAULT_DATABASE_PASSWORD_VERSION",
];

/// Why a service must never run twice, if it must not (the supported images' design, see the wiring).
fn single_instance_reason(service: &str) -> Option<&'static str> {
    match service {
        "rabbitmq" => Some("RabbitMQ keeps its data in one shared directory; two nodes would corrupt it."),
        "broker" => Some(
            "The DataVault broker recreates the database schema whenever it starts; a second broker would wipe the first one's data.",
        ),
        "worker" => Some(
            "DataVault workers keep the deposits' encryption keys in one key store file on the shared folder; two workers would overwrite each other's keys and leave archives undecryptable.",
        ),
        _ => None,
    }
}

fn validate_services(services: &Value, diags: &mut Diagnostics) {
    for service in SERVICES {
        let settings = services.get(service);
        let path = AttributePath::root("services").attribute(service);
        if let Some(count) = settings.get("desired_count").as_f64()
            && !(count >= 0.0 && count.fract() == 0.0 && count <= MAX_TASKS_PER_SERVICE)
        {
            diags.attribute_error(
                path.attribute("desired_count"),
                "Invalid Task Count",
                format!("desired_count must be a whole number from 0 to {MAX_TASKS_PER_SERVICE} (the ECS tasks-per-service quota), not {count}."),
            );
        }
        if let Some(image) = settings.get("image").as_str()
            && (image.is_empty() || image.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            diags.attribute_error(
                path.attribute("image"),
                "Invalid Image",
                format!("{image:?} is not an image reference such as \"registry.example.org/datavault/web:1.0\"."),
            );
        }
        if let Some(why) = single_instance_reason(service)
            && settings.get("desired_count").as_f64().is_some_and(|c| c > 1.0)
        {
            diags.attribute_error(path.attribute("desired_count"), "One Task Only", format!("{why} Use 0 or 1."));
        }
        if let Some(cpu) = settings.get("cpu").as_f64()
            && !((128.0..=16384.0).contains(&cpu) && cpu.fract() == 0.0)
        {
            diags.attribute_error(
                path.attribute("cpu"),
                "Invalid CPU",
                format!("cpu is in units of 1/1024 vCPU, from 128 to 16384; not {cpu}."),
            );
        }
        if let Some(memory) = settings.get("memory").as_f64()
            && !((128.0..=122880.0).contains(&memory) && memory.fract() == 0.0)
        {
            diags.attribute_error(
                path.attribute("memory"),
                "Invalid Memory",
                format!("memory is in MiB, from 128 to 122880; not {memory}."),
            );
        }
        let Some(environment) = settings.get("environment").as_map() else { continue };
        for key in environment.keys() {
            let upper = key.to_ascii_uppercase();
            let problem = if WIRED_ENVIRONMENT.contains(&upper.as_str()) {
                Some(format!("{key} is set by the stack itself (it wires the services together); remove it."))
            } else if ["PASSWORD", "SECRET", "TOKEN", "PRIVATE_KEY"].iter().any(|w| upper.contains(w)) {
                Some(format!(
                    "{key} looks like a secret. Plain environment variables are visible to anyone who can read the task \
                     definition (FSBP ECS.8); store it in Secrets Manager instead."
                ))
            } else {
                None
            };
            if let Some(problem) = problem {
                diags.attribute_error(
                    path.attribute("environment").key(key),
                    "Environment Variable Not Allowed",
                    problem,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_names_must_fit_every_aws_naming_rule() {
        assert_eq!(name_problem("rdss-datavault"), None);
        assert!(name_problem("Bad_Name").is_some());
        assert!(name_problem("x").is_some());
        assert!(name_problem("1abc").is_some());
        assert!(name_problem("abc-").is_some());
        assert!(name_problem("a--b").is_some());
        assert!(name_problem(&"a".repeat(MAX_NAME_LENGTH + 1)).is_some());
    }

    #[test]
    fn names_aws_reserves_in_any_service_are_refused() {
        for reserved in ["default", "sg-vault", "internal-vault", "sthree-vault", "amzn-s3-demo-x"] {
            assert!(name_problem(reserved).is_some(), "{reserved} must be refused");
        }
        assert_eq!(name_problem("defaults"), None);
        for bad in ["192.168.1.10", "xn--vault", "vault-s3alias", "vault--ol-s3", "a..b", "vault.mrap"] {
            assert!(bucket_name_problem(bad).is_some(), "{bad} must be refused");
        }
        assert_eq!(bucket_name_problem("research.archive-2026"), None);
    }

    #[test]
    fn cidr_blocks_must_be_networks_and_must_not_cover_everything_together() {
        assert_eq!(cidr_problem("10.0.0.0/8"), None);
        assert_eq!(cidr_problem("2001:db8::/32"), None);
        assert!(cidr_problem("10.0.0.1/8").unwrap().contains("\"10.0.0.0/8\""));
        assert!(cidr_problem("10.0.0.0/33").is_some());
        assert!(cidr_problem("ten").is_some());
        assert!(covers_everything(&["0.0.0.0/1", "128.0.0.0/1"]));
        assert!(covers_everything(&["128.0.0.0/1", "0.0.0.0/2", "64.0.0.0/2"]));
        assert!(covers_everything(&["::/1", "8000::/1"]));
        assert!(!covers_everything(&["0.0.0.0/1", "128.0.0.0/2"]));
        assert!(!covers_everything(&["10.0.0.0/8", "::/1"]));
        assert!(covers_everything(&["0.0.0.0/0"]));
    }

    fn object(entries: &[(&str, Value)]) -> Value {
        Value::Map(entries.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
    }

    fn paths(config: &Value) -> Vec<String> {
        validate(config).0.iter().map(|d| d.path.as_ref().map(ToString::to_string).unwrap_or_default()).collect()
    }

    #[test]
    fn every_bad_input_is_refused_at_its_path() {
        let cases: Vec<(Value, &str)> = vec![
            (object(&[("name", Value::string("default"))]), "name"),
            (
                object(&[("name", Value::string("vault")), ("archive_bucket_name", Value::string("vault-state"))]),
                "archive_bucket_name",
            ),
            (object(&[("state_bucket_name", Value::string("sthree-state"))]), "state_bucket_name"),
            (object(&[("vpc_id", Value::string("vpc-xyz"))]), "vpc_id"),
            (object(&[("subnet_ids", Value::string_list(["subnet-0123abcd"]))]), "subnet_ids"),
            (object(&[("subnet_ids", Value::string_list(["subnet-0123abcd", "subnet-0123abcd"]))]), "subnet_ids[1]"),
            (object(&[("subnet_ids", Value::string_list(["subnet-0123abcd", "sn-1"]))]), "subnet_ids[1]"),
            (object(&[("cluster", object(&[("desired_capacity", Value::Number(3e9))]))]), "cluster.desired_capacity"),
            (object(&[("cluster", object(&[("instance_type", Value::string("large"))]))]), "cluster.instance_type"),
            (object(&[("cluster", object(&[("ami_id", Value::string("ubuntu"))]))]), "cluster.ami_id"),
            (
                object(&[(
                    "cluster",
                    object(&[("admin_cidr_blocks", Value::string_list(["0.0.0.0/1", "128.0.0.0/1"]))]),
                )]),
                "cluster.admin_cidr_blocks",
            ),
            (
                object(&[("cluster", object(&[("admin_cidr_blocks", Value::string_list(["10.1.2.3/8"]))]))]),
                "cluster.admin_cidr_blocks[0]",
            ),
            (
                object(&[("services", object(&[("web", object(&[("desired_count", Value::Number(1e10))]))]))]),
                "services.web.desired_count",
            ),
            (
                object(&[("services", object(&[("worker", object(&[("desired_count", Value::Number(2.0))]))]))]),
                "services.worker.desired_count",
            ),
            (
                object(&[("services", object(&[("broker", object(&[("desired_count", Value::Number(2.0))]))]))]),
                "services.broker.desired_count",
            ),
            (object(&[("database", object(&[("engine", Value::string("postgres"))]))]), "database.engine"),
            (
                object(&[(
                    "database",
                    object(&[("engine", Value::string("mysql")), ("engine_version", Value::string("8.0"))]),
                )]),
                "database.engine_version",
            ),
            (object(&[("database", object(&[("engine_version", Value::string("11.8"))]))]), "database.engine_version"),
            (object(&[("database", object(&[("engine_version", Value::string("10.6"))]))]), "database.engine_version"),
            (
                object(&[("database", object(&[("password_wo", Value::string("has spaces 123"))]))]),
                "database.password_wo",
            ),
            (object(&[("services", object(&[("web", object(&[("cpu", Value::Number(256.5))]))]))]), "services.web.cpu"),
            (
                object(&[("services", object(&[("web", object(&[("image", Value::string("bad image"))]))]))]),
                "services.web.image",
            ),
            (
                object(&[("database", object(&[("instance_class", Value::string("db.large"))]))]),
                "database.instance_class",
            ),
            (
                object(&[("database", object(&[("password_wo_version", Value::Number(-1.0))]))]),
                "database.password_wo_version",
            ),
            (object(&[("timeouts", object(&[("create", Value::string("3000000000000000h"))]))]), "timeouts.create"),
            (object(&[("timeouts", object(&[("delete", Value::string("25h"))]))]), "timeouts.delete"),
            (object(&[("tags", object(&[("", Value::string("x"))]))]), "tags[\"\"]"),
            (
                object(&[("load_balancer", object(&[("allowed_cidr_blocks", Value::string_list(["192.0.2.1/24"]))]))]),
                "load_balancer.allowed_cidr_blocks[0]",
            ),
        ];
        for (config, path) in cases {
            assert_eq!(paths(&config), vec![path.to_string()], "{config:?}");
        }
        let many: Vec<(&str, Value)> = Vec::new();
        let mut tags = object(&many);
        for i in 0..=MAX_TAGS {
            tags.set(&format!("t{i}"), Value::string("x"));
        }
        assert_eq!(paths(&object(&[("tags", tags)])), vec!["tags"]);
    }

    #[test]
    fn invalid_values_are_reported_at_their_attribute() {
        let config = Value::Map(
            [
                ("name".to_string(), Value::string("Bad_Name")),
                ("log_retention_days".to_string(), Value::Number(42.0)),
                ("tags".to_string(), Value::Map([("datavault:stack".to_string(), Value::string("x"))].into())),
            ]
            .into(),
        );
        let diags = validate(&config);
        let paths: Vec<String> = diags.0.iter().map(|d| d.path.as_ref().unwrap().to_string()).collect();
        assert_eq!(paths, vec!["name", "log_retention_days", "tags[\"datavault:stack\"]"]);
    }

    #[test]
    fn nested_settings_are_checked_at_their_paths() {
        let object =
            |entries: &[(&str, Value)]| Value::Map(entries.iter().map(|(k, v)| (k.to_string(), v.clone())).collect());
        let config = object(&[
            ("name", Value::string("vault")),
            ("cluster", object(&[("admin_cidr_blocks", Value::string_list(["10.0.0.0/8", "0.0.0.0/0", "nonsense"]))])),
            ("database", object(&[("backup_retention_days", Value::Number(0.0))])),
            (
                "services",
                object(&[("broker", object(&[("environment", object(&[("DB_PASSWORD", Value::string("x"))]))]))]),
            ),
            ("timeouts", object(&[("create", Value::string("soon"))])),
        ]);
        let diags = validate(&config);
        let paths: Vec<String> = diags.0.iter().map(|d| d.path.as_ref().unwrap().to_string()).collect();
        assert_eq!(
            paths,
            vec![
                "cluster.admin_cidr_blocks[1]",
                "cluster.admin_cidr_blocks[2]",
                "database.backup_retention_days",
                "services.broker.environment[\"DB_PASSWORD\"]",
                "timeouts.create",
            ]
        );
    }

    #[test]
    fn load_balancer_settings_are_checked_at_their_paths() {
        let object =
            |entries: &[(&str, Value)]| Value::Map(entries.iter().map(|(k, v)| (k.to_string(), v.clone())).collect());
        let config = object(&[
            ("name", Value::string("vault")),
            (
                "load_balancer",
                object(&[
                    ("certificate_arn", Value::string("arn:aws:s3:::not-a-certificate")),
                    ("allowed_cidr_blocks", Value::string_list(["192.0.2.0/24", "10.0.0.300/8", "2001:db8::/32"])),
                ]),
            ),
        ]);
        let diags = validate(&config);
        let paths: Vec<String> = diags.0.iter().map(|d| d.path.as_ref().unwrap().to_string()).collect();
        assert_eq!(
            paths,
            vec![
                "load_balancer.certificate_arn",
                "load_balancer.allowed_cidr_blocks[1]",
                "load_balancer.allowed_cidr_blocks[2]",
            ]
        );
        let empty = object(&[("load_balancer", object(&[("allowed_cidr_blocks", Value::List(vec![]))]))]);
        let diags = validate(&empty);
        assert_eq!(diags.0[0].path.as_ref().unwrap().to_string(), "load_balancer.allowed_cidr_blocks");
        // A load balancer with every setting left to its default is valid; so is none at all.
        assert!(!validate(&object(&[("load_balancer", object(&[]))])).has_errors());
        assert!(!validate(&object(&[("load_balancer", Value::Null)])).has_errors());
    }

    #[test]
    fn kms_keys_are_named_by_key_arns_not_aliases() {
        assert_eq!(
            kms_key_arn_problem("arn:aws:kms:eu-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"),
            None
        );
        assert!(
            kms_key_arn_problem("arn:aws:kms:eu-west-2:123456789012:alias/archive")
                .unwrap()
                .contains("alias can later")
        );
        assert!(kms_key_arn_problem("alias/archive").unwrap().contains("alias can later"));
        assert!(kms_key_arn_problem("1234abcd-12ab-34cd-56ef-1234567890ab").is_some());
        assert!(kms_key_arn_problem("arn:aws:kms:eu-west-2:1234:key/x").is_some());
        assert!(kms_key_arn_problem("arn:aws:kms::123456789012:key/x").is_some());
    }

    #[test]
    fn certificates_come_from_acm_or_iam() {
        assert_eq!(certificate_arn_problem("arn:aws:acm:eu-west-2:123456789012:certificate/1111-2222-3333"), None);
        assert_eq!(certificate_arn_problem("arn:aws-us-gov:acm:us-gov-west-1:123456789012:certificate/x"), None);
        assert_eq!(certificate_arn_problem("arn:aws:iam::123456789012:server-certificate/web/vault"), None);
        assert!(certificate_arn_problem("arn:aws:acm:eu-west-2:1234:certificate/x").is_some());
        assert!(certificate_arn_problem("arn:aws:acm:eu-west-2:123456789012:certificate/").is_some());
        assert!(certificate_arn_problem("arn:aws:acm::123456789012:certificate/x").is_some());
        assert!(certificate_arn_problem("arn:aws:iam::123456789012:role/web").is_some());
        assert!(certificate_arn_problem("my-certificate").is_some());
    }

    #[test]
    fn unknown_values_are_not_judged() {
        let config = Value::Map(
            [("name".to_string(), Value::Unknown), ("log_retention_days".to_string(), Value::Unknown)].into(),
        );
        assert!(!validate(&config).has_errors());
    }
}
