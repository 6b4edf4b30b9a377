output "archive_bucket_arn" {
  description = "Where archived research data is kept."
  value       = datavault_stack.main.archive_bucket_arn
}

output "state_bucket_arn" {
  description = "Bucket for Terraform state (retained on destroy)."
  value       = datavault_stack.main.state_bucket_arn
}

output "ecr_repository_urls" {
  description = "Push the web, broker and worker images here."
  value       = datavault_stack.main.ecr_repository_urls
}

output "log_group_name" {
  description = "CloudWatch log group of the stack."
  value       = datavault_stack.main.log_group_name
}

output "cluster_arn" {
  description = "The ECS cluster running the four services."
  value       = datavault_stack.main.cluster_arn
}

output "service_discovery_names" {
  description = "Private DNS names the services reach each other by."
  value       = datavault_stack.main.service_discovery_names
}

output "database_endpoint" {
  description = "Address of the database (MariaDB, private)."
  value       = datavault_stack.main.database_endpoint
}

output "database_secret_arn" {
  description = "Secrets Manager secret with the database password (managed by RDS)."
  value       = datavault_stack.main.database_secret_arn
}

output "web_url" {
  description = "Where the web app answers inside the VPC."
  value       = datavault_stack.main.web_url
}
