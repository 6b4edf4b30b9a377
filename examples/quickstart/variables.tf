variable "name" {
  description = "Name of the stack; it prefixes every AWS resource the stack creates."
  type        = string
  default     = "quickstart"
}

variable "image_tag" {
  description = "Tag of the web, broker and worker images pushed to the stack's ECR repositories (the DataVault commit they are built from)."
  type        = string
  default     = "729ca07"
}

variable "wait_for_steady_state" {
  description = "Wait for the services' tasks to run and pass their health checks (set true on real AWS)."
  type        = bool
  default     = false
}
