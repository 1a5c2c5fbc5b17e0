//! The listener's security, as a Kafka listener of protocol `SSL`, `SASL_PLAINTEXT` or
//! `SASL_SSL` has it: TLS (rustls, with a PEM certificate and key) around the connection, and
//! SASL/PLAIN authentication inside it before any other request.
//!
//! A SASL connection goes through these steps (Kafka's `SaslServerAuthenticator`):
//! 1. `ApiVersions` is answered as on any connection, so the client learns the SASL versions.
//! 2. `SaslHandshake` (v1) names the mechanism; only `PLAIN` is enabled, and another is
//!    answered `UNSUPPORTED_SASL_MECHANISM` with the enabled list, then the connection closes.
//! 3. `SaslAuthenticate` carries `[authzid] NUL user NUL password`; a wrong user or password is
//!    answered `SASL_AUTHENTICATION_FAILED`, then the connection closes.
//! 4. Any other request before step 3 succeeds closes the connection, as Kafka does; after it,
//!    a second handshake is `ILLEGAL_SASL_STATE`.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::BrokerError;

/// The listener's TLS identity, in PEM.
#[derive(Clone)]
pub struct TlsIdentity {
    /// The certificate chain, the broker's own certificate first.
    pub certificate_chain_pem: String,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub private_key_pem: String,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity").finish_non_exhaustive()
    }
}

/// The acceptor for `identity`.
pub(crate) fn tls_acceptor(identity: &TlsIdentity) -> Result<TlsAcceptor, BrokerError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| BrokerError::Tls(format!("{what}: {e}"));
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(identity.certificate_chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| bad("reading the certificate chain", &e))?;
    if chain.is_empty() {
        return Err(BrokerError::Tls(
            "the certificate chain holds no certificate".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(identity.private_key_pem.as_bytes())
        .map_err(|e| bad("reading the private key", &e))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("choosing TLS versions", &e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| bad("the certificate and key", &e))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Where a connection is in SASL authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SaslState {
    /// The listener does not use SASL.
    Off,
    /// Waiting for the handshake.
    Handshake,
    /// Handshaken: waiting for the credentials.
    Authenticate,
    Authenticated,
}

/// What a connection does with a request, by its SASL state.
pub(crate) enum SaslStep<T> {
    /// Answer it, and go on.
    Answer(T),
    /// Answer it, then close the connection.
    AnswerAndClose(T),
}

impl SaslState {
    pub(crate) fn new(users: &Option<BTreeMap<String, String>>) -> Self {
        match users {
            Some(_) => SaslState::Handshake,
            None => SaslState::Off,
        }
    }

    /// Whether a request other than ApiVersions and the SASL ones may be served now.
    pub(crate) fn allows_requests(self) -> bool {
        matches!(self, SaslState::Off | SaslState::Authenticated)
    }

    pub(crate) fn handshake(
        &mut self,
        r: &SaslHandshakeRequest,
    ) -> SaslStep<SaslHandshakeResponse> {
        let mut response = SaslHandshakeResponse::default()
            .with_mechanisms(vec![StrBytes::from_static_str("PLAIN")]);
        match self {
            SaslState::Handshake if r.mechanism.as_str() == "PLAIN" => {
                *self = SaslState::Authenticate;
                SaslStep::Answer(response)
            }
            SaslState::Handshake => {
                response.error_code = ResponseError::UnsupportedSaslMechanism.code();
                SaslStep::AnswerAndClose(response)
            }
            SaslState::Off => {
                response.mechanisms.clear();
                response.error_code = ResponseError::IllegalSaslState.code();
                SaslStep::AnswerAndClose(response)
            }
            SaslState::Authenticate | SaslState::Authenticated => {
                response.error_code = ResponseError::IllegalSaslState.code();
                SaslStep::AnswerAndClose(response)
            }
        }
    }

    pub(crate) fn authenticate(
        &mut self,
        r: &SaslAuthenticateRequest,
        users: &Option<BTreeMap<String, String>>,
    ) -> SaslStep<SaslAuthenticateResponse> {
        let mut response = SaslAuthenticateResponse::default();
        let fail = |mut response: SaslAuthenticateResponse, code: ResponseError, why: &str| {
            response.error_code = code.code();
            response.error_message = Some(StrBytes::from_string(why.to_string()));
            SaslStep::AnswerAndClose(response)
        };
        if *self != SaslState::Authenticate {
            return fail(
                response,
                ResponseError::IllegalSaslState,
                "SaslAuthenticate before SaslHandshake",
            );
        }
        // PLAIN (RFC 4616): [authzid] NUL authcid NUL passwd.
        let mut parts = r.auth_bytes.split(|b| *b == 0);
        let (_authzid, user, password) = (parts.next(), parts.next(), parts.next());
        let valid = match (user, password, parts.next(), users) {
            (Some(user), Some(password), None, Some(users)) => {
                let user = String::from_utf8_lossy(user);
                users
                    .get(user.as_ref())
                    .is_some_and(|p| p.as_bytes() == password)
            }
            _ => false,
        };
        if !valid {
            return fail(
                response,
                ResponseError::SaslAuthenticationFailed,
                "Authentication failed: Invalid username or password",
            );
        }
        *self = SaslState::Authenticated;
        response.session_lifetime_ms = 0;
        SaslStep::Answer(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> Option<BTreeMap<String, String>> {
        Some(BTreeMap::from([("eddy".to_string(), "secret".to_string())]))
    }

    fn auth(bytes: &[u8]) -> SaslAuthenticateRequest {
        SaslAuthenticateRequest::default().with_auth_bytes(bytes::Bytes::copy_from_slice(bytes))
    }

    fn plain() -> SaslHandshakeRequest {
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"))
    }

    #[test]
    fn plain_credentials_authenticate_once_and_nothing_else_does() {
        let mut s = SaslState::new(&users());
        assert!(!s.allows_requests());
        assert!(matches!(
            s.authenticate(&auth(b"\0eddy\0secret"), &users()),
            SaslStep::AnswerAndClose(r) if r.error_code == ResponseError::IllegalSaslState.code()
        ));
        let mut s = SaslState::new(&users());
        assert!(matches!(s.handshake(&plain()), SaslStep::Answer(r) if r.error_code == 0));
        assert!(matches!(
            s.authenticate(&auth(b"\0eddy\0wrong"), &users()),
            SaslStep::AnswerAndClose(r) if r.error_code == ResponseError::SaslAuthenticationFailed.code()
        ));
        let mut s = SaslState::new(&users());
        s.handshake(&plain());
        assert!(matches!(
            s.authenticate(&auth(b"\0eddy\0secret"), &users()),
            SaslStep::Answer(r) if r.error_code == 0
        ));
        assert!(s.allows_requests());
        assert!(matches!(s.handshake(&plain()), SaslStep::AnswerAndClose(_)));

        let mut s = SaslState::new(&users());
        let scram = SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_static_str("SCRAM-SHA-512"));
        assert!(matches!(
            s.handshake(&scram),
            SaslStep::AnswerAndClose(r) if r.error_code == ResponseError::UnsupportedSaslMechanism.code()
        ));
        assert!(SaslState::new(&None).allows_requests());
    }
}
