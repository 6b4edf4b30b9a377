provider "datavault" {
  region = "eu-west-2"

  # A named profile from the shared AWS config, resolved as the AWS CLI does. This one is the reference
  # deployment's role profile: the provider assumes RdssDatavault with the credentials of `source_profile`.
  #
  #   # ~/.aws/config
  #   [profile RdssDatavault]
  #   role_arn       = arn:aws:iam::400079346860:role/RdssDatavault
  #   source_profile = default
  profile = "RdssDatavault"

  # Tags on every AWS resource the provider creates; a stack's own `tags` win on conflicts.
  default_tags = {
    Application = "DataVault"
    ManagedBy   = "Terraform"
  }

  # Instead of `profile`: assume the role with credentials found anywhere else (environment variables,
  # SSO, an instance or task role).
  # assume_role {
  #   role_arn     = "arn:aws:iam::400079346860:role/RdssDatavault"
  #   session_name = "terraform"
  # }

  # Custom endpoints, e.g. VPC interface endpoints in a network without internet access.
  # endpoints {
  #   s3  = "https://bucket.vpce-0123456789abcdef0-abcd1234.s3.eu-west-2.vpce.amazonaws.com"
  #   sts = "https://vpce-0123456789abcdef0-efgh5678.sts.eu-west-2.vpce.amazonaws.com"
  # }
}
