# The SageMaker asynchronous endpoint (bring your own container: `docker run IMAGE serve`).

data "aws_iam_policy_document" "sagemaker_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["sagemaker.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "sagemaker" {
  name               = "${var.name}-sagemaker"
  assume_role_policy = data.aws_iam_policy_document.sagemaker_assume.json
}

data "aws_iam_policy_document" "sagemaker" {
  statement {
    sid       = "ModelAndInputs"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.data.arn}/input/*", "${aws_s3_bucket.data.arn}/model/*"]
  }
  statement {
    sid       = "Results"
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload"]
    resources = ["${aws_s3_bucket.data.arn}/output/*", "${aws_s3_bucket.data.arn}/failure/*"]
  }
  statement {
    sid       = "Notify"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.success.arn, aws_sns_topic.error.arn]
  }
  statement {
    sid       = "PullImage"
    actions   = ["ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
    resources = ["*"]
  }
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "cloudwatch:PutMetricData"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "sagemaker" {
  name   = "${var.name}-sagemaker"
  role   = aws_iam_role.sagemaker.id
  policy = data.aws_iam_policy_document.sagemaker.json
}

resource "aws_sagemaker_model" "vidinfer" {
  name               = var.name
  execution_role_arn = aws_iam_role.sagemaker.arn
  primary_container {
    image          = var.image_uri
    model_data_url = var.model_data_url
    environment = {
      VIDINFER_MAX_CONCURRENCY = tostring(var.max_concurrent_invocations_per_instance)
      VIDINFER_FRAME_INTERVAL  = "30"
      VIDINFER_LOG_FORMAT      = "json"
    }
  }
}

resource "aws_sagemaker_endpoint_configuration" "vidinfer" {
  name = var.name
  production_variants {
    variant_name           = "AllTraffic"
    model_name             = aws_sagemaker_model.vidinfer.name
    instance_type          = var.instance_type
    initial_instance_count = 1
  }
  async_inference_config {
    output_config {
      s3_output_path  = local.output_prefix
      s3_failure_path = local.failure_prefix
      notification_config {
        success_topic = aws_sns_topic.success.arn
        error_topic   = aws_sns_topic.error.arn
      }
    }
    client_config {
      max_concurrent_invocations_per_instance = var.max_concurrent_invocations_per_instance
    }
  }
}

resource "aws_sagemaker_endpoint" "vidinfer" {
  name                 = var.name
  endpoint_config_name = aws_sagemaker_endpoint_configuration.vidinfer.name
}

# ------------------------------------------------------------------------ autoscaling
# Target tracking on the backlog per instance scales between 1 and max; it cannot wake
# an endpoint at zero instances (there is no "per instance" then). The step policy on
# HasBacklogWithoutCapacity does exactly that: any backlog with no capacity adds one.

resource "aws_appautoscaling_target" "endpoint" {
  service_namespace  = "sagemaker"
  resource_id        = "endpoint/${aws_sagemaker_endpoint.vidinfer.name}/variant/AllTraffic"
  scalable_dimension = "sagemaker:variant:DesiredInstanceCount"
  min_capacity       = 0
  max_capacity       = var.max_instances
}

resource "aws_appautoscaling_policy" "backlog" {
  name               = "${var.name}-backlog-per-instance"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.endpoint.service_namespace
  resource_id        = aws_appautoscaling_target.endpoint.resource_id
  scalable_dimension = aws_appautoscaling_target.endpoint.scalable_dimension
  target_tracking_scaling_policy_configuration {
    target_value       = var.backlog_per_instance_target
    scale_in_cooldown  = 600
    scale_out_cooldown = 120
    customized_metric_specification {
      metric_name = "ApproximateBacklogSizePerInstance"
      namespace   = "AWS/SageMaker"
      statistic   = "Average"
      dimensions {
        name  = "EndpointName"
        value = aws_sagemaker_endpoint.vidinfer.name
      }
    }
  }
}

resource "aws_appautoscaling_policy" "wake_from_zero" {
  name               = "${var.name}-has-backlog-without-capacity"
  policy_type        = "StepScaling"
  service_namespace  = aws_appautoscaling_target.endpoint.service_namespace
  resource_id        = aws_appautoscaling_target.endpoint.resource_id
  scalable_dimension = aws_appautoscaling_target.endpoint.scalable_dimension
  step_scaling_policy_configuration {
    adjustment_type         = "ChangeInCapacity"
    cooldown                = 300
    metric_aggregation_type = "Average"
    step_adjustment {
      metric_interval_lower_bound = 0
      scaling_adjustment          = 1
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "has_backlog_without_capacity" {
  alarm_name          = "${var.name}-has-backlog-without-capacity"
  namespace           = "AWS/SageMaker"
  metric_name         = "HasBacklogWithoutCapacity"
  dimensions          = { EndpointName = aws_sagemaker_endpoint.vidinfer.name }
  statistic           = "Average"
  period              = 60
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "missing"
  alarm_actions       = [aws_appautoscaling_policy.wake_from_zero.arn]
}

output "endpoint_name" {
  value = aws_sagemaker_endpoint.vidinfer.name
}

output "queue_url" {
  value = aws_sqs_queue.jobs.url
}

output "bucket" {
  value = aws_s3_bucket.data.bucket
}

output "success_topic" {
  value = aws_sns_topic.success.arn
}

output "error_topic" {
  value = aws_sns_topic.error.arn
}

output "worker_role_arn" {
  value = aws_iam_role.worker.arn
}
