//! Publishes the provider binary under test in a filesystem mirror, and writes the Terraform CLI
//! configuration that makes the mirror the only place Terraform may install `datavault/*` from.
//!
//! A mirror (rather than `dev_overrides`) exercises the real `terraform init` path, lock file included,
//! exactly as a user installing a released provider would.

use std::fs;
use std::path::{Path, PathBuf};

use crate::hcl;

/// Registry host the provider's source address resolves to.
pub const REGISTRY_HOST: &str = "registry.terraform.io";
/// Prefix of the per-process mirror directories, so stale ones can be recognised and swept.
const MIRROR_PREFIX: &str = "datavault-acc-mirror-";

/// A provider mirror directory; it lives as long as the test process.
#[derive(Debug)]
pub struct Mirror {
    root: PathBuf,
}

/// Terraform's name for the platform this process runs on (`linux_amd64`, `linux_arm64`, ...).
pub fn terraform_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        other => other,
    };
    format!("{}_{arch}", std::env::consts::OS)
}

/// Where, below a mirror root, the provider executable goes in Terraform's "unpacked" mirror layout.
pub fn provider_path(version: &str, platform: &str) -> PathBuf {
    let source = hcl::PROVIDER_SOURCE;
    Path::new(REGISTRY_HOST)
        .join(source)
        .join(version)
        .join(platform)
        .join(format!("terraform-provider-datavault_v{version}"))
}

/// The CLI configuration for one test: install `datavault/*` from the mirror only.
///
/// No `plugin_cache_dir`: each working directory installs its own copy, so one test can never pick up
/// a provider another run left in a cache.
pub fn cli_config(mirror: &Path) -> String {
    format!(
        "disable_checkpoint = true\n\nprovider_installation {{\n  filesystem_mirror {{\n    path    = {}\n    include = [\"{REGISTRY_HOST}/datavault/*\"]\n  }}\n}}\n",
        hcl::quote(&mirror.display().to_string())
    )
}

impl Mirror {
    /// Creates a mirror in the system temp dir holding a copy of `provider_bin` as `version`.
    ///
    /// The binary is copied, not linked, so a rebuild during a long run cannot change the provider under
    /// a test half-way through.
    pub fn create(provider_bin: &Path, version: &str) -> Mirror {
        sweep_stale(&std::env::temp_dir());
        let root = std::env::temp_dir().join(format!("{MIRROR_PREFIX}{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let dest = root.join(provider_path(version, &terraform_platform()));
        fs::create_dir_all(dest.parent().expect("provider path has a parent"))
            .unwrap_or_else(|e| panic!("creating mirror {}: {e}", root.display()));
        fs::copy(provider_bin, &dest)
            .unwrap_or_else(|e| panic!("copying provider {} to {}: {e}", provider_bin.display(), dest.display()));
        Mirror { root }
    }

    /// The directory to name in `filesystem_mirror { path = ... }`.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// Removes mirrors left by test processes that no longer run.
///
/// The mirror is process-wide and Rust never drops statics, so it cannot clean up after itself; the next
/// run does it instead, keeping /tmp from filling with copies of a debug binary.
fn sweep_stale(tmp: &Path) {
    let Ok(entries) = fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(MIRROR_PREFIX)) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_path_follows_the_unpacked_layout() {
        assert_eq!(
            provider_path("0.1.0", "linux_amd64"),
            PathBuf::from(
                "registry.terraform.io/datavault/datavault/0.1.0/linux_amd64/terraform-provider-datavault_v0.1.0"
            )
        );
    }

    #[test]
    fn cli_config_restricts_the_mirror_to_datavault() {
        let text = cli_config(Path::new("/tmp/m"));
        assert!(text.contains("filesystem_mirror {\n    path    = \"/tmp/m\""), "{text}");
        assert!(text.contains("include = [\"registry.terraform.io/datavault/*\"]"), "{text}");
        assert!(!text.contains("plugin_cache_dir"), "{text}");
    }

    #[test]
    fn platform_names_os_and_arch() {
        let platform = terraform_platform();
        assert!(platform.starts_with(std::env::consts::OS), "{platform}");
        assert!(!platform.contains("x86_64"), "{platform}");
    }

    #[test]
    fn creates_a_mirror_holding_a_copy_of_the_binary() {
        let src = tempfile::NamedTempFile::new().unwrap();
        fs::write(src.path(), b"#!/bin/sh\n").unwrap();
        let mirror = Mirror::create(src.path(), "9.8.7");
        let copied = mirror.root().join(provider_path("9.8.7", &terraform_platform()));
        assert_eq!(fs::read(&copied).unwrap(), b"#!/bin/sh\n");
        fs::remove_dir_all(mirror.root()).unwrap();
    }
}
