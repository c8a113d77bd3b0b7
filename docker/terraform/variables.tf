variable "name" {
  description = "Prefix for every resource."
  type        = string
  default     = "vidinfer"
}

variable "region" {
  description = "AWS region."
  type        = string
  default     = "us-east-1"
}

variable "image_uri" {
  description = "ECR URI of the vidinfer image (docker/Dockerfile)."
  type        = string
}

variable "model_data_url" {
  description = "s3:// URL of model.tar.gz (scripts/export_model.py --tar): model.pt at its root."
  type        = string
}

variable "instance_type" {
  description = "SageMaker instance type (a GPU type such as ml.g5.xlarge for production)."
  type        = string
  default     = "ml.g5.xlarge"
}

variable "max_instances" {
  description = "Upper bound of the endpoint's autoscaling."
  type        = number
  default     = 4
}

variable "max_concurrent_invocations_per_instance" {
  description = "Requests one instance processes at once (the container's VIDINFER_MAX_CONCURRENCY)."
  type        = number
  default     = 2
}

variable "backlog_per_instance_target" {
  description = "Target of ApproximateBacklogSizePerInstance for target tracking."
  type        = number
  default     = 5
}

variable "max_receive_count" {
  description = "Receives before a request message moves to the dead-letter queue."
  type        = number
  default     = 3
}
