output "archive_bucket_arn" {
  description = "ARN of the S3 bucket holding archived research data."
  value       = datavault_stack.main.archive_bucket_arn
}

output "state_bucket_arn" {
  description = "ARN of the S3 bucket for Terraform state (retained when the stack is destroyed)."
  value       = datavault_stack.main.state_bucket_arn
}

output "ecr_repository_urls" {
  description = "Where to push the web, broker and worker images."
  value       = datavault_stack.main.ecr_repository_urls
}

output "log_group_name" {
  description = "CloudWatch log group of the stack."
  value       = datavault_stack.main.log_group_name
}

output "web_url" {
  description = "Where users reach the web app: the load balancer's HTTPS address."
  value       = datavault_stack.main.web_url
}

output "load_balancer_dns_name" {
  description = "Point a CNAME (or alias record) of the web app's domain here."
  value       = datavault_stack.main.load_balancer.dns_name
}

output "drift" {
  description = "Differences from the managed settings found by the last refresh; empty after every apply."
  value       = datavault_stack.main.drift
}
