//! AWS Systems Manager Parameter Store: the public parameter naming the current ECS-optimized AMI, so the
//! cluster's launch template follows AWS's patched image unless the user pins `ami_id`.

use aws_sdk_ssm::Client;

use super::{AwsError, AwsResult};

/// The public parameter AWS keeps pointing at the recommended ECS-optimized Amazon Linux 2023 AMI.
pub const ECS_OPTIMIZED_AMI_PARAMETER: &str = "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id";

/// The value of a parameter, or a clear error naming it when it is absent or empty in this region.
async fn parameter_value(client: &Client, name: &str, hint: &str) -> AwsResult<String> {
    let out = match client.get_parameter().name(name).send().await {
        Ok(out) => out,
        Err(err) => {
            let err = AwsError::from_sdk("GetParameter", err);
            return Err(if err.is(&["ParameterNotFound"]) {
                AwsError { message: format!("parameter {name} does not exist in this region; {hint}"), ..err }
            } else {
                err
            });
        }
    };
    out.parameter()
        .and_then(|p| p.value())
        .filter(|v| !v.trim().is_empty())
        .map(|v| v.trim().to_string())
        .ok_or_else(|| AwsError::other("GetParameter", format!("parameter {name} has no value; {hint}")))
}

/// The ID of the current ECS-optimized AMI in the client's region. Reads only.
pub async fn ecs_optimized_ami(client: &Client) -> AwsResult<String> {
    parameter_value(client, ECS_OPTIMIZED_AMI_PARAMETER, "set cluster.ami_id to choose an AMI explicitly").await
}
