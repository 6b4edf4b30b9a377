provider "datavault" {
  region = var.region

  # The role profile of the reference deployment, from ~/.aws/config:
  #
  #   [profile RdssDatavault]
  #   role_arn       = arn:aws:iam::400079346860:role/RdssDatavault
  #   source_profile = default
  #
  # The provider assumes the role with the credentials of `source_profile`, as the AWS CLI does.
  profile = var.aws_profile

  default_tags = {
    Application = "DataVault"
    ManagedBy   = "Terraform"
  }
}

resource "datavault_stack" "main" {
  name = var.name

  archive_bucket_name   = "${var.name}-archive"
  archive_force_destroy = var.archive_force_destroy
  state_bucket_name     = "${var.name}-state"
  log_retention_days    = var.log_retention_days

  # A customer-managed KMS key of var.region for all data at rest (null: AWS managed keys). It is fixed when
  # the stack is created; see the security guide for what its key policy must allow.
  kms_key_arn = var.kms_key_arn

  # The public entry point: HTTPS with an ACM certificate of the stack's region (HTTP only redirects),
  # reachable from the given address ranges. Without this block the web app stays private to the VPC.
  load_balancer = {
    certificate_arn     = var.web_certificate_arn
    allowed_cidr_blocks = var.web_allowed_cidr_blocks
  }

  tags = var.tags
}
