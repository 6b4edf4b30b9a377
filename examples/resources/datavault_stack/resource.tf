resource "datavault_stack" "main" {
  # Names every AWS resource of the stack: rdss-datavault-archive, /datavault/rdss-datavault, ...
  name = "rdss-datavault"

  # Where archived research data is kept. Destroy refuses to delete the bucket while it holds data
  # unless archive_force_destroy is true.
  archive_bucket_name   = "rdss-datavault-archive"
  archive_force_destroy = false

  # A bucket for Terraform state; destroy always retains it.
  state_bucket_name = "rdss-datavault-state"

  # Two years; one of the periods CloudWatch Logs supports (default 365).
  log_retention_days = 731

  tags = {
    Team        = "research-data"
    Environment = "production"
  }
}
