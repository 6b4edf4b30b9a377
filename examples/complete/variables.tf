variable "region" {
  description = "AWS region to deploy the stack in."
  type        = string
  default     = "eu-west-2"
}

variable "aws_profile" {
  description = "Named profile from the shared AWS config files whose credentials (or role) the provider uses."
  type        = string
  default     = "RdssDatavault"
}

variable "name" {
  description = "Name of the stack: 3 to 24 lowercase letters, digits and hyphens. It prefixes every AWS resource of the stack, including the globally unique S3 bucket names."
  type        = string
  default     = "rdss-datavault"
}

variable "log_retention_days" {
  description = "Days CloudWatch Logs keeps the stack's logs (one of the periods CloudWatch Logs supports)."
  type        = number
  default     = 365
}

variable "archive_force_destroy" {
  description = "Let `terraform destroy` delete the archive bucket even while it holds archived data. Keep false outside experiments."
  type        = bool
  default     = false
}

variable "kms_key_arn" {
  description = "ARN of a customer-managed symmetric KMS key in var.region that encrypts the archive, the database, the file system, logs, secrets, images and volumes. Null keeps AWS managed keys. Cannot be changed after the stack is created."
  type        = string
  default     = null
}

variable "web_certificate_arn" {
  description = "ARN of the ACM certificate (in var.region) for the web app's domain, served by the load balancer on HTTPS."
  type        = string
}

variable "web_allowed_cidr_blocks" {
  description = "IPv4 address ranges allowed to reach the web app through the load balancer, e.g. the institution's networks."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "tags" {
  description = "Tags for every AWS resource of the stack, on top of the provider's default tags."
  type        = map(string)
  default = {
    Team = "research-data"
  }
}
