//! ECDSA P-521 with SHA-512 signature checks for TLS: the one scheme the plugin's crypto provider (ring)
//! lacks and Terraform needs. go-plugin gives Terraform's one-off client certificate a P-521 key, so the
//! client's handshake signature can only be checked with it.

use std::sync::OnceLock;

use p521::ecdsa::signature::Verifier;
use p521::ecdsa::{Signature, VerifyingKey};
use rustls::SignatureScheme;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{AlgorithmIdentifier, InvalidSignature, SignatureVerificationAlgorithm, alg_id};

/// ECDSA over NIST P-521 with SHA-512; signatures DER-encoded, as in TLS and X.509.
#[derive(Debug)]
struct EcdsaP521Sha512;

impl SignatureVerificationAlgorithm for EcdsaP521Sha512 {
    fn verify_signature(&self, public_key: &[u8], message: &[u8], signature: &[u8]) -> Result<(), InvalidSignature> {
        let key = VerifyingKey::from_sec1_bytes(public_key).map_err(|_| InvalidSignature)?;
        let signature = Signature::from_der(signature).map_err(|_| InvalidSignature)?;
        key.verify(message, &signature).map_err(|_| InvalidSignature)
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ECDSA_P521
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ECDSA_SHA512
    }
}

static ECDSA_P521_SHA512: EcdsaP521Sha512 = EcdsaP521Sha512;

/// `base` (a crypto provider's signature algorithms) with ECDSA P-521 SHA-512 added, built once per process
/// (rustls wants the tables for the life of the program).
pub fn with_p521(base: WebPkiSupportedAlgorithms) -> WebPkiSupportedAlgorithms {
    static EXTENDED: OnceLock<WebPkiSupportedAlgorithms> = OnceLock::new();
    *EXTENDED.get_or_init(|| {
        let p521: &'static dyn SignatureVerificationAlgorithm = &ECDSA_P521_SHA512;
        let mut all = base.all.to_vec();
        all.push(p521);
        let mut mapping: Vec<(SignatureScheme, &'static [&'static dyn SignatureVerificationAlgorithm])> = base
            .mapping
            .iter()
            .filter(|(scheme, _)| *scheme != SignatureScheme::ECDSA_NISTP521_SHA512)
            .copied()
            .collect();
        mapping.push((SignatureScheme::ECDSA_NISTP521_SHA512, Box::leak(Box::new([p521]))));
        WebPkiSupportedAlgorithms { all: all.leak(), mapping: mapping.leak() }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use p521::ecdsa::SigningKey;
    use p521::ecdsa::signature::Signer;

    fn key_pair() -> (SigningKey, Vec<u8>) {
        // A fixed scalar below the group order (whose top byte is 0x01).
        let mut scalar = [7u8; 66];
        scalar[0] = 0;
        let signing = SigningKey::from_slice(&scalar).unwrap();
        let public = VerifyingKey::from(&signing).to_encoded_point(false).as_bytes().to_vec();
        (signing, public)
    }

    #[test]
    fn accepts_a_good_signature_and_refuses_a_changed_message() {
        let (signing, public) = key_pair();
        let signature: Signature = signing.sign(b"handshake transcript");
        let der = signature.to_der();
        assert!(ECDSA_P521_SHA512.verify_signature(&public, b"handshake transcript", der.as_bytes()).is_ok());
        assert!(ECDSA_P521_SHA512.verify_signature(&public, b"another transcript", der.as_bytes()).is_err());
        assert!(ECDSA_P521_SHA512.verify_signature(&public, b"handshake transcript", b"not der").is_err());
    }

    #[test]
    fn adds_the_scheme_to_the_providers_table() {
        let algorithms = with_p521(rustls::crypto::ring::default_provider().signature_verification_algorithms);
        assert!(algorithms.supported_schemes().contains(&SignatureScheme::ECDSA_NISTP521_SHA512));
        assert!(algorithms.supported_schemes().contains(&SignatureScheme::ECDSA_NISTP256_SHA256));
    }
}
