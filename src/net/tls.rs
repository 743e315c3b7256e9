//! TLS through rustls for every store: the client configuration built from `CRONLOCK_TLS_*`,
//! and one-line explanations of handshake failures.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::Tls;

/// What a TLS connection needs besides the socket: built once per run and
/// shared by every connection (sentinels, master, redirect targets).
pub struct TlsSetup {
    config: Arc<ClientConfig>,
    /// `CRONLOCK_TLS_SERVER_NAME`, when the name to verify is not the host.
    server_name: Option<ServerName<'static>>,
}

impl TlsSetup {
    /// Reads the CA bundle and client certificate named by `tls`; a missing or
    /// unreadable file is an error here, before any connection is tried.
    pub fn new(tls: &Tls) -> Result<TlsSetup> {
        TlsSetup::build(tls, true)
    }

    /// Like [`TlsSetup::new`], but the server's certificate is verified up
    /// to a trusted CA without checking the name it was issued for
    /// (libpq's `sslmode=verify-ca`).
    pub fn without_name_check(tls: &Tls) -> Result<TlsSetup> {
        TlsSetup::build(tls, false)
    }

    fn build(tls: &Tls, check_name: bool) -> Result<TlsSetup> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("TLS setup")?;
        let builder = if tls.skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        } else if check_name {
            builder.with_root_certificates(roots(tls)?)
        } else {
            let chain = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots(tls)?), provider)
                .build()
                .context("TLS setup")?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly(chain)))
        };
        let config = match (&tls.cert_file, &tls.key_file) {
            (Some(cert_file), Some(key_file)) => {
                let chain = CertificateDer::pem_file_iter(cert_file)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .with_context(|| format!("CRONLOCK_TLS_CERT_FILE '{}'", cert_file.display()))?;
                if chain.is_empty() {
                    bail!(
                        "CRONLOCK_TLS_CERT_FILE '{}' holds no PEM certificate",
                        cert_file.display()
                    );
                }
                let key = PrivateKeyDer::from_pem_file(key_file).map_err(|err| match err {
                    rustls::pki_types::pem::Error::NoItemsFound => {
                        anyhow::anyhow!(
                            "CRONLOCK_TLS_KEY_FILE '{}' holds no PEM private key",
                            key_file.display()
                        )
                    }
                    other => anyhow::anyhow!("CRONLOCK_TLS_KEY_FILE '{}': {other}", key_file.display()),
                })?;
                builder.with_client_auth_cert(chain, key).context(
                    "CRONLOCK_TLS_CERT_FILE and CRONLOCK_TLS_KEY_FILE do not make a usable client certificate",
                )?
            }
            _ => builder.with_no_client_auth(),
        };
        let server_name = match &tls.server_name {
            Some(name) => Some(
                ServerName::try_from(name.clone())
                    .with_context(|| format!("CRONLOCK_TLS_SERVER_NAME '{name}' is not a DNS name or IP address"))?,
            ),
            None => None,
        };
        Ok(TlsSetup {
            config: Arc::new(config),
            server_name,
        })
    }

    /// The rustls configuration, for stores whose client drives TLS itself.
    pub fn config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }

    /// The name to verify for `host`: `CRONLOCK_TLS_SERVER_NAME` if set, else the host.
    pub fn server_name(&self, host: &str) -> Result<ServerName<'static>> {
        match &self.server_name {
            Some(name) => Ok(name.clone()),
            None => ServerName::try_from(host.to_string())
                .with_context(|| format!("'{host}' cannot be verified as a TLS server name")),
        }
    }

    /// A client session for `host`, verifying `CRONLOCK_TLS_SERVER_NAME` if set.
    pub fn client(&self, host: &str) -> Result<rustls::ClientConnection> {
        rustls::ClientConnection::new(self.config.clone(), self.server_name(host)?).context("TLS setup")
    }
}

/// The CA bundle if one is named, else the system's trust store.
fn roots(tls: &Tls) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .with_context(|| format!("CRONLOCK_TLS_CA_FILE '{}'", path.display()))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                bail!(
                    "CRONLOCK_TLS_CA_FILE '{}' holds no usable PEM certificate",
                    path.display()
                );
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                bail!("no trusted certificates found in the system's store; set CRONLOCK_TLS_CA_FILE");
            }
        }
    }
    Ok(roots)
}

/// `CRONLOCK_TLS_SKIP_VERIFY=yes`: any certificate is accepted. The
/// handshake signatures are still checked, so the peer must at least hold
/// the key of the certificate it shows.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the chain must lead to a trusted CA; the name in
/// the certificate is not compared with the host.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            // The name is checked last, so this error means the rest passed.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A handshake failure in words a cron log reader can act on.
pub fn explain(err: &rustls::Error) -> String {
    use rustls::Error as E;
    match err {
        E::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => {
                "the server's certificate is signed by an unknown CA (set CRONLOCK_TLS_CA_FILE to the CA that signed it)"
                    .to_string()
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the server's certificate has expired".to_string()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet (check the clocks)".to_string()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "the server's certificate does not match the host name (set CRONLOCK_TLS_SERVER_NAME to the name it was issued for)"
                    .to_string()
            }
            other => format!("the server's certificate was rejected: {other:?}"),
        },
        E::AlertReceived(AlertDescription::CertificateRequired) | E::AlertReceived(AlertDescription::HandshakeFailure) => {
            format!(
                "the server ended the handshake ({err}); it may require a client certificate (CRONLOCK_TLS_CERT_FILE and CRONLOCK_TLS_KEY_FILE)"
            )
        }
        E::AlertReceived(
            AlertDescription::UnknownCA | AlertDescription::BadCertificate | AlertDescription::DecryptError,
        ) => format!(
            // Go's servers (etcd) send bad_certificate for a missing certificate too.
            "the server refused our client certificate, or wants one and got none ({err}); set CRONLOCK_TLS_CERT_FILE and CRONLOCK_TLS_KEY_FILE to one its CA signed"
        ),
        E::InvalidMessage(_) => {
            format!("the server does not speak TLS ({err}); is CRONLOCK_TLS meant for this port?")
        }
        other => format!("TLS handshake failed: {other}"),
    }
}
