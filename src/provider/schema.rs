//! The `provider "datavault" { }` block, following hashicorp/aws's conventions so its users feel at home.

use crate::framework::{Attribute, Block, NestedBlock, Nesting, Schema, Type};

/// AWS services the provider calls, each with an `endpoints` attribute of the same name.
pub const ENDPOINT_SERVICES: &[(&str, &str)] = &[
    ("autoscaling", "Amazon EC2 Auto Scaling"),
    ("ec2", "Amazon EC2 (network, security groups, launch templates)"),
    ("ecr", "Amazon ECR (container image repositories)"),
    ("ecs", "Amazon ECS"),
    ("efs", "Amazon EFS"),
    ("elbv2", "Elastic Load Balancing v2"),
    ("iam", "AWS IAM"),
    ("kms", "AWS KMS (reads of the key given as `kms_key_arn`)"),
    ("logs", "Amazon CloudWatch Logs"),
    ("rds", "Amazon RDS"),
    ("s3", "Amazon S3 (archive and state buckets)"),
    ("secretsmanager", "AWS Secrets Manager"),
    ("servicediscovery", "AWS Cloud Map"),
    ("ssm", "AWS Systems Manager"),
    ("sts", "AWS STS (credential validation and role assumption)"),
];
/// The provider configuration schema.
pub fn provider_schema() -> Schema {
    let s = |name: &str, description: &str| Attribute::optional(name, Type::String, description);
    let attributes = vec![
        s("region", "AWS region, e.g. `eu-west-2`. Defaults to `AWS_REGION` / `AWS_DEFAULT_REGION` or the profile's region."),
        s("profile", "Named profile from the shared config and credentials files (`AWS_PROFILE`). Profiles with `role_arn` + `source_profile`, SSO and `credential_process` work as with the AWS CLI."),
        Attribute::optional("shared_config_files", Type::list_of_strings(), "Shared config files to read instead of `~/.aws/config`."),
        Attribute::optional("shared_credentials_files", Type::list_of_strings(), "Shared credentials files to read instead of `~/.aws/credentials`."),
        s("access_key", "Static access key id. Prefer a profile, environment variables or a role; values here end up in your configuration.").sensitive(),
        s("secret_key", "Static secret access key, used with `access_key`.").sensitive(),
        s("token", "Session token for temporary static credentials.").sensitive(),
        Attribute::optional("max_retries", Type::Number, "Maximum retries of a throttled or failed AWS request (default 10). Retries use the SDK's standard mode with exponential backoff and jitter."),
        Attribute::optional("retry_mode", Type::String, "How throttled and failed AWS requests are retried: `standard` (exponential backoff with jitter, the default) or `adaptive` (also slows down the client when AWS throttles). Also read from `AWS_RETRY_MODE`."),
        Attribute::optional("skip_credentials_validation", Type::Bool, "Skip the STS GetCallerIdentity check when the provider is configured."),
        Attribute::optional("s3_use_path_style", Type::Bool, "Address S3 buckets in the URL path instead of the host name (needed by some S3-compatible endpoints). Also read from `AWS_S3_USE_PATH_STYLE`."),
        Attribute::optional("default_tags", Type::map_of_strings(), "Tags added to every AWS resource the provider creates. Resource `tags` win on conflicts."),
    ];
    let assume_role = NestedBlock {
        name: "assume_role".into(),
        nesting: Nesting::Single,
        block: Block {
            attributes: vec![
                Attribute::required("role_arn", Type::String, "ARN of the role to assume."),
                s("session_name", "Session name recorded in CloudTrail."),
                s("external_id", "External id the role's trust policy requires."),
                s("duration", "Session duration, e.g. `1h` or `15m` (default 1h)."),
            ],
            description: "Assume an IAM role with the credentials found otherwise.".into(),
            ..Block::default()
        },
    };
    let web_identity = NestedBlock {
        name: "assume_role_with_web_identity".into(),
        nesting: Nesting::Single,
        block: Block {
            attributes: vec![
                Attribute::required("role_arn", Type::String, "ARN of the role to assume."),
                Attribute::required("web_identity_token_file", Type::String, "File holding the OIDC token (for Terraform Cloud dynamic credentials, the workload identity token file)."),
                s("session_name", "Session name recorded in CloudTrail."),
            ],
            description: "Assume an IAM role with an OIDC web identity token, as Terraform Cloud dynamic credentials and CI systems provide.".into(),
            ..Block::default()
        },
    };
    let endpoints = NestedBlock {
        name: "endpoints".into(),
        nesting: Nesting::Single,
        block: Block {
            attributes: ENDPOINT_SERVICES
                .iter()
                .map(|(service, what)| s(service, &format!("Custom endpoint URL for {what}. Also read from `AWS_ENDPOINT_URL_{}` and `AWS_ENDPOINT_URL`.", endpoint_env_suffix(service))))
                .collect(),
            description: "Custom service endpoints: VPC endpoints, FIPS endpoints or a local AWS emulator.".into(),
            ..Block::default()
        },
    };
    Schema {
        version: 0,
        block: Block {
            attributes,
            blocks: vec![assume_role, web_identity, endpoints],
            description: "The DataVault provider deploys a research-data archive on AWS. Credentials and region come from the provider block or, as with the AWS CLI, from the environment and shared files.".into(),
        },
    }
}

/// The suffix of the SDK's per-service endpoint variable (`AWS_ENDPOINT_URL_<SUFFIX>`).
pub fn endpoint_env_suffix(service: &str) -> &'static str {
    match service {
        "autoscaling" => "AUTO_SCALING",
        "ec2" => "EC2",
        "ecr" => "ECR",
        "ecs" => "ECS",
        "efs" => "EFS",
        "elbv2" => "ELASTIC_LOAD_BALANCING_V2",
        "iam" => "IAM",
        "kms" => "KMS",
        "logs" => "CLOUDWATCH_LOGS",
        "rds" => "RDS",
        "s3" => "S3",
        "secretsmanager" => "SECRETS_MANAGER",
        "servicediscovery" => "SERVICEDISCOVERY",
        "ssm" => "SSM",
        "sts" => "STS",
        _ => "",
    }
}
