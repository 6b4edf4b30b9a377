//! The go-plugin handshake: the environment Terraform sets when it starts the plugin, and the line the
//! plugin prints back to tell Terraform where and how to connect.

use std::net::SocketAddr;

/// The environment variable go-plugin uses to tell a plugin it was started by Terraform.
pub const MAGIC_COOKIE_KEY: &str = "TF_PLUGIN_MAGIC_COOKIE";
/// Terraform's magic cookie value (public; it only prevents running the plugin by accident).
pub const MAGIC_COOKIE_VALUE: &str = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";
/// The only plugin protocol version this provider speaks.
pub const PROTOCOL_VERSION: u32 = 6;
/// The go-plugin core protocol version (first field of the handshake line).
const CORE_PROTOCOL_VERSION: u32 = 1;

/// What the plugin shows a person who runs it by hand.
pub const NOT_A_COMMAND: &str = "\
This binary is a Terraform provider plugin (datavault). Terraform starts it itself; it is not meant to be
run directly.

To use it, declare it in your configuration and run `terraform init`:

  terraform {
    required_providers {
      datavault = { source = \"datavault/datavault\" }
    }
  }

To debug the provider, run it with `-debug` and follow the instructions it prints.";

/// The settings Terraform passed in the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// Loopback ports the plugin may listen on (go-plugin's PLUGIN_MIN_PORT..=PLUGIN_MAX_PORT).
    pub ports: Option<(u16, u16)>,
    /// Terraform's client certificate (PEM) for mutual TLS.
    pub client_cert_pem: String,
}

/// Reads and checks the handshake environment; the error is the message to print before exiting 1.
pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Handshake, String> {
    if get(MAGIC_COOKIE_KEY).as_deref() != Some(MAGIC_COOKIE_VALUE) {
        return Err(NOT_A_COMMAND.to_string());
    }
    negotiate_version(get("PLUGIN_PROTOCOL_VERSIONS").as_deref())?;
    let ports = port_range(get("PLUGIN_MIN_PORT").as_deref(), get("PLUGIN_MAX_PORT").as_deref())?;
    let client_cert_pem = get("PLUGIN_CLIENT_CERT").filter(|c| !c.trim().is_empty()).ok_or_else(|| {
        "PLUGIN_CLIENT_CERT is not set: this provider only serves Terraform over mutual TLS. \
         Use a Terraform release (>= 1.0), which always sets it."
            .to_string()
    })?;
    Ok(Handshake { ports, client_cert_pem })
}

/// Checks that the client offers protocol 6. An absent list means an old client that assumes the
/// plugin's version, as go-plugin does.
fn negotiate_version(offered: Option<&str>) -> Result<u32, String> {
    let Some(offered) = offered.filter(|s| !s.trim().is_empty()) else { return Ok(PROTOCOL_VERSION) };
    let versions: Vec<&str> = offered.split(',').map(str::trim).collect();
    if versions.iter().any(|v| v.parse::<u32>() == Ok(PROTOCOL_VERSION)) {
        Ok(PROTOCOL_VERSION)
    } else {
        Err(format!(
            "Incompatible plugin protocol: Terraform offers protocol version(s) {offered}, but this provider \
             speaks only version {PROTOCOL_VERSION}. Use Terraform 1.0 or newer."
        ))
    }
}

fn port_range(min: Option<&str>, max: Option<&str>) -> Result<Option<(u16, u16)>, String> {
    let parse = |name: &str, v: Option<&str>| -> Result<Option<u16>, String> {
        v.filter(|s| !s.is_empty())
            .map(|s| s.parse::<u16>().map_err(|_| format!("{name} is not a port number: {s:?}")))
            .transpose()
    };
    match (parse("PLUGIN_MIN_PORT", min)?, parse("PLUGIN_MAX_PORT", max)?) {
        (None, None) => Ok(None),
        (Some(lo), Some(hi)) if lo <= hi => Ok(Some((lo, hi))),
        (Some(lo), Some(hi)) => Err(format!("PLUGIN_MIN_PORT ({lo}) is greater than PLUGIN_MAX_PORT ({hi})")),
        (Some(lo), None) => Ok(Some((lo, u16::MAX))),
        (None, Some(hi)) => Ok(Some((1024.min(hi), hi))),
    }
}

/// The line Terraform reads from stdout: `CORE|APP|NETWORK|ADDR|PROTOCOL|CERT`.
pub fn handshake_line(addr: SocketAddr, certificate_base64: &str) -> String {
    format!("{CORE_PROTOCOL_VERSION}|{PROTOCOL_VERSION}|tcp|{addr}|grpc|{certificate_base64}")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn without_the_cookie_it_explains_itself() {
        let err = from_env(env(&[])).unwrap_err();
        assert!(err.contains("Terraform provider plugin"));
    }

    #[test]
    fn refuses_clients_without_protocol_6() {
        let err =
            from_env(env(&[(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE), ("PLUGIN_PROTOCOL_VERSIONS", "4,5")])).unwrap_err();
        assert!(err.contains("speaks only version 6"));
    }

    #[test]
    fn requires_the_client_certificate() {
        let err =
            from_env(env(&[(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE), ("PLUGIN_PROTOCOL_VERSIONS", "5,6")])).unwrap_err();
        assert!(err.contains("PLUGIN_CLIENT_CERT"));
    }

    #[test]
    fn reads_port_range_and_certificate() {
        let hs = from_env(env(&[
            (MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE),
            ("PLUGIN_PROTOCOL_VERSIONS", "6"),
            ("PLUGIN_MIN_PORT", "10000"),
            ("PLUGIN_MAX_PORT", "10010"),
            ("PLUGIN_CLIENT_CERT", "-----BEGIN CERTIFICATE-----"),
        ]))
        .unwrap();
        assert_eq!(hs.ports, Some((10000, 10010)));
        assert!(port_range(Some("9"), Some("8")).is_err());
    }

    #[test]
    fn prints_the_go_plugin_line() {
        let line = handshake_line("127.0.0.1:1234".parse().unwrap(), "Q0VSVA");
        assert_eq!(line, "1|6|tcp|127.0.0.1:1234|grpc|Q0VSVA");
    }
}
