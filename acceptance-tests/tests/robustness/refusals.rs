//! Refusals decide before they act, and say so: a destroy or replacement that something forbids deletes
//! nothing at all (counted at the fault proxy), and inputs AWS would reject are refused at plan with their
//! attribute, before any AWS write; credentials AWS rejects are one diagnostic, and nothing is written.

use datavault_acceptance_tests::emulator::describe;
use datavault_acceptance_tests::runner::announce;
use regex::Regex;

use crate::proxy::writes;
use crate::support::{Ctx, OkOrPanic, Shape, Tf, setup, tainted};

const NAME: &str = "rb-refuse";

/// A stack whose database keeps deletion protection (the default) and takes no final snapshot.
fn protected_config(name: &str, protected: bool) -> String {
    format!(
        "terraform {{\n  required_providers {{\n    datavault = {{ source = \"datavault/datavault\" }}\n  }}\n}}\n\n\
         provider \"datavault\" {{}}\n\n\
         resource \"datavault_stack\" \"main\" {{\n  name                  = \"{name}\"\n  wait_for_steady_state = false\n  \
         database              = {{ deletion_protection = {protected}, skip_final_snapshot = true }}\n}}\n"
    )
}

/// Runs `args` with the proxy counting, and returns the output and the writes it made.
fn counted(ctx: &Ctx, tf: &Tf, args: &[&str]) -> (datavault_acceptance_tests::CommandOutput, Vec<String>) {
    ctx.proxy.clear();
    let out = tf.run(args);
    (out, writes(&ctx.proxy.records()))
}

