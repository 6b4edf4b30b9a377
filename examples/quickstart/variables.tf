variable "name" {
  description = "Name of the stack; it prefixes every AWS resource the stack creates."
  type        = string
  default     = "quickstart"
}
