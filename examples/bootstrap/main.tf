# Step 1 of README.md: applied with local state (there is no backend block yet).
# Step 2 adds backend.tf (from backend.tf.example) and moves the state into the stack's own state bucket.
terraform {
  required_version = ">= 1.10"

  required_providers {
    datavault = {
      source = "datavault/datavault"
    }
  }
}

provider "datavault" {
  region  = var.region
  profile = var.aws_profile
}

resource "datavault_stack" "main" {
  name = var.name

  # The bucket that will hold this configuration's state. Destroy never deletes it.
  state_bucket_name = "${var.name}-state"
}
