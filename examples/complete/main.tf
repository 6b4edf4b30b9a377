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

  tags = var.tags
}
