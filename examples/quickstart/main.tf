# Quick start: one DataVault stack.
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
  log_retention_days = 365

  tags = {
    Environment = "quickstart"
  }
}
