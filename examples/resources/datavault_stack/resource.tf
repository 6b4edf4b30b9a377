resource "datavault_stack" "main" {
  # Names every AWS resource of the stack: rdss-datavault-archive, /datavault/rdss-datavault, ...
  name = "rdss-datavault"

  # Optional: deploy into a given VPC (default: the region's default VPC and its subnets).
  # vpc_id     = "vpc-0123456789abcdef0"
  # subnet_ids = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]

  # The tag of the web, broker and worker images pushed to the stack's ECR repositories (default: 729ca07,
  # the commit of JiscRDSS/datavault, branch aws_fixes, the images are built from).
  image_tag = "729ca07"

  cluster = {
    instance_type    = "t3.medium"
    min_size         = 2
    max_size         = 4
    desired_capacity = 3 # four tasks and room to roll one; a t3.medium holds two (one network interface each)
  }

  services = {
    # Java needs room: a gigabyte each by default.
    web = { memory = 1536 }
  }

  database = {
    engine              = "mariadb" # what the DataVault images work with (MySQL 8 does not)
    engine_version      = "10.11"
    instance_class      = "db.t3.small"
    allocated_storage   = 50
    deletion_protection = true
  }

  # Where archived research data is kept. Destroy refuses to delete the bucket while it holds data
  # unless archive_force_destroy is true.
  archive_bucket_name   = "rdss-datavault-archive"
  archive_force_destroy = false

  # A bucket for Terraform state; destroy always retains it.
  state_bucket_name = "rdss-datavault-state"

  # Two years; one of the periods CloudWatch Logs supports (default 365).
  log_retention_days = 731

  timeouts = {
    create = "60m"
    delete = "60m"
  }

  tags = {
    Team        = "research-data"
    Environment = "production"
  }
}
