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
