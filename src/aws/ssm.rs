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

/// Writes a claim: a private String parameter, tagged, recording that its writer is about to create a
/// resource that cannot be tagged in the call that creates it, so a crash between the create and the
/// tagging leaves proof of who made it. Overwrites an earlier claim of the same name. Idempotent.
pub async fn put_claim(
    client: &Client,
    name: &str,
    value: &str,
    description: &str,
    tags: &std::collections::BTreeMap<String, String>,
) -> AwsResult<()> {
    // Tags can only be given when a parameter is created, so a claim left by a crash is replaced whole.
    delete_claim(client, name).await?;
    let tags = super::try_tags_as(tags, |k, v| aws_sdk_ssm::types::Tag::builder().key(k).value(v).build())?;
    client
        .put_parameter()
        .name(name)
        .value(value)
        .description(description)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .set_tags(Some(tags))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("PutParameter", e))?;
    Ok(())
}

/// The value of a claim written by stack `stack` (the parameter carries its [`super::STACK_TAG`]); `None`
/// when there is none, or when the parameter is not that stack's: a claim proves ownership only if the
/// claimant can be trusted. Reads only.
pub async fn claim(client: &Client, name: &str, stack: &str) -> AwsResult<Option<String>> {
    let value = match client.get_parameter().name(name).send().await {
        Ok(out) => out.parameter().and_then(|p| p.value()).map(str::to_string),
        Err(err) => {
            let err = AwsError::from_sdk("GetParameter", err);
            return if err.is(&["ParameterNotFound"]) { Ok(None) } else { Err(err) };
        }
    };
    let tags = client
        .list_tags_for_resource()
        .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
        .resource_id(name)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("ListTagsForResource", e))?;
    let claimant = tags.tag_list().iter().find(|t| t.key() == super::STACK_TAG).map(|t| t.value());
    Ok(value.filter(|_| claimant == Some(stack)))
}

/// Deletes a claim; absent is success.
pub async fn delete_claim(client: &Client, name: &str) -> AwsResult<()> {
    match client.delete_parameter().name(name).send().await {
        Ok(_) => Ok(()),
        Err(err) => {
            let err = AwsError::from_sdk("DeleteParameter", err);
            if err.is(&["ParameterNotFound"]) { Ok(()) } else { Err(err) }
        }
    }
}