#[test]
fn a_tainted_stack_with_deletion_protection_is_not_replaced_and_untaint_keeps_it() {
    let Some(ctx) = setup("refusals-tainted") else { return };
    let tf = ctx.workdir("work", &protected_config(NAME, true));
    tf.apply().ok_or_panic();
    // Tainted as a failed create would leave it (the partial tests cover that path); the database exists
    // and keeps its deletion protection.
    tf.run(&["taint", "-no-color", crate::support::ADDR]).ok_or_panic();
    let state = tf.state().unwrap_or_else(|e| panic!("{e}"));
    assert!(tainted(&state), "terraform taint did not taint the stack");
    let before = ctx.block_on(Shape::of(&ctx.emulator, NAME)).unwrap_or_else(|e| panic!("{e}"));

    let (out, wrote) = counted(&ctx, &tf, &["apply", "-auto-approve", "-input=false", "-no-color"]);
    out.expect_failure(&Regex::new(r"(?s)Database Deletion Protection Is On.*terraform untaint").expect("regex"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(wrote.is_empty(), "the refused replacement wrote to AWS: {wrote:?}\n{out}");
    let after = ctx.block_on(Shape::of(&ctx.emulator, NAME)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(after, before, "the refused replacement changed the stack");
    let state = tf.state().unwrap_or_else(|e| panic!("{e}"));
    assert!(tainted(&state), "the refused replacement should leave the stack as it was (tainted)");

    // The way out the refusal names: untaint, and the stack is planned in place again.
    tf.run(&["untaint", "-no-color", crate::support::ADDR]).ok_or_panic();
    tf.expect_empty_plans().unwrap_or_else(|e| panic!("{e}"));
    announce(&format!(
        "robustness/refusals: tainted + deletion protection: replacement refused with 0 writes ({}), untaint keeps it",
        before.summary()
    ));

    // Cleaning up takes the documented two steps.
    std::fs::write(tf.dir().join("main.tf"), protected_config(NAME, false)).expect("writing main.tf");
    tf.apply().ok_or_panic();
    tf.destroy().ok_or_panic();
    ctx.finish();
}

#[test]
fn a_destroy_refused_by_archived_data_deletes_nothing() {
    let Some(ctx) = setup("refusals-archive") else { return };
    let tf = ctx.workdir("work", &protected_config(NAME, false));
    tf.apply().ok_or_panic();
    // A destroy planned while the archive was still empty, applied later, as a saved plan would be.
    tf.run(&["plan", "-destroy", "-out=destroy.tfplan", "-input=false", "-no-color"]).ok_or_panic();
    ctx.block_on(ctx.emulator.put_object_past_tls_policy(&format!("{NAME}-archive"), "deposit/1", b"research data"))
        .unwrap_or_else(|e| panic!("{e}"));
    let before = ctx.block_on(Shape::of(&ctx.emulator, NAME)).unwrap_or_else(|e| panic!("{e}"));

    // The plan refuses...
    let (out, wrote) = counted(&ctx, &tf, &["destroy", "-auto-approve", "-input=false", "-no-color"]);
    out.expect_failure(&Regex::new("Archive Bucket Holds Data").expect("regex")).unwrap_or_else(|e| panic!("{e}"));
    assert!(wrote.is_empty(), "the refused destroy wrote to AWS: {wrote:?}");
    // ...and so does the delete itself, when a saved plan skips the plan's check.
    let (out, wrote) = counted(&ctx, &tf, &["apply", "-input=false", "-no-color", "destroy.tfplan"]);
    out.expect_failure(&Regex::new(r"(?s)Archive Bucket Holds Data.*Nothing was deleted").expect("regex"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(wrote.is_empty(), "the refused destroy wrote to AWS: {wrote:?}");
    let after = ctx.block_on(Shape::of(&ctx.emulator, NAME)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(after, before, "the refused destroys changed the stack");
    std::fs::write(
        tf.dir().join("main.tf"),
        protected_config(NAME, false).replace("database ", "archive_force_destroy = true\n  database "),
    )
    .expect("writing main.tf");
    tf.apply().ok_or_panic();
    tf.destroy().ok_or_panic();
    ctx.finish();
}

#[test]
fn a_replacement_onto_a_bucket_name_another_account_owns_is_refused_before_anything_is_deleted() {
    let Some(ctx) = setup("refusals-replace-taken") else { return };
    let tf = ctx.workdir("work", &protected_config(NAME, false));
    tf.apply().ok_or_panic();
    let before = ctx.block_on(Shape::of(&ctx.emulator, NAME)).unwrap_or_else(|e| panic!("{e}"));

    // A new archive bucket name replaces the stack; the name belongs to another account (S3 answers 403).
    let taken = "rb-refuse-theirs";
    let config = protected_config(NAME, false)
        .replace("  database ", &format!("  archive_bucket_name   = \"{taken}\"\n  database "));
    std::fs::write(tf.dir().join("main.tf"), config).expect("writing main.tf");
    ctx.proxy.configure(head_bucket_answer(taken, 403, "Forbidden", None));
    let (out, wrote) = counted(&ctx, &tf, &["apply", "-auto-approve", "-input=false", "-no-color"]);
    ctx.proxy.reset();
    out.expect_failure(&Regex::new(r"(?s)Bucket Name Not Available.*rb-refuse-theirs is taken").expect("regex"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(wrote.is_empty(), "the refused replacement wrote to AWS: {wrote:?}\n{out}");
    let after = ctx.block_on(Shape::of(&ctx.emulator, NAME)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(after, before, "the refused replacement changed the stack");
    announce("robustness/refusals: replacement onto another account's bucket name refused at plan with 0 writes");

    std::fs::write(tf.dir().join("main.tf"), protected_config(NAME, false)).expect("writing main.tf");
    tf.expect_empty_plans().unwrap_or_else(|e| panic!("{e}"));
    tf.destroy().ok_or_panic();
    ctx.finish();
}

#[test]
fn credentials_aws_rejects_fail_plan_and_destroy_with_one_diagnostic_and_no_writes() {
    let Some(ctx) = setup("refusals-credentials") else { return };
    let tf = ctx.workdir("work", &protected_config(NAME, false));
    tf.apply().ok_or_panic();
    let before = ctx.block_on(Shape::of(&ctx.emulator, NAME)).unwrap_or_else(|e| panic!("{e}"));

    // Keys AWS does not know (revoked, or expired session credentials): every request, STS's included, is
    // refused as real AWS refuses them. What the user sees is the provider's credential check, not one
    // error per part.
    ctx.proxy.configure(serde_json::json!({
        "rules": [{
            "action": "*",
            "status": 403,
            "code": "InvalidClientTokenId",
            "message": "The security token included in the request is invalid.",
        }]
    }));
    let expected =
        Regex::new(r"(?s)Invalid AWS Credentials.*InvalidClientTokenId.*skip_credentials_validation").expect("regex");
    let (plan, wrote) = counted(&ctx, &tf, &["plan", "-input=false", "-no-color"]);
    plan.expect_failure(&expected).unwrap_or_else(|e| panic!("{e}"));
    assert!(wrote.is_empty(), "the plan wrote to AWS: {wrote:?}");
    let parts_named = plan.combined().matches("Error: ").count();
    assert_eq!(parts_named, 1, "one diagnostic for rejected credentials, not one per part:\n{plan}");
    let (destroy, wrote) = counted(&ctx, &tf, &["destroy", "-auto-approve", "-input=false", "-no-color"]);
    destroy.expect_failure(&expected).unwrap_or_else(|e| panic!("{e}"));
    assert!(wrote.is_empty(), "the destroy wrote to AWS: {wrote:?}");
    ctx.proxy.reset();

    let after = ctx.block_on(Shape::of(&ctx.emulator, NAME)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(after, before, "rejected credentials changed the stack");
    tf.expect_empty_plans().unwrap_or_else(|e| panic!("once the credentials work again: {e}"));
    announce("robustness/refusals: credentials AWS rejects: plan and destroy fail with one diagnostic, 0 writes");
    tf.destroy().ok_or_panic();
    ctx.finish();
}

/// One bad input: the extra configuration lines, what the refusal must say, and how the fault proxy
/// answers as AWS would where the emulator cannot (a bucket name that another account or region holds).
struct BadInput {
    what: &'static str,
    lines: String,
    expect: &'static str,
    answer: Option<serde_json::Value>,
}

/// S3's answer to HeadBucket for a bucket of that name that this account cannot use: 403 when another
/// account owns it, 301 with the bucket's region when it lives in another region (the emulator answers
/// 200 to both: it has one account and does not check regions).
fn head_bucket_answer(bucket: &str, status: u16, code: &str, region: Option<&str>) -> serde_json::Value {
    let headers = region.map(|r| serde_json::json!({ "x-amz-bucket-region": r })).unwrap_or_default();
    serde_json::json!({
        "rules": [{
            "action": "s3",
            "method": "HEAD",
            "path": format!("^/{bucket}/?$"),
            "status": status,
            "code": code,
            "headers": headers,
        }]
    })
}

fn bad_inputs(ctx: &Ctx) -> Vec<BadInput> {
    let one_zone = ctx
        .block_on(async {
            let subnets = ctx.emulator.ec2().describe_subnets().send().await.map_err(|e| describe(&e))?;
            let first = subnets.subnets().first().ok_or("no subnets")?;
            let zone = first.availability_zone().unwrap_or_default().to_string();
            let vpc = first.vpc_id().unwrap_or_default().to_string();
            let second = ctx
                .emulator
                .ec2()
                .create_subnet()
                .vpc_id(&vpc)
                .availability_zone(&zone)
                .cidr_block("172.31.200.0/24")
                .send()
                .await
                .map_err(|e| describe(&e))?;
            Ok::<_, String>([
                first.subnet_id().unwrap_or_default().to_string(),
                second.subnet().and_then(|s| s.subnet_id()).unwrap_or_default().to_string(),
            ])
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let lines = |text: &str| text.to_string();
    vec![
        BadInput {
            what: "a reserved name",
            lines: lines("name_override = \"default\""),
            expect: "Invalid Stack Name",
            answer: None,
        },
        BadInput {
            what: "archive named like the state bucket",
            lines: lines(&format!("archive_bucket_name = \"{NAME}-state\"")),
            expect: "Same Bucket For Archive And State",
            answer: None,
        },
        BadInput {
            what: "subnets that do not exist",
            lines: lines("subnet_ids = [\"subnet-0123456789abcdef0\", \"subnet-0123456789abcdef1\"]"),
            expect: "Subnet subnet-0123456789abcdef0 does not exist",
            answer: None,
        },
        BadInput {
            what: "subnets in one zone",
            lines: format!("subnet_ids = [\"{}\", \"{}\"]", one_zone[0], one_zone[1]),
            expect: "Subnets In Too Few Availability Zones",
            answer: None,
        },
        BadInput {
            what: "a VPC that does not exist",
            lines: lines("vpc_id = \"vpc-0123456789abcdef0\""),
            expect: "VPC vpc-0123456789abcdef0 does not exist",
            answer: None,
        },
        BadInput {
            what: "an instance type the region does not offer",
            lines: lines("cluster = { instance_type = \"x9.colossal\" }"),
            expect: "Instance Type Not Offered",
            answer: None,
        },
        BadInput {
            what: "admin blocks covering the world in pieces",
            lines: lines("cluster = { admin_cidr_blocks = [\"0.0.0.0/1\", \"128.0.0.0/1\"] }"),
            expect: "cover every address",
            answer: None,
        },
        BadInput {
            what: "a timeout too long to add to a clock",
            lines: lines("timeouts = { create = \"3000000000000000h\" }"),
            expect: "Invalid Timeout",
            answer: None,
        },
        BadInput {
            what: "a count beyond the ECS quota",
            lines: lines("services = { web = { desired_count = 10000000000 } }"),
            expect: "Invalid Task Count",
            answer: None,
        },
        BadInput {
            what: "an archive bucket name another account owns",
            lines: lines("archive_bucket_name = \"rb-refuse-taken\""),
            expect: "The S3 bucket name rb-refuse-taken is taken by another AWS account",
            answer: Some(head_bucket_answer("rb-refuse-taken", 403, "Forbidden", None)),
        },
        BadInput {
            what: "a state bucket name in another region",
            lines: lines("state_bucket_name = \"rb-refuse-moved\""),
            expect: "The S3 bucket rb-refuse-moved exists in eu-north-1",
            answer: Some(head_bucket_answer("rb-refuse-moved", 301, "PermanentRedirect", Some("eu-north-1"))),
        },
    ]
}

#[test]
fn bad_inputs_are_refused_at_plan_with_their_attribute_and_no_aws_write() {
    let Some(ctx) = setup("refusals-inputs") else { return };
    let cases = bad_inputs(&ctx);
    for (i, case) in cases.iter().enumerate() {
        let (name, extra) = match case.lines.strip_prefix("name_override = ") {
            Some(name) => (name.trim_matches('"').to_string(), String::new()),
            None => (NAME.to_string(), format!("  {}\n", case.lines)),
        };
        let config = protected_config(&name, false)
            .replace("  wait_for_steady_state = false\n", &format!("  wait_for_steady_state = false\n{extra}"));
        let tf = ctx.workdir(&format!("case-{i}"), &config);
        if let Some(answer) = &case.answer {
            ctx.proxy.configure(answer.clone());
        }
        let (out, wrote) = counted(&ctx, &tf, &["plan", "-input=false", "-no-color"]);
        ctx.proxy.reset();
        let text = out.combined().split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(!out.success(), "{}: the plan was not refused:\n{out}", case.what);
        assert!(text.contains(case.expect), "{}: the refusal does not say {:?}:\n{out}", case.what, case.expect);
        // Terraform quotes the offending line of configuration: the diagnostic carries its attribute.
        let attribute = case.lines.split([' ', '=']).next().unwrap_or_default().replace("name_override", "name");
        let quoted =
            Regex::new(&format!(r"on main\.tf line \d+, in resource \S+ \S+: \d+: {attribute} *=")).expect("regex");
        assert!(quoted.is_match(&text), "{}: the refusal does not point at {attribute}:\n{out}", case.what);
        assert!(wrote.is_empty(), "{}: the plan wrote to AWS: {wrote:?}", case.what);
    }
    announce(&format!("robustness/refusals: {} bad inputs refused at plan with 0 AWS writes", cases.len()));
    ctx.finish();
}
