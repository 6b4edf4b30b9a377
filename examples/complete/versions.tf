terraform {
  # use_lockfile (S3-native state locking) needs Terraform 1.10 or later.
  required_version = ">= 1.10"

  required_providers {
    datavault = {
      source = "datavault/datavault"
    }
  }

  # State in S3, locked with a lock file next to it (no DynamoDB table). A backend block cannot use
  # variables: change these values here or pass them at init, e.g.
  #   terraform init -backend-config="bucket=my-state-bucket"
  # The bucket must exist before `terraform init`; examples/bootstrap shows how a stack creates the bucket
  # that then holds its own state.
  backend "s3" {
    bucket       = "rdss-datavault-state"
    key          = "datavault/terraform.tfstate"
    region       = "eu-west-2"
    profile      = "RdssDatavault"
    use_lockfile = true
    encrypt      = true
  }
}
