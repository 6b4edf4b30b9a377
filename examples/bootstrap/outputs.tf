output "state_bucket_name" {
  description = "The bucket to put in backend.tf."
  value       = datavault_stack.main.state_bucket_name
}

output "state_bucket_arn" {
  description = "ARN of the state bucket."
  value       = datavault_stack.main.state_bucket_arn
}
