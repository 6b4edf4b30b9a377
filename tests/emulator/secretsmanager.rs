//! The Secrets Manager module against the local emulator: a generated secret is created once, adopted
//! afterwards without its value ever changing, scheduled for deletion with a recovery window, and restored
//! by the next ensure; its resource policy is put and restored.

use crate::common;

use std::collections::BTreeMap;

use aws_sdk_secretsmanager::Client;
use terraform_provider_datavault::aws::STACK_TAG;
use terraform_provider_datavault::aws::iam::same_policy;
use terraform_provider_datavault::aws::secretsmanager::{self, SecretInfo};

/// The secret's current value (compared, never printed).
async fn value(client: &Client, name: &str) -> String {
    let out = client.get_secret_value().secret_id(name).send().await.unwrap();
    out.secret_string().unwrap().to_string()
}

fn tags() -> BTreeMap<String, String> {
    [(STACK_TAG.to_string(), "test".to_string())].into()
}

#[tokio::test]
async fn generated_secret_is_created_once_and_never_overwritten() {
    let Some(aws) = common::emulator().await else { return };
    let client = &aws.secrets;
    let name = common::unique("dv-mq-password");
    assert_eq!(secretsmanager::describe_secret(client, &name).await.unwrap(), None);

    let arn =
        secretsmanager::ensure_generated_secret(client, &name, "RabbitMQ password", None, &tags(), None).await.unwrap();
    assert!(arn.contains(&format!(":secret:{name}")), "{arn}");
    let info = secretsmanager::describe_secret(client, &name).await.unwrap();
    assert_eq!(info, Some(SecretInfo { arn: arn.clone(), scheduled_for_deletion: false, tags: tags(), kms_key: None }));
    let password = value(client, &name).await;
    assert_eq!(password.len(), 32);
    assert!(password.chars().all(|c| c.is_ascii_alphanumeric()), "password must be safe in URLs");
    let seen = secretsmanager::secret_tags(client, &name).await.unwrap().unwrap();
    assert_eq!(seen.get(STACK_TAG).map(String::as_str), Some("test"));

    let again =
        secretsmanager::ensure_generated_secret(client, &name, "RabbitMQ password", None, &tags(), None).await.unwrap();
    assert_eq!(again, arn);
    assert!(value(client, &name).await == password, "second ensure must keep the value");

    // A changed description is converged without touching the value.
    secretsmanager::ensure_generated_secret(client, &name, "RabbitMQ admin password", None, &tags(), None)
        .await
        .unwrap();
    let described = client.describe_secret().secret_id(&name).send().await.unwrap();
    assert_eq!(described.description(), Some("RabbitMQ admin password"));
    assert!(value(client, &name).await == password, "description update must keep the value");

    force_delete(client, &name).await;
}

#[tokio::test]
async fn the_resource_policy_is_put_once_and_restored_when_changed() {
    let Some(aws) = common::emulator().await else { return };
    let client = &aws.secrets;
    let name = common::unique("dv-policy");
    let roles = ["arn:aws:iam::123456789012:role/dv-web-task".to_string()];
    let policy = secretsmanager::secret_policy("123456789012", &roles);
    secretsmanager::ensure_generated_secret(client, &name, "RabbitMQ password", None, &tags(), Some(&policy))
        .await
        .unwrap();
    let found = secretsmanager::resource_policy(client, &name).await.unwrap().expect("a resource policy");
    assert!(same_policy(&found, &policy), "{found}");

    // Someone opens it up by hand: the next ensure puts the stack's policy back; the value stays.
    let password = value(client, &name).await;
    let open = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#;
    client.put_resource_policy().secret_id(&name).resource_policy(open).send().await.unwrap();
    secretsmanager::ensure_generated_secret(client, &name, "RabbitMQ password", None, &tags(), Some(&policy))
        .await
        .unwrap();
    let found = secretsmanager::resource_policy(client, &name).await.unwrap().expect("a resource policy");
    assert!(same_policy(&found, &policy), "the stack's policy was not restored: {found}");
    assert!(value(client, &name).await == password, "converging the policy must keep the value");

    // Without a policy to give (the account unknown), an existing one is left as it is.
    secretsmanager::ensure_generated_secret(client, &name, "RabbitMQ password", None, &tags(), None).await.unwrap();
    assert!(secretsmanager::resource_policy(client, &name).await.unwrap().is_some());
    force_delete(client, &name).await;
}

#[tokio::test]
async fn a_deleted_secret_is_scheduled_then_restored_with_its_value() {
    let Some(aws) = common::emulator().await else { return };
    let client = &aws.secrets;
    let name = common::unique("dv-restore");
    let arn =
        secretsmanager::ensure_generated_secret(client, &name, "RabbitMQ password", None, &tags(), None).await.unwrap();
    let password = value(client, &name).await;

    secretsmanager::delete_secret(client, &name, 7).await.unwrap();
    let info = secretsmanager::describe_secret(client, &name).await.unwrap().expect("kept during recovery window");
    assert!(info.scheduled_for_deletion);
    secretsmanager::delete_secret(client, &name, 7).await.unwrap();

    let restored =
        secretsmanager::ensure_generated_secret(client, &name, "RabbitMQ password", None, &tags(), None).await.unwrap();
    assert_eq!(restored, arn);
    assert_eq!(
        secretsmanager::describe_secret(client, &name).await.unwrap(),
        Some(SecretInfo { arn, scheduled_for_deletion: false, tags: tags(), kms_key: None })
    );
    assert!(value(client, &name).await == password, "restore keeps the old value");

    force_delete(client, &name).await;
    secretsmanager::delete_secret(client, &name, 7).await.unwrap();
    assert_eq!(secretsmanager::describe_secret(client, &name).await.unwrap(), None);
}

#[tokio::test]
async fn a_secret_created_out_of_band_is_adopted_with_its_value() {
    let Some(aws) = common::emulator().await else { return };
    let client = &aws.secrets;
    let name = common::unique("dv-adopt");
    let created = client.create_secret().name(&name).secret_string("chosen-by-an-operator").send().await.unwrap();

    let arn =
        secretsmanager::ensure_generated_secret(client, &name, "RabbitMQ password", None, &tags(), None).await.unwrap();
    assert_eq!(Some(arn.as_str()), created.arn());
    assert!(value(client, &name).await == "chosen-by-an-operator", "an existing value is never replaced");
    assert!(secretsmanager::secret_tags(client, &name).await.unwrap().unwrap().contains_key(STACK_TAG));

    force_delete(client, &name).await;
}

/// Test clean-up: removes the secret at once (the module itself always keeps a recovery window).
async fn force_delete(client: &Client, name: &str) {
    client.delete_secret().secret_id(name).force_delete_without_recovery(true).send().await.unwrap();
}
