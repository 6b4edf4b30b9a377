//! Mutual TLS for the plugin connection, as go-plugin's AutoMTLS expects.
//!
//! Terraform generates a one-off client certificate and passes it in `PLUGIN_CLIENT_CERT`; the provider
//! generates a one-off server certificate and prints it in the handshake line. Each side trusts exactly the
//! other's certificate. The client certificate is pinned byte for byte rather than validated as a chain:
//! go-plugin marks it as a CA, which path validation rightly refuses as an end-entity certificate, and
//! pinning is the stronger check anyway. Handshake signatures are still verified (including P-521, which
//! go-plugin uses, through [`super::p521`]).
//!
//! The crypto provider is ring: it draws its randomness from the OS, so the server key is made in well under
//! a millisecond (AWS-LC seeds itself from CPU jitter first, tens of milliseconds on every plugin start).

use std::sync::Arc;

use base64::Engine;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, ServerConfig, SignatureScheme};

/// The server's side of the TLS setup: its config and the certificate to print in the handshake.
pub struct ServerTls {
    /// rustls configuration requiring the pinned client certificate.
    pub config: Arc<ServerConfig>,
    /// The server certificate, base64 (standard alphabet, no padding) as go-plugin expects.
    pub certificate_base64: String,
}

/// Builds the server TLS configuration trusting only `client_cert_pem`.
pub fn server_tls(client_cert_pem: &str) -> Result<ServerTls, String> {
    let client_cert = CertificateDer::from_pem_slice(client_cert_pem.as_bytes())
        .map_err(|e| format!("PLUGIN_CLIENT_CERT is not a PEM certificate: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (server_cert, server_key) = generate_server_certificate()?;
    let verifier = Arc::new(PinnedClientCertificate {
        expected: client_cert,
        algorithms: super::p521::with_p521(provider.signature_verification_algorithms),
    });
    let mut config = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![server_cert.clone()], server_key)
        .map_err(|e| format!("server certificate rejected: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(ServerTls {
        config: Arc::new(config),
        certificate_base64: base64::engine::general_purpose::STANDARD_NO_PAD.encode(server_cert.as_ref()),
    })
}

fn generate_server_certificate() -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), String> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).map_err(|e| e.to_string())?;
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "HashiCorp");
    params.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
    // Mirrors go-plugin's own certificates: self-signed, usable for both ends of the connection.
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
        rcgen::KeyUsagePurpose::KeyAgreement,
        rcgen::KeyUsagePurpose::KeyCertSign,
    ];
    params.extended_key_usages =
        vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok((cert.der().clone(), key_der))
}

/// Accepts exactly one client certificate.
#[derive(Debug)]
struct PinnedClientCertificate {
    expected: CertificateDer<'static>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for PinnedClientCertificate {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: Go's client then offers its only certificate unconditionally.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        if end_entity.as_ref() == self.expected.as_ref() {
            Ok(ClientCertVerified::assertion())
        } else {
            tracing::warn!("refused a TLS client whose certificate is not the one Terraform announced");
            Err(Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Makes sure one process-wide crypto provider is installed (the AWS SDK's TLS shares it).
pub fn install_crypto_provider() {
    let _ = CryptoProvider::install_default(rustls::crypto::ring::default_provider());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_pem() -> String {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn refuses_a_garbage_client_certificate() {
        assert!(server_tls("not a certificate").is_err());
    }

    #[test]
    fn pins_exactly_the_announced_certificate() {
        let announced = client_pem();
        let other = client_pem();
        let verifier = PinnedClientCertificate {
            expected: CertificateDer::from_pem_slice(announced.as_bytes()).unwrap(),
            algorithms: crate::plugin::p521::with_p521(
                rustls::crypto::ring::default_provider().signature_verification_algorithms,
            ),
        };
        let now = UnixTime::now();
        let good = CertificateDer::from_pem_slice(announced.as_bytes()).unwrap();
        let bad = CertificateDer::from_pem_slice(other.as_bytes()).unwrap();
        assert!(verifier.verify_client_cert(&good, &[], now).is_ok());
        assert!(verifier.verify_client_cert(&bad, &[], now).is_err());
        assert!(verifier.supported_verify_schemes().contains(&SignatureScheme::ECDSA_NISTP521_SHA512));
    }

    #[test]
    fn prints_the_server_certificate_without_padding() {
        let tls = server_tls(&client_pem()).unwrap();
        assert!(!tls.certificate_base64.ends_with('='));
        assert!(base64::engine::general_purpose::STANDARD_NO_PAD.decode(&tls.certificate_base64).is_ok());
    }
}
