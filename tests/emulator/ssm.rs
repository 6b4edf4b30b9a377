//! The SSM module against the local emulator: the public ECS-optimized AMI parameter resolves to an AMI id.

use crate::common;

use terraform_provider_datavault::aws::ssm;

#[tokio::test]
async fn the_ecs_optimized_ami_is_read_from_the_public_parameter() {
    let Some(aws) = common::emulator().await else { return };
    let ami = ssm::ecs_optimized_ami(&aws.ssm).await.unwrap();
    assert!(ami.starts_with("ami-"), "not an AMI id: {ami}");
    assert_eq!(ssm::ecs_optimized_ami(&aws.ssm).await.unwrap(), ami, "reading is stable");
}
