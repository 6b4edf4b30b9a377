//! Every AWS service module against the local emulator (`scripts/with-emulator.sh`), one submodule per
//! service. One test binary rather than one per service: each would link the whole provider library again,
//! which costs more build time than all these tests take to run.

mod common;

#[path = "emulator/autoscaling.rs"]
mod autoscaling;
#[path = "emulator/ec2.rs"]
mod ec2;
#[path = "emulator/ecr.rs"]
mod ecr;
#[path = "emulator/ecs.rs"]
mod ecs;
#[path = "emulator/efs.rs"]
mod efs;
#[path = "emulator/elbv2.rs"]
mod elbv2;
#[path = "emulator/iam.rs"]
mod iam;
#[path = "emulator/rds.rs"]
mod rds;
#[path = "emulator/secretsmanager.rs"]
mod secretsmanager;
#[path = "emulator/servicediscovery.rs"]
mod servicediscovery;
#[path = "emulator/ssm.rs"]
mod ssm;
