# Quick start: a whole DataVault deployment as one resource.
#
# The provider takes its region, credentials and endpoints from the standard AWS environment, so these files
# run unchanged against real AWS or, as `make demo` does, against a local emulator (AWS_ENDPOINT_URL).

terraform {
  required_version = ">= 1.5"
  required_providers {
    datavault = {
      source = "datavault/datavault"
    }
  }
}

provider "datavault" {
  default_tags = {
    Application = "DataVault"
  }
}

resource "datavault_stack" "main" {
  name               = var.name
  image_tag          = var.image_tag
  log_retention_days = 365

  database = {
    # A quick start is meant to be torn down again; keep the default (true) for real data.
    deletion_protection = false
  }

  # The local emulator never starts containers, so waiting for healthy tasks would never end there.
  wait_for_steady_state = var.wait_for_steady_state

  tags = {
    Environment = "quickstart"
  }
}
