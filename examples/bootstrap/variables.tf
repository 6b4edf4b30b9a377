variable "region" {
  description = "AWS region of the stack and its state bucket."
  type        = string
  default     = "eu-west-2"
}

variable "aws_profile" {
  description = "Named profile from the shared AWS config files whose credentials (or role) the provider uses."
  type        = string
  default     = "RdssDatavault"
}

variable "name" {
  description = "Name of the stack. Its state bucket is `<name>-state`, a globally unique S3 bucket name."
  type        = string
  default     = "rdss-datavault"
}
