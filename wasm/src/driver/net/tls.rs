//! The host's TLS client settings: the system trust store, `ca=`, or no
//! verification at all (`tls-verify=false`); and the handshake. Without
//! the `tls` feature (a builder that runs no registry plugin), `https://`
//! addresses are refused with one line saying so, and rustls and *ring*
//! are not built.

#[cfg(feature = "tls")]
pub(super) use real::{TlsConfig, client_config, connect};

#[cfg(not(feature = "tls"))]
pub(super) use none::{NO_TLS, TlsConfig, client_config, connect};

#[cfg(feature = "tls")]
mod real {
    use std::path::Path;
    use std::sync::{Arc, OnceLock};

    use tokio_rustls::rustls::client::danger::{
        HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
    };
    use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use tokio_rustls::rustls::{
        self, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    };

    /// The system's trusted certificates (Debian: /etc/ssl/certs), read once.
    fn system_roots() -> &'static Vec<CertificateDer<'static>> {
        static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
        ROOTS.get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for e in found.errors.iter().take(3) {
                tracing::debug!("system trust store: {e}");
            }
            found.certs
        })
    }

    /// The *ring* provider. rustls 0.23.48 deprecated it (its key exchange has
    /// no post-quantum group, X25519MLKEM768, which only the aws-lc-rs provider
    /// offers); the classical groups it has are what registries negotiate today,
    /// and aws-lc-rs would add a C/cmake build. The `allow` keeps builds with
    /// newer rustls (a builder's own lock) free of warnings; it is a no-op with
    /// older ones.
    #[allow(deprecated)]
    fn provider() -> Arc<CryptoProvider> {
        Arc::new(ring::default_provider())
    }

    /// The client configuration for `ca` (extra trusted certificates, PEM)
    /// and `verify`.
    pub fn client_config(ca: Option<&Path>, verify: bool) -> Result<Arc<ClientConfig>, String> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?;
        let config = if verify {
            let mut roots = RootCertStore::empty();
            let (_, _) = roots.add_parsable_certificates(system_roots().iter().cloned());
            if let Some(path) = ca {
                let shown = crate::show::name(&path);
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("ca={shown}: {e}"))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("ca={shown}: {e}"))?;
                if certs.is_empty() {
                    return Err(format!("ca={shown}: no PEM certificate in the file"));
                }
                for c in certs {
                    roots
                        .add(c)
                        .map_err(|e| format!("ca={shown}: a certificate is not usable: {e}"))?;
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
                .with_no_client_auth()
        };
        Ok(Arc::new(config))
    }

    /// `tls-verify=false`: any certificate is accepted (signatures of the
    /// handshake itself are still checked).
    #[derive(Debug)]
    struct NoVerify(Arc<CryptoProvider>);

    impl ServerCertVerifier for NoVerify {
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
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    /// The client configuration of a plugin's network.
    pub type TlsConfig = Arc<ClientConfig>;

    /// TLS over `tcp` with `origin`, within `within`.
    pub async fn connect(
        tls: &TlsConfig,
        origin: &super::super::Origin,
        tcp: tokio::net::TcpStream,
        within: std::time::Duration,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
        let name =
            ServerName::try_from(origin.host.clone()).map_err(|e| format!("{origin}: {e}"))?;
        tokio::time::timeout(
            within,
            tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp),
        )
        .await
        .map_err(|_| format!("TLS with {origin}: no answer within {within:?}"))?
        .map_err(|e| tls_error(origin, &e))
    }

    /// What a failed TLS handshake says, with the way out for certificates.
    fn tls_error(origin: &super::super::Origin, e: &std::io::Error) -> String {
        let text = e
            .get_ref()
            .map(|inner| inner.to_string())
            .unwrap_or_else(|| e.to_string());
        if text.contains("certificate") || text.contains("Certificate") {
            format!(
                "TLS with {origin}: {text} (trust the registry's CA with ca=PATH, or turn checks off with tls-verify=false)"
            )
        } else {
            format!("TLS with {origin}: {text}")
        }
    }
}

#[cfg(not(feature = "tls"))]
mod none {
    use std::path::Path;

    /// Why an `https://` address cannot be reached.
    pub const NO_TLS: &str =
        "https:// needs TLS, which this rumoci was built without (the tls feature)";

    /// No TLS settings: this build has no TLS.
    #[derive(Debug, Clone, Copy)]
    pub struct TlsConfig;

    /// Nothing to set up; `https` origins are refused when the plugin is
    /// loaded (`Network::new`) and on connect.
    pub fn client_config(_ca: Option<&Path>, _verify: bool) -> Result<TlsConfig, String> {
        Ok(TlsConfig)
    }

    /// Refuse: this build has no TLS.
    pub async fn connect(
        _tls: &TlsConfig,
        origin: &super::super::Origin,
        _tcp: tokio::net::TcpStream,
        _within: std::time::Duration,
    ) -> Result<tokio::net::TcpStream, String> {
        Err(format!("{origin}: {NO_TLS}"))
    }
}
